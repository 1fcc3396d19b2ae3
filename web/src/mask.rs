//! Which source pixels hold data, for the tiles. The indexer's reads leave invalid pixels black,
//! which cannot be told from black data, so a scene's validity is read beside them:
//!
//! - the GDAL masks (band nodata, alpha, mask band) of the drawn bands, read as the indexer reads
//!   them (averaged when downsampling, valid when >= 128);
//! - for 8-bit data drawn as is and without any mask, pure black is taken as fill (orthophotos
//!   often pad with 0 without saying so). Stretched data keeps its black: it is the low tail of
//!   the stretch.

use std::path::Path;

use gdal::raster::{GdalDataType, ResampleAlg};
use gdal::Dataset;
use nadir_indexer::raster::{RasterOptions, Window};

use crate::error::{Error, Result};

/// A raster's validity rules.
pub struct Masks {
    ds: Dataset,
    /// Bands whose masks are read (a per-dataset mask once).
    bands: Vec<usize>,
    black_is_nodata: bool,
}

impl std::fmt::Debug for Masks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masks")
            .field("bands", &self.bands)
            .field("black_is_nodata", &self.black_is_nodata)
            .finish_non_exhaustive()
    }
}

fn gdal_err(path: &Path, e: gdal::errors::GdalError) -> Error {
    Error::Mask(format!("{}: {e}", path.display()))
}

impl Masks {
    /// The rules for `path` drawn with `options` (its `bands`, or the first three, or fewer).
    pub fn open(path: &Path, options: &RasterOptions) -> Result<Masks> {
        let ds = Dataset::open(path).map_err(|e| gdal_err(path, e))?;
        let count = ds.raster_count();
        let wanted: Vec<usize> = match &options.bands {
            Some(list) => list.clone(),
            None => (1..=count.min(3)).collect(),
        };
        let (mut bands, mut per_dataset, mut all_u8) = (Vec::new(), false, true);
        for &b in &wanted {
            let band = ds.rasterband(b).map_err(|e| gdal_err(path, e))?;
            all_u8 &= band.band_type() == GdalDataType::UInt8;
            let flags = band.mask_flags().map_err(|e| gdal_err(path, e))?;
            if flags.is_all_valid() || bands.contains(&b) || (flags.is_per_dataset() && per_dataset) {
                continue;
            }
            per_dataset |= flags.is_per_dataset();
            bands.push(b);
        }
        let black_is_nodata = bands.is_empty() && all_u8 && !options.stretch_u8;
        Ok(Masks {
            ds,
            bands,
            black_is_nodata,
        })
    }

    /// Whether a pure black pixel is fill.
    pub fn black_is_nodata(&self) -> bool {
        self.black_is_nodata
    }

    /// Validity of `win` read at `n` x `n` pixels (row-major); None when every pixel is valid.
    pub fn valid(&self, win: Window, n: u32) -> Result<Option<Vec<bool>>> {
        if self.bands.is_empty() {
            return Ok(None);
        }
        let size = (n as usize, n as usize);
        let alg = if win.width > n || win.height > n {
            ResampleAlg::Average
        } else {
            ResampleAlg::NearestNeighbour
        };
        let mut valid = vec![true; size.0 * size.1];
        let mut buf = vec![0u8; size.0 * size.1];
        for &b in &self.bands {
            let err = |e| Error::Mask(format!("band {b} mask: {e}"));
            let band = self.ds.rasterband(b).map_err(err)?;
            let mask = band.open_mask_band().map_err(err)?;
            let origin = (win.x as isize, win.y as isize);
            let extent = (win.width as usize, win.height as usize);
            mask.read_into_slice::<u8>(origin, extent, size, &mut buf, Some(alg))
                .map_err(err)?;
            valid.iter_mut().zip(&buf).for_each(|(v, &m)| *v &= m >= 128);
        }
        Ok(Some(valid))
    }
}
