//! Thumbnails for the UI: a small JPEG per patch, packed one pack file per part. The patch table
//! holds each thumbnail's offset and length, so the service reads one with a single positioned
//! read and never opens thousands of small files.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::RgbImage;

use crate::error::{Error, Result};
use crate::fsutil;

/// Side of a thumbnail in pixels.
pub const THUMB_SIDE: u32 = 128;
const QUALITY: u8 = 80;

/// Encodes `img` as a `THUMB_SIDE` px JPEG.
pub fn encode(img: &RgbImage) -> Vec<u8> {
    let small = if img.width() == THUMB_SIDE && img.height() == THUMB_SIDE {
        img.clone()
    } else {
        image::imageops::resize(img, THUMB_SIDE, THUMB_SIDE, FilterType::Triangle)
    };
    let mut out = Vec::with_capacity(6 * 1024);
    JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&small)
        .expect("encoding an RGB image to memory cannot fail");
    out
}

/// The thumbnails of a part being built.
#[derive(Debug, Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
}

impl PackBuilder {
    /// Appends a thumbnail and returns its (offset, length).
    pub fn push(&mut self, jpeg: &[u8]) -> (u64, u32) {
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(jpeg);
        (at, jpeg.len() as u32)
    }

    /// Writes the pack atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        fsutil::write_atomic(path, &self.bytes)
    }
}

/// An open pack, read with positioned reads (safe to share between threads).
#[derive(Debug)]
pub struct Pack {
    file: File,
    path: std::path::PathBuf,
}

impl Pack {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Pack {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The thumbnail at (offset, length).
    pub fn get(&self, (offset, len): (u64, u32)) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }
}
