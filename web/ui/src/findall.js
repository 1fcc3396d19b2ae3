// "Find all of these": active learning for a rare target of the current label class. Once the
// class has a positive label in the store, the panel asks the class's probe (the server's
// /api/learn/{class}/suggest in its default "likely" mode: the most probable patches) what to
// label next and queues 10 suggestions;
// + and − store a label the way a search result's buttons do, and the answered one leaves the
// queue (the next batch comes when it empties, or on "More"). After every label the probe is
// retrained (POST /api/learn/{class}): its discovery curve (positives found against labels given)
// is drawn as an inline SVG, and its spatially cross-validated precision and recall are shown.
// A threshold slider counts the patches the probe takes as the class (the labelled positives
// and every unlabelled patch at least that probable); "GeoJSON" downloads them, "Training set"
// exports them as GeoTIFF chips with a STAC catalog into the index folder.

import { api } from './api.js';

const BATCH = 10;
const SVG = 'http://www.w3.org/2000/svg';
/// Most labels whose points are drawn on the curve (beyond, only the line).
const MAX_CURVE_POINTS = 150;

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children) node.append(c);
  return node;
}

const pct = (p) => `${Math.round(p * 100)} %`;
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/// The panel; `ui` holds the page's helpers: `el`, `$`, `state` (the page's state), `labelOf`,
/// `label(hit, kind, options)` (stores a label, resolves to whether it was), `setStatus` (the
/// status line), `view()` (the map view, or null for a gallery) and `showListed(id)` (selects
/// a patch in the gallery when it is listed there).
export function createFindAll(ui) {
  const { el, $, state } = ui;
  const fa = {
    open: false,
    cls: null, // the class the panel shows
    queue: [], // suggestions not yet answered: {probability, patch}
    focused: null, // the patch id whose thumbnail was clicked last
    report: null, // the last LearnReport
    scores: null, // the unlabelled patches' probabilities (for the count), or null
    batches: 0, // suggestion batches received (for tests and the curious)
    refreshes: 0, // learn reports received
    exported: null, // the last ExportReport
  };
  window.nadir.findAll = fa;
  let gen = 0; // bumped when the panel closes or changes class: older answers are dropped
  let loading = false; // a batch is being fetched
  let refreshSeq = 0;
  let scoresRefused = false; // the index is too large for /scores: no live count

  const threshold = () => Number($('findall-threshold').value);

  /// Forgets the answers still to come (the panel closed or changed class).
  function forget() {
    gen += 1;
    loading = false;
    $('findall-more').disabled = false;
    $('findall-queue-box').classList.remove('loading');
  }
  const current = (g, cls) => g === gen && fa.open && cls === fa.cls;

  function say(text, kind = 'done') {
    const s = $('findall-status');
    s.textContent = text;
    s.dataset.state = kind;
  }

  /// An error in the panel's status and the page's status line, in the server's words.
  function fail(what, e) {
    const why = e.reason || e.message;
    say(`${what}: ${why}`, 'error');
    ui.setStatus('error', `Find all: ${what.toLowerCase()}: ${why}`);
  }

  /// Why the panel cannot work for the current class, or null when it can.
  function blocker() {
    if (!state.stored) return 'Find all needs the label store, which cannot be written here.';
    if (!state.positives.length) return `Label at least one patch of “${state.cls}” positive (+ or y) to find all of them.`;
    return null;
  }

  function updateButton() {
    const why = blocker();
    const b = $('findall-open');
    b.disabled = Boolean(why);
    b.title = why || `Find every patch of “${state.cls}”: label what the class's probe suggests, then export [f]`;
    b.classList.toggle('active', fa.open);
  }

  // Rendering.

  function showOnMap() {
    ui.view()?.showSuggestions(fa.open ? fa.queue.map((s) => s.patch) : [], fa.focused);
  }

  function renderQueue() {
    const list = $('findall-queue');
    list.replaceChildren(
      ...fa.queue.map((s) => {
        const h = s.patch;
        const answer = (kind) => (e) => {
          e.stopPropagation();
          answerSuggestion(s, kind, e.currentTarget.closest('li'));
        };
        return el('li', { class: `suggestion${h.patch_id === fa.focused ? ' focused' : ''}`, 'data-patch': h.patch_id, 'data-probability': s.probability },
          el('img', {
            class: 'thumb', src: h.thumbnail_url, alt: `patch ${h.patch_id}`, width: 96, height: 96,
            title: ui.view() ? 'Show it on the map' : `${h.scene_name}: show it in the gallery when listed`,
            onclick: () => focus(h),
          }),
          el('div', { class: 'row' },
            el('span', { class: 'prob', title: 'The probe\'s probability that it shows the class' }, pct(s.probability)),
            el('button', { type: 'button', class: 'pos', title: 'Positive: it shows the class', 'aria-label': `Label ${h.patch_id} positive`, onclick: answer('positive') }, '+'),
            el('button', { type: 'button', class: 'neg', title: 'Negative: it does not', 'aria-label': `Label ${h.patch_id} negative`, onclick: answer('negative') }, '−'),
          ),
        );
      }),
    );
    $('findall-queue-empty').hidden = fa.queue.length > 0 || loading;
    showOnMap();
  }

  /// The discovery curve: positives among the first 1, 2, ... labels, against the diagonal of
  /// "every label a positive".
  function renderCurve(discovery) {
    const svg = $('findall-curve');
    const [W, H, L, R, T, B] = [340, 110, 30, 10, 8, 20];
    const m = discovery.length;
    const n = m ? discovery[m - 1] : 0;
    const xMax = Math.max(m, 1);
    const yMax = Math.max(n, 1);
    const x = (i) => (L + (i / xMax) * (W - L - R)).toFixed(1);
    const y = (v) => (H - B - (v / yMax) * (H - T - B)).toFixed(1);
    const d = Math.min(xMax, yMax);
    const pts = [[0, 0], ...discovery.map((v, i) => [i + 1, v])];
    const kids = [
      svgEl('path', { class: 'axis', d: `M${L},${T} V${H - B} H${W - R}` }),
      svgEl('line', { class: 'ideal', x1: x(0), y1: y(0), x2: x(d), y2: y(d) }, svgEl('title', {}, 'every label a positive')),
      svgEl('polyline', { class: 'curve', points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(' ') }),
    ];
    if (m <= MAX_CURVE_POINTS) {
      discovery.forEach((v, i) => {
        const positive = v > (i ? discovery[i - 1] : 0);
        kids.push(svgEl('circle', { class: `pt ${positive ? 'positive' : 'negative'}`, cx: x(i + 1), cy: y(v), r: 2.6 },
          svgEl('title', {}, `label ${i + 1}: ${positive ? 'positive' : 'negative'} (${v} found)`)));
      });
    }
    const text = (tx, ty, s, anchor = 'start') => svgEl('text', { x: tx, y: ty, 'text-anchor': anchor }, s);
    kids.push(text(L - 4, y(0), '0', 'end'), text(L - 4, Number(y(yMax)) + 8, String(n), 'end'), text(x(xMax), H - 6, String(m), 'end'));
    kids.push(text(L + 4, T + 8, 'positives'), text(Number(x(xMax)) - 18, H - 6, 'labels', 'end'));
    svg.replaceChildren(...kids);
    svg.dataset.labels = m;
    svg.dataset.positives = n;
    const recent = discovery.slice(-10);
    const recentFound = recent.length ? recent[recent.length - 1] - (m > 10 ? discovery[m - 11] : 0) : 0;
    $('findall-curve-text').textContent = `${plural(n, 'positive')} in ${plural(m, 'label')}`;
    $('findall-curve-text').title = m ? `${recentFound} of the last ${recent.length} labels were positive` : '';
  }

  function renderEstimate(r) {
    const cv = r.cross_validation;
    let text;
    if (cv) {
      const p = cv.precision === undefined || cv.precision === null ? 'precision unknown (no negative label held out)' : `precision ${pct(cv.precision)}`;
      const rec = cv.recall === undefined || cv.recall === null ? 'recall unknown' : `recall ${pct(cv.recall)}`;
      text = `${p}, ${rec} (spatial CV over ${cv.folds} folds)`;
    } else {
      text = r.note || 'No cross-validation.';
    }
    const e = $('findall-estimate');
    e.textContent = text;
    e.dataset.cv = cv ? 'yes' : 'no';
    e.title = cv
      ? `${cv.evaluated} held-out labels, grouped by ${cv.grouping} (${cv.groups} groups${cv.folds_skipped ? `, ${cv.folds_skipped} folds skipped` : ''}); threshold ${cv.threshold}`
      : '';
    const weak = r.weak_negatives ? `, ${r.weak_negatives} unlabelled patches taken as negatives` : '';
    $('findall-training').textContent = `Probe on ${plural(r.positives, 'positive')}, ${plural(r.negatives, 'negative')}${weak}.`;
  }

  function renderCount() {
    const t = threshold();
    $('findall-threshold-value').textContent = pct(t);
    const c = $('findall-count');
    if (!fa.report || !fa.scores) {
      c.textContent = scoresRefused ? 'The index is too large to count here; the GeoJSON says how many.' : fa.report ? 'Counting…' : '';
      delete c.dataset.count;
      return;
    }
    let above = 0;
    for (const p of fa.scores) if (p >= t) above += 1;
    const total = fa.report.positives + above;
    c.dataset.count = total;
    c.textContent = `${plural(total, 'patch', 'patches')} at ≥ ${pct(t)}: ${fa.report.positives} labelled, ${above} found by the probe.`;
  }

  function clearPanel(message) {
    fa.queue = [];
    fa.report = null;
    fa.scores = null;
    renderQueue();
    renderCurve([]);
    $('findall-estimate').textContent = message || '';
    $('findall-training').textContent = '';
    renderCount();
    for (const id of ['findall-more', 'findall-geojson', 'findall-export']) $(id).disabled = Boolean(message);
  }

  // Talking to the server.

  /// Retrains the probe: the curve, the estimate and the count.
  async function refresh() {
    const g = gen;
    const cls = fa.cls;
    const seq = ++refreshSeq;
    let report;
    try {
      report = await api.learn.report(cls);
    } catch (e) {
      if (current(g, cls) && seq === refreshSeq) fail('The probe cannot be trained', e);
      return;
    }
    if (!current(g, cls) || seq !== refreshSeq) return;
    fa.report = report;
    fa.scores = null; // the last probe's: counted again below
    fa.refreshes += 1;
    renderCurve(report.discovery);
    renderEstimate(report);
    renderCount();
    if (scoresRefused) return;
    try {
      const scores = await api.learn.scores(cls);
      if (!current(g, cls) || seq !== refreshSeq) return;
      fa.scores = scores.probabilities;
      rescoreQueue(scores);
    } catch (e) {
      if (e.status === 400) scoresRefused = true;
      else console.warn('scores:', e.message);
      fa.scores = null;
    }
    renderCount();
  }

  /// Gives the queued suggestions the retrained probe's probabilities (in place: the queue keeps
  /// its order and its buttons).
  function rescoreQueue(scores) {
    const queued = new Map(fa.queue.map((s) => [s.patch.patch_id, s]));
    scores.patch_ids.forEach((id, i) => {
      const s = queued.get(id);
      if (s) s.probability = scores.probabilities[i];
    });
    for (const li of document.querySelectorAll('#findall-queue li.suggestion')) {
      const s = queued.get(li.dataset.patch);
      if (!s) continue;
      li.dataset.probability = s.probability;
      li.querySelector('.prob').textContent = pct(s.probability);
    }
  }

  /// Fetches suggestions: a batch of 10 when the queue is empty, else 10 more after those queued.
  async function fetchBatch() {
    if (loading) return;
    const g = gen;
    const cls = fa.cls;
    loading = true;
    $('findall-more').disabled = true;
    $('findall-queue-box').classList.add('loading');
    say('Asking the probe what to label next…', 'loading');
    try {
      const n = Math.min(1000, fa.queue.length + BATCH);
      const res = await api.learn.suggest(cls, { n, mode: 'likely' });
      if (!current(g, cls)) return;
      fa.batches += 1;
      const queued = new Set(fa.queue.map((s) => s.patch.patch_id));
      const fresh = res.suggestions.filter((s) => !queued.has(s.patch.patch_id) && !ui.labelOf(s.patch.patch_id)).slice(0, BATCH);
      fa.queue.push(...fresh);
      say(
        fresh.length
          ? `${plural(fresh.length, 'suggestion')} from ${plural(res.candidates, 'unlabelled patch', 'unlabelled patches')} (${Math.round(res.took_ms)} ms).`
          : 'Nothing more to suggest: every patch is labelled or queued.',
      );
    } catch (e) {
      if (current(g, cls)) fail('No suggestions', e);
    } finally {
      if (g === gen) {
        loading = false;
        $('findall-more').disabled = false;
        $('findall-queue-box').classList.remove('loading');
        if (fa.open) renderQueue();
      }
    }
  }

  /// Labels a queued suggestion through the page's label path (the label store); the page then
  /// calls `sync`, which takes it off the queue and retrains.
  async function answerSuggestion(s, kind, node) {
    for (const b of node?.querySelectorAll('button') || []) b.disabled = true;
    const ok = await ui.label(s.patch, kind, {
      source: 'suggestion',
      query: { learn: fa.cls, mode: 'likely', probability: s.probability },
    });
    if (!ok) for (const b of node?.querySelectorAll('button') || []) b.disabled = false;
  }

  /// Highlights a suggestion (on the map: outlines it and flies there).
  function focus(hit) {
    fa.focused = hit.patch_id;
    for (const li of document.querySelectorAll('#findall-queue li')) li.classList.toggle('focused', li.dataset.patch === hit.patch_id);
    ui.view()?.showSuggestions(fa.queue.map((s) => s.patch), fa.focused, true);
    ui.showListed(hit.patch_id);
  }

  /// Brings the panel up to date with the page's labels and class: called after every label
  /// change and class change.
  function sync() {
    updateButton();
    if (!fa.open) return;
    if (fa.cls !== state.cls) {
      forget();
      fa.cls = state.cls;
      fa.focused = null;
      fa.queue = [];
      fa.report = null;
      fa.scores = null;
      say('');
    }
    $('findall-class').textContent = fa.cls;
    const why = blocker();
    if (why) {
      clearPanel(why);
      return;
    }
    for (const id of ['findall-geojson', 'findall-export']) $(id).disabled = false;
    fa.queue = fa.queue.filter((s) => !ui.labelOf(s.patch.patch_id));
    renderQueue();
    refresh();
    if (!fa.queue.length) fetchBatch();
  }

  function open() {
    const why = blocker();
    if (why) {
      ui.setStatus('idle', why);
      return;
    }
    fa.open = true;
    $('findall').hidden = false;
    sync();
    $('findall').scrollIntoView({ block: 'nearest' });
  }

  function close() {
    fa.open = false;
    forget();
    fa.cls = null;
    fa.queue = [];
    fa.focused = null;
    $('findall').hidden = true;
    updateButton();
    showOnMap();
  }

  // Results.

  async function downloadGeojson() {
    const g = gen;
    const cls = fa.cls;
    const t = threshold();
    const button = $('findall-geojson');
    button.disabled = true;
    say(`Collecting the patches at ≥ ${pct(t)}…`, 'loading');
    try {
      const fc = await api.learn.geojson(cls, t);
      if (!current(g, cls)) return;
      const name = `${cls.replace(/[/\\:*?"<>|]+/g, '_')}.geojson`;
      const url = URL.createObjectURL(new Blob([JSON.stringify(fc)], { type: 'application/geo+json' }));
      const a = el('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      const labelled = fc.features.filter((f) => f.properties.labelled).length;
      say(`GeoJSON: ${fc.features.length} patches (${labelled} labelled) at ≥ ${pct(t)}, saved as ${name}.`);
    } catch (e) {
      if (current(g, cls)) fail('GeoJSON failed', e);
    } finally {
      button.disabled = !fa.open;
    }
  }

  async function exportTrainingSet() {
    const g = gen;
    const cls = fa.cls;
    const t = threshold();
    const stem = cls.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'class';
    const name = `${stem}-p${Math.round(t * 100)}-${Date.now()}`;
    const button = $('findall-export');
    button.disabled = true;
    say(`Writing the training set ${name} (the patches at ≥ ${pct(t)})…`, 'loading');
    try {
      const r = await api.exportSet({ name, class: cls, min_probability: t });
      if (!current(g, cls)) return;
      fa.exported = r;
      const [train, val, test] = r.splits;
      say(`Training set: ${plural(r.chips, 'chip')} (${train} train, ${val} val, ${test} test) written to ${r.out_dir}.`);
    } catch (e) {
      if (current(g, cls)) fail('Training set failed', e);
    } finally {
      button.disabled = !fa.open;
    }
  }

  $('findall-open').addEventListener('click', () => (fa.open ? close() : open()));
  $('findall-close').addEventListener('click', close);
  $('findall-more').addEventListener('click', fetchBatch);
  $('findall-threshold').addEventListener('input', renderCount);
  $('findall-geojson').addEventListener('click', downloadGeojson);
  $('findall-export').addEventListener('click', exportTrainingSet);
  renderCurve([]);
  renderCount();

  return {
    sync,
    updateButton,
    toggle: () => (fa.open ? close() : open()),
    close,
  };
}
