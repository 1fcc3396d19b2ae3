//! The patch table: one GeoParquet 1.1 file per part, written and read here with arrow and
//! parquet. One row per patch: stable id, scene, pixel window, WGS84 footprint as WKB with its
//! bbox covering column, centroid, H3 cells, acquisition time, GSD, tags, zero-shot labels, the
//! thumbnail's place in the part's pack, and the embedding as `FixedSizeList<Float32>`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use geo::{BoundingRect, Polygon};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::FileSum;
use crate::raster::Window;
use crate::wkb;

/// A patch's stable id: the first 8 bytes of sha256(scene id, window), shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatchId(pub u64);

impl PatchId {
    /// The id of `window` in scene `scene`.
    pub fn new(scene: &str, w: &Window) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(scene.as_bytes());
        for v in [w.x, w.y, w.width, w.height] {
            h.update(v.to_le_bytes());
        }
        let d = h.finalize();
        PatchId(u64::from_be_bytes(d[..8].try_into().expect("8 bytes")))
    }
}

impl std::fmt::Display for PatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for PatchId {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.len() != 16 {
            return Err(format!("patch id {s:?} is not 16 hex digits"));
        }
        u64::from_str_radix(s, 16)
            .map(PatchId)
            .map_err(|_| format!("patch id {s:?} is not 16 hex digits"))
    }
}

/// Everything the table holds about one patch but its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRecord {
    pub id: PatchId,
    /// The scene id (see the manifest).
    pub scene: String,
    /// The source pixel window.
    pub window: Window,
    /// WGS84 footprint (lon, lat); `None` for plain images.
    pub footprint: Option<Polygon<f64>>,
    /// (lon, lat) of the footprint's centroid.
    pub centroid: Option<(f64, f64)>,
    /// H3 cells: `h3[r]` is the cell at resolution `r`; empty without georeference.
    pub h3: Vec<u64>,
    /// Acquisition time, unix milliseconds UTC.
    pub acquired_ms: Option<i64>,
    /// Ground size of one pixel of the embedded (resampled) patch, in metres.
    pub gsd_m: Option<f64>,
    pub tags: Vec<String>,
    /// Zero-shot land-cover labels, best first.
    pub labels: Vec<String>,
    /// Offset and length of the thumbnail (JPEG) in the part's pack.
    pub thumb: (u64, u32),
}

fn list_utf8() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn bbox_fields() -> Fields {
    Fields::from(vec![
        Field::new("xmin", DataType::Float64, false),
        Field::new("ymin", DataType::Float64, false),
        Field::new("xmax", DataType::Float64, false),
        Field::new("ymax", DataType::Float64, false),
    ])
}

/// The arrow schema of a part holding `dim`-d embeddings.
pub fn schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("patch_id", DataType::Utf8, false),
        Field::new("scene", DataType::Utf8, false),
        Field::new("x", DataType::UInt32, false),
        Field::new("y", DataType::UInt32, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("geometry", DataType::Binary, true),
        Field::new("bbox", DataType::Struct(bbox_fields()), true),
        Field::new("lon", DataType::Float64, true),
        Field::new("lat", DataType::Float64, true),
        Field::new(
            "h3_cells",
            DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
            false,
        ),
        Field::new(
            "acquired",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("gsd_m", DataType::Float64, true),
        Field::new("tags", list_utf8(), false),
        Field::new("labels", list_utf8(), false),
        Field::new("thumb_offset", DataType::UInt64, false),
        Field::new("thumb_len", DataType::UInt32, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), dim as i32),
            false,
        ),
    ]))
}

fn utf8_lists(rows: &[PatchRecord], get: impl Fn(&PatchRecord) -> &[String]) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in get(r) {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn opt_f64(rows: &[PatchRecord], get: impl Fn(&PatchRecord) -> Option<f64>) -> ArrayRef {
    Arc::new(rows.iter().map(get).collect::<Float64Array>())
}

fn u32s(rows: &[PatchRecord], get: impl Fn(&PatchRecord) -> u32) -> ArrayRef {
    Arc::new(rows.iter().map(get).collect::<UInt32Array>())
}

/// The GeoParquet `geo` metadata for these rows.
fn geo_metadata(rows: &[PatchRecord]) -> String {
    let rects: Vec<geo::Rect<f64>> = rows
        .iter()
        .filter_map(|r| r.footprint.as_ref().and_then(|p| p.bounding_rect()))
        .collect();
    let mut column = json!({
        "encoding": "WKB",
        "geometry_types": if rects.is_empty() { json!([]) } else { json!(["Polygon"]) },
        "covering": {"bbox": {
            "xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
            "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"],
        }},
    });
    if let Some(first) = rects.first() {
        let init = [first.min().x, first.min().y, first.max().x, first.max().y];
        let b = rects.iter().fold(init, |b, r| {
            [
                b[0].min(r.min().x),
                b[1].min(r.min().y),
                b[2].max(r.max().x),
                b[3].max(r.max().y),
            ]
        });
        column["bbox"] = json!(b);
    }
    // No "crs" key: GeoParquet's default, OGC:CRS84 (WGS84 longitude, latitude).
    json!({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}).to_string()
}

