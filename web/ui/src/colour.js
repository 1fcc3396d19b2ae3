// Score colours: a viridis ramp over the result list's own score range (the best hit is yellow,
// the weakest dark violet), shared by the list swatches, the footprints and the H3 heat layer.

const STOPS = [
  [0.0, [68, 1, 84]],
  [0.25, [59, 82, 139]],
  [0.5, [33, 145, 140]],
  [0.75, [94, 201, 98]],
  [1.0, [253, 231, 37]],
];

/// The ramp colour at t in [0, 1], as #rrggbb.
export function ramp(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  let i = 1;
  while (i < STOPS.length - 1 && STOPS[i][0] < x) i++;
  const [t0, c0] = STOPS[i - 1];
  const [t1, c1] = STOPS[i];
  const f = (x - t0) / (t1 - t0);
  const hex = c0.map((v, k) => Math.round(v + (c1[k] - v) * f).toString(16).padStart(2, '0'));
  return `#${hex.join('')}`;
}

/// A function from score to colour over the scores' range.
export function scoreScale(scores) {
  const finite = scores.filter(Number.isFinite);
  if (finite.length === 0) return () => ramp(1);
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  return (s) => ramp(hi > lo ? (s - lo) / (hi - lo) : 1);
}
