// Nadir's page: one query (text, a clicked place or patch, labels, a drawn area) that every
// action refines and re-runs, shown as a ranked list with thumbnails and on the map, or, for an
// index without georeference, as a gallery. Labels belong to a class and are stored with the
// labels API (`labels.sqlite` beside the index); the class's labels are sent as positive and
// negative examples with every search. When the store cannot be written, they live in the page.
// "Find all" (findall.js) turns a class's labels into an active-learning loop: its probe suggests
// what to label next, and the patches it finds are exported as GeoJSON or a training set.

import 'maplibre-gl/dist/maplibre-gl.css';
import './app.css';
import { api } from './api.js';
import { scoreScale } from './colour.js';
import { createFindAll } from './findall.js';
import { createMapView } from './mapview.js';
import { createSegmentation } from './segment.js';

const $ = (id) => document.getElementById(id);

/// A DOM element: `el('li', {class: 'x', 'data-id': 1}, child, 'text')`; `on*` attributes are
/// listeners.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const state = {
  info: null,
  mode: 'loading', // 'map' | 'gallery'
  text: '',
  seed: null, // {lon, lat} or {patch}: "find similar to"
  cls: 'default', // the label class
  stored: true, // whether labels go to the server's store
  positives: [], // hits (or {patch_id, thumbnail_url} for labels loaded from the store)
  negatives: [],
  area: null, // {kind, ring, filter}
  hits: [],
  response: null,
  browse: [],
  browseTotal: 0,
  cursor: -1, // index into items()
  k: 40,
  status: { kind: 'loading', message: '' },
  searches: 0, // searches answered (for tests and the curious)
};
let view = null; // the map view
let segmentation = null; // the segmentation view (map mode)
let findAll = null; // the "Find all" panel
let searchSeq = 0;
let searchAbort = null;
window.nadir = { state, get view() { return view; } };

const hasQuery = () => Boolean(state.text || state.seed || state.positives.length);
const items = () => (hasQuery() ? state.hits : state.mode === 'gallery' ? state.browse : []);
const selected = () => items()[state.cursor] || null;
const labelOf = (id) =>
  state.positives.some((h) => h.patch_id === id) ? 'positive' : state.negatives.some((h) => h.patch_id === id) ? 'negative' : null;

function setStatus(kind, message) {
  state.status = { kind, message };
  const s = $('status');
  s.dataset.state = kind;
  s.textContent = message;
}

function idleHint() {
  if (state.mode === 'gallery') {
    return state.info.text
      ? 'Type a description, or pick a patch and press s (≈) to find similar ones; label with y / n.'
      : 'Pick a patch and press s (≈) to find similar ones; label with y / n.';
  }
  return state.info.text
    ? 'Type a description, or click the imagery to find similar places. Draw a box or polygon to restrict the search.'
    : 'Click the imagery to find similar places. Draw a box or polygon to restrict the search.';
}

function request() {
  const positives = [...(state.seed ? [state.seed.example] : []), ...state.positives.map((h) => ({ patch: h.patch_id }))];
  const negatives = state.negatives.map((h) => ({ patch: h.patch_id }));
  const body = { k: state.k };
  if (state.text) body.text = state.text;
  if (positives.length) body.positives = positives;
  if (negatives.length) body.negatives = negatives;
  if (state.area) body.geofilter = state.area.filter;
  return body;
}

