// The server's JSON API: every call resolves to the parsed body or throws an Error whose message
// is the server's own explanation (the service answers `{"error": "..."}` on 4xx and 5xx).

async function call(path, options = {}) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new Error(`the server cannot be reached (${e.message})`);
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const why = body && body.error ? body.error : text || res.statusText;
    const err = new Error(`${why} (HTTP ${res.status})`);
    err.status = res.status;
    err.reason = why;
    throw err;
  }
  return body;
}

const post = (path, body) =>
  call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export const api = {
  info: () => call('/api/info'),
  scenes: () => call('/api/scenes'),
  footprints: (bbox, limit, signal) =>
    call(`/api/footprints?bbox=${bbox.map((v) => v.toFixed(7)).join(',')}&limit=${limit}`, { signal }),
  patches: (offset, limit) => call(`/api/patches?offset=${offset}&limit=${limit}`),
  patch: (id) => call(`/api/patches/${id}`),
  patchAt: (lon, lat) => call(`/api/patch_at?lon=${lon}&lat=${lat}`),
  /// The label store (the labels API): a class's labels, adding, removing.
  labels: (cls) => call(`/api/labels?class=${encodeURIComponent(cls)}`),
  addLabel: (label) =>
    call('/api/labels', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(label) }),
  removeLabel: (cls, id) => call(`/api/labels/${encodeURIComponent(cls)}/${id}`, { method: 'DELETE' }),
  /// Active learning on a class's stored labels: the probe's report (cross-validation, the
  /// discovery curve), what to label next, every unlabelled patch's probability, the labelled
  /// and probable patches as GeoJSON.
  learn: {
    report: (cls) => call(`/api/learn/${encodeURIComponent(cls)}`, { method: 'POST' }),
    suggest: (cls, body) => post(`/api/learn/${encodeURIComponent(cls)}/suggest`, body),
    scores: (cls) => post(`/api/learn/${encodeURIComponent(cls)}/scores`, {}),
    geojson: (cls, minProbability) => post(`/api/learn/${encodeURIComponent(cls)}/geojson`, { min_probability: minProbability }),
  },
  /// A training set written into exports/{name} of the index folder.
  exportSet: (body) => post('/api/export', body),
  /// Interactive segmentation sessions.
  segment: {
    create: (body) => call('/api/segment/sessions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    addClass: (id, c) =>
      call(`/api/segment/sessions/${id}/classes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(c) }),
    input: (id, i) =>
      call(`/api/segment/sessions/${id}/inputs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(i) }),
    polygons: (id) => call(`/api/segment/sessions/${id}/mask.geojson`),
    edit: (id, what) => call(`/api/segment/sessions/${id}/${what}`, { method: 'POST' }),
    accept: (id) => call(`/api/segment/sessions/${id}/accept`, { method: 'POST' }),
    close: (id) => call(`/api/segment/sessions/${id}`, { method: 'DELETE' }),
  },
  search: (request, signal) =>
    call('/api/search', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
      signal,
    }),
};
