// The page in a real browser: Debian's headless Chromium driven by playwright-core, against
// `nadir serve` on an index of the demo scenes (NADIR_MAP_URL) and on a gallery index of UCM
// photos without georeference (NADIR_GALLERY_URL; that test is skipped without it). Run by
// scripts/test_web.sh, which builds the indexes and starts the servers. Screenshots go to
// NADIR_SCREENSHOTS (target/web-screenshots).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const MAP_URL = process.env.NADIR_MAP_URL;
const GALLERY_URL = process.env.NADIR_GALLERY_URL || '';
const SHOTS = process.env.NADIR_SCREENSHOTS || 'screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCENE = 'manila-pasig-river.tif';
const T = { timeout: 180_000 };

let browser;

before(async () => {
  assert.ok(MAP_URL, 'set NADIR_MAP_URL (scripts/test_web.sh does)');
  fs.mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // MapLibre needs WebGL: without a GPU Chromium falls back to SwiftShader.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--enable-unsafe-swiftshader'],
  });
});

after(async () => {
  await browser?.close();
});

/// A new page at `url`, ready; records page errors and requests that leave the server.
async function open(url) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(60_000);
  page.errors = [];
  page.searches = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!['127.0.0.1', 'localhost'].includes(u.hostname) && !u.protocol.startsWith('data') && !u.protocol.startsWith('blob')) {
      page.errors.push(`request outside the server: ${r.url()}`);
    }
    if (u.pathname === '/api/search') page.searches.push(JSON.parse(r.postData()));
  });
  await page.goto(url);
  await page.waitForSelector('body.ready');
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/// The demo index's page, zoomed to the Manila scene with its tiles drawn.
async function openMap() {
  const page = await open(MAP_URL);
  assert.equal(await page.getAttribute('body', 'data-mode'), 'map');
  await page.click(`button[data-scene="${SCENE}"]`);
  await mapIdle(page);
  return page;
}

async function mapIdle(page) {
  await page.waitForFunction(() => {
    const m = window.nadir.map;
    return m.loaded() && m.areTilesLoaded() && !m.isMoving();
  });
  await page.waitForTimeout(300);
}

/// Runs `action` and waits for the search it starts to be answered.
async function searched(page, action) {
  const before = await page.evaluate(() => window.nadir.state.searches);
  await action();
  await page.waitForFunction((n) => window.nadir.state.searches > n && document.querySelector('#status').dataset.state !== 'loading', before);
  return page.evaluate(() => ({ status: document.querySelector('#status').dataset.state, text: document.querySelector('#status').textContent }));
}

/// The results as listed: patch id, score, centroid.
async function results(page, selector = '#results li.result') {
  return page.$$eval(selector, (nodes) =>
    nodes.map((n) => ({ id: n.dataset.patch, score: Number(n.dataset.score), lon: Number(n.dataset.lon), lat: Number(n.dataset.lat) })),
  );
}

