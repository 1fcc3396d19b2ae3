// The map: MapLibre GL over a blank background, the imagery as raster tiles the server renders
// from the source rasters, scene outlines (dots when zoomed out), patch footprints when zoomed
// in, results coloured by score, the optional H3 heat layer, the drawn area, and the "Find all"
// panel's suggestions (cyan outlines, the focused one thicker). Drawing is done
// by hand on MapLibre's events: a box (the Box tool, or shift-drag) or a polygon (click the
// vertices, double-click or Enter to close, Backspace to undo a vertex, Esc to cancel).
// Nothing is fetched from outside the server: no basemap, no fonts (so no text layers).

import maplibregl from 'maplibre-gl';
import { api } from './api.js';
import { heatCells, resolutionFor } from './h3heat.js';

const EMPTY = { type: 'FeatureCollection', features: [] };
/// Footprints are loaded from this zoom on.
const FOOTPRINT_ZOOM = 15;
/// Below this zoom scenes show as dots, which fly to the scene when clicked.
const DOT_ZOOM = 12;

function style() {
  return {
    version: 8,
    sources: {
      imagery: {
        type: 'raster',
        tiles: [`${location.origin}/api/tiles/{z}/{x}/{y}.png`],
        tileSize: 256,
        maxzoom: 21,
      },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#1d232b' } },
      { id: 'imagery', type: 'raster', source: 'imagery', paint: { 'raster-fade-duration': 0 } },
    ],
  };
}

