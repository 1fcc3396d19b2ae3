//! The inputs people have: a scene by URL and a STAC Item by URL, served from 127.0.0.1 (a small
//! HTTP server with range requests, as object stores answer), and a local STAC ItemCollection
//! whose items point at files by relative hrefs. Each is one scene, read through GDAL.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use nadir_indexer::{Index, Manifest};

use crate::common::{quick, tiny_model};

fn demo_scene(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/scenes")
        .join(name)
}

/// Serves the files under `root` on 127.0.0.1 (GET and HEAD, `Range: bytes=a-b`), one thread per
/// connection; returns the base URL.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &root);
            });
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mut range = None;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (a, b) = v.trim().split_once('-').unwrap_or((v.trim(), ""));
                range = Some((a.parse::<usize>().unwrap_or(0), b.parse::<usize>().ok()));
            }
        }
        let path = root.join(target.trim_start_matches('/'));
        let Ok(body) = std::fs::read(&path) else {
            write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let (status, slice, extra) = match range {
            Some((a, b)) if a < body.len() => {
                let end = b.map_or(body.len() - 1, |b| b.min(body.len() - 1));
                (
                    "206 Partial Content",
                    &body[a..=end],
                    format!("Content-Range: bytes {a}-{end}/{}\r\n", body.len()),
                )
            }
            _ => ("200 OK", &body[..], String::new()),
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}\r\n",
            slice.len()
        )?;
        if method != "HEAD" {
            stream.write_all(slice)?;
        }
        stream.flush()?;
    }
}

fn item(id: &str, href: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "Feature", "stac_version": "1.1.0", "id": id,
        "geometry": null, "properties": {"datetime": "2020-01-01T00:00:00Z"}, "links": [],
        "assets": {
            "thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]},
            "visual": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["visual"]},
        }
    })
}

#[test]
fn urls_stac_items_and_virtual_paths_are_scenes() {
    let root = tempfile::tempdir().unwrap();
    let served = root.path().join("www");
    std::fs::create_dir_all(served.join("scenes")).unwrap();
    std::fs::create_dir_all(served.join("items")).unwrap();
    for name in ["grassland.tif", "manila-pasig-river.tif"] {
        std::fs::copy(demo_scene(name), served.join("scenes").join(name)).unwrap();
    }
    std::fs::write(
        served.join("items/manila.json"),
        item("manila", "../scenes/manila-pasig-river.tif").to_string(),
    )
    .unwrap();
    let base = serve(served.clone());

    // A local ItemCollection with a relative href, a scene by URL, a STAC Item by URL.
    let local = root.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::copy(demo_scene("neon-osbs-forest.tif"), local.join("forest.tif")).unwrap();
    let collection = serde_json::json!({"type": "FeatureCollection",
        "features": [item("forest", "./forest.tif")]});
    std::fs::write(local.join("items.json"), collection.to_string()).unwrap();
    let index = root.path().join("index");
    let inputs = [
        local.join("items.json"),
        PathBuf::from(format!("{base}/scenes/grassland.tif")),
        PathBuf::from(format!("{base}/items/manila.json")),
    ];
    let report = nadir_indexer::add(&index, &tiny_model(), &inputs, &quick(1024)).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.added, 3);
    let m = Manifest::load(&index).unwrap();
    let paths: Vec<String> = m.scenes.iter().map(|s| s.path.display().to_string()).collect();
    assert!(paths.iter().any(|p| p.ends_with("local/forest.tif")), "{paths:?}");
    assert!(
        paths.contains(&format!("/vsicurl/{base}/scenes/grassland.tif")),
        "a URL is read through /vsicurl/: {paths:?}"
    );
    assert!(
        paths.contains(&format!("/vsicurl/{base}/scenes/manila-pasig-river.tif")),
        "{paths:?}"
    );
    // The same bytes as the local file: the checksum is of the content, not the name.
    let local_sha = nadir_clip::encoder::sha256_file(&demo_scene("grassland.tif")).unwrap();
    assert!(m.scenes.iter().any(|s| s.sha256 == local_sha));
    assert!(m.missing_scenes().is_empty(), "virtual scenes are not 'missing'");
    let index_open = Index::open(&index).unwrap();
    assert_eq!(index_open.manifest().scenes.len(), 3);
    // Again: unchanged, nothing re-read into rows.
    let again = nadir_indexer::add(&index, &tiny_model(), &inputs, &quick(1024)).unwrap();
    assert_eq!((again.added, again.unchanged), (0, 3));

    // A Sentinel-2 product folder is one scene (its true-colour image), not one per band file.
    let granule = root
        .path()
        .join("products/S2A_MSIL1C_X.SAFE/GRANULE/L1C_T1/IMG_DATA");
    std::fs::create_dir_all(&granule).unwrap();
    for band in ["T1_TCI.jp2", "T1_B02.jp2", "T1_B03.jp2"] {
        // GeoTIFF bytes under the product's names: GDAL goes by content.
        std::fs::copy(demo_scene("spacenet-atlanta-pan.tif"), granule.join(band)).unwrap();
    }
    let r = nadir_indexer::add(
        &index,
        &tiny_model(),
        &[root.path().join("products")],
        &quick(1024),
    )
    .unwrap();
    assert_eq!((r.added, r.failed.len()), (1, 0), "{:?}", r.failed);
    assert!(Manifest::load(&index)
        .unwrap()
        .scenes
        .iter()
        .any(|s| s.path.ends_with("T1_TCI.jp2")));

    // Bad inputs are named, the others go on.
    std::fs::write(local.join("catalog.json"), r#"{"type": "Catalog", "id": "c"}"#).unwrap();
    let bad = [
        local.join("catalog.json"),
        PathBuf::from(format!("{base}/items/missing.json")),
        PathBuf::from(format!("{base}/scenes/missing.tif")),
    ];
    let r = nadir_indexer::add(&index, &tiny_model(), &bad, &quick(1024)).unwrap();
    assert_eq!(r.failed.len(), 3, "{:?}", r.failed);
    assert!(r.failed[0].1.contains("Catalog"), "{:?}", r.failed);
    assert!(r.failed[1].1.contains("cannot open"), "{:?}", r.failed);
}