/// The middle of the map on the page.
async function mapCentre(page) {
  const box = await page.locator('#map').boundingBox();
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

function insidePolygon([x, y], ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function assertRanked(list) {
  assert.ok(list.length > 0, 'no results listed');
  for (let i = 1; i < list.length; i++) assert.ok(list[i - 1].score >= list[i].score, `rank ${i + 1} scores above rank ${i}`);
}

async function thumbnailsLoaded(page, selector) {
  await page.waitForFunction(
    (sel) => [...document.querySelectorAll(sel)].slice(0, 6).every((img) => img.complete && img.naturalWidth > 0),
    selector,
  );
}

test('the map shows the imagery rendered by the server', T, async () => {
  const page = await openMap();
  await shot(page, 'map');
  // Look at the screenshot in the page itself: the map's middle is imagery, not background.
  const png = (await page.screenshot({ clip: { x: 700, y: 200, width: 500, height: 500 } })).toString('base64');
  const stats = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let imagery = 0;
    let sum = 0;
    let sum2 = 0;
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
      if (Math.abs(r - 0x1d) + Math.abs(g - 0x23) + Math.abs(b - 0x2b) > 40) imagery++;
      const l = 0.3 * r + 0.59 * g + 0.11 * b;
      sum += l;
      sum2 += l * l;
    }
    return { imagery: imagery / n, std: Math.sqrt(sum2 / n - (sum / n) ** 2) };
  }, png);
  assert.ok(stats.imagery > 0.5, `only ${(stats.imagery * 100).toFixed(0)}% of the map's middle is imagery`);
  assert.ok(stats.std > 15, `the imagery is flat (luminance std ${stats.std.toFixed(1)})`);
  // Patch footprints are drawn when zoomed in.
  const footprints = await page.evaluate(() => window.nadir.map.querySourceFeatures('footprints').length);
  assert.ok(footprints > 0, 'no patch footprints on the map');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a text search lists ranked results with thumbnails and draws them on the map', T, async () => {
  const page = await openMap();
  await page.fill('#search', 'a river with a bridge');
  const s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'done', s.text);
  const list = await results(page);
  assertRanked(list);
  assert.equal(list.length, 40);
  await thumbnailsLoaded(page, '#results li.result img.thumb');
  const onMap = await page.evaluate(() => window.nadir.map.querySourceFeatures('results').length);
  assert.ok(onMap > 0, 'results are not on the map');
  assert.equal(page.searches.at(-1).text, 'a river with a bridge');
  await page.check('#h3-toggle');
  await page.waitForFunction(() => window.nadir.map.querySourceFeatures('heat').length > 0);
  await mapIdle(page);
  await shot(page, 'text-search');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a click on the map finds similar places', T, async () => {
  const page = await openMap();
  const c = await mapCentre(page);
  const s = await searched(page, () => page.mouse.click(c.x, c.y));
  assert.equal(s.status, 'done', s.text);
  const sent = page.searches.at(-1);
  assert.equal(sent.text, undefined);
  assert.equal(sent.positives.length, 1);
  const { lon, lat } = sent.positives[0];
  const bbox = await page.evaluate(async (name) => {
    const fc = await (await fetch('/api/scenes')).json();
    return fc.features.find((f) => f.properties.name === name).properties.bbox;
  }, SCENE);
  assert.ok(bbox[0] <= lon && lon <= bbox[2] && bbox[1] <= lat && lat <= bbox[3], `clicked ${lon},${lat} outside the scene`);
  assertRanked(await results(page));
  assert.match(await page.textContent('#chips'), /similar to the place at/);
  await mapIdle(page);
  await shot(page, 'click-similar');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a drawn polygon, and a box, restrict the search', T, async () => {
  const page = await openMap();
  const c = await mapCentre(page);
  await page.click('#draw-polygon');
  for (const [dx, dy] of [[-220, -120], [120, -230], [230, 60]]) await page.mouse.click(c.x + dx, c.y + dy);
  await page.mouse.dblclick(c.x - 60, c.y + 220);
  const area = await page.evaluate(() => window.nadir.state.area);
  assert.equal(area.kind, 'polygon');
  assert.equal(area.ring.length, 5, 'four vertices, closed');
  await page.fill('#search', 'buildings and cars');
  const s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'done', s.text);
  assert.deepEqual(page.searches.at(-1).geofilter, { geojson: { type: 'Polygon', coordinates: [area.ring] } });
  const list = await results(page);
  assertRanked(list);
  for (const r of list) assert.ok(insidePolygon([r.lon, r.lat], area.ring), `result ${r.id} at ${r.lon},${r.lat} is outside the polygon`);
  const { candidates, total } = await page.evaluate(() => window.nadir.state.response);
  assert.ok(candidates < total && list.length <= candidates, `${candidates} candidates of ${total}`);
  await mapIdle(page);
  await shot(page, 'polygon');

  // A shift-drag box replaces it and re-runs the query.
  const s2 = await searched(page, async () => {
    await page.keyboard.down('Shift');
    await page.mouse.move(c.x - 150, c.y - 150);
    await page.mouse.down();
    await page.mouse.move(c.x, c.y, { steps: 5 });
    await page.mouse.move(c.x + 100, c.y + 120, { steps: 5 });
    await page.mouse.up();
    await page.keyboard.up('Shift');
  });
  assert.equal(s2.status, 'done', s2.text);
  const box = await page.evaluate(() => window.nadir.state.area);
  assert.equal(box.kind, 'box');
  const [w, so, e, n] = box.filter.bbox;
  assert.deepEqual(page.searches.at(-1).geofilter, { bbox: box.filter.bbox });
  for (const r of await results(page)) assert.ok(w <= r.lon && r.lon <= e && so <= r.lat && r.lat <= n, `result ${r.id} outside the box`);
  await mapIdle(page);
  await shot(page, 'box');
  assert.deepEqual(page.errors, []);
  await page.close();
});

