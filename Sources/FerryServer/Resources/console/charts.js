// Time-series charts of the broker, drawn as inline SVG (the page loads nothing from elsewhere):
// publish and delivery rates from two samples of the totals in /v1/admin/stats, and each
// topic's lag from /v1/admin/topics, over a rolling window that ends now.
import { $, compact, element } from "/console/common.js";

const SVG_NS = "http://www.w3.org/2000/svg";
export const WINDOW_MS = 5 * 60 * 1000;
/** The narrowest time axis: until the window has filled, the charts span the time since the first sample. */
const MIN_SPAN_MS = 60 * 1000;
const WIDTH = 360;
const HEIGHT = 140;
const PLOT = { left: 44, right: 10, top: 8, bottom: 20 };
const COLOURS = ["#1f6feb", "#c9372c", "#1a7f37", "#9a6700", "#8250df"];
/** Topics the lag chart draws: those with the most lag in the window. */
const LAG_LINES = COLOURS.length;

/** Samples of one value over the last WINDOW_MS, oldest first. */
export class Series {
  points = [];

  add(at, value) {
    this.points.push({ at, value });
    this.forget(at);
  }

  /** Drops the samples that have left the window by `now`. */
  forget(now) {
    while (this.points.length && this.points[0].at < now - WINDOW_MS) this.points.shift();
  }

  get latest() { return this.points.at(-1)?.value ?? null; }
  get max() { return this.points.reduce((max, point) => Math.max(max, point.value), 0); }
}

/** The smallest 1, 2 or 5 × 10^k that is at least `value`, and at least 1. */
function roundUp(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((bound) => bound >= value);
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** "−5 min", "−90 s": how long before now. */
function ago(ms) {
  const seconds = Math.round(ms / 1000);
  return seconds >= 120 ? `−${Number((seconds / 60).toFixed(1))} min` : `−${seconds} s`;
}

/**
 * Draws `lines` ([{series, colour}]) into the <svg> `chart` over the `span` ms ending at `now`:
 * a y axis from 0 to a round number above the highest sample, a time axis, and a dot at each
 * line's latest sample. `data-points` and `data-max` say what it shows, for tests and tools.
 */
function drawChart(chart, lines, now, span) {
  const top = roundUp(Math.max(0, ...lines.map((line) => line.series.max)));
  const width = WIDTH - PLOT.left - PLOT.right;
  const height = HEIGHT - PLOT.top - PLOT.bottom;
  const x = (at) => (PLOT.left + width * (1 - (now - at) / span)).toFixed(1);
  const y = (value) => (PLOT.top + height * (1 - value / top)).toFixed(1);
  const nodes = [];
  for (const value of [0, top / 2, top]) {
    nodes.push(
      svg("line", { x1: PLOT.left, x2: WIDTH - PLOT.right, y1: y(value), y2: y(value), class: "grid" }),
      svg("text", { x: PLOT.left - 4, y: Number(y(value)) + 4, "text-anchor": "end", class: "axis" }, compact(value)));
  }
  for (const [label, fraction, anchor] of [[ago(span), 0, "start"], [ago(span / 2), 0.5, "middle"], ["now", 1, "end"]]) {
    nodes.push(svg("text", { x: PLOT.left + width * fraction, y: HEIGHT - 5, "text-anchor": anchor, class: "axis" }, label));
  }
  let points = 0;
  for (const { series, colour } of lines) {
    points += series.points.length;
    const coordinates = series.points.map((point) => `${x(point.at)},${y(point.value)}`).join(" ");
    nodes.push(svg("polyline", { points: coordinates, stroke: colour, class: "line" }));
    const last = series.points.at(-1);
    if (last) nodes.push(svg("circle", { cx: x(last.at), cy: y(last.value), r: 2.5, fill: colour }));
  }
  chart.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  chart.dataset.points = points;
  chart.dataset.max = top;
  chart.replaceChildren(...nodes);
}

/** A legend entry: the line's colour, its name and its latest value. */
function legendItem(colour, text) {
  const item = element("li", text);
  const swatch = element("span", undefined, "swatch");
  // A style property set from script, which the page's Content-Security-Policy allows.
  swatch.style.background = colour;
  item.prepend(swatch);
  return item;
}

// The broker's series, sampled at every refresh of the dashboard.
const published = new Series();
const delivered = new Series();
/** Lag per topic, kept for topics that had some in the window. */
const lagByTopic = new Map();
let previousTotals = null;
/** When the first sample was taken. */
let firstSampleAt = null;

/** Publish and delivery rates between the previous sample of the totals and this one. */
export function sampleStats(stats, now) {
  firstSampleAt ??= now;
  const previous = previousTotals;
  previousTotals = { published: stats.published, delivered: stats.delivered, at: now };
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  // Totals count from the broker's start: a smaller one means it restarted, so no rate across it.
  if (seconds <= 0 || stats.published < previous.published || stats.delivered < previous.delivered) return;
  published.add(now, (stats.published - previous.published) / seconds);
  delivered.add(now, (stats.delivered - previous.delivered) / seconds);
}

/** The latest publish rate, per second; null before two samples. */
export const publishRate = () => published.latest;

export function sampleLag(topics, now) {
  const listed = new Set();
  for (const topic of topics) {
    listed.add(topic.topic);
    let series = lagByTopic.get(topic.topic);
    if (!series && topic.lag > 0) lagByTopic.set(topic.topic, (series = new Series()));
    series?.add(now, topic.lag);
  }
  // A topic gone, or without lag for the whole window, has nothing to draw.
  for (const [name, series] of lagByTopic) {
    series.forget(now);
    if (!listed.has(name) || series.max === 0) lagByTopic.delete(name);
  }
}

export function renderCharts(now) {
  const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - (firstSampleAt ?? now)));
  for (const [id, series, unit] of [["published", published, "msgs/s"], ["delivered", delivered, "msgs/s"]]) {
    drawChart($(`chart-${id}`), [{ series, colour: COLOURS[0] }], now, span);
    $(`legend-${id}`).replaceChildren(
      element("li", series.latest === null ? "collecting…" : `${compact(series.latest)} ${unit} now`, "latest"),
      element("li", `max ${compact(series.max)}`, "max"));
  }
  const lagging = [...lagByTopic].sort(([, a], [, b]) => b.max - a.max).slice(0, LAG_LINES);
  const lines = lagging.map(([, series], index) => ({ series, colour: COLOURS[index] }));
  drawChart($("chart-lag"), lines, now, span);
  const legend = lagging.map(([name, series], index) => {
    const item = legendItem(COLOURS[index], `${name}: ${compact(series.latest)} (max ${compact(series.max)})`);
    item.dataset.topic = name;
    return item;
  });
  $("legend-lag").replaceChildren(...(legend.length ? legend : [element("li", "no topic lags", "empty")]));
}
