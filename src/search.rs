//! `nadir search`, `nadir similar` and `nadir serve`: arguments for querying an index; the work
//! is in `nadir-query` (and, for the page `serve` adds to the API, `nadir-web`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nadir_clip::registry::ModelSpec;
use nadir_query::service::ServiceConfig;
use nadir_query::{Engine, Example, GeoFilter, SearchRequest, SearchResponse, TimeRange};

use crate::index::IndexDir;

/// Filters shared by `search` and `similar`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Keep patches inside min_lon,min_lat,max_lon,max_lat.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    bbox: Option<Vec<f64>>,
    /// Keep patches inside the polygons of a GeoJSON file.
    #[arg(long)]
    polygon: Option<PathBuf>,
    /// Keep patches inside these H3 cells (comma separated).
    #[arg(long, value_delimiter = ',')]
    h3: Option<Vec<String>>,
    /// Keep patches within --radius metres of lon,lat.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    near: Option<Vec<f64>>,
    /// Radius for --near, in metres.
    #[arg(long, default_value_t = 1000.0)]
    radius: f64,
    /// Keyword filter on scene names, tags and zero-shot labels (tantivy syntax).
    #[arg(long)]
    keywords: Option<String>,
    /// Acquired on or after: a date (2020-09-13) or an RFC 3339 date-time with an offset
    /// (2020-09-13T12:26:40Z, 2020-09-13T14:26:40.5+02:00).
    #[arg(long)]
    from: Option<String>,
    /// Acquired on or before (the same forms as --from).
    #[arg(long)]
    to: Option<String>,
    /// Number of results.
    #[arg(short, long, default_value_t = 20)]
    k: usize,
    /// Minimum cosine similarity.
    #[arg(long)]
    min_score: Option<f32>,
    /// Print a GeoJSON FeatureCollection instead of a table.
    #[arg(long)]
    geojson: bool,
}

impl FilterArgs {
    fn apply(&self, req: &mut SearchRequest) -> Result<()> {
        let geofilter = if let Some(b) = &self.bbox {
            Some(GeoFilter {
                bbox: Some(b.clone()),
                ..Default::default()
            })
        } else if let Some(p) = &self.polygon {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            let v = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
            Some(GeoFilter {
                geojson: Some(v),
                ..Default::default()
            })
        } else if let Some(cells) = &self.h3 {
            Some(GeoFilter {
                h3: Some(cells.clone()),
                ..Default::default()
            })
        } else {
            self.near.as_ref().map(|p| GeoFilter {
                point: Some(p.clone()),
                radius_m: Some(self.radius),
                ..Default::default()
            })
        };
        req.geofilter = geofilter;
        req.keywords = self.keywords.clone();
        if self.from.is_some() || self.to.is_some() {
            req.time = Some(TimeRange {
                from: self.from.clone(),
                to: self.to.clone(),
            });
        }
        req.k = self.k;
        req.min_score = self.min_score;
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    dir: IndexDir,
    /// What to find, in words.
    text: Option<String>,
    /// Positive example patch ids (repeatable).
    #[arg(long = "positive")]
    positives: Vec<String>,
    /// Negative example patch ids (repeatable).
    #[arg(long = "negative")]
    negatives: Vec<String>,
    /// Model weights, when the index's model cannot be found by name.
    #[arg(long, short = 'm')]
    model: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(clap::Args, Debug)]
pub struct SimilarArgs {
    #[command(flatten)]
    dir: IndexDir,
    /// A patch id.
    #[arg(long, conflicts_with_all = ["lon", "lat"])]
    patch: Option<String>,
    #[arg(long, allow_negative_numbers = true, requires = "lat")]
    lon: Option<f64>,
    #[arg(long, allow_negative_numbers = true, requires = "lon")]
    lat: Option<f64>,
    #[arg(long, short = 'm')]
    model: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    dir: IndexDir,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, short = 'm')]
    model: Option<String>,
    /// Longest a query may take, in seconds.
    #[arg(long, default_value_t = 30.0)]
    query_timeout: f64,
    /// A host name browsers reach this server by, beyond localhost and the address's IP
    /// (repeatable; `*`: any). Requests naming another host are refused, which stops DNS
    /// rebinding from reaching a server on 127.0.0.1.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// A web origin whose pages may call this API and read its answers (CORS; repeatable; `*`:
    /// any). None by default: browsers keep other sites' pages from reading the answers.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Open connections at most; at the cap the connection quiet longest without a request in
    /// flight is closed to make room (kept below the open-file limit).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds without a byte either way after which a connection is closed.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
}

