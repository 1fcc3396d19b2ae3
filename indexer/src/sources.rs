//! Input paths to scenes: files are taken as given, folders are searched (recursively, sorted) for
//! rasters and images, GDAL virtual paths and URLs (`/vsicurl/`, `/vsis3/`, `/vsizip/`, `https://`,
//! `s3://`) are read through GDAL, STAC Items and ItemCollections (`.json`, local or remote) stand
//! for their items' pictures ([`crate::stac`]). Each scene gets a stable id from its file name and
//! canonical path.

use std::path::{Path, PathBuf};

/// File extensions searched for in folders.
pub const EXTENSIONS: &[&str] = &["tif", "tiff", "jpg", "jpeg", "png", "jp2", "vrt", "webp"];

/// Expands inputs into scene files, and the inputs that cannot be used with the reason.
pub fn expand(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let (mut files, mut failed) = (Vec::new(), Vec::new());
    for input in inputs {
        let text = input.to_string_lossy();
        let remote = crate::vsi::is_virtual(input) || text.contains("://");
        if crate::stac::is_stac_document(&text) && (remote || input.is_file()) {
            match crate::stac::scenes(&text) {
                Ok(scenes) => files.extend(scenes),
                Err(e) => failed.push((input.clone(), e.to_string())),
            }
        } else if remote {
            files.push(PathBuf::from(crate::vsi::from_url(&text)));
        } else if is_product(input) {
            let before = files.len();
            product(input, &mut files);
            if files.len() == before {
                failed.push((
                    input.clone(),
                    format!(
                        "{}: a Sentinel-2 product without a true-colour image (no *_TCI*.jp2)",
                        input.display()
                    ),
                ));
            }
        } else if input.is_dir() {
            let before = files.len();
            walk(input, &mut files);
            if files.len() == before {
                failed.push((
                    input.clone(),
                    format!(
                        "{}: no images in this folder (looked for .{})",
                        input.display(),
                        EXTENSIONS.join(", .")
                    ),
                ));
            }
        } else if input.exists() {
            files.push(input.clone());
        } else {
            failed.push((
                input.clone(),
                format!("{}: no such file or folder", input.display()),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    (files, failed)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if is_product(&p) {
            product(&p, out);
        } else if p.is_dir() {
            walk(&p, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
}

/// Whether `dir` is a Sentinel-2 product folder (`*.SAFE`): one scene, not one per band file.
fn is_product(dir: &Path) -> bool {
    dir.is_dir()
        && dir
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("safe"))
}

/// The scenes of a Sentinel-2 product: the true-colour image (`*_TCI.jp2`, `*_TCI_10m.jp2`) of
/// each granule, the 10 m RGB composite ESA ships; the single-band files are left alone.
fn product(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    let mut tci: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.ends_with("_TCI") || s.ends_with("_TCI_10m"))
        })
        .collect();
    tci.sort();
    out.extend(tci);
}

/// A scene's id: its file stem (letters, digits, `-`, `_`) and 8 hex digits of the sha256 of its
/// canonical path.
pub fn scene_id(canonical: &Path) -> String {
    use sha2::{Digest, Sha256};
    let stem: String = canonical
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let h = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("{stem}-{}", hex::encode(&h[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_searched_and_bad_inputs_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.tif"), b"x").unwrap();
        std::fs::write(dir.path().join("a.JPG"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let (files, failed) = expand(&[
            dir.path().to_path_buf(),
            empty.clone(),
            dir.path().join("missing.tif"),
        ]);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.JPG", "b.tif"]);
        assert_eq!(failed.len(), 2);
        assert!(failed[0].1.contains("no images"), "{failed:?}");
        assert!(failed[1].1.contains("missing.tif"), "{failed:?}");
        assert!(scene_id(Path::new("/x/My Scene.tif")).starts_with("My_Scene-"));
    }

    #[test]
    fn a_sentinel2_product_is_its_true_colour_image() {
        let dir = tempfile::tempdir().unwrap();
        let l1c = dir
            .path()
            .join("S2A_MSIL1C_20200101.SAFE/GRANULE/L1C_T33UUP/IMG_DATA");
        let l2a = dir
            .path()
            .join("S2B_MSIL2A_20200102.SAFE/GRANULE/L2A_T33UUP/IMG_DATA/R10m");
        for d in [&l1c, &l2a] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            "T33UUP_B02.jp2",
            "T33UUP_B03.jp2",
            "T33UUP_B04.jp2",
            "T33UUP_TCI.jp2",
        ] {
            std::fs::write(l1c.join(f), b"x").unwrap();
        }
        for f in ["T33UUP_B02_10m.jp2", "T33UUP_TCI_10m.jp2", "T33UUP_AOT_10m.jp2"] {
            std::fs::write(l2a.join(f), b"x").unwrap();
        }
        let empty = dir.path().join("S2C_empty.SAFE");
        std::fs::create_dir_all(empty.join("GRANULE")).unwrap();
        // Inside a folder, and given directly.
        let (files, failed) = expand(&[dir.path().to_path_buf()]);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["T33UUP_TCI.jp2", "T33UUP_TCI_10m.jp2"],
            "one scene per product, no band files"
        );
        assert!(failed.is_empty());
        let (files, failed) = expand(&[dir.path().join("S2A_MSIL1C_20200101.SAFE"), empty]);
        assert_eq!(files.len(), 1);
        assert!(failed[0].1.contains("true-colour"), "{failed:?}");
    }
}
