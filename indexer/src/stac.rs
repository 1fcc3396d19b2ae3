//! STAC Items and ItemCollections as input to `nadir index add` (a local file, a URL or any GDAL
//! virtual path): each item is one scene, read from its visual (RGB) asset; relative hrefs are
//! resolved against the document's own location, URLs read through GDAL (`/vsicurl/`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::vsi;

/// Whether an input names a STAC document rather than a raster (by its extension).
pub fn is_stac_document(input: &str) -> bool {
    let lower = input.to_ascii_lowercase();
    let lower = lower.split(['?', '#']).next().unwrap_or_default();
    lower.ends_with(".json") || lower.ends_with(".geojson")
}

fn href(a: &Value) -> Option<&str> {
    a.get("href").and_then(Value::as_str)
}

/// The asset of an item that holds its picture: `visual`, else one with the `visual` role, else
/// a `data` asset (key or role) that is a raster, else the first raster asset.
fn pick_asset(item: &Value) -> Option<&str> {
    let assets = item.get("assets")?.as_object()?;
    let raster = |a: &Value| {
        let ty = a.get("type").and_then(Value::as_str).unwrap_or_default();
        let href = a
            .get("href")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        ty.starts_with("image/tiff")
            || ty.starts_with("image/jp2")
            || ty.starts_with("image/png")
            || ty.starts_with("image/jpeg")
            || [".tif", ".tiff", ".jp2", ".png", ".jpg"]
                .iter()
                .any(|e| href.ends_with(e))
    };
    let has_role = |a: &Value, role: &str| {
        a.get("roles")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|x| x == role))
    };
    if let Some(h) = assets.get("visual").and_then(href) {
        return Some(h);
    }
    if let Some(a) = assets.values().find(|a| has_role(a, "visual")) {
        return href(a);
    }
    if let Some(a) = assets
        .iter()
        .find(|(k, a)| (k.as_str() == "data" || has_role(a, "data")) && raster(a))
        .map(|(_, a)| a)
    {
        return href(a);
    }
    assets.values().find(|a| raster(a)).and_then(href)
}

/// Resolves an asset href against the document's location (`base`: the document's own path,
/// local or virtual).
fn resolve(href: &str, base: &Path) -> PathBuf {
    if href.contains("://") {
        return PathBuf::from(vsi::from_url(href));
    }
    if let Some(local) = href.strip_prefix("file://") {
        return PathBuf::from(local);
    }
    let href_path = Path::new(href);
    if href_path.is_absolute() {
        return href_path.to_path_buf();
    }
    let dir = base.parent().unwrap_or(Path::new(""));
    // Lexical join, `./` and `../` folded (a URL has no file system to canonicalise against).
    let mut out = dir.to_path_buf();
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out
}

/// The scenes a STAC document names: one per item (an Item, an ItemCollection, or a
/// FeatureCollection of items), each its picture asset's path.
pub fn scenes(input: &str) -> Result<Vec<PathBuf>> {
    let location = PathBuf::from(vsi::from_url(input));
    let bytes = vsi::read_all(&location)?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::input(
            &location,
            format!("not a STAC Item or ItemCollection (not JSON: {e})"),
        )
    })?;
    let items: Vec<&Value> = match doc.get("type").and_then(Value::as_str) {
        Some("Feature") => vec![&doc],
        Some("FeatureCollection") => doc
            .get("features")
            .and_then(Value::as_array)
            .map(|f| f.iter().collect())
            .unwrap_or_default(),
        _ => {
            return Err(Error::input(
                &location,
                "not a STAC Item or ItemCollection (a Catalog or Collection: give its items)",
            ))
        }
    };
    if items.is_empty() {
        return Err(Error::input(&location, "an ItemCollection without items"));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = item.get("id").and_then(Value::as_str).unwrap_or("(no id)");
        if item.get("stac_version").is_none() || item.get("assets").is_none() {
            return Err(Error::input(
                &location,
                format!("feature {id} is not a STAC Item (no stac_version or assets)"),
            ));
        }
        let href = pick_asset(item).ok_or_else(|| {
            let keys: Vec<&str> = item["assets"]
                .as_object()
                .map(|a| a.keys().map(String::as_str).collect())
                .unwrap_or_default();
            Error::input(
                &location,
                format!("item {id}: no visual or raster asset among {}", keys.join(", ")),
            )
        })?;
        out.push(resolve(href, &location));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_picture_asset_is_chosen_and_resolved() {
        let item = json!({"type": "Feature", "stac_version": "1.1.0", "id": "a", "assets": {
            "thumbnail": {"href": "t.png", "type": "image/png", "roles": ["thumbnail"]},
            "B04": {"href": "B04.tif", "type": "image/tiff; application=geotiff"},
            "visual": {"href": "../tci/TCI.tif", "type": "image/tiff; application=geotiff"}}});
        assert_eq!(pick_asset(&item), Some("../tci/TCI.tif"));
        assert_eq!(
            resolve("../tci/TCI.tif", Path::new("/data/items/a.json")),
            PathBuf::from("/data/tci/TCI.tif")
        );
        assert_eq!(
            resolve("./x.tif", Path::new("/vsicurl/http://h/stac/a.json")),
            PathBuf::from("/vsicurl/http://h/stac/x.tif")
        );
        assert_eq!(
            resolve("https://h/x.tif", Path::new("/d/a.json")),
            PathBuf::from("/vsicurl/https://h/x.tif")
        );
        let by_role = json!({"assets": {"rgb": {"href": "r.tif", "roles": ["visual"]}}});
        assert_eq!(pick_asset(&by_role), Some("r.tif"));
        let data = json!({"assets": {"meta": {"href": "m.xml"}, "data": {"href": "d.tif"}}});
        assert_eq!(pick_asset(&data), Some("d.tif"));
        assert!(is_stac_document("https://h/items/a.json?x=1") && !is_stac_document("a.tif"));
    }
}
