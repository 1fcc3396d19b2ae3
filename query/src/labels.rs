//! Labels: what a user said about patches, per class (positive or negative), kept durably in
//! `labels.sqlite` inside the index folder. The file is the user's work, not part of the index:
//! the manifest does not name it and the writer's garbage collector leaves it alone (it removes
//! only `parts/*`, `hnsw-*`, `text-*` and temp files), so re-indexing keeps the labels; a label
//! whose patch left the index stays in the store and is skipped by training.
//!
//! SQLite in WAL mode with `synchronous=FULL`: once [`LabelStore::add`] returns, the label is in
//! the synced log, so a `kill -9` (or a power cut) right after loses nothing acknowledged. One
//! row per (patch, class): labelling a patch again replaces its label. Several processes may use
//! the store at once (the server and the CLI): SQLite's locking serialises the writers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nadir_indexer::PatchId;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::geofilter::GeoFilter;
use crate::hit::Hit;

/// The store's file name inside the index folder.
pub const LABELS_FILE: &str = "labels.sqlite";
/// Longest class name, in characters.
pub const MAX_CLASS_CHARS: usize = 100;
/// Most bytes of a label's `query` (the search that found it, as JSON).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Most labels one import may add.
pub const MAX_IMPORT: usize = 100_000;

/// Where a label came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// Clicked in a search result.
    #[default]
    Search,
    /// Answered from a suggestion of the active learner.
    Suggestion,
    /// Imported from a GeoJSON file.
    Import,
}

impl LabelSource {
    fn as_str(self) -> &'static str {
        match self {
            LabelSource::Search => "search",
            LabelSource::Suggestion => "suggestion",
            LabelSource::Import => "import",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "suggestion" => LabelSource::Suggestion,
            "import" => LabelSource::Import,
            _ => LabelSource::Search,
        }
    }
}

/// A label to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLabel {
    /// Patch id (16 hex digits).
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub patch_id: String,
    /// Class name (1 to 100 characters).
    pub class: String,
    /// Whether the patch shows the class.
    pub positive: bool,
    /// Where the label comes from (default `search`).
    #[serde(default)]
    pub source: LabelSource,
    /// The request that led to it (any JSON, typically the search request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
}

/// A stored label.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Label {
    /// The store's id of this label (a relabel gets a new one).
    pub id: i64,
    pub patch_id: String,
    pub class: String,
    pub positive: bool,
    pub source: LabelSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
    /// When it was stored, RFC 3339 (UTC, milliseconds).
    pub created: String,
    /// The same, unix milliseconds.
    pub created_ms: i64,
}

/// Label counts of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClassSummary {
    pub class: String,
    pub positives: usize,
    pub negatives: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportReport {
    /// Labels stored (new or replaced).
    pub added: usize,
    /// Points no indexed patch contains, and polygons with no patch centroid inside.
    pub unmatched: usize,
}

/// Checks a class name: trimmed, 1 to [`MAX_CLASS_CHARS`] characters, no control characters.
pub fn check_class(class: &str) -> Result<&str> {
    let c = class.trim();
    if c.is_empty() {
        return Err(Error::bad("class: the name is empty"));
    }
    if c.chars().count() > MAX_CLASS_CHARS {
        return Err(Error::bad(format!("class: at most {MAX_CLASS_CHARS} characters")));
    }
    if c.chars().any(char::is_control) {
        return Err(Error::bad("class: control characters are not allowed"));
    }
    Ok(c)
}

fn check_patch_id(id: &str) -> Result<()> {
    id.parse::<PatchId>().map(|_| ()).map_err(Error::BadRequest)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The label store of one index folder; share it (it is `Sync`).
#[derive(Debug)]
pub struct LabelStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    patch_id TEXT NOT NULL,
    class TEXT NOT NULL,
    positive INTEGER NOT NULL CHECK (positive IN (0, 1)),
    source TEXT NOT NULL,
    query TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (patch_id, class)
);
CREATE INDEX IF NOT EXISTS labels_class ON labels (class);
";

