//! GDAL virtual file paths (`/vsicurl/https://...`, `/vsis3/bucket/key`, `/vsizip/archive.zip/x.tif`,
//! `/vsigzip/`...): recognising them and reading their bytes through GDAL, so that wherever a
//! scene path is accepted a virtual one is too (checksums, STAC documents fetched by URL).

use std::ffi::CString;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Whether `path` is a GDAL virtual path (GDAL reads it, the file system does not).
pub fn is_virtual(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with("/vsi"))
}

/// An `http(s)://` URL as the virtual path GDAL reads it by; other strings as they are.
pub fn from_url(s: &str) -> String {
    if s.starts_with("http://") || s.starts_with("https://") {
        format!("/vsicurl/{s}")
    } else if let Some(rest) = s.strip_prefix("s3://") {
        format!("/vsis3/{rest}")
    } else {
        s.to_string()
    }
}

/// Most bytes [`read_all`] returns (STAC documents are small; scenes are hashed, not held).
pub const MAX_READ: usize = 64 << 20;

/// Streams the bytes of a virtual file to `sink`, 1 MiB at a time.
#[allow(unsafe_code)]
fn stream(path: &Path, mut sink: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let c_path = CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::input(path, "a path with a NUL byte"))?;
    let mode = CString::new("rb").expect("no NUL");
    // SAFETY: both strings are NUL-terminated and outlive the call; a null result is checked.
    let file = unsafe { gdal_sys::VSIFOpenL(c_path.as_ptr(), mode.as_ptr()) };
    if file.is_null() {
        return Err(Error::input(
            path,
            "GDAL cannot open this virtual path (no such file, no network, or no credentials)",
        ));
    }
    let mut buf = vec![0u8; 1 << 20];
    let result = loop {
        // SAFETY: `buf` holds `buf.len()` writable bytes; `file` is open until closed below.
        let n = unsafe { gdal_sys::VSIFReadL(buf.as_mut_ptr().cast(), 1, buf.len(), file) };
        if n == 0 {
            break Ok(());
        }
        if let Err(e) = sink(&buf[..n]) {
            break Err(e);
        }
    };
    // SAFETY: `file` was opened above and is closed once.
    unsafe { gdal_sys::VSIFCloseL(file) };
    result
}

/// The sha256 (hex) of a virtual file's bytes.
pub fn sha256(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    stream(path, |b| {
        h.update(b);
        Ok(())
    })?;
    Ok(hex::encode(h.finalize()))
}

/// A virtual (or plain) file's bytes, at most [`MAX_READ`].
pub fn read_all(path: &Path) -> Result<Vec<u8>> {
    if !is_virtual(path) {
        return std::fs::read(path).map_err(|e| Error::io(path, e));
    }
    let mut out = Vec::new();
    stream(path, |b| {
        if out.len() + b.len() > MAX_READ {
            return Err(Error::input(path, format!("larger than {} MiB", MAX_READ >> 20)));
        }
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_members_read_and_hash_like_files() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("a.zip");
        // A zip holding `x.txt` = "hello scene" (written by Python's zipfile, stored).
        let data = b"hello scene";
        let z = hex::decode(
            "504b03041400000000009abe875d1cef44ee0b0000000b00000005000000782e74787468656c6c6f207363656e65\
             504b010214031400000000009abe875d1cef44ee0b0000000b000000050000000000000000000000800100000000\
             782e747874504b05060000000001000100330000002e0000000000",
        )
        .unwrap();
        std::fs::write(&zip, &z).unwrap();
        // An absolute archive path follows the prefix: /vsizip//tmp/.../a.zip/x.txt.
        let member = std::path::PathBuf::from(format!("/vsizip/{}/x.txt", zip.display()));
        assert!(is_virtual(&member));
        assert_eq!(read_all(&member).unwrap(), data);
        assert_eq!(sha256(&member).unwrap(), hex::encode(Sha256::digest(data)));
        let e = sha256(Path::new("/vsizip/nowhere.zip/x.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere.zip") && e.contains("cannot open"), "{e}");
        assert_eq!(from_url("https://h/x.tif"), "/vsicurl/https://h/x.tif");
        assert_eq!(from_url("s3://b/k.tif"), "/vsis3/b/k.tif");
    }
}