/// Runs the current query (or clears the results when there is none). `keepCursor` keeps the
/// selection's place in the list (labelling moves on to the next result).
async function runSearch({ keepCursor = false } = {}) {
  const place = state.seed && state.seed.example.lon !== undefined ? [state.seed.example.lon, state.seed.example.lat] : null;
  view?.setSeed(place);
  renderChips();
  renderLabels();
  if (!hasQuery()) {
    searchAbort?.abort();
    state.hits = [];
    state.response = null;
    state.cursor = state.mode === 'gallery' && state.browse.length ? Math.min(Math.max(state.cursor, 0), state.browse.length - 1) : -1;
    setStatus('idle', state.negatives.length ? 'Negative labels alone are no query: add text, click a place, or label a positive.' : idleHint());
    renderResults();
    return;
  }
  const seq = ++searchSeq;
  searchAbort?.abort();
  searchAbort = new AbortController();
  setStatus('loading', 'Searching…');
  document.body.classList.add('busy');
  try {
    const res = await api.search(request(), searchAbort.signal);
    if (seq !== searchSeq) return;
    state.response = res;
    state.hits = res.hits;
    state.cursor = res.hits.length ? (keepCursor ? Math.min(Math.max(state.cursor, 0), res.hits.length - 1) : 0) : -1;
    state.searches += 1;
    if (res.hits.length) {
      const took = res.took_ms < 10 ? res.took_ms.toFixed(1) : Math.round(res.took_ms);
      setStatus(
        'done',
        `${res.hits.length} results, best first (${res.candidates} of ${res.total} patches allowed by the filters; ${res.strategy}, ${took} ms).`,
      );
    } else {
      setStatus(
        'empty',
        res.candidates === 0
          ? 'No results: no indexed patch lies inside the area. Draw a larger one or clear it.'
          : 'No results: every candidate is already labelled. Remove a label or widen the search.',
      );
    }
  } catch (e) {
    if (e.name === 'AbortError' || seq !== searchSeq) return;
    state.hits = [];
    state.response = null;
    state.cursor = -1;
    state.searches += 1;
    const place = state.seed && state.seed.example.lon !== undefined;
    if (place && e.status === 404) setStatus('error', `Nothing is indexed at ${state.seed.label.replace('the place at ', '')}: click on the imagery.`);
    else setStatus('error', `Search failed: ${e.message}`);
  } finally {
    if (seq === searchSeq) document.body.classList.remove('busy');
  }
  renderResults();
  if (!keepCursor) view?.reveal(state.hits);
}

// Query actions.

function searchText(text) {
  state.text = text.trim();
  state.seed = null;
  runSearch();
}

function similarToPlace(lon, lat) {
  state.seed = { example: { lon, lat }, label: `the place at ${lon.toFixed(5)}, ${lat.toFixed(5)}` };
  state.text = '';
  $('search').value = '';
  runSearch();
}

function similarToPatch(hit) {
  if (!hit) return;
  state.seed = { example: { patch: hit.patch_id }, label: `patch ${hit.patch_id.slice(0, 8)}…`, hit };
  state.text = '';
  $('search').value = '';
  runSearch();
}

/// Runs a change of the label store; false (and a message) when it was refused. A store that
/// cannot be written (a server error) turns the page to keeping labels itself.
async function store(change) {
  if (!state.stored) return true;
  try {
    await change();
    return true;
  } catch (e) {
    if (e.status && e.status < 500) {
      setStatus('error', `The label was not stored: ${e.message}`);
      return false;
    }
    state.stored = false;
    $('label-note').hidden = false;
    $('label-note').textContent = `Labels are kept in this page only (the server cannot store them: ${e.message}).`;
    return true;
  }
}

/// Labels `hit` (toggles: the same label again removes it), stores it, re-runs the query;
/// resolves to whether the label changed. `source` and `query` say where it came from (default:
/// a search result and the current search).
async function label(hit, kind, { source = 'search', query = null } = {}) {
  if (!hit) return false;
  const id = hit.patch_id;
  const had = labelOf(id);
  const cls = state.cls;
  const ok =
    had === kind
      ? await store(() => api.removeLabel(cls, id))
      : await store(() => api.addLabel({ patch_id: id, class: cls, positive: kind === 'positive', source, query: query || request() }));
  if (!ok || cls !== state.cls) return false;
  state.positives = state.positives.filter((h) => h.patch_id !== id);
  state.negatives = state.negatives.filter((h) => h.patch_id !== id);
  if (had !== kind) (kind === 'positive' ? state.positives : state.negatives).push(hit);
  findAll?.sync();
  runSearch({ keepCursor: true });
  return true;
}