const COLUMNS: &str = "id, patch_id, class, positive, source, query, created_ms";

fn row_label(r: &rusqlite::Row<'_>) -> rusqlite::Result<Label> {
    let query: Option<String> = r.get(5)?;
    Ok(Label {
        id: r.get(0)?,
        patch_id: r.get(1)?,
        class: r.get(2)?,
        positive: r.get::<_, i64>(3)? != 0,
        source: LabelSource::parse(&r.get::<_, String>(4)?),
        query: query.and_then(|q| serde_json::from_str(&q).ok()),
        created: nadir_indexer::time::rfc3339(r.get(6)?),
        created_ms: r.get(6)?,
    })
}

impl LabelStore {
    /// Opens (creating when needed) `labels.sqlite` in the index folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(LABELS_FILE);
        let err = |source| Error::Labels {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        // WAL: readers do not block the writer; FULL: every commit syncs the log before it returns.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(LabelStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        Error::Labels {
            path: self.path.clone(),
            source,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| self.err(e))
    }

    /// Stores a label (replacing the patch's label for that class); durable when this returns.
    /// Checks the class name and the id's form, not that the patch is in an index: see
    /// [`add_checked`].
    pub fn add(&self, label: &NewLabel) -> Result<Label> {
        Ok(self.add_many(std::slice::from_ref(label))?.remove(0))
    }

    /// Stores labels in one transaction: all or none.
    pub fn add_many(&self, labels: &[NewLabel]) -> Result<Vec<Label>> {
        let mut clean = Vec::with_capacity(labels.len());
        for l in labels {
            check_patch_id(&l.patch_id)?;
            let class = check_class(&l.class)?.to_string();
            if let Some(q) = &l.query {
                let bytes = q.to_string().len();
                if bytes > MAX_QUERY_BYTES {
                    return Err(Error::bad(format!(
                        "query: at most {MAX_QUERY_BYTES} bytes of JSON (got {bytes})"
                    )));
                }
            }
            clean.push((l, class));
        }
        let created_ms = now_ms();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut out = Vec::with_capacity(clean.len());
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO labels (patch_id, class, positive, source, query, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {COLUMNS}"
                ))?;
                for (l, class) in &clean {
                    let query = l.query.as_ref().map(Value::to_string);
                    out.push(stmt.query_row(
                        params![
                            l.patch_id,
                            class,
                            l.positive as i64,
                            l.source.as_str(),
                            query,
                            created_ms
                        ],
                        row_label,
                    )?);
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Removes the label of a patch for a class; whether there was one.
    pub fn remove(&self, patch_id: &str, class: &str) -> Result<bool> {
        let class = check_class(class)?;
        let n = self.with(|c| {
            c.execute(
                "DELETE FROM labels WHERE patch_id = ?1 AND class = ?2",
                params![patch_id, class],
            )
        })?;
        Ok(n > 0)
    }

    /// The label of a patch for a class.
    pub fn get(&self, patch_id: &str, class: &str) -> Result<Option<Label>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM labels WHERE patch_id = ?1 AND class = ?2"),
                params![patch_id, class.trim()],
                row_label,
            )
            .optional()
        })
    }

    /// Every label, or a class's, oldest first.
    pub fn list(&self, class: Option<&str>) -> Result<Vec<Label>> {
        self.with(|c| {
            let mut out = Vec::new();
            match class {
                Some(class) => {
                    let mut s = c.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM labels WHERE class = ?1 ORDER BY id"
                    ))?;
                    for l in s.query_map([class.trim()], row_label)? {
                        out.push(l?);
                    }
                }
                None => {
                    let mut s = c.prepare_cached(&format!("SELECT {COLUMNS} FROM labels ORDER BY id"))?;
                    for l in s.query_map([], row_label)? {
                        out.push(l?);
                    }
                }
            }
            Ok(out)
        })
    }

    /// The classes with their label counts, by name.
    pub fn classes(&self) -> Result<Vec<ClassSummary>> {
        self.with(|c| {
            let mut s = c.prepare_cached(
                "SELECT class, SUM(positive), SUM(1 - positive) FROM labels GROUP BY class ORDER BY class",
            )?;
            let rows = s.query_map([], |r| {
                Ok(ClassSummary {
                    class: r.get(0)?,
                    positives: r.get::<_, i64>(1)? as usize,
                    negatives: r.get::<_, i64>(2)? as usize,
                })
            })?;
            rows.collect()
        })
    }
}

