//! Legacy (pre-1.6, non-zip) `torch.save` files, read in pure Rust: no torch at run time.
//!
//! `candle_core::pickle` only reads the zip format. The legacy format, as written by
//! `torch/serialization.py::_legacy_save` and read by `_legacy_load`, is five things back to
//! back:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`,
//! 2. a pickle of the format version (`1001`),
//! 3. a pickle of system information (`{"protocol_version", "little_endian", "type_sizes"}`),
//! 4. the main pickle: here a state dict (`collections.OrderedDict`) whose values are
//!    `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` calls, the
//!    storage given by persistent id `("storage", torch.FloatStorage, key, location, numel,
//!    view_metadata)`,
//! 5. a pickle of the list of storage keys, then for each key in that order a little-endian
//!    `u64` element count followed by the storage's raw little-endian data.
//!
//! The pickles are decoded into `candle_core::pickle::Object`s by a small unpickler of the
//! opcodes `torch.save` emits. It is not `candle_core::pickle::Stack`, which reverses the order of
//! each `SETITEMS` batch (dict order matters to callers) and overflows on the 10-byte `LONG1` of
//! the magic number, which is checked byte for byte here instead. Tensors may be
//! strided views of a storage (the EfficientNet-Lite0 weights `efficientnet-lite0-57934424.pth`,
//! converted from TensorFlow, store convolution kernels in HWIO order with permuted strides):
//! every tensor is gathered into a contiguous row-major copy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::pickle::Object;
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The magic number `0x1950a86a20f9469cfc6c`, little-endian, as pickled by `LONG1`.
const MAGIC_NUMBER: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy format version there is (`torch.serialization.PROTOCOL_VERSION`).
const PROTOCOL_VERSION: i64 = 1001;

/// Whether `path` starts like a legacy `torch.save` file (the pickled magic number).
pub fn is_legacy_pickle(path: &Path) -> Result<bool> {
    let mut head = [0u8; 15];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| Error::io(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(read_magic(&mut &head[..n]).is_ok())
}

/// Reads every tensor of a legacy `torch.save` file, in the order of the pickled dict.
///
/// The pickled object must be a dict of tensors (a state dict), or a dict with a `state_dict`
/// entry that is one; other values (`_metadata`, counters) are skipped.
pub fn read_all(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_from(&mut BufReader::new(f)).map_err(|m| Error::checkpoint(path, m))
}

/// Reads a legacy `torch.save` stream (see [`read_all`]); errors are plain messages.
pub fn read_from<R: BufRead>(r: &mut R) -> std::result::Result<Vec<(String, Tensor)>, String> {
    read_magic(r)?;
    match unpickle(r, "format version")? {
        Object::Int(v) if i64::from(v) == PROTOCOL_VERSION => {}
        other => return Err(format!("unsupported legacy format version {other:?}")),
    }
    if let Object::Dict(info) = unpickle(r, "system information")? {
        let little_endian = info
            .iter()
            .find(|(k, _)| matches!(k, Object::Unicode(s) if s == "little_endian"));
        if let Some((_, Object::Bool(false))) = little_endian {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    let main = unpickle(r, "state dict")?;
    // Every storage the pickle refers to, tensors of the state dict or not, with its type and
    // size: the data that follows holds them all.
    let mut declared: HashMap<String, (DType, usize)> = HashMap::new();
    collect_storages(&main, &mut declared)?;
    let specs = tensor_specs(main)?;
    let keys = match unpickle(r, "storage keys")? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Object::Unicode(s) => Ok(s),
                other => Err(format!("storage key is not a string: {other:?}")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("expected the list of storage keys, got {other:?}")),
    };
    let wanted: std::collections::HashSet<&str> = specs.iter().map(|(_, s)| s.storage.as_str()).collect();

    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let (dtype, numel) = *declared
            .get(key.as_str())
            .ok_or_else(|| format!("storage {key} is not referred to by the pickle"))?;
        let mut count = [0u8; 8];
        r.read_exact(&mut count)
            .map_err(|e| format!("storage {key}: cannot read its size: {e}"))?;
        let count = u64::from_le_bytes(count);
        if count != numel as u64 {
            return Err(format!(
                "storage {key} has {count} elements in the file, {numel} in the pickle"
            ));
        }
        let nbytes = numel
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| format!("storage {key} is too large"))?;
        let mut data = Vec::new();
        r.by_ref()
            .take(nbytes as u64)
            .read_to_end(&mut data)
            .map_err(|e| format!("storage {key}: {e}"))?;
        if data.len() != nbytes {
            return Err(format!(
                "storage {key}: file ends after {} of its {nbytes} bytes (truncated file?)",
                data.len()
            ));
        }
        if wanted.contains(key.as_str()) {
            storages.insert(key, data);
        }
    }

    specs
        .into_iter()
        .map(|(name, spec)| {
            let data = storages
                .get(&spec.storage)
                .ok_or_else(|| format!("tensor `{name}`: storage {} is missing", spec.storage))?;
            let t = spec
                .materialize(data)
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
            Ok((name, t))
        })
        .collect()
}

