// Shared helpers: calling the service, showing requests as curl, errors next to their
// control, and three plain-SVG pictures (line chart, bars, heatmap). Every number drawn
// carries the API's value in a data-value attribute and is printed with String(value),
// the shortest decimal that reads back as the number the API sent.

const SVG = "http://www.w3.org/2000/svg";

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The number as the API wrote it (shortest round-trip decimal). */
export const fmt = (x) => String(x);

/** An absolute URL for a route, relative to this page (works under a path prefix). */
export const url = (path) => new URL(path, document.baseURI).href;

export function shellQuote(text) {
  return "'" + text.replaceAll("'", "'\\''") + "'";
}

const KEY_STORE = "penalty-service-api-key";

/** The API key typed in the page header (kept in this tab's sessionStorage), or "". */
function apiKey() {
  const input = document.getElementById("api-key");
  return input ? input.value.trim() : "";
}

/** Headers that carry the API key, when one was typed: spread into every request's headers. */
export function authHeaders() {
  const key = apiKey();
  return key ? { "x-api-key": key } : {};
}

/** The curl option for the key: the shell variable, never the key itself, on screen. */
export function curlAuth() {
  return apiKey() ? ' -H "X-API-Key: $PENALTY_API_KEY"' : "";
}

const keyInput = document.getElementById("api-key");
if (keyInput) {
  keyInput.value = sessionStorage.getItem(KEY_STORE) ?? "";
  keyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORE, keyInput.value));
}

/** The curl command that sends `body` (JSON) to `path`. */
export function curlJson(path, body, extraHeaders = [], extraArgs = "") {
  const headers = ["content-type: application/json", ...extraHeaders]
    .map((h) => `-H ${shellQuote(h)}`).join(" ");
  return `curl -s ${url(path)} ${headers}${curlAuth()} -d ${shellQuote(JSON.stringify(body))}${extraArgs ? " " + extraArgs : ""}`;
}

/** Replace the view's list of requests with these curl commands, each with a copy button. */
export function showRequests(view, commands) {
  const box = $(".requests .curls", view);
  box.replaceChildren();
  commands.forEach((command, i) => {
    const pre = el("pre", { class: "curl", tabindex: "0", "aria-label": `request ${i + 1} as curl` }, command);
    const button = el("button", { type: "button", class: "copy" }, "Copy");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(command);
        button.textContent = "Copied";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(pre);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
    box.append(el("div", { class: "request" }, button, pre));
  });
}

/** POST JSON; resolves to {status, body} (body is the parsed JSON answer). */
export async function postJson(path, body) {
  let response;
  try {
    response = await fetch(url(path), {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
  } catch (exc) {
    return { status: 0, body: unreachable(exc) };
  }
  return { status: response.status, body: await readJson(response) };
}

/** The envelope for a request that got no answer at all (server down, connection lost). */
export function unreachable(exc) {
  return { error: { code: "unreachable", message: `the service did not answer: ${exc.message}`, details: [] } };
}

export async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: "invalid_response", message: `HTTP ${response.status}: ${text.slice(0, 200)}`, details: [] } };
  }
}

/** A client-side problem (e.g. a textarea that is not JSON) in the envelope's shape. */
export class InputError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** Parse a textarea's JSON; an InputError naming the field when it is not JSON. */
export function parseField(field, text, { optional = false } = {}) {
  if (optional && text.trim() === "") return null;
  try {
    return JSON.parse(text);
  } catch (exc) {
    throw new InputError(field, `${field} is not valid JSON: ${exc.message}`);
  }
}

export function clearErrors(view) {
  for (const slot of $$(".error", view)) slot.textContent = "";
  for (const control of $$("[aria-invalid]", view)) control.removeAttribute("aria-invalid");
}

/**
 * Show an error message next to the control it concerns: the slot whose data-error-for
 * names the innermost field of the error's location that has one (["body", "layers", 0,
 * "bias"] → bias), else the view's general slot beside its button. `fieldMap` renames
 * fields first.
 */
export function showError(view, envelope, fieldMap = {}) {
  const error = envelope?.error ?? { message: String(envelope) };
  const locs = (error.details ?? []).map((d) => d.loc ?? []);
  let slot = null;
  for (const loc of locs) {
    for (const part of [...loc].reverse()) {
      const name = fieldMap[part] ?? part;
      slot = $(`[data-error-for="${CSS.escape(String(name))}"]`, view);
      if (slot) break;
    }
    if (slot) break;
  }
  slot = slot ?? $('[data-error-for="*"]', view);
  view.dataset.state = "error";
  slot.textContent = error.message;
  const control = slot.parentElement.querySelector("input, select, textarea");
  if (control && slot.dataset.errorFor !== "*") control.setAttribute("aria-invalid", "true");
  return slot;
}

export function showInputError(view, exc) {
  return showError(view, { error: { message: exc.message, details: [{ loc: ["body", exc.field] }] } });
}

/** A TensorOut as rows × columns (the last axis is the columns). */
export function matrixOf(tensor) {
  const shape = tensor.shape;
  const cols = shape.length ? shape[shape.length - 1] : 1;
  const rows = cols ? tensor.data.length / cols : 0;
  const out = [];
  for (let r = 0; r < rows; r++) out.push(tensor.data.slice(r * cols, (r + 1) * cols));
  return out;
}

function colour(value, scale) {
  if (!scale) return "hsl(0 0% 96%)";
  const t = Math.min(1, Math.abs(value) / scale);
  const light = 96 - 50 * t;
  return value >= 0 ? `hsl(210 70% ${light}%)` : `hsl(10 75% ${light}%)`;
}

