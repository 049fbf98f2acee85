// SVG charts drawn from numbers: a sparkline for a subscription's day and a line chart for the overview.
// Colours come from CSS classes (console.css); every chart has a text summary for screen readers.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function points(values, width, height, max, pad) {
  const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
  return values
    .map((v, i) => `${(pad + i * step).toFixed(1)},${(height - pad - (v / max) * (height - 2 * pad)).toFixed(1)}`)
    .join(' ');
}

/// A small chart of `series` ([{name, values, cls}]) with `label` as its accessible name.
export function sparkline(series, label) {
  const width = 120;
  const height = 28;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'spark' });
  const title = svg('title');
  title.textContent = label;
  root.append(title);
  for (const s of series) {
    root.append(svg('polyline', { points: points(s.values, width, height, max, 2), class: `line ${s.cls}` }));
  }
  root.setAttribute('aria-label', label);
  return root;
}

/// A line chart with a y axis, time labels and a legend. `labels` name the x positions.
export function lineChart({ title, series, labels, unit }) {
  const width = 560;
  const height = 200;
  const left = 44;
  const bottom = 22;
  const pad = 6;
  const plotW = width - left - pad;
  const plotH = height - bottom - pad;
  const max = niceMax(Math.max(1, ...series.flatMap((s) => s.values.filter((v) => v !== null))));
  const figure = document.createElement('figure');
  figure.className = 'chart';
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart-svg' });
  const summary = series.map((s) => `${s.name}: latest ${fmt(last(s.values))}${unit}, peak ${fmt(Math.max(0, ...s.values.filter((v) => v !== null)))}${unit}`).join('; ');
  root.setAttribute('aria-label', `${title}. ${summary}`);
  for (let i = 0; i <= 4; i += 1) {
    const y = pad + plotH - (i / 4) * plotH;
    root.append(svg('line', { x1: left, x2: width - pad, y1: y, y2: y, class: 'grid' }));
    const t = svg('text', { x: left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' });
    t.textContent = fmt((max * i) / 4);
    root.append(t);
  }
  const n = labels.length;
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    if (n === 0) break;
    const x = left + (n > 1 ? (i / (n - 1)) * plotW : 0);
    const t = svg('text', { x, y: height - 6, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle' });
    t.textContent = labels[i];
    root.append(t);
  }
  for (const s of series) {
    const step = n > 1 ? plotW / (n - 1) : 0;
    const pts = s.values
      .map((v, i) => (v === null ? null : `${(left + i * step).toFixed(1)},${(pad + plotH - (v / max) * plotH).toFixed(1)}`))
      .filter((p) => p !== null)
      .join(' ');
    root.append(svg('polyline', { points: pts, class: `line ${s.cls}` }));
    // Dots too: a series with one minute of data has no line to draw.
    s.values.forEach((v, i) => {
      if (v === null || v === 0) return;
      root.append(svg('circle', { cx: (left + i * step).toFixed(1), cy: (pad + plotH - (v / max) * plotH).toFixed(1), r: 2.5, class: `dot ${s.cls}` }));
    });
  }
  const caption = document.createElement('figcaption');
  caption.append(title, ' ');
  for (const s of series) {
    const key = document.createElement('span');
    key.className = `key ${s.cls}`;
    key.textContent = s.name;
    caption.append(key, ' ');
  }
  figure.append(caption, root);
  return figure;
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null) return values[i];
  return 0;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  // Multiples that divide into four even ticks.
  for (const m of [1, 2, 4, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}
