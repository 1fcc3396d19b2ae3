#!/usr/bin/env bash
# Builds the page's assets: the sources in web/ui/ (plain JavaScript modules and CSS; npm
# dependencies pinned by web/ui/package-lock.json) bundled and minified by esbuild into
# web/assets/: index.html, app.js, app.css (MapLibre's styles included) and LICENSES.txt (the
# licences of every npm package in the bundle); api.html with the vendored Swagger UI
# (swagger-ui-bundle.js, swagger-ui.css, swagger-ui-LICENSES.txt) for the API reference page. The output is checked in: `cargo build` embeds
# it (web/src/assets.rs) and needs no npm. Run this after changing web/ui/.
#
# WEB_ASSETS_OUT=DIR writes somewhere else (scripts/test_web.sh does, to check that the
# checked-in files are what the sources build to).
set -euo pipefail
cd "$(dirname "$0")/.."
ui=web/ui
out=${WEB_ASSETS_OUT:-web/assets}
stamp=$ui/node_modules/.installed-lock.json
if ! cmp -s "$ui/package-lock.json" "$stamp"; then
  (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$ui/package-lock.json" "$stamp"
fi
mkdir -p "$out"
meta=$(mktemp)
trap 'rm -f "$meta"' EXIT
"$ui/node_modules/.bin/esbuild" "$ui/src/main.js" --bundle --minify --format=esm --target=es2020 \
  --legal-comments=none --charset=utf8 --log-level=warning --metafile="$meta" --outfile="$out/app.js"
cp "$ui/index.html" "$out/index.html"
# The licences of the npm packages whose files went into the bundle.
node - "$meta" "$ui" > "$out/LICENSES.txt" <<'JS'
const fs = require('fs');
const path = require('path');
const [meta, ui] = process.argv.slice(2);
const inputs = Object.keys(JSON.parse(fs.readFileSync(meta, 'utf8')).inputs);
const pkgs = [...new Set(inputs.map((f) => f.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)).filter(Boolean).map((m) => m[1]))].sort();
console.log('Third-party software bundled into app.js and app.css by scripts/build_web.sh.\n');
for (const name of pkgs) {
  const dir = path.join(ui, 'node_modules', name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  console.log(`${'='.repeat(78)}\n${name} ${pkg.version} (${pkg.license})\n${'='.repeat(78)}\n`);
  for (const f of fs.readdirSync(dir).filter((f) => /^(LICEN[CS]E|NOTICE|COPYING)/i.test(f)).sort()) {
    console.log(fs.readFileSync(path.join(dir, f), 'utf8').trimEnd() + '\n');
  }
}
JS
# The API reference page: the vendored Swagger UI (swagger-ui-dist, pinned) over /openapi.json.
cp "$ui/api.html" "$out/api.html"
cp "$ui/node_modules/swagger-ui-dist/swagger-ui-bundle.js" "$ui/node_modules/swagger-ui-dist/swagger-ui.css" "$out/"
{
  swagger=$ui/node_modules/swagger-ui-dist
  echo "swagger-ui-dist $(node -p "require('./$swagger/package.json').version") (Apache-2.0): swagger-ui-bundle.js and swagger-ui.css, the API reference page"
  echo
  cat "$swagger/LICENSE"
  [ -f "$swagger/NOTICE" ] && { echo; cat "$swagger/NOTICE"; }
  echo
  cat "$swagger/swagger-ui-bundle.js.LICENSE.txt"
} > "$out/swagger-ui-LICENSES.txt"
ls -l "$out"