/// Checks the magic-number pickle: `PROTO 2`, `LONG1` of 10 bytes, `STOP` (15 bytes).
fn read_magic<R: Read>(r: &mut R) -> std::result::Result<(), String> {
    let mut head = [0u8; 15];
    r.read_exact(&mut head)
        .map_err(|_| "file is too short to be a legacy torch pickle".to_string())?;
    if head[0] == 0x80 && head[2..4] == [0x8a, 10] && head[4..14] == MAGIC_NUMBER && head[14] == b'.' {
        Ok(())
    } else {
        Err("not a legacy torch pickle (no magic number)".into())
    }
}

/// Reads one pickle, up to its `STOP`.
fn unpickle<R: BufRead>(r: &mut R, what: &str) -> std::result::Result<Object, String> {
    let mut u = Unpickler::default();
    loop {
        match u.step(r) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("cannot unpickle the {what}: {e}")),
        }
    }
    u.stack
        .pop()
        .ok_or_else(|| format!("cannot unpickle the {what}: empty pickle"))
}

/// A minimal unpickler for the opcodes `torch.save` emits (protocol 2, plus the protocol 4
/// framing opcodes and Python 2 strings), building `candle_core::pickle::Object`s.
///
/// Unlike `candle_core::pickle::Stack` it keeps dict insertion order (candle reverses each
/// `SETITEMS` batch) and rejects integers wider than 64 bits instead of overflowing.
#[derive(Debug, Default)]
struct Unpickler {
    stack: Vec<Object>,
    marks: Vec<usize>,
    memo: HashMap<u32, Object>,
}

fn read_n<R: Read, const N: usize>(r: &mut R) -> std::result::Result<[u8; N], String> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)
        .map_err(|e| format!("truncated pickle: {e}"))?;
    Ok(b)
}

fn read_vec<R: Read>(r: &mut R, n: u64) -> std::result::Result<Vec<u8>, String> {
    let mut v = Vec::new();
    r.take(n)
        .read_to_end(&mut v)
        .map_err(|e| format!("truncated pickle: {e}"))?;
    if v.len() as u64 != n {
        return Err("truncated pickle".into());
    }
    Ok(v)
}

fn read_line<R: BufRead>(r: &mut R) -> std::result::Result<String, String> {
    let mut v = Vec::new();
    r.read_until(b'\n', &mut v)
        .map_err(|e| format!("truncated pickle: {e}"))?;
    if v.pop() != Some(b'\n') {
        return Err("truncated pickle".into());
    }
    String::from_utf8(v).map_err(|_| "GLOBAL name is not UTF-8".to_string())
}

impl Unpickler {
    fn pop(&mut self) -> std::result::Result<Object, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> std::result::Result<Vec<Object>, String> {
        let at = self.marks.pop().ok_or("MARK missing")?;
        if at > self.stack.len() {
            return Err("MARK past the stack".into());
        }
        Ok(self.stack.split_off(at))
    }

    fn top(&mut self) -> std::result::Result<&mut Object, String> {
        self.stack.last_mut().ok_or_else(|| "stack underflow".to_string())
    }

