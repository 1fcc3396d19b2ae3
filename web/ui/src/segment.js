// The segmentation view: "Segment" on a scene, on a search result or on the map's view opens an
// interactive session on that part of a scene (the server's /api/segment/sessions), its mask
// drawn over the map as an image layer with an opacity slider. Tools: points (a click is the
// active class, shift-click or right-click "not this class"), a brush (drag; shift: "not") and a
// box (drag around a piece of the class); undo / redo / clear; the class list (with colours) is
// the legend. Accept writes the mask's polygons into the label store; the class GeoTIFF and
// GeoJSON can be downloaded.

import { api } from './api.js';

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'];
const hex = (rgb) => `#${rgb.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const rgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

/// The view over `map` (a MapLibre map); `ui` holds the page's helpers: `el`, `$`, `status`
/// (the sidebar's status line) and `onAccepted` (labels changed).
export function createSegmentation(map, ui) {
  const { el, $ } = ui;
  const seg = {
    session: null, // the server's SessionView
    active: 0, // the active class
    version: 0,
    busy: false,
    last: null, // the last UpdateView
    drawn: null, // what the map shows: {version, features}
    tool: 'point', // 'point' | 'brush' | 'box'
    stroke: null, // the brush stroke or box being drawn: {points: [[lon, lat]], negative}
  };
  window.nadir.segment = seg;

  const say = (text, kind = 'done') => {
    const s = $('segment-status');
    s.textContent = text;
    s.dataset.state = kind;
  };

  const colourOf = (c, i) => (c.color ? hex(c.color) : PALETTE[i % PALETTE.length]);

  /// Draws the mask as its class polygons (a fill layer: MapLibre's image sources drew the PNG
  /// overlay's transparent pixels black in headless Chromium).
  async function showMask() {
    if (!seg.session || !seg.session.corners) return;
    const sid = seg.session.id;
    const version = seg.version;
    let fc;
    try {
      fc = await api.segment.polygons(sid);
    } catch (e) {
      say(`Cannot draw the mask: ${e.reason || e.message}`, 'error');
      return;
    }
    // A newer update, or another session, may have come meanwhile.
    if (!seg.session || seg.session.id !== sid || seg.version !== version) return;
    const colours = ['match', ['get', 'class'], ...seg.session.classes.flatMap((c, i) => [i, colourOf(c, i)]), '#ffffff'];
    const src = map.getSource('segment-mask');
    if (src) src.setData(fc);
    else {
      map.addSource('segment-mask', { type: 'geojson', data: fc });
      map.addLayer({
        id: 'segment-mask', type: 'fill', source: 'segment-mask',
        paint: { 'fill-color': colours, 'fill-opacity': Number($('segment-opacity').value) / 100, 'fill-antialias': false },
      });
    }
    map.setPaintProperty('segment-mask', 'fill-color', colours);
    seg.drawn = { version, features: fc.features.length };
  }

  function renderClasses() {
    const list = $('segment-classes');
    list.replaceChildren(
      ...seg.session.classes.map((c, i) =>
        el('li', {},
          el('label', { class: 'seg-class' },
            el('input', { type: 'radio', name: 'seg-class', value: i, checked: i === seg.active, onchange: () => (seg.active = i) }),
            el('span', { class: 'swatch', style: `background:${colourOf(c, i)}` }),
            ` ${c.name}`,
            el('span', { class: 'muted', 'data-pixels': i }, ''),
          ),
        ),
      ),
    );
  }

  function renderUpdate(up) {
    seg.last = up;
    const total = up.class_pixels.reduce((a, b) => a + b, 0) || 1;
    for (const [i, n] of up.class_pixels.slice(0, -1).entries()) {
      const node = document.querySelector(`[data-pixels="${i}"]`);
      if (node) node.textContent = ` ${((100 * n) / total).toFixed(1)} %`;
    }
    say(`${up.inputs} inputs · updated in ${Math.round(up.total_ms)} ms (fit ${Math.round(up.fit_ms)}, predict ${Math.round(up.predict_ms)}, refine ${Math.round(up.refine_ms)})`);
    seg.version += 1;
    showMask();
  }

  async function run(label, work) {
    if (!seg.session || seg.busy) return;
    seg.busy = true;
    document.body.classList.add('seg-busy');
    say(`${label}…`, 'loading');
    try {
      renderUpdate(await work());
    } catch (e) {
      say(`${label} failed: ${e.reason || e.message}`, 'error');
    } finally {
      seg.busy = false;
      document.body.classList.remove('seg-busy');
    }
  }

  const id = () => seg.session.id;
  const input = (lngLat, positive) =>
    run(positive ? 'Adding a point' : 'Adding a "not" point', () =>
      api.segment.input(id(), { kind: 'point', class: seg.active, x: lngLat.lng, y: lngLat.lat, lonlat: true, positive }),
    );

  /// Opens a session on `scene` ({id, name}), on the part inside `bbox` ([w, s, e, n]) if given.
  async function open(scene, bbox) {
    if (seg.session) await close();
    document.body.classList.add('segmenting');
    $('segment-box').hidden = false;
    $('segment-scene').textContent = scene.name;
    const cls = ui.currentClass() || 'object';
    say('Reading the scene and computing its features (a 2048 px scene takes about 10 s)…', 'loading');
    try {
      const body = { scene: scene.id, classes: [{ name: cls, color: rgb(PALETTE[0]) }] };
      if (bbox) body.bbox = bbox;
      seg.session = await api.segment.create(body);
    } catch (e) {
      say(`Cannot segment this scene: ${e.reason || e.message}`, 'error');
      return;
    }
    seg.active = 0;
    seg.version = 0;
    renderClasses();
    $('segment-download-tif').href = `/api/segment/sessions/${id()}/mask.tif`;
    $('segment-download-geojson').href = `/api/segment/sessions/${id()}/mask.geojson`;
    say(`Ready (features in ${(seg.session.features_ms / 1000).toFixed(1)} s): click a ${cls}; shift-click or right-click what is not.`);
    showMask();
  }

  async function close() {
    if (!seg.session) return;
    const sid = id();
    seg.session = null;
    setTool('point');
    if (map.getLayer('segment-mask')) map.removeLayer('segment-mask');
    if (map.getSource('segment-mask')) map.removeSource('segment-mask');
    $('segment-box').hidden = true;
    document.body.classList.remove('segmenting');
    try {
      await api.segment.close(sid);
    } catch {
      // Gone already (expired): nothing to close.
    }
  }

  async function addClass(name) {
    if (!seg.session || !name.trim()) return;
    const color = rgb(PALETTE[seg.session.classes.length % PALETTE.length]);
    try {
      seg.session = await api.segment.addClass(id(), { name: name.trim(), color });
      seg.active = seg.session.classes.length - 1;
      renderClasses();
      showMask();
    } catch (e) {
      say(`Cannot add the class: ${e.reason || e.message}`, 'error');
    }
  }

  async function accept() {
    if (!seg.session) return;
    say('Writing the mask into the label store…', 'loading');
    try {
      const r = await api.segment.accept(id());
      say(`Accepted: ${r.polygons} polygons, ${r.labelled} patches labelled.`);
      ui.onAccepted();
    } catch (e) {
      say(`Accept failed: ${e.reason || e.message}`, 'error');
    }
  }

  // Tools.
  function setTool(tool) {
    seg.tool = tool;
    for (const t of ['point', 'brush', 'box']) $(`segment-tool-${t}`).classList.toggle('active', t === tool);
    if (tool === 'point') map.dragPan.enable();
    else map.dragPan.disable();
    map.getCanvas().style.cursor = tool === 'point' ? '' : 'crosshair';
  }
  const draft = (coords, closed) => {
    const data = coords && coords.length > 1
      ? { type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: closed ? [...coords, coords[0]] : coords } }
      : { type: 'FeatureCollection', features: [] };
    const src = map.getSource('segment-draft');
    if (src) src.setData(data);
    else {
      map.addSource('segment-draft', { type: 'geojson', data });
      map.addLayer({ id: 'segment-draft', type: 'line', source: 'segment-draft', paint: { 'line-color': '#ff922b', 'line-width': 3 } });
    }
  };
  const boxRing = (a, b) => [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
  map.on('mousedown', (e) => {
    if (!seg.session || seg.tool === 'point' || e.originalEvent.button !== 0) return;
    e.preventDefault();
    seg.stroke = { points: [[e.lngLat.lng, e.lngLat.lat]], negative: e.originalEvent.shiftKey };
  });
  map.on('mousemove', (e) => {
    if (!seg.stroke) return;
    const p = [e.lngLat.lng, e.lngLat.lat];
    if (seg.tool === 'brush') {
      seg.stroke.points.push(p);
      draft(seg.stroke.points, false);
    } else {
      seg.stroke.points[1] = p;
      draft(boxRing(seg.stroke.points[0], p), true);
    }
  });
  map.on('mouseup', () => {
    const stroke = seg.stroke;
    seg.stroke = null;
    draft(null);
    if (!stroke || !seg.session) return;
    if (seg.tool === 'brush') {
      run(stroke.negative ? 'Adding a "not" stroke' : 'Adding a stroke', () =>
        api.segment.input(id(), { kind: 'scribble', class: seg.active, points: stroke.points, lonlat: true, positive: !stroke.negative }),
      );
    } else if (stroke.points.length === 2) {
      const [[x0, y0], [x1, y1]] = stroke.points;
      run('Adding a box', () => api.segment.input(id(), { kind: 'box', class: seg.active, x0, y0, x1, y1, lonlat: true }));
    }
  });
  for (const t of ['point', 'brush', 'box']) $(`segment-tool-${t}`).addEventListener('click', () => setTool(t));

  $('segment-opacity').addEventListener('input', (e) => {
    if (map.getLayer('segment-mask')) map.setPaintProperty('segment-mask', 'fill-opacity', Number(e.target.value) / 100);
  });
  $('segment-undo').addEventListener('click', () => run('Undoing', () => api.segment.edit(id(), 'undo')));
  $('segment-redo').addEventListener('click', () => run('Redoing', () => api.segment.edit(id(), 'redo')));
  $('segment-clear').addEventListener('click', () => run('Clearing', () => api.segment.edit(id(), 'clear')));
  $('segment-accept').addEventListener('click', accept);
  $('segment-close').addEventListener('click', close);
  $('segment-class-form').addEventListener('submit', (e) => {
    e.preventDefault();
    addClass($('segment-new-class').value);
    $('segment-new-class').value = '';
  });
  map.on('contextmenu', (e) => {
    if (!seg.session) return;
    e.preventDefault();
    input(e.lngLat, false);
  });

  return {
    open,
    close,
    active: () => Boolean(seg.session),
    /// A click on the map while segmenting: a point (shift: "not this class") with the point tool.
    click(e) {
      if (seg.tool === 'point') input(e.lngLat, !e.originalEvent.shiftKey);
    },
    /// Keys while segmenting: p / b / x the point, brush and box tools, z undo, Z (shift-z) redo,
    /// Esc closes. True when used.
    key(e) {
      if (!seg.session) return false;
      const keys = {
        p: () => setTool('point'),
        b: () => setTool('brush'),
        x: () => setTool('box'),
        z: () => $('segment-undo').click(),
        Z: () => $('segment-redo').click(),
        Escape: () => close(),
      };
      if (!keys[e.key]) return false;
      keys[e.key]();
      return true;
    },
  };
}
