// Regularizers view: penalty and gradient of L1 / L2 / L1L2 against one weight, or of the
// orthogonal regularizer against one entry of a small matrix, from the service's answers.
import {
  $, authHeaders, clearErrors, curlJson, el, fmt, heatmap, InputError, lineChart, parseField, postJson,
  showError, showInputError, showRequests, table,
  tickets,
} from "./common.js";

const view = $("#regularizers");
const form = $("#reg-form");
const runs = tickets();
const input = (id) => $(`#${id}`, view);
const GRID = Array.from({ length: 41 }, (_, i) => +(-2 + i * 0.1).toFixed(1));
let kerasClasses = {};

/** The regularizer as the tagged form API.md describes. */
export function regularizerSpec() {
  const type = input("reg-type").value;
  if (type === "l1") return { type, l1: +input("reg-l1").value };
  if (type === "l2") return { type, l2: +input("reg-l2").value };
  if (type === "l1l2") return { type, l1: +input("reg-l1").value, l2: +input("reg-l2").value };
  return { type, factor: +input("reg-factor").value, mode: input("reg-mode").value };
}

function showFields() {
  const type = input("reg-type").value;
  const shown = {
    l1: type === "l1" || type === "l1l2",
    l2: type === "l2" || type === "l1l2",
    factor: type === "orthogonal",
    mode: type === "orthogonal",
    scalar: type !== "orthogonal",
    matrix: type === "orthogonal",
  };
  for (const field of view.querySelectorAll("[data-for]")) field.hidden = !shown[field.dataset.for];
  for (const id of ["reg-l1", "reg-l2", "reg-factor", "reg-w"]) input(`${id}-out`).value = input(id).value;
}

function matrix() {
  return parseField("tensor", input("reg-matrix").value);
}

function fillEntries() {
  let w;
  try {
    w = matrix();
  } catch {
    return;
  }
  const select = input("reg-entry");
  const before = select.value;
  select.replaceChildren();
  if (!Array.isArray(w)) return;
  w.forEach((row, r) => (Array.isArray(row) ? row : [row]).forEach((_, c) => {
    select.append(el("option", { value: `${r},${c}` }, `W[${r}][${c}]`));
  }));
  if ([...select.options].some((o) => o.value === before)) select.value = before;
}

/** The named weights of the curve request, and for each its x on the curve. */
function curveRequest(regularizer, datatype) {
  const weights = {};
  const xs = [];
  if (regularizer.type !== "orthogonal") {
    for (const x of GRID) {
      weights[`w=${x}`] = { tensor: { shape: [1], datatype, data: [x] }, regularizer };
      xs.push(x);
    }
    return { body: { weights, return_gradients: true }, xs, pick: () => [0] };
  }
  const w = matrix();
  const [r, c] = (input("reg-entry").value || "0,0").split(",").map(Number);
  for (const x of GRID) {
    const copy = w.map((row) => row.slice());
    copy[r][c] = x;
    weights[`W[${r}][${c}]=${x}`] = { tensor: { shape: [w.length, w[0].length], datatype, data: copy.flat() }, regularizer };
    xs.push(x);
  }
  return { body: { weights, return_gradients: true }, xs, pick: (g) => [r * g.shape[1] + c], entry: `W[${r}][${c}]` };
}