/// Stores a label after checking that its patch is in the engine's index.
pub fn add_checked(engine: &Engine, label: &NewLabel) -> Result<Label> {
    engine.row_of(&label.patch_id)?;
    engine.labels()?.add(label)
}

/// Where one imported feature points.
enum Target {
    Patch(String),
    Points(Vec<(f64, f64)>),
    /// A GeoJSON MultiPolygon (WGS84), searched as a geofilter.
    Area(Value),
}

/// What each feature of an import points at, read by the crate's one GeoJSON reader.
fn targets(v: &Value) -> Result<Vec<(Target, Option<Value>)>> {
    let shapes = crate::shapes::read(v, "geojson")?.into_wgs84("geojson")?;
    let mut out = Vec::with_capacity(shapes.shapes.len());
    for s in shapes.shapes {
        let props = s.properties.map(Value::Object);
        // A feature naming its patch (as an export does) is that patch, whatever its geometry.
        if let Some(id) = props
            .as_ref()
            .and_then(|p| p.get("patch_id"))
            .and_then(Value::as_str)
        {
            out.push((Target::Patch(id.to_string()), props.clone()));
            continue;
        }
        let g = s
            .geometry
            .ok_or_else(|| Error::bad("geojson Feature has no geometry"))?;
        let target = match &g {
            geo::Geometry::Point(p) => Target::Points(vec![(p.x(), p.y())]),
            geo::Geometry::MultiPoint(ps) => Target::Points(ps.iter().map(|p| (p.x(), p.y())).collect()),
            other => match crate::shapes::polygons(other) {
                Some(polys) => {
                    let mp = geo::MultiPolygon(polys);
                    let json = serde_json::to_value(geojson::Geometry::from(&mp))
                        .map_err(|e| Error::bad(format!("geojson: {e}")))?;
                    Target::Area(json)
                }
                None => {
                    return Err(Error::bad(format!(
                        "geojson {}: import points, polygons, or features naming a patch_id",
                        crate::shapes::type_name(other)
                    )))
                }
            },
        };
        out.push((target, props));
    }
    Ok(out)
}

