// Seed 003 view: relu vs leaky_relu vs (1 + α)·relu − α·|x| on x₁ → A → activation → C,
// three POST /v1/network calls, each term's gradient side by side.
import {
  $, bars, clearErrors, curlJson, el, fmt, heatmap, InputError, parseField, postJson, showError,
  showInputError, showRequests, table,
  tickets,
} from "./common.js";

const view = $("#seed003");
const runs = tickets();
const input = (id) => $(`#${id}`, view);

function identity(n) {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
}

/** The three networks' requests, all from the same inputs, A, B and targets. */
export function networks() {
  const alpha = +input("s3-alpha").value;
  if (!(alpha >= 0)) throw new InputError("alpha", `α must be a number ≥ 0, got ${input("s3-alpha").value}`);
  const inputs = parseField("inputs", input("s3-inputs").value);
  const kernel = parseField("kernel", input("s3-kernel").value);
  const bias = parseField("bias", input("s3-bias").value, { optional: true });
  const targets = parseField("targets", input("s3-targets").value);
  const units = Array.isArray(kernel) && Array.isArray(kernel[0]) ? kernel[0].length : 1;
  const loss = input("s3-loss").value;
  const net = (activation, scaleC, activity) => ({
    inputs, targets, loss,
    layers: [
      { kernel, bias, ...(activity ? { activity_regularizer: activity } : {}) },
      { kernel: identity(units), bias: null, activation },
      { kernel: Array.from({ length: units }, () => [scaleC]), bias: null },
    ],
  });
  return [
    { key: "relu", title: "relu", request: net("relu", 1, null) },
    { key: "leaky", title: `leaky_relu(negative_slope=${alpha})`, request: net({ name: "leaky_relu", negative_slope: alpha }, 1, null) },
    {
      key: "split",
      title: `(1 + α)·relu − α·|x₂|: relu, C × ${1 + alpha}, L1(${alpha}) activity on x₂`,
      request: net("relu", 1 + alpha, { type: "l1", l1: alpha }),
    },
  ];
}

async function compute(event) {
  event?.preventDefault();
  const ticket = runs.next();
  view.dataset.state = "busy";
  clearErrors(view);
  let nets;
  try {
    nets = networks();
  } catch (exc) {
    if (exc instanceof InputError) return showInputError(view, exc);
    throw exc;
  }
  showRequests(view, nets.map((n) => curlJson("v1/network", n.request)));
  const answers = await Promise.all(nets.map((n) => postJson("v1/network", n.request)));
  if (runs.stale(ticket)) return;
  const failed = answers.find((a) => a.status !== 200);
  // Layer 0 carries the user's inputs, A and B: an error there is theirs.
  if (failed) return showError(view, failed.body, { 0: "kernel", layers: "kernel" });
  draw(nets, answers.map((a) => a.body));
  view.dataset.state = "done";
}

function maxDifference(a, b) {
  return Math.max(...a.data.map((x, i) => Math.abs(x - b.data[i])));
}

function draw(nets, bodies) {
  const columns = input("s3-columns");
  columns.replaceChildren();
  nets.forEach((net, i) => {
    const body = bodies[i];
    const losses = Object.entries(body.losses).map(([name, value]) => ({ name, value }));
    const grads = Object.entries(body.gradients).filter(([p]) => p !== "dense_1/kernel");
    columns.append(el("div", { class: "column", "data-net": net.key },
      el("h3", {}, net.title),
      bars(losses, { label: `${net.key} losses` }),
      ...grads.map(([parameter, terms]) => el("div", { class: "row", "data-parameter": parameter },
        el("h4", {}, `∂term/∂${parameter}`),
        ...Object.entries(terms).map(([term, t]) => heatmap(term, t, { name: `${net.key}:${parameter}.${term}` }))))));
  });
  const [, leaky, split] = bodies;
  const rows = ["dense/kernel", "dense/bias"].map((p) => [
    p, el("code", {}, JSON.stringify(leaky.gradients[p].total.data)),
    el("code", {}, JSON.stringify(split.gradients[p].total.data)),
    fmt(maxDifference(leaky.gradients[p].total, split.gradients[p].total)),
  ]);
  input("s3-summary").replaceChildren(table(
    ["parameter", "leaky_relu: total gradient", "(1 + α)·relu − α·|x₂|: total gradient", "max |difference| (computed here)"],
    rows, input("s3-loss").value === "mean_absolute_error"
      ? "Do the two constructions agree? With MAE and targets above every output they should, to float32 rounding."
      : "Do the two constructions agree? With MSE, ∂loss/∂y is the error y − t, not a constant: they need not."));
}

export async function init() {
  $("#s3-form").addEventListener("submit", compute);
  for (const control of view.querySelectorAll("select, input")) control.addEventListener("change", compute);
  await compute();
}