/** `keras.regularizers.L1(l1=0.1)`: the Keras call that builds the regularizer echoed. */
function constructor({ class_name: name, config }) {
  const args = Object.entries(config).map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v) : fmt(v)}`);
  return `keras.regularizers.${name}(${args.join(", ")})`;
}

function kerasConfig(echo) {
  const { type, ...config } = echo;
  return { class_name: kerasClasses[type] ?? type, config };
}

function shapeOf(nested) {
  const shape = [];
  for (let x = nested; Array.isArray(x); x = x[0]) shape.push(x.length);
  return shape;
}

function pointRequest(regularizer, datatype) {
  if (regularizer.type !== "orthogonal") {
    return { tensor: { shape: [1], datatype, data: [+input("reg-w").value] }, regularizer, return_gradient: true };
  }
  const w = matrix();
  return { tensor: { shape: shapeOf(w), datatype, data: w }, regularizer, return_gradient: true };
}

async function compute(event) {
  event?.preventDefault();
  const ticket = runs.next();
  view.dataset.state = "busy";
  clearErrors(view);
  const regularizer = regularizerSpec();
  const datatype = input("reg-dtype").value;
  let point;
  try {
    point = pointRequest(regularizer, datatype);
  } catch (exc) {
    if (exc instanceof InputError) return showInputError(view, exc);
    throw exc;
  }
  showRequests(view, [curlJson("v1/penalty", point)]);
  const pointAnswer = await postJson("v1/penalty", point);
  if (runs.stale(ticket)) return;
  if (pointAnswer.status !== 200) return showError(view, pointAnswer.body);
  const curve = curveRequest(regularizer, datatype);
  showRequests(view, [curlJson("v1/penalty", point), curlJson("v1/penalties", curve.body)]);
  const curveAnswer = await postJson("v1/penalties", curve.body);
  if (runs.stale(ticket)) return;
  if (curveAnswer.status !== 200) return showError(view, curveAnswer.body, { weights: "tensor" });
  drawCurves(curve, curveAnswer.body, pointAnswer.body, regularizer);
  drawPoint(pointAnswer.body, point);
  view.dataset.state = "done";
}

function drawCurves(curve, answer, pointBody, regularizer) {
  const names = Object.keys(curve.body.weights);
  const penalties = names.map((n) => answer.penalties[n]);
  const gradients = names.map((n) => {
    const g = answer.gradients[n];
    return g.data[curve.pick(g)[0]];
  });
  const x = regularizer.type === "orthogonal" ? curve.entry : "w";
  const markX = regularizer.type === "orthogonal" ? null : +input("reg-w").value;
  const mark = (y) => (markX === null ? null : { x: markX, y });
  const penaltyFigure = input("reg-penalty-plot");
  penaltyFigure.replaceChildren(el("figcaption", {}, `penalty against ${x}`),
    lineChart([{ name: "penalty", xs: curve.xs, ys: penalties }], { xlabel: x, ylabel: "penalty", mark: mark(pointBody.penalty), label: `penalty against ${x}` }));
  const gradientFigure = input("reg-gradient-plot");
  gradientFigure.replaceChildren(el("figcaption", {}, `gradient ∂penalty/∂${x}`),
    lineChart([{ name: "gradient", xs: curve.xs, ys: gradients, colour: "#d62728" }], { xlabel: x, ylabel: "gradient", mark: mark(pointBody.gradient?.data[0]), label: `gradient against ${x}` }));
  penaltyFigure.dataset.values = JSON.stringify(penalties);
  gradientFigure.dataset.values = JSON.stringify(gradients);
}

function drawPoint(body, request) {
  const panel = input("reg-point");
  const rows = [
    ["tensor", JSON.stringify(request.tensor.data)],
    ["penalty", el("span", { class: "value", "data-name": "penalty", "data-value": fmt(body.penalty) }, fmt(body.penalty))],
    ["echo (tagged form)", el("code", { "data-name": "echo" }, JSON.stringify(body.regularizer))],
    ["Keras serialized form", el("code", { "data-name": "keras" }, JSON.stringify(kerasConfig(body.regularizer)))],
    ["in Keras", el("code", { "data-name": "constructor" }, constructor(kerasConfig(body.regularizer)))],
  ];
  panel.replaceChildren(table(["", "the service's answer"], rows, "the marked point (POST /v1/penalty)"), heatmap("gradient", body.gradient));
}

export async function init() {
  const list = await fetch("v1/regularizers", { headers: authHeaders() }).then((r) => r.json());
  for (const r of list.regularizers) kerasClasses[r.type] = r.keras_class;
  form.addEventListener("submit", compute);
  for (const control of form.querySelectorAll("input, select")) {
    control.addEventListener("change", () => { showFields(); compute(); });
    if (control.type === "range") control.addEventListener("input", showFields);
  }
  input("reg-matrix").addEventListener("change", () => { fillEntries(); compute(); });
  fillEntries();
  showFields();
  await compute();
}
