//! Integration tests of the query engine on synthetic indexes built through the public writer
//! API: geofilter invariants (every result inside the area, results equal to the brute-force
//! top-k of the rows inside) and ANN recall on the HNSW and filtered-HNSW paths.

#[path = "query/export.rs"]
mod export;
#[path = "query/fixture.rs"]
mod fixture;
#[path = "query/geofilter.rs"]
mod geofilter;
#[path = "query/labels.rs"]
mod labels;
#[path = "query/recall.rs"]
mod recall;
#[path = "query/server.rs"]
mod server;