/// Builds the record batch of `rows` and their `embeddings` (row-major, `dim` per row).
pub fn to_batch(rows: &[PatchRecord], embeddings: &[f32], dim: usize) -> Result<RecordBatch> {
    assert_eq!(embeddings.len(), rows.len() * dim, "one embedding per row");
    let geometry: BinaryArray = rows
        .iter()
        .map(|r| r.footprint.as_ref().map(wkb::write_polygon))
        .collect();
    let rects: Vec<Option<geo::Rect<f64>>> = rows
        .iter()
        .map(|r| r.footprint.as_ref().and_then(|p| p.bounding_rect()))
        .collect();
    let corner = |f: fn(&geo::Rect<f64>) -> f64| -> ArrayRef {
        Arc::new(
            rects
                .iter()
                .map(|r| Some(r.as_ref().map_or(0.0, f)))
                .collect::<Float64Array>(),
        )
    };
    let bbox = StructArray::new(
        bbox_fields(),
        vec![
            corner(|r| r.min().x),
            corner(|r| r.min().y),
            corner(|r| r.max().x),
            corner(|r| r.max().y),
        ],
        Some(NullBuffer::from(
            rects.iter().map(Option::is_some).collect::<Vec<bool>>(),
        )),
    );
    let mut h3 = ListBuilder::new(UInt64Builder::new());
    for r in rows {
        h3.values().append_slice(&r.h3);
        h3.append(true);
    }
    let acquired = rows
        .iter()
        .map(|r| r.acquired_ms)
        .collect::<TimestampMillisecondArray>()
        .with_timezone("UTC");
    let values = Arc::new(Float32Array::from(embeddings.to_vec()));
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let embedding = FixedSizeListArray::try_new(item, dim as i32, values, None)
        .map_err(|e| Error::Invalid(format!("embedding column: {e}")))?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            rows.iter()
                .map(|r| Some(r.id.to_string()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.scene.as_str()))
                .collect::<StringArray>(),
        ),
        u32s(rows, |r| r.window.x),
        u32s(rows, |r| r.window.y),
        u32s(rows, |r| r.window.width),
        u32s(rows, |r| r.window.height),
        Arc::new(geometry),
        Arc::new(bbox),
        opt_f64(rows, |r| r.centroid.map(|c| c.0)),
        opt_f64(rows, |r| r.centroid.map(|c| c.1)),
        Arc::new(h3.finish()),
        Arc::new(acquired),
        opt_f64(rows, |r| r.gsd_m),
        utf8_lists(rows, |r| &r.tags),
        utf8_lists(rows, |r| &r.labels),
        Arc::new(rows.iter().map(|r| r.thumb.0).collect::<UInt64Array>()),
        u32s(rows, |r| r.thumb.1),
        Arc::new(embedding),
    ];
    RecordBatch::try_new(schema(dim), columns).map_err(|e| Error::Invalid(format!("patch table: {e}")))
}

/// Writes a part file atomically and returns its sum.
///
/// The GeoParquet `geo` key goes in the parquet footer's key-value metadata, where the spec puts
/// it and where footer readers (DuckDB, GDAL) look, and in the arrow schema's metadata too, so
/// readers that take the schema from `ARROW:schema` (pyarrow, GeoPandas) see the same.
pub fn write_part(path: &Path, rows: &[PatchRecord], embeddings: &[f32], dim: usize) -> Result<FileSum> {
    let geo_json = geo_metadata(rows);
    let geo = std::collections::HashMap::from([("geo".to_string(), geo_json.clone())]);
    let batch = to_batch(rows, embeddings, dim)?;
    let batch = batch
        .clone()
        .with_schema(Arc::new(batch.schema().as_ref().clone().with_metadata(geo)))
        .map_err(|e| Error::table(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new("geo".to_string(), geo_json)]))
        .build();
    fsutil::write_atomic_with(path, |w| {
        let mut writer =
            ArrowWriter::try_new(w, batch.schema(), Some(props)).map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)?;
        Ok(())
    })?;
    FileSum::of(path)
}

fn column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::table(path, format!("no column {name:?}")))
}

fn strings(list: &arrow_array::ListArray, i: usize) -> Vec<String> {
    let v = list.value(i);
    let s = v.as_string::<i32>();
    (0..s.len())
        .filter(|&j| s.is_valid(j))
        .map(|j| s.value(j).to_string())
        .collect()
}

