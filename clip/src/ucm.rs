//! The UCM-captions dataset as shipped in `shared/data/ucm`: `captions.csv` (path, class, split,
//! five captions) next to `images/`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One image and its captions.
#[derive(Debug, Clone, PartialEq)]
pub struct UcmRecord {
    pub image: PathBuf,
    pub class: String,
    pub split: String,
    pub captions: Vec<String>,
}

/// Reads `root/captions.csv`; image paths are resolved against `root`.
pub fn read_ucm(root: &Path) -> Result<Vec<UcmRecord>> {
    let path = root.join("captions.csv");
    let bad = |m: String| Error::InvalidInput(format!("{}: {m}", path.display()));
    let mut reader = csv::Reader::from_path(&path).map_err(|e| match e.kind() {
        csv::ErrorKind::Io(_) => Error::io(&path, std::io::Error::other(e.to_string())),
        _ => bad(e.to_string()),
    })?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no `{name}` column")))
    };
    let (c_path, c_class, c_split) = (col("path")?, col("class")?, col("split")?);
    let caption_cols: Vec<usize> = (0..headers.len())
        .filter(|&i| headers[i].starts_with("caption"))
        .collect();
    let mut out = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
        out.push(UcmRecord {
            image: root.join(&row[c_path]),
            class: row[c_class].to_string(),
            split: row[c_split].to_string(),
            captions: caption_cols
                .iter()
                .map(|&i| row[i].trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
        });
    }
    Ok(out)
}

/// The readable name of a UCM class (`mobilehomepark` -> `mobile home park`).
pub fn class_phrase(class: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("baseballdiamond", "baseball diamond"),
        ("mediumresidential", "medium residential"),
        ("denseresidential", "dense residential"),
        ("sparseresidential", "sparse residential"),
        ("mobilehomepark", "mobile home park"),
        ("parkinglot", "parking lot"),
        ("storagetanks", "storage tanks"),
        ("tenniscourt", "tennis court"),
        ("golfcourse", "golf course"),
        ("chaparral", "chaparral"),
    ];
    WORDS
        .iter()
        .find(|(k, _)| *k == class)
        .map_or_else(|| class.to_string(), |(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_csv() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nadir-ucm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        std::fs::write(
            dir.join("captions.csv"),
            "path,class,split,caption_1,caption_2\nimages/a.jpg,parkinglot,train,many cars,a lot\n",
        )
        .map_err(|e| Error::io(&dir, e))?;
        let r = read_ucm(&dir)?;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].image, dir.join("images/a.jpg"));
        assert_eq!(r[0].captions, vec!["many cars", "a lot"]);
        assert_eq!(class_phrase(&r[0].class), "parking lot");
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn missing_file_names_it() {
        let err = read_ucm(Path::new("/nonexistent/ucm")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ucm/captions.csv"), "{err}");
    }
}
