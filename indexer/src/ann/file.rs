//! `graph.bin`, the graph's file, writer and reader side by side. Little-endian:
//!
//! ```text
//! magic "NADIRHNS"  u32 version  u32 dim  u32 n  u32 m  u32 entry  u32 top  u64 upper_len
//! levels: n x u8, zero-padded to a multiple of 4
//! links0: n x (1 + 2m) x u32      (per node: count, then ids)
//! upper_at: n x u32               (offset of the node's first upper block, or u32::MAX)
//! upper: upper_len x u32          (blocks of 1 + m)
//! ```
//!
//! The reader checks every count and id, so a damaged file is refused instead of walked.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::graph::{Graph, MAX_LEVEL, NO_UPPER};
use crate::error::{Error, Result};

/// The file inside a graph folder.
pub const GRAPH_FILE: &str = "graph.bin";
const MAGIC: &[u8; 8] = b"NADIRHNS";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 6 * 4 + 8;

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Writes `graph` to `path`.
pub fn write(graph: &Graph, path: &Path) -> Result<()> {
    let io = |e| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let put = |w: &mut BufWriter<std::fs::File>, bytes: &[u8]| w.write_all(bytes).map_err(io);
    put(&mut w, MAGIC)?;
    for v in [
        VERSION,
        graph.dim as u32,
        graph.len() as u32,
        graph.m as u32,
        graph.entry,
        u32::from(graph.top),
    ] {
        put(&mut w, &v.to_le_bytes())?;
    }
    put(&mut w, &(graph.upper.len() as u64).to_le_bytes())?;
    let mut levels = graph.levels.clone();
    levels.resize(padded(levels.len()), 0);
    put(&mut w, &levels)?;
    let words = |xs: &mut dyn Iterator<Item = u32>| -> Vec<u8> { xs.flat_map(u32::to_le_bytes).collect() };
    for chunk in graph.links0.chunks(1 << 16) {
        put(
            &mut w,
            &words(&mut chunk.iter().map(|a| a.load(Ordering::Relaxed))),
        )?;
    }
    put(&mut w, &words(&mut graph.upper_at.iter().copied()))?;
    for chunk in graph.upper.chunks(1 << 16) {
        put(
            &mut w,
            &words(&mut chunk.iter().map(|a| a.load(Ordering::Relaxed))),
        )?;
    }
    let file = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(io)
}

/// Reads a graph written by [`write`] over `n` rows of dimension `dim`.
pub fn read(path: &Path, n: usize, dim: usize) -> Result<Graph> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: String| Error::format(path, what);
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad("not a Nadir HNSW graph".into()));
    }
    let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().expect("4 bytes"));
    let (version, file_dim, file_n, m, entry, top) = (word(0), word(1), word(2), word(3), word(4), word(5));
    let upper_len = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")) as usize;
    if version != VERSION {
        return Err(bad(format!(
            "graph version {version}; this build reads {VERSION}"
        )));
    }
    if file_dim as usize != dim || file_n as usize != n {
        return Err(bad(format!(
            "the graph has {file_n} vectors of {file_dim} dimensions, the index {n} of {dim}"
        )));
    }
    let m = m as usize;
    if !(2..=1024).contains(&m) || top > u32::from(MAX_LEVEL) || (n > 0 && entry as usize >= n) {
        return Err(bad("corrupt graph header".into()));
    }
    let m0 = 2 * m;
    let want = HEADER + padded(n) + 4 * (n * (1 + m0) + n + upper_len);
    if bytes.len() != want {
        return Err(bad(format!(
            "{} bytes where the header implies {want}",
            bytes.len()
        )));
    }
    let levels = bytes[HEADER..HEADER + n].to_vec();
    let mut at = HEADER + padded(n);
    let mut take = |count: usize| {
        let out: Vec<u32> = bytes[at..at + 4 * count]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        at += 4 * count;
        out
    };
    let links0 = take(n * (1 + m0));
    let upper_at = take(n);
    let upper = take(upper_len);
    // Every block must be in bounds, every count within its block, every id a node.
    let check_block =
        |b: &[u32]| (b[0] as usize) < b.len() && b[1..=b[0] as usize].iter().all(|&x| (x as usize) < n);
    let mut expected_at = 0usize;
    for (i, (&l, &u)) in levels.iter().zip(&upper_at).enumerate() {
        let ok = l <= MAX_LEVEL
            && check_block(&links0[i * (1 + m0)..(i + 1) * (1 + m0)])
            && if l == 0 {
                u == NO_UPPER
            } else {
                let len = l as usize * (1 + m);
                let fits = u as usize == expected_at && expected_at + len <= upper_len;
                expected_at += len;
                fits && upper[u as usize..u as usize + len]
                    .chunks_exact(1 + m)
                    .all(check_block)
            };
        if !ok {
            return Err(bad(format!("corrupt links at node {i}")));
        }
    }
    if n > 0 && u32::from(levels[entry as usize]) != top {
        return Err(bad("the entry point is not on the top level".into()));
    }
    let atomics = |v: Vec<u32>| v.into_iter().map(AtomicU32::new).collect::<Vec<_>>();
    Ok(Graph {
        dim,
        m,
        m0,
        entry,
        top: top as u8,
        levels,
        links0: atomics(links0),
        upper_at,
        upper: atomics(upper),
    })
}
