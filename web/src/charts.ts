/**
 * Small inline-SVG charts for the calls dashboard (no chart library).
 *
 * Every mark carries its data: `data-label`, `data-value` (and `data-series` on grouped bars), so
 * a test (or a curious user's devtools) can read what is drawn. Colours come from CSS classes
 * (`.series-0` …) so the page's stylesheet decides them.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

export interface Datum {
  label: string;
  value: number;
}

export interface Series {
  name: string;
  values: (number | null)[];
}

type Attrs = Record<string, string | number>;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  text?: string,
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function root(width: number, height: number, title: string): SVGSVGElement {
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    class: 'chart',
  });
  chart.append(svg('title', {}, title));
  return chart;
}

/** Horizontal room a legend entry takes (swatch, gap, text at ~6.5 px per character). */
function legendStep(name: string): number {
  return 22 + name.length * 6.5;
}

/** A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least ``max``. */
export function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

/**
 * Horizontal bars, one per datum, largest first; ``format`` writes the value at the bar's end.
 * Empty data gives a chart that says so (no bars).
 */
export function horizontalBars(
  data: Datum[],
  format: (value: number) => string,
  title: string,
): SVGSVGElement {
  const rows = [...data].sort((a, b) => b.value - a.value);
  const labelW = 92;
  const valueW = 96;
  const barW = 240;
  const rowH = 26;
  const width = labelW + barW + valueW;
  const height = Math.max(rows.length, 1) * rowH + 8;
  const chart = root(width, height, title);
  if (rows.length === 0) {
    chart.append(svg('text', { x: 4, y: 20, class: 'empty' }, 'no data yet'));
    return chart;
  }
  const max = Math.max(...rows.map((d) => d.value)) || 1;
  rows.forEach((d, i) => {
    const y = 4 + i * rowH;
    const w = Math.max((d.value / max) * barW, d.value > 0 ? 2 : 0);
    chart.append(
      svg('text', { x: labelW - 8, y: y + 17, 'text-anchor': 'end', class: 'label' }, d.label),
      svg('rect', {
        x: labelW,
        y: y + 4,
        width: w.toFixed(1),
        height: rowH - 8,
        rx: 3,
        class: `bar series-${i % 6}`,
        'data-label': d.label,
        'data-value': d.value,
      }),
      svg('text', { x: labelW + w + 6, y: y + 17, class: 'value' }, format(d.value)),
    );
  });
  return chart;
}

/**
 * Grouped vertical bars: one group per category (e.g. a turn), one bar per series in it, with a
 * y axis in ``unit`` and a legend. Null values draw no bar.
 */
export function groupedBars(
  categories: string[],
  series: Series[],
  unit: string,
  title: string,
): SVGSVGElement {
  const left = 44;
  const top = 26;
  const plotH = 150;
  const bottom = 34;
  const groupW = Math.max(36, series.length * 16 + 14);
  const legendW = series.reduce((w, s) => w + legendStep(s.name), 0);
  const width = Math.max(left + categories.length * groupW + 12, left + legendW, 480);
  const height = top + plotH + bottom;
  const chart = root(width, height, title);
  const values = series.flatMap((s) => s.values).filter((v): v is number => v !== null);
  if (categories.length === 0 || values.length === 0) {
    chart.append(svg('text', { x: 4, y: 20, class: 'empty' }, 'no data yet'));
    return chart;
  }
  const max = niceMax(Math.max(...values));
  const yOf = (v: number) => top + plotH - (v / max) * plotH;
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    const v = tick * max;
    const y = yOf(v);
    chart.append(
      svg('line', { x1: left, x2: width - 8, y1: y, y2: y, class: tick === 0 ? 'axis' : 'grid' }),
      svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, `${+v.toFixed(2)}`),
    );
  }
  chart.append(svg('text', { x: 4, y: 12, class: 'tick' }, unit));
  const barW = (groupW - 14) / series.length;
  categories.forEach((category, c) => {
    const x0 = left + c * groupW + 7;
    series.forEach((s, i) => {
      const v = s.values[c];
      if (v === null || v === undefined) return;
      const y = yOf(v);
      const bar = svg('rect', {
        x: (x0 + i * barW).toFixed(1),
        y: y.toFixed(1),
        width: Math.max(barW - 2, 2).toFixed(1),
        height: Math.max(top + plotH - y, 1).toFixed(1),
        class: `bar series-${i % 6}`,
        'data-label': category,
        'data-series': s.name,
        'data-value': v,
      });
      bar.append(svg('title', {}, `${category} · ${s.name}: ${v.toFixed(3)} ${unit}`));
      chart.append(bar);
    });
    chart.append(
      svg(
        'text',
        { x: x0 + (groupW - 14) / 2, y: top + plotH + 16, 'text-anchor': 'middle', class: 'label' },
        category,
      ),
    );
  });
  let lx = left;
  series.forEach((s, i) => {
    chart.append(
      svg('rect', { x: lx, y: height - 11, width: 10, height: 10, class: `bar series-${i % 6}` }),
      svg('text', { x: lx + 14, y: height - 2, class: 'legend' }, s.name),
    );
    lx += legendStep(s.name);
  });
  return chart;
}
