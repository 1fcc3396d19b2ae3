//! Training sets: image/mask pairs found on disk, their classes, and the chips cut from them.
//!
//! A training set is any folder holding `images/` and `masks/` folders side by side (at any depth),
//! pairing files by name (extension aside). Under each `images/`, the sub-folders `train/`, `val/`
//! and `test/` (a Nadir export, `nadir export`) give the split; files directly under `images/`
//! are training images (a share becomes validation images when no `val/` exists).
//!
//! ```text
//! DIR/classes.json                 optional, see [`crate::config::ClassList`]
//! DIR/images/{train,val,test}/N.tif  DIR/masks/{train,val,test}/N.tif     (a Nadir export)
//! DIR/tile1/images/N.jpg             DIR/tile1/masks/N.png                (plain images)
//! ```
//!
//! Masks are single-band class indices (0..K-1, 255 = unlabelled: a mask that is 255 except at a
//! few pixels is a set of point labels, "clicks"), or RGB colours mapped through the colours of
//! `classes.json` (nearest colour within a tolerance; other colours are unlabelled). Images are
//! anything GDAL reads, georeferenced or not; non-8-bit data goes through one fixed stretch (see
//! [`crate::config::SegmenterConfig::stretch`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gdal::Dataset;
use image::{GrayImage, RgbImage};
use nadir_indexer::raster::{RasterOptions, Scene, Window};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::config::{ClassInfo, ClassList, Stretch, IGNORE};
use crate::error::{Error, Result};
use crate::grid;

/// Which part of a training set an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Val,
    Test,
}

/// An image and its mask.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub image: PathBuf,
    pub mask: PathBuf,
    pub split: Split,
}

/// The labelled images of a folder and their classes.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub root: PathBuf,
    pub classes: ClassList,
    pub images: Vec<LabelledImage>,
}

const IMAGE_EXTS: &[&str] = &[
    "tif", "tiff", "png", "jpg", "jpeg", "jp2", "webp", "bmp", "img", "vrt",
];
const MASK_EXTS: &[&str] = &["tif", "tiff", "png", "gif", "bmp"];

impl TrainingSet {
    /// Finds every image/mask pair under `dir`; classes from `classes` (a `classes.json`), else
    /// `dir/classes.json`, else numbered from the largest index in the masks.
    pub fn discover(dir: &Path, classes: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::input(dir, "not a folder"));
        }
        let mut images = Vec::new();
        find_pairs(dir, 0, &mut images)?;
        images.sort_by(|a, b| (a.split, &a.image).cmp(&(b.split, &b.image)));
        if images.is_empty() {
            return Err(Error::input(
                dir,
                "no image/mask pairs: expected folders `images/` and `masks/` side by side holding files \
                 of the same names (e.g. images/train/a.tif and masks/train/a.tif)",
            ));
        }
        let classes = match classes.map(Path::to_path_buf).or_else(|| {
            let p = dir.join("classes.json");
            p.is_file().then_some(p)
        }) {
            Some(p) => read_classes(&p)?,
            None => infer_classes(&images)?,
        };
        Ok(Self {
            root: dir.to_path_buf(),
            classes,
            images,
        })
    }

    /// The images of one split.
    pub fn split(&self, split: Split) -> Vec<&LabelledImage> {
        self.images.iter().filter(|i| i.split == split).collect()
    }
}