function bboxOf(coords) {
  const xs = coords.map((c) => c[0]);
  const ys = coords.map((c) => c[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

function boxRing(a, b) {
  const [w, s, e, n] = [Math.min(a.lng, b.lng), Math.min(a.lat, b.lat), Math.max(a.lng, b.lng), Math.max(a.lat, b.lat)];
  return [[w, s], [e, s], [e, n], [w, n], [w, s]];
}

function polygonFeature(ring) {
  return { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [ring] } };
}

/// Creates the map in `container`. `scenes` is /api/scenes; the callbacks tell the app about
/// a click (find similar), a finished area and drawing hints.
export function createMapView({ container, bbox, scenes, onSimilar, onArea, onHint }) {
  const map = new maplibregl.Map({
    container,
    style: style(),
    bounds: bbox ? [[bbox[0], bbox[1]], [bbox[2], bbox[3]]] : undefined,
    fitBoundsOptions: { padding: 40, maxZoom: 18 },
    center: bbox ? undefined : [0, 0],
    zoom: bbox ? undefined : 1,
    maxZoom: 23,
    boxZoom: false,
    attributionControl: false,
    fadeDuration: 0,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  map.addControl(
    new maplibregl.AttributionControl({ compact: true, customAttribution: 'Imagery: the indexed scenes (see their licences)' }),
    'bottom-right',
  );

  const view = {
    map,
    hits: [],
    colourOf: () => '#fde725',
    heat: false,
    mode: null,
    vertices: [],
    boxStart: null,
    suppressClick: false,
    footprintAbort: null,
    points: [],
  };

  const sceneDots = {
    type: 'FeatureCollection',
    features: scenes.features
      .filter((f) => f.properties.bbox)
      .map((f) => {
        const [w, s, e, n] = f.properties.bbox;
        return { type: 'Feature', properties: f.properties, geometry: { type: 'Point', coordinates: [(w + e) / 2, (s + n) / 2] } };
      }),
  };

  const ready = new Promise((resolve) => map.on('load', resolve));
  map.on('load', () => {
    map.addSource('scenes', { type: 'geojson', data: scenes });
    map.addSource('scene-dots', { type: 'geojson', data: sceneDots });
    map.addSource('footprints', { type: 'geojson', data: EMPTY });
    map.addSource('heat', { type: 'geojson', data: EMPTY });
    map.addSource('results', { type: 'geojson', data: EMPTY });
    map.addSource('result-points', { type: 'geojson', data: EMPTY });
    map.addSource('area', { type: 'geojson', data: EMPTY });
    map.addSource('draft', { type: 'geojson', data: EMPTY });
    map.addSource('seed', { type: 'geojson', data: EMPTY });
    map.addSource('suggestions', { type: 'geojson', data: EMPTY });
    map.addSource('suggestion-points', { type: 'geojson', data: EMPTY });
    map.addLayer({ id: 'scene-outlines', type: 'line', source: 'scenes', paint: { 'line-color': '#f0c419', 'line-width': 1.5, 'line-dasharray': [3, 2] } });
    map.addLayer({ id: 'footprints', type: 'line', source: 'footprints', paint: { 'line-color': '#ffffff', 'line-opacity': 0.25, 'line-width': 0.6 } });
    map.addLayer({ id: 'heat', type: 'fill', source: 'heat', layout: { visibility: 'none' }, paint: { 'fill-color': ['get', 'color'], 'fill-opacity': 0.55, 'fill-outline-color': '#000000' } });
    map.addLayer({ id: 'results-fill', type: 'fill', source: 'results', paint: { 'fill-color': ['get', 'color'], 'fill-opacity': 0.3 } });
    map.addLayer({ id: 'results-line', type: 'line', source: 'results', paint: { 'line-color': ['get', 'color'], 'line-width': 2 } });
    map.addLayer({ id: 'results-selected', type: 'line', source: 'results', filter: ['==', ['get', 'patch_id'], ''], paint: { 'line-color': '#ffffff', 'line-width': 3.5 } });
    map.addLayer({ id: 'suggestions-line', type: 'line', source: 'suggestions', paint: { 'line-color': '#22b8cf', 'line-width': 2, 'line-dasharray': [2, 1] } });
    map.addLayer({ id: 'suggestions-focus', type: 'line', source: 'suggestions', filter: ['==', ['get', 'patch_id'], ''], paint: { 'line-color': '#22b8cf', 'line-width': 4.5 } });
    map.addLayer({
      id: 'suggestion-points', type: 'circle', source: 'suggestion-points', maxzoom: 16,
      paint: { 'circle-radius': ['case', ['get', 'focus'], 7, 4.5], 'circle-color': '#22b8cf', 'circle-stroke-color': ['case', ['get', 'focus'], '#ffffff', '#111111'], 'circle-stroke-width': 1.2 },
    });
    map.addLayer({ id: 'area-fill', type: 'fill', source: 'area', paint: { 'fill-color': '#4dabf7', 'fill-opacity': 0.08 } });
    map.addLayer({ id: 'area-line', type: 'line', source: 'area', paint: { 'line-color': '#4dabf7', 'line-width': 2.5 } });
    map.addLayer({ id: 'draft-line', type: 'line', source: 'draft', filter: ['!=', ['geometry-type'], 'Point'], paint: { 'line-color': '#ff922b', 'line-width': 2, 'line-dasharray': [2, 1] } });
    map.addLayer({ id: 'draft-points', type: 'circle', source: 'draft', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 4, 'circle-color': '#ff922b', 'circle-stroke-color': '#000', 'circle-stroke-width': 1 } });
    map.addLayer({
      id: 'result-points', type: 'circle', source: 'result-points', maxzoom: 16,
      paint: { 'circle-radius': ['case', ['get', 'selected'], 7, 4.5], 'circle-color': ['get', 'color'], 'circle-stroke-color': ['case', ['get', 'selected'], '#ffffff', '#111111'], 'circle-stroke-width': 1.2 },
    });
    map.addLayer({ id: 'seed', type: 'circle', source: 'seed', paint: { 'circle-radius': 6, 'circle-color': '#ff922b', 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 } });
    map.addLayer({ id: 'scene-dots', type: 'circle', source: 'scene-dots', maxzoom: DOT_ZOOM, paint: { 'circle-radius': 7, 'circle-color': '#f0c419', 'circle-stroke-color': '#000', 'circle-stroke-width': 1.5 } });
    loadFootprints();
  });

  const set = (id, data) => ready.then(() => map.getSource(id).setData(data));

  async function loadFootprints() {
    view.footprintAbort?.abort();
    if (map.getZoom() < FOOTPRINT_ZOOM) {
      set('footprints', EMPTY);
      return;
    }
    const b = map.getBounds();
    const ctrl = new AbortController();
    view.footprintAbort = ctrl;
    try {
      const fc = await api.footprints([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], 3000, ctrl.signal);
      set('footprints', fc);
    } catch (e) {
      if (e.name !== 'AbortError') console.warn('footprints:', e.message);
    }
  }
  map.on('moveend', loadFootprints);

  function refreshHeat() {
    if (!view.heat) return;
    const c = map.getCenter();
    const res = resolutionFor(map.getZoom(), c.lat);
    set('heat', heatCells(view.hits, res, view.colourOf));
  }
  map.on('zoomend', refreshHeat);

  // Drawing.
  function setMode(mode) {
    view.mode = mode;
    view.vertices = [];
    view.boxStart = null;
    set('draft', EMPTY);
    map.getCanvas().style.cursor = mode ? 'crosshair' : '';
    if (mode === 'polygon') map.doubleClickZoom.disable();
    else setTimeout(() => map.doubleClickZoom.enable(), 0);
    onHint(
      mode === 'box'
        ? 'Drag a rectangle on the map (Esc cancels).'
        : mode === 'polygon'
          ? 'Click the vertices; double-click or Enter closes, Backspace undoes, Esc cancels.'
          : '',
      mode,
    );
  }

  function showDraft(cursor) {
    const pts = cursor ? [...view.vertices, cursor] : view.vertices;
    const features = view.vertices.map((v) => ({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: v } }));
    if (pts.length >= 2) features.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: pts.length >= 3 ? [...pts, pts[0]] : pts } });
    set('draft', { type: 'FeatureCollection', features });
  }

  function finishPolygon() {
    // A double-click adds its two clicks as vertices: drop vertices on top of the previous one.
    const pts = [];
    for (const v of view.vertices) {
      const p = map.project(v);
      const last = pts.length ? map.project(pts[pts.length - 1]) : null;
      if (!last || Math.hypot(p.x - last.x, p.y - last.y) > 4) pts.push(v);
    }
    if (pts.length < 3) {
      onHint('A polygon needs at least three vertices: keep clicking.', 'polygon');
      view.vertices = pts;
      showDraft();
      return;
    }
    const ring = [...pts, pts[0]];
    setMode(null);
    onArea({ kind: 'polygon', ring, filter: { geojson: { type: 'Polygon', coordinates: [ring] } } });
  }

  map.on('mousedown', (e) => {
    // While another tool owns the clicks (segmentation), shift-click is its own, not a box.
    if (view.claims && view.claims()) return;
    if (view.mode === 'box' || (e.originalEvent.shiftKey && view.mode !== 'polygon')) {
      e.preventDefault();
      if (view.mode !== 'box') setMode('box');
      view.boxStart = e.lngLat;
      view.boxStartPoint = e.point;
    }
  });
  map.on('mousemove', (e) => {
    if (view.mode === 'box' && view.boxStart) set('draft', { type: 'FeatureCollection', features: [polygonFeature(boxRing(view.boxStart, e.lngLat))] });
    else if (view.mode === 'polygon' && view.vertices.length) showDraft([e.lngLat.lng, e.lngLat.lat]);
  });
  map.on('mouseup', (e) => {
    if (view.mode !== 'box' || !view.boxStart) return;
    const moved = Math.hypot(e.point.x - view.boxStartPoint.x, e.point.y - view.boxStartPoint.y);
    const ring = boxRing(view.boxStart, e.lngLat);
    view.suppressClick = true;
    setTimeout(() => (view.suppressClick = false), 50);
    if (moved < 5) {
      view.boxStart = null;
      return;
    }
    setMode(null);
    onArea({ kind: 'box', ring, filter: { bbox: bboxOf(ring) } });
  });
  map.on('click', (e) => {
    if (view.suppressClick) return;
    if (view.mode === 'polygon') {
      view.vertices.push([e.lngLat.lng, e.lngLat.lat]);
      showDraft();
      return;
    }
    if (view.mode) return;
    if (view.clickHandler && view.clickHandler(e)) return;
    const dots = map.getLayer('scene-dots') ? map.queryRenderedFeatures(e.point, { layers: ['scene-dots'] }) : [];
    if (dots.length && map.getZoom() < DOT_ZOOM) {
      fitBbox(dots[0].properties.bbox);
      return;
    }
    onSimilar(e.lngLat.lng, e.lngLat.lat);
  });
  map.on('dblclick', (e) => {
    if (view.mode === 'polygon') {
      e.preventDefault();
      finishPolygon();
    }
  });

  /// Eases to a hit's centroid unless it is already in view, zoomed in.
  function flyTo(hit) {
    if (!hit || !hit.centroid) return;
    const b = map.getBounds();
    const [lon, lat] = hit.centroid;
    const inView = b.getWest() < lon && lon < b.getEast() && b.getSouth() < lat && lat < b.getNorth();
    if (!inView || map.getZoom() < 16) map.easeTo({ center: hit.centroid, zoom: Math.max(map.getZoom(), 18), duration: 300 });
  }

  function fitBbox(b) {
    const bb = typeof b === 'string' ? JSON.parse(b) : b;
    map.fitBounds([[bb[0], bb[1]], [bb[2], bb[3]]], { padding: 30, maxZoom: 19, duration: 0 });
  }

  return {
    map,
    ready,
    fitBbox,
    drawing: () => view.mode,
    /// Clicks go to `handler` first; when it returns true, nothing else happens (no "similar").
    /// While `claims()` is true, shift-drag draws no box.
    setClickHandler(handler, claims) {
      view.clickHandler = handler;
      view.claims = claims;
    },
    startDraw: (mode) => setMode(view.mode === mode ? null : mode),
    cancelDraw: () => setMode(null),
    /// Polygon keys: Enter closes, Backspace removes the last vertex.
    drawKey(key) {
      if (view.mode !== 'polygon') return false;
      if (key === 'Enter') finishPolygon();
      else if (key === 'Backspace') {
        view.vertices.pop();
        showDraft();
      } else return false;
      return true;
    },
    /// Marks the clicked place of a "find similar" query (null: none).
    setSeed(lonlat) {
      set('seed', lonlat ? { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: lonlat } }] } : EMPTY);
    },
    setArea(area) {
      set('area', area ? { type: 'FeatureCollection', features: [polygonFeature(area.ring)] } : EMPTY);
    },
    showResults(hits, colourOf, selectedId) {
      view.hits = hits;
      view.colourOf = colourOf;
      const withFp = hits.filter((h) => h.footprint);
      set('results', {
        type: 'FeatureCollection',
        features: withFp.map((h, i) => ({ type: 'Feature', properties: { patch_id: h.patch_id, rank: i + 1, color: colourOf(h.score) }, geometry: h.footprint })),
      });
      view.points = hits
        .filter((h) => h.centroid)
        .map((h) => ({ type: 'Feature', properties: { patch_id: h.patch_id, color: colourOf(h.score), selected: false }, geometry: { type: 'Point', coordinates: h.centroid } }));
      this.select(selectedId);
      if (view.heat) refreshHeat();
      else set('heat', EMPTY);
    },
    select(patchId, fly = false) {
      ready.then(() => map.setFilter('results-selected', ['==', ['get', 'patch_id'], patchId || '']));
      for (const f of view.points) f.properties.selected = f.properties.patch_id === patchId;
      set('result-points', { type: 'FeatureCollection', features: view.points });
      if (fly) flyTo(view.hits.find((h) => h.patch_id === patchId));
    },
    /// The "Find all" queue: its patches outlined (dots when zoomed out); `focusId` drawn thicker
    /// and, with `fly`, flown to. An empty list clears them.
    showSuggestions(hits, focusId = null, fly = false) {
      const focused = hits.find((h) => h.patch_id === focusId) || null;
      set('suggestions', {
        type: 'FeatureCollection',
        features: hits.filter((h) => h.footprint).map((h) => ({ type: 'Feature', properties: { patch_id: h.patch_id }, geometry: h.footprint })),
      });
      set('suggestion-points', {
        type: 'FeatureCollection',
        features: hits
          .filter((h) => h.centroid)
          .map((h) => ({ type: 'Feature', properties: { patch_id: h.patch_id, focus: h === focused }, geometry: { type: 'Point', coordinates: h.centroid } })),
      });
      ready.then(() => map.setFilter('suggestions-focus', ['==', ['get', 'patch_id'], focused ? focused.patch_id : '']));
      if (fly) flyTo(focused);
    },
    /// Moves to the best hit when no hit is in view.
    reveal(hits) {
      const b = map.getBounds();
      const placed = hits.filter((h) => h.centroid);
      const seen = placed.some((h) => b.contains(h.centroid));
      if (placed.length && !seen) map.easeTo({ center: placed[0].centroid, zoom: Math.max(map.getZoom(), 17), duration: 300 });
    },
    setHeat(on) {
      view.heat = on;
      ready.then(() => map.setLayoutProperty('heat', 'visibility', on ? 'visible' : 'none'));
      if (on) refreshHeat();
    },
  };
}