    fn set_items(&mut self, items: Vec<Object>) -> std::result::Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of objects".into());
        }
        let Object::Dict(d) = self.top()? else {
            return Err("SETITEM(S) on a non-dict".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn memo_get(&self, id: u32) -> std::result::Result<Object, String> {
        self.memo
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("memo {id} is missing"))
    }

    fn memo_put(&mut self, id: u32) -> std::result::Result<(), String> {
        let top = self.stack.last().ok_or("stack underflow")?.clone();
        self.memo.insert(id, top);
        Ok(())
    }

    /// Runs one opcode; `Ok(true)` at `STOP`.
    fn step<R: BufRead>(&mut self, r: &mut R) -> std::result::Result<bool, String> {
        let [op] = read_n::<_, 1>(r)?;
        let obj = match op {
            b'.' => return Ok(true), // STOP
            0x80 => {
                // PROTO
                read_n::<_, 1>(r)?;
                return Ok(false);
            }
            0x95 => {
                // FRAME
                read_n::<_, 8>(r)?;
                return Ok(false);
            }
            b'(' => {
                // MARK
                self.marks.push(self.stack.len());
                return Ok(false);
            }
            b'q' => {
                // BINPUT
                let [i] = read_n::<_, 1>(r)?;
                self.memo_put(u32::from(i))?;
                return Ok(false);
            }
            b'r' => {
                // LONG_BINPUT
                self.memo_put(u32::from_le_bytes(read_n(r)?))?;
                return Ok(false);
            }
            0x94 => {
                // MEMOIZE
                let id = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.memo_put(id)?;
                return Ok(false);
            }
            b'h' => self.memo_get(u32::from(read_n::<_, 1>(r)?[0]))?, // BINGET
            b'j' => self.memo_get(u32::from_le_bytes(read_n(r)?))?,   // LONG_BINGET
            b'c' => {
                // GLOBAL
                let module_name = read_line(r)?;
                let class_name = read_line(r)?;
                Object::Class {
                    module_name,
                    class_name,
                }
            }
            b'N' => Object::None,
            0x88 => Object::Bool(true),
            0x89 => Object::Bool(false),
            b'K' => Object::Int(i32::from(read_n::<_, 1>(r)?[0])), // BININT1
            b'M' => Object::Int(i32::from(u16::from_le_bytes(read_n(r)?))), // BININT2
            b'J' => Object::Int(i32::from_le_bytes(read_n(r)?)),   // BININT
            0x8a => {
                // LONG1
                let [n] = read_n::<_, 1>(r)?;
                if n > 8 {
                    return Err(format!("integer of {n} bytes does not fit 64 bits"));
                }
                let bytes = read_vec(r, u64::from(n))?;
                let mut buf = [0u8; 8];
                buf[..bytes.len()].copy_from_slice(&bytes);
                if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                    buf[bytes.len()..].fill(0xff); // sign extension
                }
                Object::Long(i64::from_le_bytes(buf))
            }
            b'G' => Object::Float(f64::from_be_bytes(read_n(r)?)), // BINFLOAT
            b'X' | b'T' => {
                // BINUNICODE, BINSTRING (Python 2)
                let n = u32::from_le_bytes(read_n(r)?);
                let v = read_vec(r, u64::from(n))?;
                Object::Unicode(String::from_utf8(v).map_err(|_| "string is not UTF-8")?)
            }
            0x8c | b'U' => {
                // SHORT_BINUNICODE, SHORT_BINSTRING
                let [n] = read_n::<_, 1>(r)?;
                let v = read_vec(r, u64::from(n))?;
                Object::Unicode(String::from_utf8(v).map_err(|_| "string is not UTF-8")?)
            }
            b')' => Object::Tuple(vec![]),
            b't' => Object::Tuple(self.pop_mark()?),
            0x85..=0x87 => {
                // TUPLE1, TUPLE2, TUPLE3
                let n = usize::from(op - 0x84);
                if self.stack.len() < n {
                    return Err("stack underflow".into());
                }
                Object::Tuple(self.stack.split_off(self.stack.len() - n))
            }
            b']' => Object::List(vec![]),
            b'l' => Object::List(self.pop_mark()?),
            b'a' => {
                // APPEND
                let v = self.pop()?;
                let Object::List(l) = self.top()? else {
                    return Err("APPEND on a non-list".into());
                };
                l.push(v);
                return Ok(false);
            }
            b'e' => {
                // APPENDS
                let items = self.pop_mark()?;
                let Object::List(l) = self.top()? else {
                    return Err("APPENDS on a non-list".into());
                };
                l.extend(items);
                return Ok(false);
            }
            b'}' => Object::Dict(vec![]),
            b'd' => {
                // DICT
                let items = self.pop_mark()?;
                self.stack.push(Object::Dict(vec![]));
                self.set_items(items)?;
                return Ok(false);
            }
            b's' => {
                // SETITEM
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
                return Ok(false);
            }
            b'u' => {
                // SETITEMS
                let items = self.pop_mark()?;
                self.set_items(items)?;
                return Ok(false);
            }
            b'Q' => Object::PersistentLoad(Box::new(self.pop()?)), // BINPERSID
            b'R' | 0x81 => {
                // REDUCE, NEWOBJ
                let args = self.pop()?;
                let callable = self.pop()?;
                match &callable {
                    Object::Class {
                        module_name,
                        class_name,
                    } if module_name == "collections" && class_name == "OrderedDict" => Object::Dict(vec![]),
                    _ => Object::Reduce {
                        callable: Box::new(callable),
                        args: Box::new(args),
                    },
                }
            }
            b'b' => {
                // BUILD
                let state = self.pop()?;
                match (self.pop()?, state) {
                    (Object::Dict(mut d), Object::Dict(s)) => {
                        d.extend(s);
                        Object::Dict(d)
                    }
                    (obj, state) => Object::Build {
                        callable: Box::new(obj),
                        args: Box::new(state),
                    },
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        };
        self.stack.push(obj);
        Ok(false)
    }
}

/// Where a tensor's values are: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
struct TensorSpec {
    storage: String,
    dtype: DType,
    storage_numel: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorSpec {
    /// A contiguous copy of the view, on the CPU.
    fn materialize(&self, data: &[u8]) -> std::result::Result<Tensor, String> {
        let es = self.dtype.size_in_bytes();
        let numel = self
            .size
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("shape overflows")?;
        if numel == 0 {
            return Tensor::zeros(self.size.as_slice(), self.dtype, &Device::Cpu).map_err(|e| e.to_string());
        }
        let last = self
            .size
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?))
            .ok_or("strides overflow")?;
        if last >= self.storage_numel {
            return Err(format!(
                "view (offset {}, size {:?}, stride {:?}) reaches past its storage of {} elements",
                self.offset, self.size, self.stride, self.storage_numel
            ));
        }
        let mut out = Vec::with_capacity(numel * es);
        let contiguous = self
            .size
            .iter()
            .zip(&self.stride)
            .rev()
            .try_fold(1usize, |expect, (&d, &s)| {
                (d == 1 || s == expect).then(|| expect * d)
            })
            .is_some();
        if contiguous {
            out.extend_from_slice(&data[self.offset * es..(self.offset + numel) * es]);
        } else {
            let mut idx = vec![0usize; self.size.len()];
            for _ in 0..numel {
                let pos = self.offset + idx.iter().zip(&self.stride).map(|(i, s)| i * s).sum::<usize>();
                out.extend_from_slice(&data[pos * es..(pos + 1) * es]);
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < self.size[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        if cfg!(target_endian = "big") {
            out.chunks_mut(es).for_each(|c| c.reverse());
        }
        Tensor::from_raw_buffer(&out, self.dtype, &self.size, &Device::Cpu).map_err(|e| e.to_string())
    }
}

/// Records the `(type, size)` of every storage a persistent id in `o` names.
fn collect_storages(
    o: &Object,
    out: &mut HashMap<String, (DType, usize)>,
) -> std::result::Result<(), String> {
    match o {
        Object::PersistentLoad(pid) => {
            if let Object::Tuple(t) = pid.as_ref() {
                if let [Object::Unicode(tag), Object::Class { class_name, .. }, Object::Unicode(key), _, n, ..] =
                    t.as_slice()
                {
                    if tag == "storage" {
                        let decl = (storage_dtype(class_name)?, to_usize(n, "storage size")?);
                        if out.insert(key.clone(), decl).is_some_and(|p| p != decl) {
                            return Err(format!("storage {key} is declared with two types or sizes"));
                        }
                    }
                }
            }
            Ok(())
        }
        Object::Tuple(v) | Object::List(v) => v.iter().try_for_each(|i| collect_storages(i, out)),
        Object::Dict(d) => d.iter().try_for_each(|(k, v)| {
            collect_storages(k, out)?;
            collect_storages(v, out)
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            collect_storages(callable, out)?;
            collect_storages(args, out)
        }
        _ => Ok(()),
    }
}

/// The tensors of the main pickle, in dict order.
fn tensor_specs(main: Object) -> std::result::Result<Vec<(String, TensorSpec)>, String> {
    let Object::Dict(entries) = main else {
        return Err(format!(
            "expected a dict of tensors (a state dict), got {}",
            describe(&main)
        ));
    };
    let mut specs = Vec::new();
    let mut nested = None;
    for (key, value) in entries {
        let Object::Unicode(name) = key else {
            continue;
        };
        match tensor_spec(value).map_err(|e| format!("tensor `{name}`: {e}"))? {
            Ok(spec) => specs.push((name, spec)),
            Err(Object::Dict(d)) if name == "state_dict" => nested = Some(Object::Dict(d)),
            Err(other) => tracing::debug!("skipping `{name}`: {}", describe(&other)),
        }
    }
    match nested {
        Some(d) if specs.is_empty() => tensor_specs(d),
        _ => Ok(specs),
    }
}

/// `Ok(Ok(spec))` for a tensor, `Ok(Err(value))` for any other value, `Err` for a malformed tensor.
#[allow(clippy::type_complexity)]
fn tensor_spec(value: Object) -> std::result::Result<std::result::Result<TensorSpec, Object>, String> {
    let (callable, args) = match value {
        Object::Reduce { callable, args } => (*callable, *args),
        other => return Ok(Err(other)),
    };
    let class = match &callable {
        Object::Class {
            module_name,
            class_name,
        } => (module_name.as_str(), class_name.as_str()),
        _ => {
            return Ok(Err(Object::Reduce {
                callable: Box::new(callable),
                args: Box::new(args),
            }))
        }
    };
    match class {
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_tensor_args(args).map(Ok),
        ("torch._utils", "_rebuild_parameter") => match args {
            Object::Tuple(mut a) if !a.is_empty() => tensor_spec(a.swap_remove(0)),
            other => Err(format!(
                "malformed _rebuild_parameter arguments {}",
                describe(&other)
            )),
        },
        _ => Ok(Err(Object::Reduce {
            callable: Box::new(callable),
            args: Box::new(args),
        })),
    }
}

/// `(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
fn rebuild_tensor_args(args: Object) -> std::result::Result<TensorSpec, String> {
    let Object::Tuple(args) = args else {
        return Err(format!(
            "malformed _rebuild_tensor_v2 arguments {}",
            describe(&args)
        ));
    };
    if args.len() < 4 {
        return Err(format!(
            "_rebuild_tensor_v2 has {} arguments, expected 6",
            args.len()
        ));
    }
    let pid = match &args[0] {
        Object::PersistentLoad(pid) => match pid.as_ref() {
            Object::Tuple(t) => t,
            other => return Err(format!("malformed storage id {}", describe(other))),
        },
        other => return Err(format!("expected a storage, got {}", describe(other))),
    };
    // ("storage", storage_type, key, location, numel, view_metadata)
    if pid.len() < 5 || !matches!(&pid[0], Object::Unicode(s) if s == "storage") {
        return Err(format!("malformed storage id {pid:?}"));
    }
    let dtype = match &pid[1] {
        Object::Class { class_name, .. } => storage_dtype(class_name)?,
        other => return Err(format!("malformed storage type {}", describe(other))),
    };
    let Object::Unicode(storage) = &pid[2] else {
        return Err(format!("malformed storage key {:?}", pid[2]));
    };
    if pid.get(5).is_some_and(|v| *v != Object::None) {
        return Err("storage views (view_metadata) are not supported".into());
    }
    Ok(TensorSpec {
        storage: storage.clone(),
        dtype,
        storage_numel: to_usize(&pid[4], "storage size")?,
        offset: to_usize(&args[1], "storage offset")?,
        size: to_usizes(&args[2], "size")?,
        stride: to_usizes(&args[3], "stride")?,
    })
    .and_then(|s| {
        if s.size.len() == s.stride.len() {
            Ok(s)
        } else {
            Err(format!(
                "size {:?} and stride {:?} differ in rank",
                s.size, s.stride
            ))
        }
    })
}

fn storage_dtype(class_name: &str) -> std::result::Result<DType, String> {
    Ok(match class_name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "ByteStorage" | "BoolStorage" => DType::U8,
        other => return Err(format!("unsupported storage type {other}")),
    })
}

fn to_usize(o: &Object, what: &str) -> std::result::Result<usize, String> {
    let v = match o {
        Object::Int(v) => i64::from(*v),
        Object::Long(v) => *v,
        other => return Err(format!("{what}: expected an integer, got {}", describe(other))),
    };
    usize::try_from(v).map_err(|_| format!("{what}: invalid value {v}"))
}

fn to_usizes(o: &Object, what: &str) -> std::result::Result<Vec<usize>, String> {
    match o {
        Object::Tuple(items) => items.iter().map(|i| to_usize(i, what)).collect(),
        other => Err(format!("{what}: expected a tuple, got {}", describe(other))),
    }
}

/// A short description of a pickled value for error messages (values can be huge).
fn describe(o: &Object) -> String {
    match o {
        Object::Class {
            module_name,
            class_name,
        } => format!("class {module_name}.{class_name}"),
        Object::Reduce { callable, .. } => format!("a call of {}", describe(callable)),
        Object::Build { callable, .. } => format!("a built {}", describe(callable)),
        Object::Dict(d) => format!("a dict of {} entries", d.len()),
        Object::List(l) => format!("a list of {} items", l.len()),
        Object::Tuple(t) => format!("a tuple of {} items", t.len()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `torch.save(sd, f, _use_new_zipfile_serialization=False)` with torch 2.15, where
    //   base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    //   sd = OrderedDict(perm=base.permute(2, 0, 1),            # strides (1, 12, 4)
    //                    view=base.view(-1)[5:11].view(2, 3),   # offset 5, same storage
    //                    long=torch.tensor([7, -3, 1 << 40]),
    //                    scalar=torch.tensor(2.5),
    //                    half=torch.tensor([1.5, -0.25], dtype=torch.float16))
    const SMALL: &[u8] = b"\
        \x80\x02\x8a\x0al\xfc\x9cF\xf9\x20j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\
        \x00\x00protocol_versionq\x01M\xe9\x03X\x0d\x00\x00\x00little_endianq\x02\x88X\x0a\x00\
        \x00\x00type_sizesq\x03}q\x04(X\x05\x00\x00\x00shortq\x05K\x02X\x03\x00\x00\x00intq\x06K\
        \x04X\x04\x00\x00\x00longq\x07K\x04uu.\x80\x02ccollections\x0aOrderedDict\x0aq\x00)Rq\
        \x01(X\x04\x00\x00\x00permq\x02ctorch._utils\x0a_rebuild_tensor_v2\x0aq\x03((X\x07\x00\
        \x00\x00storageq\x04ctorch\x0aFloatStorage\x0aq\x05X\x0e\x00\x00\x0094062731386048q\x06X\
        \x03\x00\x00\x00cpuq\x07K\x18Ntq\x08QK\x00K\x04K\x02K\x03\x87q\x09K\x01K\x0cK\x04\x87q\
        \x0a\x89h\x00)Rq\x0btq\x0cRq\x0dX\x04\x00\x00\x00viewq\x0eh\x03((h\x04h\x05X\x0e\x00\x00\
        \x0094062731386048q\x0fh\x07K\x18Ntq\x10QK\x05K\x02K\x03\x86q\x11K\x03K\x01\x86q\x12\x89\
        h\x00)Rq\x13tq\x14Rq\x15X\x04\x00\x00\x00longq\x16h\x03((h\x04ctorch\x0aLongStorage\x0aq\
        \x17X\x0e\x00\x00\x0094062731384768q\x18h\x07K\x03Ntq\x19QK\x00K\x03\x85q\x1aK\x01\x85q\
        \x1b\x89h\x00)Rq\x1ctq\x1dRq\x1eX\x06\x00\x00\x00scalarq\x1fh\x03((h\x04h\x05X\x0e\x00\
        \x00\x0094062614711008q\x20h\x07K\x01Ntq!QK\x00))\x89h\x00)Rq\"tq#Rq$X\x04\x00\x00\x00ha\
        lfq%h\x03((h\x04ctorch\x0aHalfStorage\x0aq&X\x0e\x00\x00\x0094062731384912q'h\x07K\x02Nt\
        q(QK\x00K\x02\x85q)K\x01\x85q*\x89h\x00)Rq+tq,Rq-u.\x80\x02]q\x00(X\x0e\x00\x00\x0094062\
        614711008q\x01X\x0e\x00\x00\x0094062731384768q\x02X\x0e\x00\x00\x0094062731384912q\x03X\
        \x0e\x00\x00\x0094062731386048q\x04e.\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20@\x03\
        \x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\xfd\xff\xff\xff\xff\xff\xff\
        \xff\x00\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00>\x00\xb4\x18\
        \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\
        \x80@\x00\x00\xa0@\x00\x00\xc0@\x00\x00\xe0@\x00\x00\x00A\x00\x00\x10A\x00\x00\x20A\x00\
        \x000A\x00\x00@A\x00\x00PA\x00\x00`A\x00\x00pA\x00\x00\x80A\x00\x00\x88A\x00\x00\x90A\
        \x00\x00\x98A\x00\x00\xa0A\x00\x00\xa8A\x00\x00\xb0A\x00\x00\xb8A\
    ";

    // A training checkpoint, same torch: {"epoch": 3,
    //   "state_dict": OrderedDict(w=torch.tensor([[1., 2.], [3., 4.]]).t()),
    //   "optimizer": {"m": torch.tensor([9., 8., 7.])}}
    const TRAINING: &[u8] = b"\
        \x80\x02\x8a\x0al\xfc\x9cF\xf9\x20j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\
        \x00\x00protocol_versionq\x01M\xe9\x03X\x0d\x00\x00\x00little_endianq\x02\x88X\x0a\x00\
        \x00\x00type_sizesq\x03}q\x04(X\x05\x00\x00\x00shortq\x05K\x02X\x03\x00\x00\x00intq\x06K\
        \x04X\x04\x00\x00\x00longq\x07K\x04uu.\x80\x02}q\x00(X\x05\x00\x00\x00epochq\x01K\x03X\
        \x0a\x00\x00\x00state_dictq\x02ccollections\x0aOrderedDict\x0aq\x03)Rq\x04X\x01\x00\x00\
        \x00wq\x05ctorch._utils\x0a_rebuild_tensor_v2\x0aq\x06((X\x07\x00\x00\x00storageq\x07cto\
        rch\x0aFloatStorage\x0aq\x08X\x0e\x00\x00\x0093865905044640q\x09X\x03\x00\x00\x00cpuq\
        \x0aK\x04Ntq\x0bQK\x00K\x02K\x02\x86q\x0cK\x01K\x02\x86q\x0d\x89h\x03)Rq\x0etq\x0fRq\x10\
        sX\x09\x00\x00\x00optimizerq\x11}q\x12X\x01\x00\x00\x00mq\x13h\x06((h\x07h\x08X\x0e\x00\
        \x00\x0093865905043360q\x14h\x0aK\x03Ntq\x15QK\x00K\x03\x85q\x16K\x01\x85q\x17\x89h\x03)\
        Rq\x18tq\x19Rq\x1asu.\x80\x02]q\x00(X\x0e\x00\x00\x0093865905043360q\x01X\x0e\x00\x00\
        \x0093865905044640q\x02e.\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10A\x00\x00\x00A\x00\
        \x00\xe0@\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\
        \x80@\
    ";

    fn read(bytes: &[u8]) -> std::result::Result<Vec<(String, Tensor)>, String> {
        read_from(&mut &bytes[..])
    }

    #[test]
    fn reads_strided_offset_and_typed_tensors() -> anyhow::Result<()> {
        let t = read(SMALL).map_err(anyhow::Error::msg)?;
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["perm", "view", "long", "scalar", "half"]);

        let perm = &t[0].1;
        assert_eq!(perm.dims(), [4, 2, 3]);
        assert!(perm.is_contiguous());
        let base: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let expect: Vec<f32> = (0..4)
            .flat_map(|w| (0..2).flat_map(move |a| (0..3).map(move |h| (a * 12 + h * 4 + w) as f32)))
            .collect();
        assert_eq!(perm.flatten_all()?.to_vec1::<f32>()?, expect);
        assert_eq!(base[5..11], t[1].1.flatten_all()?.to_vec1::<f32>()?[..]);
        assert_eq!(t[1].1.dims(), [2, 3]);

        assert_eq!(t[2].1.dtype(), DType::I64);
        assert_eq!(t[2].1.to_vec1::<i64>()?, [7, -3, 1 << 40]);
        assert_eq!(t[3].1.dims(), [] as [usize; 0]);
        assert_eq!(t[3].1.to_scalar::<f32>()?, 2.5);
        assert_eq!(t[4].1.dtype(), DType::F16);
        assert_eq!(t[4].1.to_dtype(DType::F32)?.to_vec1::<f32>()?, [1.5, -0.25]);
        Ok(())
    }

    #[test]
    fn reads_the_state_dict_of_a_training_checkpoint() -> anyhow::Result<()> {
        let t = read(TRAINING).map_err(anyhow::Error::msg)?;
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, "w");
        assert_eq!(t[0].1.to_vec2::<f32>()?, [[1., 3.], [2., 4.]]);
        Ok(())
    }

    #[test]
    fn truncated_data_is_an_error() {
        for cut in [3, 20, 400, SMALL.len() - 50, SMALL.len() - 1] {
            let err = read(&SMALL[..cut]).unwrap_err();
            assert!(!err.is_empty(), "cut at {cut}");
        }
        let err = read(&SMALL[..SMALL.len() - 1]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn other_files_are_rejected() {
        let err = read(b"PK\x03\x04 a zip file, not a legacy pickle").unwrap_err();
        assert!(err.contains("magic"), "{err}");
        let mut wrong = SMALL.to_vec();
        wrong[5] ^= 1;
        assert!(read(&wrong).unwrap_err().contains("magic"));
    }

    #[test]
    fn out_of_bounds_view_is_an_error() {
        let spec = TensorSpec {
            storage: "0".into(),
            dtype: DType::F32,
            storage_numel: 4,
            offset: 1,
            size: vec![2, 2],
            stride: vec![2, 1],
        };
        let err = spec.materialize(&[0u8; 16]).unwrap_err();
        assert!(err.contains("past its storage"), "{err}");
    }

    #[test]
    fn detects_legacy_files_by_content() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("nadir-legacy-pickle-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let legacy = dir.join("small.pth");
        std::fs::write(&legacy, SMALL)?;
        let other = dir.join("other.pth");
        std::fs::write(&other, b"PK\x03\x04")?;
        assert!(is_legacy_pickle(&legacy)?);
        assert!(!is_legacy_pickle(&other)?);
        assert_eq!(read_all(&legacy)?.len(), 5);
        let err = read_all(&other).unwrap_err().to_string();
        assert!(err.contains("other.pth"), "{err}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