async function unlabel(id) {
  if (!labelOf(id)) return;
  const cls = state.cls;
  if (!(await store(() => api.removeLabel(cls, id))) || cls !== state.cls) return;
  state.positives = state.positives.filter((h) => h.patch_id !== id);
  state.negatives = state.negatives.filter((h) => h.patch_id !== id);
  findAll?.sync();
  runSearch({ keepCursor: true });
}

/// Loads the labels of the class `cls` from the store and re-runs the query with them.
async function useClass(cls) {
  state.cls = cls;
  try {
    localStorage.setItem('nadir.class', cls);
  } catch {
    // no storage: the class is forgotten on reload
  }
  if (state.stored) {
    try {
      const list = await api.labels(cls);
      if (cls !== state.cls) return;
      const item = (l) => ({ patch_id: l.patch_id, thumbnail_url: `/api/patches/${l.patch_id}/thumbnail.jpg`, scene_name: '' });
      state.positives = list.labels.filter((l) => l.positive).map(item);
      state.negatives = list.labels.filter((l) => !l.positive).map(item);
      $('label-classes').replaceChildren(...list.classes.map((c) => el('option', { value: c.class }, `${c.positives} +, ${c.negatives} −`)));
    } catch (e) {
      state.stored = false;
      $('label-note').hidden = false;
      $('label-note').textContent = `Labels are kept in this page only (the label store cannot be read: ${e.message}).`;
    }
  }
  findAll?.sync();
  await runSearch();
}

function setArea(area) {
  state.area = area;
  view?.setArea(area);
  $('clear-area').disabled = !area;
  if (hasQuery()) runSearch();
  else {
    renderChips();
    setStatus('idle', `Area set. ${idleHint()}`);
  }
}

function clearAll() {
  state.text = '';
  state.seed = null;
  if (!state.stored) {
    state.positives = [];
    state.negatives = [];
  }
  $('search').value = '';
  view?.cancelDraw();
  setArea(null);
  runSearch();
}

function moveCursor(step) {
  const list = items();
  if (!list.length) return;
  state.cursor = state.cursor < 0 ? 0 : Math.min(list.length - 1, Math.max(0, state.cursor + step));
  markSelected(true);
}

// Rendering.

function renderChips() {
  const chips = $('chips');
  chips.replaceChildren();
  const chip = (kind, text, remove) =>
    el('li', { class: `chip ${kind}`, 'data-kind': kind }, el('span', {}, text), el('button', { type: 'button', title: 'Remove', 'aria-label': `Remove ${kind}`, onclick: remove }, '×'));
  if (state.text) chips.append(chip('text', `text: “${state.text}”`, () => { state.text = ''; $('search').value = ''; runSearch(); }));
  if (state.seed) chips.append(chip('seed', `similar to ${state.seed.label}`, () => { state.seed = null; runSearch(); }));
  if (state.area) {
    const what = state.area.kind === 'box' ? 'box' : `polygon (${state.area.ring.length - 1} vertices)`;
    chips.append(chip('area', `inside the drawn ${what}`, () => setArea(null)));
  }
  const n = state.positives.length + state.negatives.length;
  if (n) chips.append(el('li', { class: 'chip labels', 'data-kind': 'labels' }, el('span', {}, `${state.positives.length} positive, ${state.negatives.length} negative labels`)));
  if (!chips.children.length) chips.append(el('li', { class: 'muted' }, 'Nothing yet.'));
}

