// @ts-check
/**
 * Temperature charts: the rows' sparklines (inline SVG, cheap enough for hundreds of rows) and
 * the larger history chart of one unit (uPlot, loaded when first opened). Both draw a silence
 * longer than a few of the unit's usual intervals as a gap, never as a straight line.
 */

/** @typedef {{ t: number, v: number }} Point temperature `v` recorded at `t` (epoch ms) */

const SVG_NS = "http://www.w3.org/2000/svg";
const MIN_GAP_MS = 10_000;
const GAP_INTERVALS = 3;

/**
 * How long a silence must be to count as a gap: three times the unit's usual interval
 * (the median), and at least 10 s.
 * @param {Point[]} points ordered by `t`
 */
export function gapThresholdMs(points) {
  const steps = [];
  for (let index = Math.max(1, points.length - 60); index < points.length; index += 1) {
    steps.push(points[index].t - points[index - 1].t);
  }
  if (steps.length === 0) return MIN_GAP_MS;
  steps.sort((a, b) => a - b);
  return Math.max(MIN_GAP_MS, GAP_INTERVALS * steps[Math.floor(steps.length / 2)]);
}

/**
 * @param {Point[]} points ordered by `t`
 * @returns {Point[][]} runs of points without a gap inside
 */
export function splitAtGaps(points) {
  const threshold = gapThresholdMs(points);
  /** @type {Point[][]} */
  const runs = [];
  for (const point of points) {
    const run = runs[runs.length - 1];
    if (run && point.t - run[run.length - 1].t <= threshold) run.push(point);
    else runs.push([point]);
  }
  return runs;
}

const SPARK_WIDTH = 140;
const SPARK_HEIGHT = 32;
const SPARK_PAD = 3;

/**
 * @param {Point[]} points ordered by `t`
 * @param {number} end the right edge (epoch ms, server clock)
 * @param {number} spanMs how much time the width shows
 * @param {string} unitId for the accessible name
 */
export function sparkline(points, end, spanMs, unitId) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
  svg.setAttribute("width", String(SPARK_WIDTH));
  svg.setAttribute("height", String(SPARK_HEIGHT));
  svg.setAttribute("role", "img");
  const visible = points.filter((point) => point.t >= end - spanMs);
  if (visible.length === 0) {
    svg.setAttribute("aria-label", `${unitId}: no readings in the last ${formatSpan(spanMs)}`);
    return svg;
  }
  const values = visible.map((point) => point.v);
  const low = Math.min(...values);
  const high = Math.max(...values);
  // At least half a degree of range, so sensor noise does not look like a storm.
  const range = Math.max(high - low, 0.5);
  const middle = (high + low) / 2;
  const x = (/** @type {number} */ t) => SPARK_PAD + ((t - (end - spanMs)) / spanMs) * (SPARK_WIDTH - 2 * SPARK_PAD);
  const y = (/** @type {number} */ v) => SPARK_HEIGHT / 2 - ((v - middle) / range) * (SPARK_HEIGHT - 2 * SPARK_PAD);
  const runs = splitAtGaps(visible);
  svg.setAttribute(
    "aria-label",
    `${unitId}: ${low.toFixed(1)} to ${high.toFixed(1)} °C over the last ${formatSpan(spanMs)}` +
      (runs.length > 1 ? `, ${runs.length - 1} gap${runs.length > 2 ? "s" : ""}` : ""),
  );
  for (const run of runs) {
    const coordinates = run.map((point) => `${x(point.t).toFixed(1)},${y(point.v).toFixed(1)}`);
    if (run.length > 1) {
      const area = document.createElementNS(SVG_NS, "polygon");
      area.setAttribute("class", "area");
      area.setAttribute(
        "points",
        `${x(run[0].t).toFixed(1)},${SPARK_HEIGHT} ${coordinates.join(" ")} ${x(run[run.length - 1].t).toFixed(1)},${SPARK_HEIGHT}`,
      );
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("class", "line");
      line.setAttribute("points", coordinates.join(" "));
      svg.append(area, line);
    } else {
      // A lone reading between gaps: a dot, not a line to anywhere.
      svg.append(dot(x(run[0].t), y(run[0].v), 1.6, "point"));
    }
  }
  const last = visible[visible.length - 1];
  svg.append(dot(x(last.t), y(last.v), 2.5, "dot"));
  return svg;
}