/// Switches the page to a new label class (the store keeps every class).
async function freshClass(page) {
  const cls = `web-test-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  await page.fill('#label-class', cls);
  await page.press('#label-class', 'Enter');
  await page.waitForFunction((c) => window.nadir.state.cls === c && document.querySelector('#status').dataset.state !== 'loading', cls);
  return cls;
}

async function stored(page, cls) {
  return page.evaluate(async (c) => {
    const list = await (await fetch(`/api/labels?class=${encodeURIComponent(c)}`)).json();
    return list.labels.map((l) => [l.positive ? 'positive' : 'negative', l.patch_id]);
  }, cls);
}

test('labelling with y / n stores the label, re-runs the refined query, lists the labels, and removing one works', T, async () => {
  const page = await openMap();
  const cls = await freshClass(page);
  await page.fill('#search', 'a river with a bridge');
  await searched(page, () => page.press('#search', 'Enter'));
  await page.locator('#search').blur();
  const first = (await results(page))[0];
  let s = await searched(page, () => page.keyboard.press('y'));
  assert.equal(s.status, 'done', s.text);
  let sent = page.searches.at(-1);
  assert.equal(sent.text, 'a river with a bridge');
  assert.deepEqual(sent.positives, [{ patch: first.id }]);
  assert.deepEqual(await page.$$eval('#labels li', (ns) => ns.map((n) => [n.dataset.kind, n.dataset.patch])), [['positive', first.id]]);
  assert.ok(!(await results(page)).some((r) => r.id === first.id), 'a labelled patch is still listed');

  await page.keyboard.press('j');
  const second = await page.evaluate(() => document.querySelector('#results li.result.selected').dataset.patch);
  s = await searched(page, () => page.keyboard.press('n'));
  assert.equal(s.status, 'done', s.text);
  sent = page.searches.at(-1);
  assert.deepEqual(sent.negatives, [{ patch: second }]);
  assert.deepEqual(await page.$$eval('#labels li', (ns) => ns.map((n) => n.dataset.kind)), ['positive', 'negative']);
  assert.deepEqual(await stored(page, cls), [['positive', first.id], ['negative', second]]);
  await mapIdle(page);
  await shot(page, 'labels');

  // The labels are the store's: a reload lists them again (the class is remembered).
  await page.reload();
  await page.waitForSelector('body.ready');
  assert.equal(await page.inputValue('#label-class'), cls);
  assert.deepEqual(await page.$$eval('#labels li', (ns) => ns.map((n) => [n.dataset.kind, n.dataset.patch])), [['positive', first.id], ['negative', second]]);
  await page.fill('#search', 'a river with a bridge');
  await searched(page, () => page.press('#search', 'Enter'));

  s = await searched(page, () => page.click(`#labels li[data-patch="${first.id}"] button.remove`));
  assert.equal(s.status, 'done', s.text);
  sent = page.searches.at(-1);
  assert.equal(sent.positives, undefined);
  assert.deepEqual(sent.negatives, [{ patch: second }]);
  assert.deepEqual(await page.$$eval('#labels li', (ns) => ns.map((n) => n.dataset.patch)), [second]);
  assert.deepEqual(await stored(page, cls), [['negative', second]]);
  assert.ok(!(await results(page)).some((r) => r.id === second), 'a negative patch is listed');
  assert.deepEqual(page.errors, []);
  await page.close();
});