function renderLabels() {
  const list = $('labels');
  list.replaceChildren();
  const all = [...state.positives.map((h) => [h, 'positive']), ...state.negatives.map((h) => [h, 'negative'])];
  for (const [h, kind] of all) {
    list.append(
      el('li', { class: `label ${kind}`, 'data-patch': h.patch_id, 'data-kind': kind },
        el('span', { class: 'mark', title: kind }, kind === 'positive' ? '+' : '−'),
        el('img', { class: 'thumb small', src: h.thumbnail_url, alt: '', width: 40, height: 40 }),
        el('span', { class: 'id' }, `${h.patch_id.slice(0, 8)}… ${h.scene_name || ''}`),
        segmentation
          ? el('button', { type: 'button', class: 'seg', title: 'Segment around this patch', 'aria-label': `Segment around ${h.patch_id}`, onclick: () => segmentAroundPatch(h.patch_id) }, '✎')
          : null,
        el('button', { type: 'button', class: 'remove', title: 'Remove this label', 'aria-label': `Remove label ${h.patch_id}`, onclick: () => unlabel(h.patch_id) }, '×'),
      ),
    );
  }
  $('labels-empty').hidden = all.length > 0;
  $('label-count').textContent = all.length ? `(${state.positives.length} +, ${state.negatives.length} −)` : '';
  findAll?.updateButton();
}

function resultItem(hit, i, colourOf, scored) {
  const lab = labelOf(hit.patch_id);
  const colour = scored ? colourOf(hit.score) : null;
  const stop = (f) => (e) => {
    e.stopPropagation();
    f();
  };
  const li = el('li', {
    class: `result${lab ? ` labelled ${lab}` : ''}`,
    'data-patch': hit.patch_id,
    'data-rank': i + 1,
    'data-score': scored ? hit.score : undefined,
    'data-lon': hit.centroid ? hit.centroid[0] : undefined,
    'data-lat': hit.centroid ? hit.centroid[1] : undefined,
    onclick: () => {
      state.cursor = i;
      markSelected(true);
    },
  },
    el('img', { class: 'thumb', src: hit.thumbnail_url, alt: `patch ${hit.patch_id}`, width: 96, height: 96, loading: i < 24 ? 'eager' : 'lazy' }),
    el('div', { class: 'meta' },
      el('div', { class: 'score' },
        scored ? el('span', { class: 'swatch', style: `background:${colour}` }) : null,
        scored ? `#${i + 1} · ${hit.score.toFixed(3)}` : `patch ${hit.patch_id.slice(0, 8)}…`,
        lab ? el('span', { class: `badge ${lab}` }, lab === 'positive' ? '+' : '−') : null,
      ),
      el('div', { class: 'scene', title: hit.scene_name }, hit.scene_name),
      hit.labels && hit.labels.length ? el('div', { class: 'tags muted' }, hit.labels.slice(0, 2).join(', ')) : null,
    ),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'pos', title: 'Positive: more like this [y]', 'aria-label': 'Label positive', onclick: stop(() => label(hit, 'positive')) }, '+'),
      el('button', { type: 'button', class: 'neg', title: 'Negative: less like this [n]', 'aria-label': 'Label negative', onclick: stop(() => label(hit, 'negative')) }, '−'),
      el('button', { type: 'button', class: 'sim', title: 'Find similar [s]', 'aria-label': 'Find similar', onclick: stop(() => similarToPatch(hit)) }, '≈'),
      segmentation && hit.footprint
        ? el('button', { type: 'button', class: 'seg', title: 'Segment around this result', 'aria-label': 'Segment around this result', onclick: stop(() => segmentAround(hit)) }, '✎')
        : null,
    ),
  );
  return li;
}