/**
 * @param {number} cx
 * @param {number} cy
 * @param {number} r
 * @param {string} className
 */
function dot(cx, cy, r, className) {
  const circle = document.createElementNS(SVG_NS, "circle");
  circle.setAttribute("class", className);
  circle.setAttribute("cx", cx.toFixed(1));
  circle.setAttribute("cy", cy.toFixed(1));
  circle.setAttribute("r", String(r));
  return circle;
}

/** @param {number} ms */
export function formatSpan(ms) {
  if (ms >= 3_600_000) return `${Math.round(ms / 3_600_000)} hour${ms >= 7_200_000 ? "s" : ""}`;
  return ms >= 90_000 ? `${Math.round(ms / 60_000)} minutes` : `${Math.round(ms / 1000)} seconds`;
}

// --- The history chart ------------------------------------------------------------------------

/** @type {Promise<any> | null} */
let uPlotModule = null;

/** uPlot (vendored from the pinned npm package by `make vendor`), fetched on first use. */
function loadUPlot() {
  // A path in a variable: the type checker leaves the vendored (untyped) file alone.
  const path = "./vendor/uPlot.esm.js";
  uPlotModule ??= import(path).then((module) => module.default);
  return uPlotModule;
}

/**
 * uPlot's columns: times in seconds and temperatures, with a null inside each gap so that
 * the line breaks there.
 * @param {Point[]} points ordered by `t`
 * @returns {[number[], (number | null)[]]}
 */
export function chartColumns(points) {
  /** @type {number[]} */
  const times = [];
  /** @type {(number | null)[]} */
  const values = [];
  for (const run of splitAtGaps(points)) {
    if (times.length > 0) {
      times.push((run[0].t - 1) / 1000);
      values.push(null);
    }
    for (const point of run) {
      times.push(point.t / 1000);
      values.push(point.v);
    }
  }
  return [times, values];
}

export class HistoryChart {
  /** @type {HTMLElement} */
  #container;
  /** @type {any} */
  #plot = null;
  /** @type {ResizeObserver} */
  #resize;

  /** @param {HTMLElement} container */
  constructor(container) {
    this.#container = container;
    this.#resize = new ResizeObserver(() => this.#plot?.setSize(this.#size()));
    this.#resize.observe(container);
  }

  #size() {
    const width = Math.max(240, this.#container.clientWidth);
    return { width, height: Math.round(Math.min(320, Math.max(200, width * 0.45))) };
  }

  /**
   * @param {Point[]} points ordered by `t`
   * @param {number} start epoch ms of the span's left edge
   * @param {number} end epoch ms of its right edge
   */
  async show(points, start, end) {
    const uPlot = await loadUPlot();
    const data = chartColumns(points);
    const style = getComputedStyle(document.documentElement);
    const color = (/** @type {string} */ name) => style.getPropertyValue(name).trim();
    this.#plot?.destroy();
    this.#container.replaceChildren();
    const axis = { stroke: color("--muted"), grid: { stroke: color("--line") }, ticks: { stroke: color("--line") } };
    this.#plot = new uPlot(
      {
        ...this.#size(),
        scales: { x: { time: true, range: () => [start / 1000, end / 1000] } },
        series: [
          {},
          {
            label: "Temperature",
            stroke: color("--accent"),
            fill: color("--accent-soft"),
            width: 1.6,
            spanGaps: false,
            points: { show: false },
            value: (/** @type {any} */ _u, /** @type {number | null} */ v) => (v === null ? "–" : `${v.toFixed(2)} °C`),
          },
        ],
        axes: [{ ...axis, space: 90 }, { ...axis, values: (/** @type {any} */ _u, /** @type {number[]} */ ticks) => ticks.map((v) => `${v} °C`), size: 64 }],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      this.#container,
    );
  }

  destroy() {
    this.#plot?.destroy();
    this.#plot = null;
    this.#container.replaceChildren();
  }
}
