//! Web-mercator XYZ tiles (the scheme of OpenStreetMap and MapLibre): a tile's address, the
//! lon/lat of a point inside it, and its lon/lat bounds.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// Side of a rendered tile in pixels.
pub const TILE_SIZE: u32 = 256;
/// Deepest zoom served (a pixel is about 2 cm at the equator).
pub const MAX_ZOOM: u8 = 24;

/// One tile: zoom, column (west to east), row (north to south).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// A checked tile address.
    pub fn new(z: u8, x: u32, y: u32) -> Result<Self> {
        if z > MAX_ZOOM {
            return Err(Error::BadTile(format!("zoom {z} is above {MAX_ZOOM}")));
        }
        let n = 1u64 << z;
        if u64::from(x) >= n || u64::from(y) >= n {
            return Err(Error::BadTile(format!(
                "tile {z}/{x}/{y}: x and y must be below {n} at zoom {z}"
            )));
        }
        Ok(TileId { z, x, y })
    }

    /// The tile containing (lon, lat) at zoom `z`.
    pub fn containing(z: u8, lon: f64, lat: f64) -> Result<Self> {
        let n = (1u64 << z.min(MAX_ZOOM)) as f64;
        let lat = lat.clamp(-85.051_128, 85.051_128).to_radians();
        let x = ((lon + 180.0) / 360.0 * n).floor().clamp(0.0, n - 1.0);
        let y = ((1.0 - lat.tan().asinh() / PI) / 2.0 * n)
            .floor()
            .clamp(0.0, n - 1.0);
        TileId::new(z, x as u32, y as u32)
    }

    /// (lon, lat) of the point at tile pixel (`px`, `py`) (fractional; pixel corners at integers,
    /// (0, 0) the tile's north-west corner).
    pub fn lonlat(&self, px: f64, py: f64) -> (f64, f64) {
        let n = (1u64 << self.z) as f64;
        let size = f64::from(TILE_SIZE);
        let lon = (f64::from(self.x) + px / size) / n * 360.0 - 180.0;
        let merc_y = PI * (1.0 - 2.0 * (f64::from(self.y) + py / size) / n);
        (lon, merc_y.sinh().atan().to_degrees())
    }

    /// Tile pixel (fractional) of (lon, lat); outside the tile for points outside it.
    pub fn pixel(&self, lon: f64, lat: f64) -> (f64, f64) {
        let n = (1u64 << self.z) as f64;
        let size = f64::from(TILE_SIZE);
        let lat = lat.clamp(-89.9, 89.9).to_radians();
        let gx = (lon + 180.0) / 360.0 * n;
        let gy = (1.0 - lat.tan().asinh() / PI) / 2.0 * n;
        ((gx - f64::from(self.x)) * size, (gy - f64::from(self.y)) * size)
    }

    /// `[west, south, east, north]` in degrees.
    pub fn bounds(&self) -> [f64; 4] {
        let size = f64::from(TILE_SIZE);
        let (w, n) = self.lonlat(0.0, 0.0);
        let (e, s) = self.lonlat(size, size);
        [w, s, e, n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_round_trip() {
        let t = TileId::containing(18, 120.98, 14.59).unwrap();
        let b = t.bounds();
        assert!(
            b[0] <= 120.98 && 120.98 < b[2] && b[1] <= 14.59 && 14.59 < b[3],
            "{b:?}"
        );
        let (px, py) = t.pixel(120.98, 14.59);
        let (lon, lat) = t.lonlat(px, py);
        assert!((lon - 120.98).abs() < 1e-9 && (lat - 14.59).abs() < 1e-9);
        assert_eq!(TileId::new(0, 0, 0).unwrap().bounds()[0], -180.0);
        assert!(TileId::new(2, 4, 0).is_err() && TileId::new(25, 0, 0).is_err());
    }
}