/// Reads a part: its rows and their embeddings (row-major). Checks the embedding dimension.
pub fn read_part(path: &Path, dim: usize) -> Result<(Vec<PatchRecord>, Vec<f32>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::table(path, e))?;
    let mut rows = Vec::new();
    let mut embeddings = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::table(path, e))?;
        let bad = |what: &str| Error::table(path, format!("column {what} has the wrong type"));
        let ids = column(&batch, "patch_id", path)?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("patch_id"))?;
        let scenes = column(&batch, "scene", path)?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("scene"))?;
        let u32col = |n: &str| -> Result<&UInt32Array> {
            column(&batch, n, path)?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad(n))
        };
        let f64col = |n: &str| -> Result<&Float64Array> {
            column(&batch, n, path)?
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| bad(n))
        };
        let (x, y, w, h) = (u32col("x")?, u32col("y")?, u32col("width")?, u32col("height")?);
        let geometry = column(&batch, "geometry", path)?
            .as_binary_opt::<i32>()
            .ok_or_else(|| bad("geometry"))?;
        let (lon, lat, gsd) = (f64col("lon")?, f64col("lat")?, f64col("gsd_m")?);
        let h3 = column(&batch, "h3_cells", path)?
            .as_list_opt::<i32>()
            .ok_or_else(|| bad("h3_cells"))?;
        let acquired = column(&batch, "acquired", path)?
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| bad("acquired"))?;
        let tags = column(&batch, "tags", path)?
            .as_list_opt::<i32>()
            .ok_or_else(|| bad("tags"))?;
        let labels = column(&batch, "labels", path)?
            .as_list_opt::<i32>()
            .ok_or_else(|| bad("labels"))?;
        let thumb_offset = column(&batch, "thumb_offset", path)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad("thumb_offset"))?;
        let thumb_len = u32col("thumb_len")?;
        let emb = column(&batch, "embedding", path)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| bad("embedding"))?;
        if emb.value_length() as usize != dim {
            return Err(Error::table(
                path,
                format!(
                    "embeddings have {} dimensions, the manifest says {dim}",
                    emb.value_length()
                ),
            ));
        }
        let values = emb
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| bad("embedding"))?;
        let start = emb.offset() * dim;
        embeddings.extend_from_slice(&values.values()[start..start + emb.len() * dim]);
        for i in 0..batch.num_rows() {
            let footprint = if geometry.is_valid(i) {
                let mp = wkb::read_multipolygon(geometry.value(i)).map_err(|e| Error::table(path, e))?;
                mp.0.into_iter().next()
            } else {
                None
            };
            let cells = h3.value(i);
            let cells = cells.as_primitive::<UInt64Type>().values().to_vec();
            rows.push(PatchRecord {
                id: ids.value(i).parse().map_err(|e: String| Error::table(path, e))?,
                scene: scenes.value(i).to_string(),
                window: Window {
                    x: x.value(i),
                    y: y.value(i),
                    width: w.value(i),
                    height: h.value(i),
                },
                footprint,
                centroid: (lon.is_valid(i) && lat.is_valid(i)).then(|| (lon.value(i), lat.value(i))),
                h3: cells,
                acquired_ms: acquired.is_valid(i).then(|| acquired.value(i)),
                gsd_m: gsd.is_valid(i).then(|| gsd.value(i)),
                tags: strings(tags, i),
                labels: strings(labels, i),
                thumb: (thumb_offset.value(i), thumb_len.value(i)),
            });
        }
    }
    Ok((rows, embeddings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn record(i: u32, georef: bool) -> PatchRecord {
        let window = Window {
            x: i * 10,
            y: 0,
            width: 10,
            height: 10,
        };
        PatchRecord {
            id: PatchId::new("scene-a", &window),
            scene: "scene-a".into(),
            window,
            footprint: georef.then(|| {
                polygon![(x: 1.0, y: 2.0), (x: 1.1, y: 2.0), (x: 1.1, y: 2.1), (x: 1.0, y: 2.1), (x: 1.0, y: 2.0)]
            }),
            centroid: georef.then_some((1.05, 2.05)),
            h3: if georef { vec![1, 2, 3] } else { vec![] },
            acquired_ms: georef.then_some(1_600_000_000_000),
            gsd_m: georef.then_some(0.5),
            tags: vec!["demo".into()],
            labels: vec!["forest".into(), "river".into()],
            thumb: (u64::from(i) * 100, 99),
        }
    }

    #[test]
    fn a_part_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let rows = vec![record(0, true), record(1, false), record(2, true)];
        let emb: Vec<f32> = (0..12).map(|v| v as f32 / 3.0).collect();
        write_part(&path, &rows, &emb, 4).unwrap();
        let (back, back_emb) = read_part(&path, 4).unwrap();
        assert_eq!(back, rows);
        assert_eq!(back_emb, emb);
        let err = read_part(&path, 8).unwrap_err().to_string();
        assert!(err.contains("4 dimensions"), "{err}");
    }

    #[test]
    fn patch_ids_are_stable_and_parse() {
        let w = Window {
            x: 1,
            y: 2,
            width: 3,
            height: 4,
        };
        let id = PatchId::new("s", &w);
        assert_eq!(id, PatchId::new("s", &w));
        assert_ne!(id, PatchId::new("t", &w));
        assert_eq!(id.to_string().parse::<PatchId>().unwrap(), id);
        assert!("xyz".parse::<PatchId>().is_err());
    }
}