/// The "Find all" panel's state once its probe report shows `labels` labels and the queue is
/// filled.
async function findAllSettled(page, labels) {
  await page.waitForFunction((m) => {
    const fa = window.nadir.findAll;
    return fa.open && fa.report && fa.report.discovery.length === m && fa.queue.length > 0
      && document.querySelector('#findall-curve').dataset.labels === String(m)
      && document.querySelector('#findall-count').dataset.count !== undefined;
  }, labels);
  return page.evaluate(() => ({
    curve: document.querySelector('#findall-curve-text').textContent,
    labels: Number(document.querySelector('#findall-curve').dataset.labels),
    points: document.querySelector('#findall-curve polyline').getAttribute('points').trim().split(/\s+/).length,
    dots: document.querySelectorAll('#findall-curve circle.pt').length,
    estimate: document.querySelector('#findall-estimate').textContent,
    note: window.nadir.findAll.report.note || null,
    count: Number(document.querySelector('#findall-count').dataset.count),
    queue: [...document.querySelectorAll('#findall-queue li.suggestion')].map((n) => ({ id: n.dataset.patch, p: Number(n.dataset.probability) })),
  }));
}

test('"Find all" queues the probe\'s suggestions, draws the discovery curve, downloads GeoJSON and exports a training set', T, async () => {
  const page = await openMap();
  const cls = await freshClass(page);
  assert.equal(await page.isDisabled('#findall-open'), true, 'Find all without a positive label');
  assert.match(await page.getAttribute('#findall-open', 'title'), /at least one patch .* positive/);
  // Two positives, labelled on a text search's results.
  await page.fill('#search', 'a river with a bridge');
  await searched(page, () => page.press('#search', 'Enter'));
  await page.locator('#search').blur();
  await searched(page, () => page.keyboard.press('y'));
  await searched(page, () => page.keyboard.press('y'));
  assert.equal((await stored(page, cls)).length, 2);
  assert.equal(await page.isDisabled('#findall-open'), false);

  // f opens the panel: a queue of suggestions with thumbnails and probabilities, the curve.
  await page.keyboard.press('f');
  assert.equal(await page.isVisible('#findall'), true);
  let fa = await findAllSettled(page, 2);
  assert.equal(await page.textContent('#findall-class'), cls);
  assert.ok(fa.queue.length > 0 && fa.queue.length <= 10, `${fa.queue.length} suggestions`);
  for (const q of fa.queue) assert.ok(q.p >= 0 && q.p <= 1, `probability ${q.p}`);
  assert.match(await page.textContent('#findall-queue li.suggestion .prob'), /^\d+ %$/);
  await thumbnailsLoaded(page, '#findall-queue img.thumb');
  assert.equal(fa.curve, '2 positives in 2 labels');
  assert.equal(fa.points, 3, 'the curve: the origin and a point per label');
  assert.equal(fa.dots, 2);
  if (fa.note) assert.equal(fa.estimate, fa.note);
  else assert.match(fa.estimate, /^precision .*, recall (\d+ %|unknown) \(spatial CV over \d+ folds\)$/);
  assert.match(await page.textContent('#findall-training'), /^Probe on 2 positives, 0 negatives, \d+ unlabelled patches taken as negatives\.$/);
  const known = new Set((await stored(page, cls)).map((l) => l[1]));
  for (const q of fa.queue) assert.ok(!known.has(q.id), `labelled patch ${q.id} suggested`);

  // A thumbnail shows its patch on the map.
  const first = fa.queue[0];
  await page.click(`#findall-queue li[data-patch="${first.id}"] img.thumb`);
  assert.equal(await page.evaluate(() => window.nadir.findAll.focused), first.id);
  assert.ok(await page.locator(`#findall-queue li.focused[data-patch="${first.id}"]`).isVisible());
  await mapIdle(page);
  const onMap = await page.evaluate((id) => {
    const m = window.nadir.map;
    const f = m.querySourceFeatures('suggestions').find((x) => x.properties.patch_id === id);
    const hit = window.nadir.findAll.queue.find((s) => s.patch.patch_id === id).patch;
    return { drawn: Boolean(f), inView: m.getBounds().contains(hit.centroid), filter: JSON.stringify(m.getFilter('suggestions-focus')) };
  }, first.id);
  assert.ok(onMap.drawn, 'the suggestion is outlined on the map');
  assert.ok(onMap.inView, 'the map shows the clicked suggestion');
  assert.match(onMap.filter, new RegExp(first.id));

  // + on a suggestion stores it (as a suggestion's label), takes it off the queue, retrains.
  await searched(page, () => page.click(`#findall-queue li[data-patch="${first.id}"] button.pos`));
  fa = await findAllSettled(page, 3);
  assert.equal(fa.curve, '3 positives in 3 labels');
  assert.equal(fa.points, 4);
  assert.ok(!fa.queue.some((q) => q.id === first.id), 'a labelled suggestion stays queued');
  const labels = await page.evaluate(async (c) => (await (await fetch(`/api/labels?class=${encodeURIComponent(c)}`)).json()).labels, cls);
  const mine = labels.find((l) => l.patch_id === first.id);
  assert.ok(mine && mine.positive, 'the suggestion is a positive label in the store');
  assert.equal(mine.source, 'suggestion');
  assert.ok(await page.locator(`#labels li[data-patch="${first.id}"][data-kind=positive]`).isVisible());
  // − on the next one.
  const second = fa.queue[0];
  await searched(page, () => page.click(`#findall-queue li[data-patch="${second.id}"] button.neg`));
  fa = await findAllSettled(page, 4);
  assert.equal(fa.curve, '3 positives in 4 labels');
  assert.equal(fa.points, 5);
  assert.deepEqual((await stored(page, cls)).at(-1), ['negative', second.id]);

  // The threshold counts what the probe takes as the class; the GeoJSON is that.
  const at50 = fa.count;
  assert.ok(at50 >= 3, `${at50} patches at 50 %`);
  await page.evaluate(() => {
    const t = document.querySelector('#findall-threshold');
    t.value = '0.95';
    t.dispatchEvent(new Event('input', { bubbles: true }));
  });
  assert.equal(await page.textContent('#findall-threshold-value'), '95 %');
  assert.ok(Number(await page.getAttribute('#findall-count', 'data-count')) <= at50);
  await page.evaluate(() => {
    const t = document.querySelector('#findall-threshold');
    t.value = '0.5';
    t.dispatchEvent(new Event('input', { bubbles: true }));
  });
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#findall-geojson')]);
  assert.equal(download.suggestedFilename(), `${cls}.geojson`);
  const fc = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert.equal(fc.type, 'FeatureCollection');
  assert.ok(fc.features.length >= 3, `${fc.features.length} features`);
  const labelled = fc.features.filter((f) => f.properties.labelled);
  assert.equal(labelled.length, 3, 'every labelled positive is in the GeoJSON');
  assert.ok(labelled.some((f) => f.properties.patch_id === first.id));
  assert.ok(!fc.features.some((f) => f.properties.patch_id === second.id), 'a negative is in the GeoJSON');
  for (const f of fc.features) {
    assert.equal(f.properties.class, cls);
    assert.ok(f.properties.probability >= 0.5, `probability ${f.properties.probability}`);
    assert.equal(f.geometry.type, 'Polygon');
  }
  assert.equal(fc.features.length, at50, 'the count at 50 % is the GeoJSON\'s');
  await page.waitForFunction(() => /^GeoJSON: /.test(document.querySelector('#findall-status').textContent));

  // The training set.
  await page.click('#findall-export');
  await page.waitForFunction(() => /^(Training set: |Training set failed)/.test(document.querySelector('#findall-status').textContent), null, { timeout: 120_000 });
  const status = await page.textContent('#findall-status');
  const m = status.match(/^Training set: (\d+) chips? \((\d+) train, (\d+) val, (\d+) test\) written to (.+)\.$/);
  assert.ok(m, status);
  assert.ok(Number(m[1]) > 0, status);
  assert.equal(Number(m[1]), fc.features.length, 'a chip per patch of the GeoJSON');
  assert.match(m[5], /exports\/web-test-\d+-\d+-p50-\d+$/);
  await page.evaluate(() => document.querySelector('#findall').scrollIntoView({ block: 'start' }));
  await mapIdle(page);
  await shot(page, 'find-all');

  // f closes it; the map forgets the suggestions.
  await page.keyboard.press('f');
  assert.equal(await page.isVisible('#findall'), false);
  await mapIdle(page);
  assert.equal(await page.evaluate(() => window.nadir.map.querySourceFeatures('suggestions').length), 0);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('"Find all" follows the class, and says the server\'s errors', T, async () => {
  const page = await openMap();
  const cls = await freshClass(page);
  await page.fill('#search', 'buildings and cars');
  await searched(page, () => page.press('#search', 'Enter'));
  await page.locator('#search').blur();
  await searched(page, () => page.keyboard.press('y'));
  await page.click('#findall-open');
  await findAllSettled(page, 1);
  assert.equal(await page.textContent('#findall-curve-text'), '1 positive in 1 label');
  // Another class without labels: the panel says what is missing.
  const other = await freshClass(page);
  // The panel follows once the class's labels are loaded (freshClass may return before).
  await page.waitForFunction((c) => document.querySelector('#findall-class').textContent === c, other);
  assert.equal(await page.textContent('#findall-class'), other);
  assert.match(await page.textContent('#findall-estimate'), /Label at least one patch of .* positive/);
  assert.equal(await page.locator('#findall-queue li').count(), 0);
  assert.equal(await page.isDisabled('#findall-open'), true);
  // Back: its labels again.
  await page.fill('#label-class', cls);
  await page.press('#label-class', 'Enter');
  await findAllSettled(page, 1);
  // Errors from the server go to the status lines in its words.
  await page.route('**/api/export', (r) => r.fulfill({ status: 400, contentType: 'application/json', body: '{"error":"exports/x exists already"}' }));
  await page.click('#findall-export');
  await page.waitForFunction(() => document.querySelector('#findall-status').dataset.state === 'error');
  assert.equal(await page.textContent('#findall-status'), 'Training set failed: exports/x exists already');
  assert.match(await page.textContent('#status'), /exports\/x exists already/);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('empty results and errors are said in words', T, async () => {
  const page = await openMap();
  // A click on the dark left of the map, where nothing is indexed.
  const box = await page.locator('#map').boundingBox();
  let s = await searched(page, () => page.mouse.click(box.x + 40, box.y + 400));
  assert.equal(s.status, 'error');
  assert.match(s.text, /^Nothing is indexed at -?[0-9.]+, -?[0-9.]+: click on the imagery\.$/);
  await shot(page, 'nothing-here');
  await page.click('#chips li[data-kind=seed] button');
  // A box there.
  await page.click('#draw-box');
  await page.mouse.move(box.x + 20, box.y + 120);
  await page.mouse.down();
  await page.mouse.move(box.x + 80, box.y + 300, { steps: 5 });
  await page.mouse.up();
  assert.match(await page.textContent('#status'), /Area set/);
  await page.fill('#search', 'a river');
  s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'empty', s.text);
  assert.match(s.text, /No results/);
  await shot(page, 'empty');
  await page.route('**/api/search', (r) => r.fulfill({ status: 500, contentType: 'application/json', body: '{"error":"internal error (logged by the server)"}' }));
  await page.click('#clear-area');
  s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'error');
  assert.match(s.text, /Search failed: internal error \(logged by the server\) \(HTTP 500\)/);
  await shot(page, 'error');
  assert.deepEqual(page.errors, []);
  await page.close();
});

/// Opaque pixels of the session's overlay as the server draws it now.
async function overlayPixels(page) {
  return page.evaluate(async () => {
    const seg = window.nadir.segment;
    const blob = await (await fetch(`/api/segment/sessions/${seg.session.id}/mask.png?t=${Date.now()}`)).blob();
    const bmp = await createImageBitmap(blob);
    const c = new OffscreenCanvas(bmp.width, bmp.height);
    const ctx = c.getContext('2d');
    ctx.drawImage(bmp, 0, 0);
    const d = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
    return n;
  });
}

/// Waits until the session has `inputs` inputs and is idle.
async function segInputs(page, inputs) {
  await page.waitForFunction((n) => {
    const seg = window.nadir.segment;
    return seg && !seg.busy && seg.last && seg.last.inputs === n;
  }, inputs);
}

test('segmenting a scene: clicks change the overlay, undo restores it, accept writes labels', T, async () => {
  const page = await openMap();
  const cls = await freshClass(page);
  await page.click(`button[data-segment="${SCENE}"]`);
  await page.waitForFunction(() => {
    const seg = window.nadir.segment;
    return seg && seg.session && document.querySelector('#segment-status').dataset.state === 'done';
  }, null, { timeout: 120_000 });
  assert.equal(await page.isVisible('#segment-box'), true);
  assert.match(await page.textContent('#segment-classes'), new RegExp(cls));
  assert.equal(await overlayPixels(page), 0, 'no mask before any click');
  await mapIdle(page);
  const box = await page.locator('#map').boundingBox();
  const searchesBefore = await page.evaluate(() => window.nadir.state.searches);
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await segInputs(page, 1);
  const one = await overlayPixels(page);
  assert.ok(one > 0, 'a click draws the class');
  // The map draws it: the mask's polygons are in the map's source.
  await page.waitForFunction(() => {
    const seg = window.nadir.segment;
    return seg.drawn && seg.drawn.version === seg.version && seg.drawn.features > 0;
  });
  await mapIdle(page);
  assert.ok(await page.evaluate(() => window.nadir.map.querySourceFeatures('segment-mask').length) > 0);
  assert.equal(one, (await page.evaluate(() => window.nadir.segment.last.class_pixels[0])));
  assert.equal(await page.evaluate(() => window.nadir.state.searches), searchesBefore, 'a click while segmenting is no search');
  await page.keyboard.down('Shift');
  await page.mouse.click(box.x + box.width * 0.2, box.y + box.height * 0.2);
  await page.keyboard.up('Shift');
  await segInputs(page, 2);
  const two = await overlayPixels(page);
  assert.notEqual(two, one, 'a "not" click changes the mask');
  await mapIdle(page);
  await shot(page, 'segment');
  await page.keyboard.press('z');
  await segInputs(page, 1);
  assert.equal(await overlayPixels(page), one, 'undo restores the one-click mask');
  await page.keyboard.press('Shift+Z');
  await segInputs(page, 2);
  assert.equal(await overlayPixels(page), two, 'redo restores the two-click mask');
  assert.match(await page.textContent('#segment-status'), /updated in \d+ ms/);
  // A brush stroke, then a box.
  await page.keyboard.press('b');
  await page.mouse.move(box.x + box.width * 0.45, box.y + box.height * 0.55);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.55, box.y + box.height * 0.6, { steps: 6 });
  await page.mouse.up();
  await segInputs(page, 3);
  await page.keyboard.press('x');
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.3);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.6, { steps: 4 });
  await page.mouse.up();
  await segInputs(page, 4);
  assert.equal(await page.evaluate(() => window.nadir.segment.tool), 'box');
  await page.keyboard.press('p');
  await page.click('#segment-accept');
  await page.waitForFunction(() => /Accepted|failed/.test(document.querySelector('#segment-status').textContent));
  const status = await page.textContent('#segment-status');
  assert.match(status, /Accepted: \d+ polygons, \d+ patches labelled/);
  const labelled = Number(status.match(/(\d+) patches labelled/)[1]);
  assert.equal((await stored(page, cls)).length, labelled, 'the accepted mask is in the label store');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !window.nadir.segment.session);
  assert.equal(await page.isVisible('#segment-box'), false);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a search result, and a label, open a segmentation session around them', T, async () => {
  const page = await openMap();
  await page.fill('#search', 'a river with a bridge');
  const s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'done', s.text);
  await page.click('#results li.result:first-child button.seg');
  await page.waitForFunction(() => {
    const seg = window.nadir.segment;
    return seg && seg.session && document.querySelector('#segment-status').dataset.state === 'done';
  }, null, { timeout: 120_000 });
  const win = await page.evaluate(() => window.nadir.segment.session.window);
  assert.ok(win[2] > 0 && win[2] < 1500 && win[3] < 1500, `a window around the result, not the whole scene: ${win}`);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !window.nadir.segment.session);
  // And from a label in the list.
  const cls = await freshClass(page);
  await page.locator('#search').blur();
  await searched(page, () => page.keyboard.press('y'));
  assert.deepEqual((await stored(page, cls)).length, 1);
  await page.click('#labels li.label button.seg');
  await page.waitForFunction(() => {
    const seg = window.nadir.segment;
    return seg && seg.session && document.querySelector('#segment-status').dataset.state === 'done';
  }, null, { timeout: 120_000 });
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !window.nadir.segment.session);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an index without georeference gets a gallery', { ...T, skip: GALLERY_URL ? false : 'no UCM images (../shared/data/ucm/images): gallery test skipped' }, async () => {
  const page = await open(GALLERY_URL);
  assert.equal(await page.getAttribute('body', 'data-mode'), 'gallery');
  assert.equal(await page.isVisible('#map'), false);
  const browse = await results(page, '#gallery-items li.result');
  assert.ok(browse.length >= 10, `${browse.length} patches in the gallery`);
  await thumbnailsLoaded(page, '#gallery-items img.thumb');
  await shot(page, 'gallery');

  const cls = await freshClass(page);
  await page.fill('#search', 'an airplane on the tarmac');
  let s = await searched(page, () => page.press('#search', 'Enter'));
  assert.equal(s.status, 'done', s.text);
  const list = await results(page, '#gallery-items li.result');
  assertRanked(list);
  await page.locator('#search').blur();
  s = await searched(page, () => page.keyboard.press('y'));
  assert.equal(s.status, 'done', s.text);
  assert.deepEqual(page.searches.at(-1).positives, [{ patch: list[0].id }]);
  assert.equal(await page.locator('#labels li[data-kind=positive]').count(), 1);
  assert.deepEqual(await stored(page, cls), [['positive', list[0].id]]);
  s = await searched(page, () => page.click('#gallery-items li.result:nth-child(2) button.sim'));
  assert.equal(s.status, 'done', s.text);
  assert.match(await page.textContent('#chips'), /similar to patch/);
  await thumbnailsLoaded(page, '#gallery-items img.thumb');
  await shot(page, 'gallery-search');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('the API reference renders every documented route offline', T, async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const outside = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!['127.0.0.1', 'localhost'].includes(u.hostname) && !u.protocol.startsWith('data')) outside.push(r.url());
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(new URL('/api/docs', MAP_URL).href);
  await page.waitForSelector('.opblock-summary-path', { timeout: 60_000 });
  const shown = await page.$$eval('.opblock-summary-path', (els) => els.map((e) => e.getAttribute('data-path') || e.textContent.trim()));
  const doc = await (await fetch(new URL('/openapi.json', MAP_URL))).json();
  const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map(() => p));
  assert.equal(shown.length, documented.length, `rendered ${shown.length} operations, documented ${documented.length}`);
  for (const p of ['/api/search', '/api/tiles/{z}/{x}/{y}.png', '/api/segment/sessions']) {
    assert.ok(shown.some((s) => s.replace(/\u200b/g, '') === p), `${p} not rendered`);
  }
  assert.deepEqual(outside, [], 'the reference loads nothing from outside the server');
  assert.deepEqual(errors, []);
  await shot(page, 'api-reference');
  await page.close();
});
