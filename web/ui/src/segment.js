// The segmentation view: "Segment" on a scene opens an interactive session on it (the server's
// /api/segment/sessions), its mask drawn over the map as an image layer with an opacity slider.
// A click on the imagery is a point of the active class, shift-click or right-click a "not this
// class" point; undo / redo / clear; the class list (with colours) is the legend. Accept writes
// the mask's polygons into the label store; the class GeoTIFF and GeoJSON can be downloaded.

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
    opaque: null, // for tests: opaque pixels of the overlay
  };
  window.nadir.segment = seg;

  const say = (text, kind = 'done') => {
    const s = $('segment-status');
    s.textContent = text;
    s.dataset.state = kind;
  };

  function maskUrl() {
    return `/api/segment/sessions/${seg.session.id}/mask.png?v=${seg.version}`;
  }

  function showMask() {
    const coordinates = seg.session.corners;
    if (!coordinates) return;
    const src = map.getSource('segment-mask');
    if (src) src.updateImage({ url: maskUrl(), coordinates });
    else {
      map.addSource('segment-mask', { type: 'image', url: maskUrl(), coordinates });
      map.addLayer({
        id: 'segment-mask', type: 'raster', source: 'segment-mask',
        paint: { 'raster-opacity': Number($('segment-opacity').value) / 100, 'raster-fade-duration': 0, 'raster-resampling': 'nearest' },
      });
    }
  }

  function renderClasses() {
    const list = $('segment-classes');
    list.replaceChildren(
      ...seg.session.classes.map((c, i) =>
        el('li', {},
          el('label', { class: 'seg-class' },
            el('input', { type: 'radio', name: 'seg-class', value: i, checked: i === seg.active, onchange: () => (seg.active = i) }),
            el('span', { class: 'swatch', style: `background:${c.color ? hex(c.color) : PALETTE[i % PALETTE.length]}` }),
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

  async function open(scene) {
    if (seg.session) await close();
    document.body.classList.add('segmenting');
    $('segment-box').hidden = false;
    $('segment-scene').textContent = scene.name;
    const cls = ui.currentClass() || 'object';
    say('Reading the scene and computing its features (a 2048 px scene takes about 10 s)…', 'loading');
    try {
      seg.session = await api.segment.create({ scene: scene.id, classes: [{ name: cls, color: rgb(PALETTE[0]) }] });
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

  $('segment-opacity').addEventListener('input', (e) => {
    if (map.getLayer('segment-mask')) map.setPaintProperty('segment-mask', 'raster-opacity', Number(e.target.value) / 100);
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
    /// A click on the map while segmenting: a point (shift: "not this class").
    click(e) {
      input(e.lngLat, !e.originalEvent.shiftKey);
    },
    /// Keys while segmenting: z undo, Z (shift-z) redo, Esc closes. True when used.
    key(e) {
      if (!seg.session) return false;
      if (e.key === 'z') $('segment-undo').click();
      else if (e.key === 'Z') $('segment-redo').click();
      else if (e.key === 'Escape') close();
      else return false;
      return true;
    },
  };
}