/** A heatmap of a TensorOut: one cell per element, its value printed in the cell. */
export function heatmap(title, tensor, { name = title } = {}) {
  const rows = matrixOf(tensor);
  const nCols = rows[0]?.length ?? 0;
  const scale = Math.max(0, ...tensor.data.map(Math.abs));
  const cw = 86, ch = 26;
  const svg = svgEl("svg", {
    viewBox: `0 0 ${Math.max(1, nCols * cw)} ${Math.max(1, rows.length * ch)}`,
    width: nCols * cw, role: "img", "aria-label": `${title}, shape [${tensor.shape}]`,
    class: "heatmap",
  });
  rows.forEach((row, r) => row.forEach((value, c) => {
    const g = svgEl("g", { "data-value": fmt(value), class: "cell" });
    g.append(svgEl("rect", { x: c * cw, y: r * ch, width: cw - 2, height: ch - 2, fill: colour(value, scale) }));
    g.append(svgEl("text", { x: c * cw + cw / 2 - 1, y: r * ch + ch / 2 + 4, "text-anchor": "middle" }, fmt(value)));
    g.append(svgEl("title", {}, `${name}[${r}, ${c}] = ${fmt(value)}`));
    svg.append(g);
  }));
  return el("figure", { class: "tensor", "data-name": name },
    el("figcaption", {}, `${title} `, el("span", { class: "shape" }, `shape [${tensor.shape.join(", ")}] ${tensor.datatype}`)),
    el("div", { class: "scroll" }, svg));
}

/**
 * Horizontal bars with their labels and values (values may be negative), as HTML so that
 * the text stays readable at any width.
 */
export function bars(entries, { label = "values" } = {}) {
  const scale = Math.max(0, ...entries.map((e) => Math.abs(e.value)));
  const hasNegative = entries.some((e) => e.value < 0);
  const list = el("div", { class: `bars${hasNegative ? " signed" : ""}`, role: "list", "aria-label": label });
  for (const entry of entries) {
    const share = scale ? (Math.abs(entry.value) / scale) * (hasNegative ? 50 : 100) : 0;
    const fill = el("span", { class: `fill${entry.value < 0 ? " negative" : ""}` });
    fill.style.width = `${share}%`;
    if (entry.colour) fill.style.background = entry.colour;
    list.append(el("div", { class: "bar", role: "listitem", "data-name": entry.name, "data-value": fmt(entry.value) },
      el("span", { class: "label" }, entry.name), el("span", { class: "track" }, fill),
      el("span", { class: "number" }, fmt(entry.value))));
  }
  return list;
}

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step = (hi - lo) / n;
  return Array.from({ length: n + 1 }, (_, i) => lo + i * step);
}

function short(x) {
  return Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(1) : String(+x.toPrecision(3));
}

/**
 * A line chart of series [{name, xs, ys, colour}], with an optional marked point
 * {x, y, label}. Points are plotted from the API's numbers; the chart is a picture, the
 * exact numbers are in the panels beside it.
 */
export function lineChart(series, { xlabel = "", ylabel = "", mark = null, label = "chart", logY = false } = {}) {
  const W = 560, H = 300, L = 64, R = 12, T = 12, B = 40;
  // On a log axis, zeros (a penalty at its starting weights of 0) are left out of the line.
  const shown = (y) => !logY || y > 0;
  const tr = (y) => (logY ? Math.log10(y) : y);
  const xs = series.flatMap((s) => s.xs);
  const ys = series.flatMap((s) => s.ys.filter(shown).map(tr));
  if (!ys.length) ys.push(0);
  if (mark && shown(mark.y)) ys.push(tr(mark.y));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (tr(y) - y0) / (y1 - y0)) * (H - T - B);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  for (const t of ticks(y0, y1)) {
    const y = T + (1 - (t - y0) / (y1 - y0)) * (H - T - B);
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    svg.append(svgEl("text", { x: L - 4, y: y + 4, "text-anchor": "end", class: "tick" }, logY ? short(10 ** t) : short(t)));
  }
  for (const t of ticks(x0, x1)) {
    svg.append(svgEl("text", { x: sx(t), y: H - B + 16, "text-anchor": "middle", class: "tick" }, short(t)));
  }
  svg.append(svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis" }, xlabel));
  svg.append(svgEl("text", { x: 12, y: T + (H - T - B) / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 12 ${T + (H - T - B) / 2})` }, ylabel));
  series.forEach((s, i) => {
    const kept = s.xs.map((x, j) => [x, s.ys[j]]).filter(([, y]) => shown(y));
    const points = kept.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", { points, fill: "none", stroke: s.colour ?? PALETTE[i % PALETTE.length], "stroke-width": 2, "data-series": s.name }));
  });
  if (mark && shown(mark.y)) {
    svg.append(svgEl("circle", { cx: sx(mark.x), cy: sy(mark.y), r: 5, class: "mark", "data-value": fmt(mark.y) }));
  }
  const legend = el("ul", { class: "legend" }, ...series.map((s, i) =>
    el("li", {}, el("span", { class: "swatch", style: `background:${s.colour ?? PALETTE[i % PALETTE.length]}` }), s.name)));
  return el("div", { class: "chart-box" }, svg, series.length > 1 ? legend : "");
}

/** A small table: header row and body rows (cells are strings or nodes). */
export function table(header, rows, caption) {
  return el("table", {},
    caption ? el("caption", {}, caption) : "",
    el("thead", {}, el("tr", {}, ...header.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

/**
 * Tickets for a view's computations: an answer that arrives after a newer request was
 * sent is dropped, so the page always shows the answer to its latest request.
 */
export function tickets() {
  let last = 0;
  return { next: () => ++last, stale: (ticket) => ticket !== last };
}
