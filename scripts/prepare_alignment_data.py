#!/usr/bin/env python3
"""Prepares the alignment data of `nadir train-adapters --data DIR` and `nadir bench retrieval`.

Reads git snapshots of three public repositories (as the search tool's `fetch` leaves them, or any
clone at the pinned commits) and writes, under OUT, one folder per data set in the UCM-captions
layout Nadir reads (`captions.csv`: path, class, split, caption_1..caption_5, next to `images/`):

- `OUT/rsicd`: RSICD's 10,000 class-named images (the AID images, 150 x 150) with RSICD's five
  captions each and RSICD's own train/val/test split. Images: `zlima/testtensor` at f6a0f74
  (`AID/<Class>/`); captions and split: `albertofrizzera/VT-RSBS` at ded5390
  (`metadata/RSICD/RSICD.csv`, MIT). The class is the AID folder name, in words.
- `OUT/eurosat`: EuroSAT RGB (27,000 Sentinel-2 chips, 64 x 64, 10 classes, MIT) from
  `Mariner07/Satellite_Image_Classification` at 8b35a73 (`2750/<Class>/`). No captions (a scene
  set: training turns its classes into prompts). Split by the file's number n: n % 10 == 0 test,
  == 1 val, in {2, 3} train (20 %, to bound feature time), else `pool` (unused).
- `OUT/ucm`: a symbolic link to the UCM-captions folder given by --ucm (1,440 images).

Usage: scripts/prepare_alignment_data.py --out DIR [--mirrors /work/.mirror] [--ucm ../shared/data/ucm]
"""

import argparse
import csv
import ast
import os
import re
import subprocess
import sys
import tarfile
import io

PINS = {
    "aid": ("zlima+testtensor", "f6a0f746"),
    "rsicd": ("albertofrizzera+VT-RSBS", "ded5390"),
    "eurosat": ("Mariner07+Satellite_Image_Classification", "8b35a735"),
}

EUROSAT_WORDS = {
    "AnnualCrop": "annual crop land",
    "Forest": "forest",
    "HerbaceousVegetation": "herbaceous vegetation",
    "Highway": "highway",
    "Industrial": "industrial buildings",
    "Pasture": "pasture",
    "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings",
    "River": "river",
    "SeaLake": "sea or lake",
}


def words(camel):
    """`DenseResidential` -> `dense residential`."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", camel).lower()


def git_dir(mirrors, key):
    repo, commit = PINS[key]
    d = os.path.join(mirrors, repo, "repo")
    if not os.path.isdir(d):
        sys.exit(f"{d}: missing; fetch github:{repo.replace('+', '/')} first")
    full = subprocess.run(
        ["git", "--git-dir", d, "rev-parse", commit], capture_output=True, text=True
    )
    if full.returncode != 0:
        sys.exit(f"{d}: commit {commit} not found")
    return d, full.stdout.strip()


def extract(gd, commit, path, out_dir, rename):
    """Writes every file of `commit:path` through `rename(member) -> name or None`."""
    data = subprocess.run(
        ["git", "--git-dir", gd, "archive", "--format=tar", commit, path],
        capture_output=True,
        check=True,
    ).stdout
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            name = rename(m.name)
            if name is None:
                continue
            dst = os.path.join(out_dir, name)
            tmp = dst + ".tmp"
            with open(tmp, "wb") as f:
                f.write(tar.extractfile(m).read())
            os.replace(tmp, dst)
            n += 1
    return n


def write_csv(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "class", "split"] + [f"caption_{i}" for i in range(1, 6)])
        w.writerows(rows)
    os.replace(tmp, path)


def rsicd(mirrors, out):
    agd, acommit = git_dir(mirrors, "aid")
    rgd, rcommit = git_dir(mirrors, "rsicd")
    classes = {}

    def rename(member):
        parts = member.split("/")
        if len(parts) != 3 or not parts[2].endswith(".jpg"):
            return None
        classes[parts[2]] = words(parts[1])
        return parts[2]

    root = os.path.join(out, "rsicd")
    n = extract(agd, acommit, "AID", os.path.join(root, "images"), rename)
    meta = subprocess.run(
        ["git", "--git-dir", rgd, "show", f"{rcommit}:metadata/RSICD/RSICD.csv"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for r in csv.DictReader(io.StringIO(meta)):
        name = r["filename"]
        if name not in classes:
            continue  # RSICD's 921 numbered images are not in AID
        caps = [c.strip() for c in ast.literal_eval(r["sentence"])][:5]
        caps += [""] * (5 - len(caps))
        rows.append([f"images/{name}", classes[name], r["split"]] + caps)
    rows.sort()
    write_csv(os.path.join(root, "captions.csv"), rows)
    print(f"rsicd: {n} images, {len(rows)} captioned rows", file=sys.stderr)


def eurosat(mirrors, out):
    gd, commit = git_dir(mirrors, "eurosat")
    rows = []

    def rename(member):
        parts = member.split("/")
        if len(parts) != 3 or not parts[2].endswith(".jpg"):
            return None
        m = re.fullmatch(r"(\w+)_(\d+)\.jpg", parts[2])
        if not m or parts[1] not in EUROSAT_WORDS:
            return None
        k = int(m.group(2)) % 10
        split = {0: "test", 1: "val", 2: "train", 3: "train"}.get(k, "pool")
        rows.append([f"images/{parts[2]}", EUROSAT_WORDS[parts[1]], split] + [""] * 5)
        return parts[2]

    root = os.path.join(out, "eurosat")
    n = extract(gd, commit, "2750", os.path.join(root, "images"), rename)
    rows.sort()
    write_csv(os.path.join(root, "captions.csv"), rows)
    print(f"eurosat: {n} images", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--mirrors", default="/work/.mirror")
    ap.add_argument("--ucm", default=os.path.join(os.path.dirname(__file__), "../../shared/data/ucm"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rsicd(a.mirrors, a.out)
    eurosat(a.mirrors, a.out)
    link = os.path.join(a.out, "ucm")
    if not os.path.exists(link):
        os.symlink(os.path.abspath(a.ucm), link)
    print(f"ucm: -> {os.path.abspath(a.ucm)}", file=sys.stderr)


if __name__ == "__main__":
    main()
