//! The tantivy index of each patch's text metadata: scene name, tags and zero-shot labels, so a
//! query can keep only the patches matching keywords ("harbor", "tags:flood"). Documents carry the
//! patch's row number as a fast field; the index is rebuilt with the other derived structures.

use std::path::Path;

use tantivy::collector::DocSetCollector;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexReader, ReloadPolicy};

use crate::error::{Error, Result};
use crate::table::PatchRecord;

struct Fields {
    row: Field,
    patch_id: Field,
    scene: Field,
    tags: Field,
    labels: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        row: b.add_u64_field("row", INDEXED | STORED | FAST),
        patch_id: b.add_text_field("patch_id", STRING | STORED),
        scene: b.add_text_field("scene", TEXT),
        tags: b.add_text_field("tags", TEXT),
        labels: b.add_text_field("labels", TEXT),
    };
    (b.build(), fields)
}

/// Builds the text index of `rows` (row numbers are their positions) in the empty folder `dir`.
pub fn build(dir: &Path, rows: &[PatchRecord], scene_names: &dyn Fn(&str) -> String) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema)?;
    let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
    for (i, r) in rows.iter().enumerate() {
        writer.add_document(doc!(
            f.row => i as u64,
            f.patch_id => r.id.to_string(),
            f.scene => scene_names(&r.scene),
            f.tags => r.tags.join(" "),
            f.labels => r.labels.join(" "),
        ))?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}

/// An opened text index.
pub struct TextIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex").finish_non_exhaustive()
    }
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        let index = Index::open_in_dir(dir)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TextIndex {
            index,
            reader,
            fields: schema().1,
        })
    }

    /// The rows matching a keyword query (tantivy syntax; default fields scene, tags, labels).
    pub fn matching_rows(&self, query: &str) -> Result<Vec<u32>> {
        let f = &self.fields;
        let parser = QueryParser::for_index(&self.index, vec![f.scene, f.tags, f.labels]);
        let q = parser
            .parse_query(query)
            .map_err(|e| Error::Invalid(format!("keyword query {query:?}: {e}")))?;
        let searcher = self.reader.searcher();
        let docs = searcher.search(&q, &DocSetCollector)?;
        let mut rows = Vec::with_capacity(docs.len());
        for addr in docs {
            let col = searcher
                .segment_reader(addr.segment_ord)
                .fast_fields()
                .u64("row")?;
            if let Some(v) = col.first(addr.doc_id) {
                rows.push(v as u32);
            }
        }
        rows.sort_unstable();
        Ok(rows)
    }
}
