// The H3 heat layer: results binned into hexagons (the cell of each centroid, as the indexer
// computes it) at a resolution that suits the zoom, each cell coloured by its best score.

import { latLngToCell, cellToBoundary, getHexagonEdgeLengthAvg, UNITS } from 'h3-js';

/// Target hexagon edge on screen, in pixels.
const EDGE_PX = 18;

/// The H3 resolution whose average edge is closest to EDGE_PX pixels at this zoom and latitude.
export function resolutionFor(zoom, lat) {
  const metresPerPixel = (156543.03392 * Math.cos((lat * Math.PI) / 180)) / 2 ** zoom;
  const want = EDGE_PX * metresPerPixel;
  let best = 0;
  let bestGap = Infinity;
  for (let r = 0; r <= 15; r++) {
    const gap = Math.abs(Math.log(getHexagonEdgeLengthAvg(r, UNITS.m) / want));
    if (gap < bestGap) {
      best = r;
      bestGap = gap;
    }
  }
  return best;
}

/// A GeoJSON FeatureCollection of hexagons with `score`, `count` and `color` properties.
export function heatCells(hits, res, colourOf) {
  const cells = new Map();
  for (const h of hits) {
    if (!h.centroid || !Number.isFinite(h.score)) continue;
    const cell = latLngToCell(h.centroid[1], h.centroid[0], res);
    const c = cells.get(cell) || { score: -Infinity, count: 0 };
    c.score = Math.max(c.score, h.score);
    c.count += 1;
    cells.set(cell, c);
  }
  const features = [...cells].map(([cell, c]) => {
    const ring = cellToBoundary(cell, true);
    return {
      type: 'Feature',
      properties: { cell, score: c.score, count: c.count, color: colourOf(c.score) },
      geometry: { type: 'Polygon', coordinates: [ring] },
    };
  });
  return { type: 'FeatureCollection', features };
}