fn find_pairs(dir: &Path, depth: usize, out: &mut Vec<LabelledImage>) -> Result<()> {
    let images = dir.join("images");
    let masks = dir.join("masks");
    if images.is_dir() && masks.is_dir() {
        pair_files(&images, &masks, Split::Train, out)?;
        for (name, split) in [
            ("train", Split::Train),
            ("val", Split::Val),
            ("test", Split::Test),
        ] {
            if images.join(name).is_dir() {
                pair_files(&images.join(name), &masks.join(name), split, out)?;
            }
        }
    }
    if depth >= 4 {
        return Ok(());
    }
    for sub in sorted_entries(dir)? {
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if sub.is_dir() && name != "images" && name != "masks" && !name.starts_with('.') {
            find_pairs(&sub, depth + 1, out)?;
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
}

fn pair_files(images: &Path, masks: &Path, split: Split, out: &mut Vec<LabelledImage>) -> Result<()> {
    if !masks.is_dir() {
        return Ok(());
    }
    let mut by_stem: HashMap<String, PathBuf> = HashMap::new();
    for m in sorted_entries(masks)? {
        if m.is_file() && has_ext(&m, MASK_EXTS) {
            if let Some(stem) = m.file_stem().and_then(|s| s.to_str()) {
                by_stem.entry(stem.to_string()).or_insert(m);
            }
        }
    }
    let mut missing = 0;
    for img in sorted_entries(images)? {
        if !img.is_file() || !has_ext(&img, IMAGE_EXTS) {
            continue;
        }
        let stem = img.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        match by_stem.get(stem) {
            Some(mask) => out.push(LabelledImage {
                image: img.clone(),
                mask: mask.clone(),
                split,
            }),
            None => missing += 1,
        }
    }
    if missing > 0 {
        tracing::warn!(folder = %images.display(), missing, "images without a mask of the same name are left out");
    }
    Ok(())
}

/// Reads a `classes.json` (see [`ClassList`]).
pub fn read_classes(path: &Path) -> Result<ClassList> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let list: ClassList = serde_json::from_slice(&bytes).map_err(|e| {
        Error::input(
            path,
            format!(
                "not a Nadir classes.json ({e}); expected {{\"classes\": [{{\"name\": \"building\", \
                 \"color\": [r, g, b]}}, ...], \"ignore_color\": [r, g, b]}}"
            ),
        )
    })?;
    if list.classes.len() < 2 || list.classes.len() >= usize::from(IGNORE) {
        return Err(Error::input(
            path,
            format!("need 2 to 254 classes, got {}", list.classes.len()),
        ));
    }
    Ok(list)
}

/// Classes `0..=max` named by number, from single-band masks.
fn infer_classes(images: &[LabelledImage]) -> Result<ClassList> {
    let mut max = 1u8;
    for li in images {
        let ds = open(&li.mask)?;
        if ds.raster_count() != 1 {
            return Err(Error::input(
                &li.mask,
                "an RGB mask needs a classes.json giving each class's colour",
            ));
        }
        let (_, _, values) = read_band_u8(&li.mask, &ds, 1)?;
        max = values
            .iter()
            .filter(|&&v| v != IGNORE)
            .fold(max, |m, &v| m.max(v));
    }
    let classes = (0..=max)
        .map(|i| ClassInfo {
            name: if i == 0 {
                "background".into()
            } else {
                format!("class {i}")
            },
            color: None,
        })
        .collect();
    Ok(ClassList {
        classes,
        ignore_color: None,
    })
}

fn open(path: &Path) -> Result<Dataset> {
    Dataset::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))
}

fn read_band_u8(path: &Path, ds: &Dataset, b: usize) -> Result<(usize, usize, Vec<u8>)> {
    let (w, h) = ds.raster_size();
    let band = ds
        .rasterband(b)
        .map_err(|e| Error::input(path, format!("band {b}: {e}")))?;
    let buf = band
        .read_as::<u8>((0, 0), (w, h), (w, h), None)
        .map_err(|e| Error::input(path, format!("cannot read band {b}: {e}")))?;
    Ok((w, h, buf.data().to_vec()))
}