/// Imports labels from GeoJSON: a point labels the patch containing it, a polygon every patch
/// whose centroid lies inside, a feature with a `patch_id` property that patch. A feature's
/// `class` and `positive` properties override the defaults given here. All or nothing: one
/// transaction.
pub fn import_geojson(engine: &Engine, geojson: &Value, class: &str, positive: bool) -> Result<ImportReport> {
    let default_class = check_class(class)?.to_string();
    let found = targets(geojson)?;
    let mut labels = Vec::new();
    let mut unmatched = 0;
    for (target, props) in found {
        let props = props.unwrap_or(Value::Null);
        let class = match props.get("class").and_then(Value::as_str) {
            Some(c) => check_class(c)?.to_string(),
            None => default_class.clone(),
        };
        let positive = props.get("positive").and_then(Value::as_bool).unwrap_or(positive);
        let mut label = |patch_id: String| {
            labels.push(NewLabel {
                patch_id,
                class: class.clone(),
                positive,
                source: LabelSource::Import,
                query: None,
            })
        };
        match target {
            Target::Patch(id) => {
                engine.row_of(&id)?;
                label(id);
            }
            Target::Points(ps) => {
                for (lon, lat) in ps {
                    match engine.patch_at(lon, lat) {
                        Ok(hit) => label(hit.patch_id),
                        Err(Error::NothingAt(_)) => unmatched += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            Target::Area(g) => {
                let filter = GeoFilter {
                    geojson: Some(g),
                    ..Default::default()
                };
                let rows = engine.rows_in(Some(&filter))?;
                if rows.is_empty() {
                    unmatched += 1;
                }
                for r in rows {
                    label(engine.index().record(r).id.to_string());
                }
            }
        }
        if labels.len() > MAX_IMPORT {
            return Err(Error::bad(format!(
                "import: more than {MAX_IMPORT} labels; split the file"
            )));
        }
    }
    let added = engine.labels()?.add_many(&labels)?.len();
    Ok(ImportReport { added, unmatched })
}

/// Every label (or a class's) as a GeoJSON FeatureCollection: the labelled patch's footprint
/// (null without georeference, or when the patch left the index) with the label as properties.
/// Importing it again gives the same labels.
pub fn export_geojson(engine: &Engine, class: Option<&str>) -> Result<Value> {
    let labels = engine.labels()?.list(class)?;
    let features: Vec<Value> = labels
        .iter()
        .map(|l| {
            let hit = engine
                .row_of(&l.patch_id)
                .ok()
                .map(|r| Hit::new(engine.index(), r, None));
            let geometry = hit.as_ref().and_then(|h| h.footprint.clone());
            let mut props = serde_json::to_value(l).expect("a label serialises");
            if let (Some(h), Some(obj)) = (&hit, props.as_object_mut()) {
                obj.insert("scene".into(), json!(h.scene));
                if let Some(c) = h.centroid {
                    obj.insert("centroid".into(), json!(c));
                }
            }
            json!({"type": "Feature", "id": l.id, "geometry": geometry, "properties": props})
        })
        .collect();
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(id: u64, class: &str, positive: bool) -> NewLabel {
        NewLabel {
            patch_id: format!("{id:016x}"),
            class: class.into(),
            positive,
            source: LabelSource::Search,
            query: Some(json!({"text": "a harbour"})),
        }
    }

    #[test]
    fn oversized_queries_are_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = LabelStore::open(dir.path()).unwrap();
        let mut big = label(1, "harbour", true);
        big.query = Some(json!({"text": "a".repeat(MAX_QUERY_BYTES)}));
        let e = store
            .add_many(&[label(2, "harbour", true), big])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 16384 bytes"), "{e}");
        assert!(store.list(None).unwrap().is_empty(), "the batch is refused whole");
    }

    #[test]
    fn labels_round_trip_and_relabel_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = LabelStore::open(dir.path()).unwrap();
        let a = store.add(&label(1, "harbour", true)).unwrap();
        store.add(&label(2, "harbour", false)).unwrap();
        store.add(&label(1, "forest", false)).unwrap();
        assert_eq!(a.query, Some(json!({"text": "a harbour"})));
        let b = store.add(&label(1, " harbour ", false)).unwrap();
        assert!(b.id > a.id && !b.positive && b.class == "harbour");
        drop(store);
        let store = LabelStore::open(dir.path()).unwrap();
        let h = store.list(Some("harbour")).unwrap();
        assert_eq!(h.len(), 2);
        assert!(h.iter().all(|l| !l.positive));
        assert_eq!(store.list(None).unwrap().len(), 3);
        let classes = store.classes().unwrap();
        assert_eq!(
            classes[1],
            ClassSummary {
                class: "harbour".into(),
                positives: 0,
                negatives: 2
            }
        );
        assert!(store.remove(&format!("{:016x}", 1), "harbour").unwrap());
        assert!(!store.remove(&format!("{:016x}", 1), "harbour").unwrap());
        assert_eq!(store.list(Some("harbour")).unwrap().len(), 1);
    }

    #[test]
    fn bad_labels_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LabelStore::open(dir.path()).unwrap();
        assert!(store
            .add(&label(1, "  ", true))
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let mut bad = label(1, "x", true);
        bad.patch_id = "xyz".into();
        let e = store
            .add_many(&[label(2, "x", true), bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("16 hex digits"), "{e}");
        assert!(store.list(None).unwrap().is_empty());
        assert!(check_class(&"a".repeat(101)).is_err());
    }
}
