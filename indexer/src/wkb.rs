//! Well-known binary for the footprints in the patch table: polygons written little-endian, and
//! polygons or multipolygons read back (either byte order), which is all GeoParquet needs here.

use geo::{Coord, LineString, MultiPolygon, Polygon};

/// Encodes a polygon as WKB (little-endian, 2D).
pub fn write_polygon(p: &Polygon<f64>) -> Vec<u8> {
    let rings: Vec<&LineString<f64>> = std::iter::once(p.exterior()).chain(p.interiors()).collect();
    let n: usize = rings.iter().map(|r| r.0.len()).sum();
    let mut out = Vec::with_capacity(9 + 4 * rings.len() + 16 * n);
    out.push(1u8);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(rings.len() as u32).to_le_bytes());
    for r in rings {
        out.extend_from_slice(&(r.0.len() as u32).to_le_bytes());
        for c in &r.0 {
            out.extend_from_slice(&c.x.to_le_bytes());
            out.extend_from_slice(&c.y.to_le_bytes());
        }
    }
    out
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    le: bool,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let b = self.buf.get(self.pos..end).ok_or("WKB is truncated")?;
        self.pos = end;
        Ok(b.try_into().expect("slice of N bytes"))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take::<4>()?;
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn f64(&mut self) -> Result<f64, String> {
        let b = self.take::<8>()?;
        Ok(if self.le {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }
    fn header(&mut self) -> Result<u32, String> {
        self.le = match self.take::<1>()?[0] {
            0 => false,
            1 => true,
            b => return Err(format!("bad WKB byte order {b}")),
        };
        let t = self.u32()?;
        // ISO Z/M codes (1003...) and EWKB flags are not produced by the sources we read.
        Ok(t)
    }
    fn polygon_body(&mut self) -> Result<Polygon<f64>, String> {
        let nrings = self.u32()? as usize;
        let mut rings = Vec::with_capacity(nrings.min(64));
        for _ in 0..nrings {
            let n = self.u32()? as usize;
            if n > self.buf.len() / 16 + 1 {
                return Err("WKB ring longer than its buffer".into());
            }
            let mut pts = Vec::with_capacity(n);
            for _ in 0..n {
                pts.push(Coord {
                    x: self.f64()?,
                    y: self.f64()?,
                });
            }
            rings.push(LineString(pts));
        }
        let mut it = rings.into_iter();
        let exterior = it.next().unwrap_or_else(|| LineString(vec![]));
        Ok(Polygon::new(exterior, it.collect()))
    }
}

/// Decodes a WKB polygon or multipolygon.
pub fn read_multipolygon(buf: &[u8]) -> Result<MultiPolygon<f64>, String> {
    let mut c = Cursor {
        buf,
        pos: 0,
        le: true,
    };
    match c.header()? {
        3 => Ok(MultiPolygon(vec![c.polygon_body()?])),
        6 => {
            let n = c.u32()? as usize;
            let mut polys = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                if c.header()? != 3 {
                    return Err("multipolygon member is not a polygon".into());
                }
                polys.push(c.polygon_body()?);
            }
            Ok(MultiPolygon(polys))
        }
        t => Err(format!("WKB geometry type {t} is not a polygon or multipolygon")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    #[test]
    fn polygon_round_trips() {
        let p = polygon![(x: 1.0, y: 2.0), (x: 3.0, y: 2.0), (x: 3.0, y: 4.0), (x: 1.0, y: 2.0)];
        let back = read_multipolygon(&write_polygon(&p)).unwrap();
        assert_eq!(back.0, vec![p]);
        assert!(read_multipolygon(&[1, 3, 0]).is_err());
    }
}