/// Reads a mask as class indices (`IGNORE` where unlabelled): (width, height, values).
pub fn read_mask(path: &Path, classes: &ClassList) -> Result<(u32, u32, Vec<u8>)> {
    let ds = open(path)?;
    let k = classes.classes.len();
    let palette_of_band = match ds.rasterband(1) {
        Ok(b) if ds.raster_count() == 1 && classes.classes.iter().all(|c| c.color.is_some()) => {
            b.color_table().map(|t| {
                (0..t.entry_count().min(256))
                    .map(|i| {
                        t.entry_as_rgb(i)
                            .map(|e| [e.r, e.g, e.b].map(|v| v.clamp(0, 255) as u8))
                    })
                    .collect::<Vec<_>>()
            })
        }
        _ => None,
    };
    let (w, h, values) = if let Some(table) = palette_of_band {
        // A paletted mask (PNG with a colour table): its entries' colours say the class.
        let palette: Vec<[u8; 3]> = classes.classes.iter().filter_map(|c| c.color).collect();
        let mut lookup: Vec<u8> = (0..256)
            .map(|i| match table.get(i).copied().flatten() {
                Some(rgb) => nearest_colour(rgb, &palette, classes.ignore_color),
                None => IGNORE,
            })
            .collect();
        lookup[usize::from(IGNORE)] = IGNORE;
        let (w, h, v) = read_band_u8(path, &ds, 1)?;
        (w, h, v.into_iter().map(|x| lookup[usize::from(x)]).collect())
    } else if ds.raster_count() == 1 {
        let (w, h, v) = read_band_u8(path, &ds, 1)?;
        if let Some(bad) = v.iter().find(|&&x| x != IGNORE && usize::from(x) >= k) {
            return Err(Error::input(
                path,
                format!(
                    "mask value {bad} is not a class (there are {k}: 0..={}; 255 = unlabelled)",
                    k - 1
                ),
            ));
        }
        (w, h, v)
    } else if ds.raster_count() >= 3 {
        let palette: Vec<[u8; 3]> = classes
            .classes
            .iter()
            .map(|c| {
                c.color.ok_or_else(|| {
                    Error::input(
                        path,
                        format!("RGB mask, but class {:?} has no colour in classes.json", c.name),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let (w, h, r) = read_band_u8(path, &ds, 1)?;
        let (_, _, g) = read_band_u8(path, &ds, 2)?;
        let (_, _, b) = read_band_u8(path, &ds, 3)?;
        let mut lookup: HashMap<[u8; 3], u8> = HashMap::new();
        let mut unknown = 0usize;
        let v = (0..w * h)
            .map(|i| {
                let px = [r[i], g[i], b[i]];
                let c = *lookup
                    .entry(px)
                    .or_insert_with(|| nearest_colour(px, &palette, classes.ignore_color));
                unknown += usize::from(c == IGNORE && Some(px) != classes.ignore_color);
                c
            })
            .collect();
        if unknown > 0 {
            tracing::warn!(path = %path.display(), unknown, "mask pixels of no class colour are unlabelled");
        }
        (w, h, v)
    } else {
        return Err(Error::input(
            path,
            "a mask must have 1 band (class indices) or 3 (RGB colours)",
        ));
    };
    Ok((w as u32, h as u32, values))
}

/// The class whose colour is nearest to `px` (within 30 per channel on average), else `IGNORE`.
fn nearest_colour(px: [u8; 3], palette: &[[u8; 3]], ignore: Option<[u8; 3]>) -> u8 {
    let d2 = |c: &[u8; 3]| -> i32 { (0..3).map(|i| (i32::from(px[i]) - i32::from(c[i])).pow(2)).sum() };
    let best = palette.iter().enumerate().min_by_key(|(_, c)| d2(c));
    let ignore_d = ignore.map_or(i32::MAX, |c| d2(&c));
    match best {
        Some((i, c)) if d2(c) <= 3 * 30 * 30 && d2(c) < ignore_d => i as u8,
        _ => IGNORE,
    }
}

/// Keeps `n` labelled pixels of `mask` and unlabels the rest: the clicks of an analyst who labels
/// each class present in turn (classes in random order, a random pixel of the class each time).
pub fn keep_clicks(mask: &mut [u8], n: usize, rng: &mut impl Rng) {
    let mut by_class: HashMap<u8, Vec<usize>> = HashMap::new();
    for (i, &v) in mask.iter().enumerate() {
        if v != IGNORE {
            by_class.entry(v).or_default().push(i);
        }
    }
    let mut classes: Vec<u8> = by_class.keys().copied().collect();
    classes.sort_unstable();
    classes.shuffle(rng);
    let mut keep = Vec::with_capacity(n);
    let mut round = 0;
    while keep.len() < n && by_class.values().any(|v| !v.is_empty()) {
        let c = classes[round % classes.len()];
        round += 1;
        let pixels = by_class.get_mut(&c).expect("class present");
        if pixels.is_empty() {
            continue;
        }
        let j = rng.random_range(0..pixels.len());
        keep.push((pixels.swap_remove(j), c));
    }
    mask.fill(IGNORE);
    for (i, c) in keep {
        mask[i] = c;
    }
}

/// A square piece of a labelled image: what the model trains on.
#[derive(Debug, Clone)]
pub struct Chip {
    pub image: RgbImage,
    pub mask: GrayImage,
}

impl Chip {
    /// Pixels with a label.
    pub fn labelled(&self) -> usize {
        self.mask.as_raw().iter().filter(|&&v| v != IGNORE).count()
    }

    /// One of the 8 flips and 90-degree rotations (0 = as is), of the image and mask alike.
    pub fn dihedral(&self, variant: u8) -> Chip {
        Chip {
            image: dihedral(&self.image, variant),
            mask: dihedral(&self.mask, variant),
        }
    }
}

/// `variant` 0..8: `variant % 4` quarter turns clockwise, after a horizontal flip when `>= 4`.
pub fn dihedral<P: image::Pixel + 'static>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    variant: u8,
) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
    use image::imageops::{flip_horizontal, rotate180, rotate270, rotate90};
    let base = if variant >= 4 {
        flip_horizontal(img)
    } else {
        img.clone()
    };
    match variant % 4 {
        1 => rotate90(&base),
        2 => rotate180(&base),
        3 => rotate270(&base),
        _ => base,
    }
}

/// Opens an image for the model: `bands` as R, G, B; `stretch` replaces the file's own
/// percentile stretch where given (non-8-bit data), see [`use_stretch`].
pub fn open_scene(path: &Path, bands: Option<&[usize]>, stretch: Option<Stretch>) -> Result<Scene> {
    let opts = RasterOptions {
        bands: bands.map(<[usize]>::to_vec),
        max_nodata: 1.0,
        ..RasterOptions::default()
    };
    let mut scene = Scene::open(path, &opts)?;
    if let Some(s) = stretch {
        use_stretch(&mut scene, s);
    }
    Ok(scene)
}

/// Puts a model's stretch on a scene: only channels the file itself stretches (non-8-bit) change,
/// to the model's map where it has one, else they keep the file's own (a model trained on 8-bit
/// images predicting a 16-bit scene).
pub fn use_stretch(scene: &mut Scene, stretch: Stretch) {
    let own = scene.stretch();
    scene.set_stretch(std::array::from_fn(|c| own[c].map(|o| stretch[c].unwrap_or(o))));
}

/// Opens a model's training images once: their scenes, already under the stretch the model fixes
/// ([`median_stretch`] of theirs), and that stretch.
pub fn open_training<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
    bands: Option<&[usize]>,
) -> Result<(Vec<Scene>, Stretch)> {
    let mut scenes = paths
        .into_iter()
        .map(|p| open_scene(p, bands, None))
        .collect::<Result<Vec<_>>>()?;
    let stretch = median_stretch(&scenes);
    for scene in &mut scenes {
        use_stretch(scene, stretch);
    }
    Ok((scenes, stretch))
}

/// The stretch a model fixes for its inputs: the median, per channel, of the files' own.
pub fn median_stretch(scenes: &[Scene]) -> Stretch {
    std::array::from_fn(|c| {
        let mut lo: Vec<f64> = scenes
            .iter()
            .filter_map(|s| s.stretch()[c].map(|p| p.0))
            .collect();
        let mut hi: Vec<f64> = scenes
            .iter()
            .filter_map(|s| s.stretch()[c].map(|p| p.1))
            .collect();
        if lo.is_empty() {
            return None;
        }
        lo.sort_by(f64::total_cmp);
        hi.sort_by(f64::total_cmp);
        Some((lo[lo.len() / 2], hi[hi.len() / 2]))
    })
}

/// Cuts a labelled image into `side` px chips (no overlap, the last row and column shifted back
/// inside; an image smaller than a chip is padded, unlabelled). Chips without any label, and
/// windows the raster reader finds empty, are left out.
pub fn chips(scene: &Scene, mask: &[u8], mask_path: &Path, side: u32) -> Result<Vec<Chip>> {
    let (w, h) = scene.size();
    let all = Window {
        x: 0,
        y: 0,
        width: w,
        height: h,
    };
    chips_in(scene, mask, mask_path, all, side)
}

/// [`chips`] of the part `region` of the image (`mask` is the whole image's).
pub fn chips_in(
    scene: &Scene,
    mask: &[u8],
    mask_path: &Path,
    region: Window,
    side: u32,
) -> Result<Vec<Chip>> {
    let (w, h) = scene.size();
    if mask.len() != (w as usize) * (h as usize) {
        return Err(Error::input(
            mask_path,
            format!(
                "the mask is not the size of its image {} ({w}x{h})",
                scene.path().display()
            ),
        ));
    }
    let rw = region.width.min(w.saturating_sub(region.x));
    let rh = region.height.min(h.saturating_sub(region.y));
    let mut out = Vec::new();
    for mut win in grid::windows(rw, rh, side, side) {
        win.x += region.x;
        win.y += region.y;
        let Some(image) = scene.read_window(win, side)? else {
            continue;
        };
        let mut m = GrayImage::from_pixel(side, side, image::Luma([IGNORE]));
        // Labels of the region only (a region narrower than a chip reads image pixels around it).
        let (x_end, y_end) = ((region.x + rw).min(w), (region.y + rh).min(h));
        for y in 0..side.min(y_end - win.y) {
            for x in 0..side.min(x_end - win.x) {
                let v = mask[((win.y + y) * w + win.x + x) as usize];
                m.put_pixel(x, y, image::Luma([v]));
            }
        }
        let chip = Chip { image, mask: m };
        if chip.labelled() > 0 {
            out.push(chip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn clicks_keep_n_pixels_spread_over_the_classes() {
        let mut mask: Vec<u8> = (0..1000).map(|i| (i % 3) as u8).collect();
        mask[5] = IGNORE;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        keep_clicks(&mut mask, 10, &mut rng);
        let kept: Vec<u8> = mask.iter().copied().filter(|&v| v != IGNORE).collect();
        assert_eq!(kept.len(), 10);
        for c in 0..3 {
            let n = kept.iter().filter(|&&v| v == c).count();
            assert!((3..=4).contains(&n), "class {c}: {n} clicks");
        }
        // Fewer labelled pixels than clicks: all of them are kept.
        let mut small = vec![IGNORE, 1, IGNORE, 0];
        keep_clicks(&mut small, 10, &mut rng);
        assert_eq!(small, vec![IGNORE, 1, IGNORE, 0]);
    }

    #[test]
    fn dihedral_variants_are_distinct_and_moves_image_and_mask_together() {
        let img = RgbImage::from_fn(3, 3, |x, y| image::Rgb([(x + 3 * y) as u8, 0, 0]));
        let mask = GrayImage::from_fn(3, 3, |x, y| image::Luma([(x + 3 * y) as u8]));
        let chip = Chip { image: img, mask };
        let mut seen = std::collections::HashSet::new();
        for v in 0..8 {
            let d = chip.dihedral(v);
            let r: Vec<u8> = d.image.pixels().map(|p| p.0[0]).collect();
            assert_eq!(&r, d.mask.as_raw());
            seen.insert(r);
        }
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn colours_map_to_the_nearest_class_or_to_unlabelled() {
        let palette = [[60, 16, 152], [110, 193, 228]];
        assert_eq!(nearest_colour([61, 15, 150], &palette, None), 0);
        assert_eq!(nearest_colour([110, 193, 228], &palette, None), 1);
        assert_eq!(
            nearest_colour([155, 155, 155], &palette, Some([155, 155, 155])),
            IGNORE
        );
        assert_eq!(nearest_colour([255, 255, 255], &palette, None), IGNORE);
    }
}