fn engine(dir: &IndexDir, model: &Option<String>) -> Result<Engine> {
    let spec = model.as_ref().map(|m| ModelSpec {
        model: Some(m.clone()),
        ..Default::default()
    });
    Engine::open(&dir.index, spec).with_context(|| format!("opening index {}", dir.index.display()))
}

fn ids(list: &[String]) -> Vec<Example> {
    list.iter()
        .map(|id| Example {
            patch: Some(id.clone()),
            ..Default::default()
        })
        .collect()
}

pub fn search(a: SearchArgs) -> Result<()> {
    let engine = engine(&a.dir, &a.model)?;
    let mut req = SearchRequest {
        text: a.text,
        positives: ids(&a.positives),
        negatives: ids(&a.negatives),
        negative_weight: 0.5,
        ..Default::default()
    };
    a.filter.apply(&mut req)?;
    print(&engine.search(&req)?, a.filter.geojson)
}

pub fn similar(a: SimilarArgs) -> Result<()> {
    let engine = engine(&a.dir, &a.model)?;
    let example = Example {
        patch: a.patch,
        lon: a.lon,
        lat: a.lat,
        image_base64: None,
    };
    let mut req = SearchRequest {
        positives: vec![example],
        negative_weight: 0.5,
        ..Default::default()
    };
    a.filter.apply(&mut req)?;
    print(&engine.search(&req)?, a.filter.geojson)
}

fn print(r: &SearchResponse, geojson: bool) -> Result<()> {
    if geojson {
        outln!("{}", serde_json::to_string_pretty(&r.feature_collection())?);
        return Ok(());
    }
    outln!(
        "{} results of {} candidates ({} patches), {:?}, {:.1} ms",
        r.hits.len(),
        r.candidates,
        r.total,
        r.strategy,
        r.took_ms
    );
    outln!("| rank | score | patch | scene | lon | lat | labels |");
    outln!("|---:|---:|---|---|---:|---:|---|");
    for (i, h) in r.hits.iter().enumerate() {
        let (lon, lat) = h.centroid.map_or(("-".into(), "-".into()), |c| {
            (format!("{:.6}", c[0]), format!("{:.6}", c[1]))
        });
        outln!(
            "| {} | {:.4} | {} | {} | {lon} | {lat} | {} |",
            i + 1,
            h.score.unwrap_or_default(),
            h.patch_id,
            h.scene_name,
            h.labels.join(", ")
        );
    }
    Ok(())
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let engine = Arc::new(engine(&a.dir, &a.model)?);
    let info = engine.info();
    eprintln!(
        "serving {} ({} patches, model {}) on http://{}/ (the page; API: /openapi.json)",
        a.dir.index.display(),
        info.patches,
        info.model,
        a.addr
    );
    let secs = |what: &str, v: f64| -> Result<Duration> {
        anyhow::ensure!(
            v.is_finite() && v > 0.0 && v <= 86_400.0,
            "--{what} takes seconds in (0, 86400], got {v}"
        );
        Ok(Duration::from_secs_f64(v))
    };
    anyhow::ensure!(a.max_connections > 0, "--max-connections must be at least 1");
    let mut config = ServiceConfig {
        query_timeout: secs("query-timeout", a.query_timeout)?,
        limits: nadir_query::server::Limits {
            max_connections: a.max_connections,
            header_timeout: secs("header-timeout", a.header_timeout)?,
            idle_timeout: secs("idle-timeout", a.idle_timeout)?,
        },
        ..Default::default()
    };
    config.allowed_hosts.extend(a.allowed_hosts);
    config.allowed_origins = a.allow_origins;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(nadir_web::serve(engine, a.addr, config))?;
    Ok(())
}