/// The WGS84 box of a GeoJSON polygon.
function bboxOfPolygon(geom) {
  const pts = geom.coordinates[0];
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

/// Opens a segmentation session on a result's scene, three times the patch across.
function segmentAround(hit) {
  const [w, s, e, n] = bboxOfPolygon(hit.footprint);
  const [dx, dy] = [e - w, n - s];
  const bbox = [w - dx, s - dy, e + dx, n + dy];
  view.fitBbox(bbox);
  segmentation.open({ id: hit.scene, name: hit.scene_name }, bbox);
}

/// The same for a labelled patch (labels loaded from the store carry only their id).
async function segmentAroundPatch(id) {
  try {
    segmentAround(await api.patch(id));
  } catch (e) {
    setStatus('error', `Cannot segment around patch ${id}: ${e.reason || e.message}`);
  }
}

/// Opens a segmentation session on the part of the scene under the map's centre that is in view.
async function segmentView() {
  const c = view.map.getCenter();
  let hit;
  try {
    hit = await api.patchAt(c.lng, c.lat);
  } catch (e) {
    setStatus('error', `No scene at the centre of the view to segment: ${e.reason || e.message}`);
    return;
  }
  const b = view.map.getBounds();
  segmentation.open({ id: hit.scene, name: hit.scene_name }, [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]);
}

function renderResults() {
  const scored = hasQuery();
  const list = items();
  const colourOf = scoreScale(state.hits.map((h) => h.score));
  const target = state.mode === 'gallery' ? $('gallery-items') : $('results');
  target.replaceChildren(...list.map((h, i) => resultItem(h, i, colourOf, scored)));
  if (state.mode === 'gallery') {
    $('gallery-more').hidden = scored || state.browse.length >= state.browseTotal;
  } else if (!list.length) {
    target.append(el('li', { class: 'muted empty' }, state.status.kind === 'error' ? 'No results (see the error above).' : 'No results yet.'));
  }
  view?.showResults(state.hits, colourOf, selected()?.patch_id);
  markSelected(false);
}

function markSelected(scroll) {
  const hit = selected();
  for (const node of document.querySelectorAll('li.result.selected')) node.classList.remove('selected');
  if (!hit) return;
  const node = document.querySelector(`li.result[data-patch="${hit.patch_id}"]`);
  if (node) {
    node.classList.add('selected');
    if (scroll) node.scrollIntoView({ block: 'nearest' });
  }
  view?.select(hit.patch_id, scroll);
}

function renderScenes(scenes) {
  const list = $('scenes');
  list.replaceChildren(
    ...scenes.features
      .filter((f) => f.properties.bbox)
      .map((f) =>
        el('li', {},
          el('button', { type: 'button', class: 'scene-link', 'data-scene': f.properties.name, title: 'Show this scene', onclick: () => view.fitBbox(f.properties.bbox) },
            f.properties.name, el('span', { class: 'muted' }, ` ${f.properties.patches} patches`)),
          el('button', {
            type: 'button', class: 'segment-scene', 'data-segment': f.properties.name, title: 'Segment this scene with clicks',
            onclick: () => {
              view.fitBbox(f.properties.bbox);
              segmentation?.open(f.properties, f.properties.bbox);
            },
          }, 'Segment'),
        ),
      ),
  );
}

async function loadBrowse() {
  try {
    const page = await api.patches(state.browse.length, 60);
    state.browse.push(...page.patches);
    state.browseTotal = page.total;
    if (state.cursor < 0 && state.browse.length) state.cursor = 0;
    if (!hasQuery()) renderResults();
  } catch (e) {
    setStatus('error', `Cannot list the patches: ${e.message}`);
  }
}

// Keyboard.

function onKey(e) {
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
  if (typing) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (view && view.drawKey(e.key)) {
    e.preventDefault();
    return;
  }
  if (segmentation && segmentation.key(e)) {
    e.preventDefault();
    return;
  }
  const actions = {
    '/': () => $('search').focus(),
    j: () => moveCursor(1),
    k: () => moveCursor(-1),
    y: () => label(selected(), 'positive'),
    n: () => label(selected(), 'negative'),
    u: () => selected() && unlabel(selected().patch_id),
    s: () => similarToPatch(selected()),
    b: () => view?.startDraw('box'),
    g: () => view && segmentView(),
    p: () => view?.startDraw('polygon'),
    f: () => findAll?.toggle(),
    Escape: () => view?.cancelDraw(),
  };
  const act = actions[e.key];
  if (act) {
    e.preventDefault();
    act();
  }
}

// Start.

async function start() {
  let info;
  try {
    info = await api.info();
  } catch (e) {
    setStatus('error', `Cannot load the index: ${e.message}`);
    return;
  }
  state.info = info;
  state.mode = info.georeferenced ? 'map' : 'gallery';
  document.body.dataset.mode = state.mode;
  $('index-info').textContent = `${info.patches} patches in ${info.scenes} scenes · model ${info.model}`;
  const search = $('search');
  search.disabled = !info.text;
  $('search-go').disabled = !info.text;
  if (!info.text) search.placeholder = 'This index has no text model: click the map or label patches';
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    searchText(search.value);
    search.blur();
  });
  $('k').addEventListener('change', (e) => {
    state.k = Number(e.target.value);
    if (hasQuery()) runSearch();
  });
  $('clear').addEventListener('click', clearAll);
  const classInput = $('label-class');
  let saved = null;
  try {
    saved = localStorage.getItem('nadir.class');
  } catch {
    saved = null;
  }
  classInput.value = saved || 'default';
  state.cls = classInput.value;
  const changeClass = () => {
    const cls = classInput.value.trim() || 'default';
    classInput.value = cls;
    if (cls !== state.cls) useClass(cls);
  };
  $('class-form').addEventListener('submit', (e) => {
    e.preventDefault();
    changeClass();
    classInput.blur();
  });
  classInput.addEventListener('change', changeClass);
  document.addEventListener('keydown', onKey);
  findAll = createFindAll({
    el, $, state, labelOf, label, setStatus,
    view: () => view,
    // A gallery selects a suggestion where it is listed (a map outlines it instead).
    showListed: (id) => {
      const i = state.mode === 'gallery' ? items().findIndex((h) => h.patch_id === id) : -1;
      if (i < 0) return;
      state.cursor = i;
      markSelected(true);
    },
  });

  if (state.mode === 'map') {
    let scenes = { type: 'FeatureCollection', features: [] };
    try {
      scenes = await api.scenes();
    } catch (e) {
      setStatus('error', `Cannot load the scenes: ${e.message}`);
    }
    renderScenes(scenes);
    view = createMapView({
      container: 'map',
      bbox: info.bbox,
      scenes,
      onSimilar: similarToPlace,
      onArea: setArea,
      onHint: (text, mode) => {
        $('draw-hint').textContent = text;
        $('draw-box').classList.toggle('active', mode === 'box');
        $('draw-polygon').classList.toggle('active', mode === 'polygon');
      },
    });
    window.nadir.map = view.map;
    segmentation = createSegmentation(view.map, {
      el,
      $,
      currentClass: () => state.cls,
      onAccepted: () => useClass(state.cls),
    });
    view.setClickHandler(
      (e) => {
        if (!segmentation.active()) return false;
        segmentation.click(e);
        return true;
      },
      () => segmentation.active(),
    );
    view.map.on('dataloading', () => document.body.classList.add('tiles-loading'));
    view.map.on('idle', () => document.body.classList.remove('tiles-loading'));
    view.map.on('error', (e) => console.warn('map:', e.error && e.error.message));
    $('draw-box').addEventListener('click', () => view.startDraw('box'));
    $('draw-polygon').addEventListener('click', () => view.startDraw('polygon'));
    $('clear-area').addEventListener('click', () => setArea(null));
    $('h3-toggle').addEventListener('change', (e) => view.setHeat(e.target.checked));
    $('segment-view').addEventListener('click', segmentView);
    await view.ready;
  } else {
    $('gallery-more').addEventListener('click', loadBrowse);
    await loadBrowse();
  }
  await useClass(state.cls);
  document.body.classList.add('ready');
}

start();
