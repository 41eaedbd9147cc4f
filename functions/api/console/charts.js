// Small SVG charts, drawn with DOM APIs (no library). Each has a text alternative (aria-label) and
// the numbers it shows are also written out next to it.

import { h } from "./dom.js";
import { count, duration, percent } from "./format.js";

const svg = (tag, attributes, ...children) => h(`svg:${tag}`, attributes, ...children);

/** One horizontal bar split into delivered, retried and failed attempts. */
export function outcomeBar(stats) {
  const parts = [
    ["delivered", stats.delivered || 0],
    ["retried", stats.retried || 0],
    ["failed", stats.failed || 0],
  ];
  const total = parts.reduce((sum, [, n]) => sum + n, 0);
  const label = total
    ? `Attempts: ${parts.map(([name, n]) => `${count(n)} ${name}`).join(", ")}; success rate ${percent(stats.success_rate)}`
    : "No attempts in this period";
  const chart = svg("svg", { viewBox: "0 0 300 20", class: "chart outcome", role: "img", "aria-label": label, preserveAspectRatio: "none" });
  if (!total) {
    chart.append(svg("rect", { x: 0, y: 0, width: 300, height: 20, class: "none" }));
  }
  let x = 0;
  for (const [name, n] of parts) {
    if (!n) continue;
    const width = (n / total) * 300;
    chart.append(svg("rect", { x, y: 0, width, height: 20, class: name }, svg("title", {}, `${count(n)} ${name}`)));
    x += width;
  }
  const legend = h(
    "ul",
    { class: "legend" },
    parts.map(([name, n]) => h("li", {}, h("span", { class: `swatch ${name}`, "aria-hidden": "true" }), `${name} ${count(n)}`)),
  );
  return h("figure", { class: "chart-box" }, h("figcaption", {}, "Attempts by outcome"), chart, legend);
}

/** Bars for the median and 95th percentile latency. */
export function latencyBars(stats) {
  const latency = stats.latency_ms || {};
  const bars = [
    ["p50", latency.p50],
    ["p95", latency.p95],
  ];
  const top = Math.max(1, ...bars.map(([, v]) => v || 0));
  const label = bars.map(([name, v]) => `${name} ${duration(v)}`).join(", ");
  const chart = svg("svg", { viewBox: "0 0 300 52", class: "chart latency", role: "img", "aria-label": `Latency: ${label}` });
  bars.forEach(([name, value], index) => {
    const y = index * 26;
    const width = value ? Math.max(2, (value / top) * 220) : 0;
    chart.append(
      svg("text", { x: 0, y: y + 16, class: "axis" }, name),
      svg("rect", { x: 36, y: y + 4, width, height: 16, class: `bar ${name}` }, svg("title", {}, `${name}: ${duration(value)}`)),
      svg("text", { x: 36 + width + 6, y: y + 16, class: "value" }, duration(value)),
    );
  });
  return h("figure", { class: "chart-box" }, h("figcaption", {}, "Latency"), chart);
}

/** A progress bar of a recovery's counts (sent, failed, skipped out of all). */
export function progressBar(counts) {
  const sent = counts?.sent || 0;
  const failed = counts?.failed || 0;
  const skipped = counts?.skipped || 0;
  const queued = counts?.queued || 0;
  const total = sent + failed + skipped + queued;
  const done = sent + failed + skipped;
  const chart = svg("svg", {
    viewBox: "0 0 200 10",
    class: "chart progress",
    role: "img",
    preserveAspectRatio: "none",
    "aria-label": total ? `${done} of ${total} done: ${sent} sent, ${failed} failed, ${skipped} skipped` : "nothing to send yet",
  });
  chart.append(svg("rect", { x: 0, y: 0, width: 200, height: 10, class: "none" }));
  let x = 0;
  for (const [name, n] of [
    ["delivered", sent],
    ["failed", failed],
    ["skipped", skipped],
  ]) {
    if (!n || !total) continue;
    const width = (n / total) * 200;
    chart.append(svg("rect", { x, y: 0, width, height: 10, class: name }));
    x += width;
  }
  return chart;
}
