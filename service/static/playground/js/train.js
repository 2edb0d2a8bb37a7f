// Training runs view (seed 002): a synthetic problem with informative, duplicated and
// irrelevant features; each run one POST /v1/train streamed as Server-Sent Events.
import {
  $, authHeaders, bars, clearErrors, curlJson, el, fmt, lineChart, readJson, showError,
  showRequests, table, unreachable, url,
} from "./common.js";

const view = $("#train");
const input = (id) => $(`#${id}`, view);
const num = (id) => +input(id).value;

/** Where an error about a request field is shown: the control that produced that field. */
const ERROR_FIELDS = {
  optimizer: "learning_rate", kernel_regularizer: "lambda", l1: "lambda", l2: "lambda",
  weight_decay: "lambda", momentum: "momentum", record: "sparsity_tolerances", targets: "inputs", layers: "inputs",
};

export const RUNS = [
  { key: "none", title: "none (SGD)", opt: "sgd", reg: null },
  { key: "l1", title: "L1 (SGD)", opt: "sgd", reg: "l1", checked: true },
  { key: "l2", title: "L2 (SGD)", opt: "sgd", reg: "l2", checked: true },
  { key: "l1prox", title: "L1 proximal (SGD)", opt: "sgd", reg: "l1", proximal: true },
  { key: "sgd_l2", title: "SGD (momentum) + L2", opt: "momentum", reg: "l2" },
  { key: "sgd_wd", title: "SGD (momentum) + weight decay 2λ", opt: "momentum", decay: true },
  { key: "adam_l2", title: "Adam + L2", opt: "adam", reg: "l2" },
  { key: "adamw", title: "AdamW", opt: "adamw", decay: true },
];

/** mulberry32: a small seeded generator, so a seed always gives the same problem. */
function generator(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

const round = (x) => +x.toFixed(4);

/** X = [informative | duplicated copies of the first informative ones | irrelevant noise]. */
export function problem() {
  const rng = generator(num("train-seed"));
  const n = num("train-samples"), k = num("train-informative"), d = num("train-duplicated"), r = num("train-irrelevant");
  const trueWeights = Array.from({ length: k }, (_, i) => round((i % 2 ? -1 : 1) * (1 + i * 0.5)));
  const inputs = [], targets = [];
  for (let s = 0; s < n; s++) {
    const informative = Array.from({ length: k }, () => round(rng.normal()));
    const duplicated = Array.from({ length: d }, (_, j) => informative[j % k]);
    const irrelevant = Array.from({ length: r }, () => round(rng.normal()));
    inputs.push([...informative, ...duplicated, ...irrelevant]);
    const y = informative.reduce((acc, x, j) => acc + x * trueWeights[j], 0) + num("train-noise") * rng.normal();
    targets.push([round(y)]);
  }
  const features = [
    ...Array.from({ length: k }, (_, j) => `informative ${j}`),
    ...Array.from({ length: d }, (_, j) => `duplicate of ${j % k}`),
    ...Array.from({ length: r }, (_, j) => `irrelevant ${j}`),
  ];
  return { inputs, targets, features };
}

function optimizer(run) {
  const lr = num("train-lr"), decay = 2 * num("train-lambda");
  if (run.opt === "sgd") return { name: "sgd", learning_rate: lr };
  if (run.opt === "momentum") {
    // momentum 0 (the default): L2(λ) and weight_decay 2λ give the same trajectory (seed 002);
    // any momentum > 0 separates them.
    const sgd = { name: "sgd", learning_rate: lr, momentum: num("train-momentum") };
    return run.decay ? { ...sgd, weight_decay: decay, exclude_from_weight_decay: ["bias"] } : sgd;
  }
  if (run.opt === "adam") return { name: "adam", learning_rate: lr };
  return { name: "adamw", learning_rate: lr, weight_decay: decay, exclude_from_weight_decay: ["bias"] };
}

export function trainRequest(run, data) {
  const lambda = num("train-lambda");
  const features = data.inputs[0].length;
  const layer = { kernel: Array.from({ length: features }, () => [0]), bias: [0] };
  if (run.reg) layer.kernel_regularizer = { type: run.reg, [run.reg]: lambda };
  return {
    layers: [layer], inputs: data.inputs, targets: data.targets, loss: "mean_squared_error",
    optimizer: optimizer(run), epochs: num("train-epochs"), batch_size: num("train-batch"),
    shuffle: false, seed: num("train-seed"), l1_proximal: Boolean(run.proximal),
    record: { every: 1, sparsity_tolerances: [0, num("train-tol")] },
  };
}

/** Read a text/event-stream body, calling onEvent(name, data) per event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

async function stream(run, request, column) {
  const status = $(".status", column);
  const bar = $("progress", column);
  let response;
  try {
    response = await fetch(url("v1/train"), {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(request),
    });
  } catch (exc) {
    return { error: unreachable(exc) };
  }
  if (!response.ok || !(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    return { error: await readJson(response) };
  }
  let outcome = { error: { error: { message: "the stream ended without a result" } } };
  // The losses of each progress event, drawn as they arrive (at most once a frame).
  const live = { steps: [], losses: {}, pending: false };
  const liveBox = el("div", { class: "live" });
  column.append(liveBox);
  const redraw = () => {
    live.pending = false;
    const series = Object.entries(live.losses).map(([name, ys]) => ({ name, xs: live.steps, ys }));
    liveBox.replaceChildren(lineChart(series, { xlabel: "step", ylabel: "loss (live)", label: `${run.key} losses so far`, logY: true }));
  };
  try {
    await readEvents(response, onEvent);
  } catch (exc) {
    outcome = { error: unreachable(exc) };
  }
  return outcome;

  function onEvent(name, data) {
    if (name === "progress") {
      live.steps.push(data.step);
      for (const [term, value] of Object.entries(data.losses)) (live.losses[term] ??= []).push(value);
      if (!live.pending) {
        live.pending = true;
        requestAnimationFrame(redraw);
      }
      bar.max = data.steps;
      bar.value = data.step;
      status.textContent = `step ${data.step}/${data.steps}, epoch ${data.epoch}, total ${fmt(data.losses.total)}`;
    } else if (name === "result") {
      liveBox.remove();
      outcome = { result: data };
    } else if (name === "error") {
      outcome = { error: data };
    }
  }
}

function sparsityKey(sparsity, tolerance) {
  const keys = Object.keys(sparsity);
  return keys.find((k) => Number(k) === tolerance) ?? keys[keys.length - 1];
}

function drawRun(run, result, column, features) {
  const h = result.history;
  const steps = h.step;
  const losses = Object.entries(h.losses).map(([name, ys]) => ({ name, xs: steps, ys }));
  const kernel = h.weights["dense/kernel"];
  const key = sparsityKey(kernel.sparsity, num("train-tol"));
  const weights = result.weights["dense/kernel"].data;
  const last = (ys) => ys[ys.length - 1];
  column.append(
    table(["loss term", "last step"], Object.entries(h.losses).map(([name, ys]) => [name, el("span", { "data-name": name, "data-value": fmt(last(ys)) }, fmt(last(ys)))])),
    lineChart(losses, { xlabel: "step", ylabel: "loss", label: `${run.key} losses over steps`, logY: true }),
    lineChart([{ name: `sparsity of dense/kernel at tolerance ${key}`, xs: steps, ys: kernel.sparsity[key] }], { xlabel: "step", ylabel: "sparsity", label: `${run.key} sparsity` }),
    lineChart([{ name: "l1 = Σ|w|", xs: steps, ys: kernel.l1 }, { name: "max |w|", xs: steps, ys: kernel.max_abs }], { xlabel: "step", ylabel: "dense/kernel", label: `${run.key} weight magnitudes` }),
    el("h4", {}, "final weight per feature"),
    bars(weights.map((value, i) => ({ name: features[i], value })), { label: `${run.key} final weights` }),
  );
}

/** All runs on one chart each: data loss, and sparsity of dense/kernel at the tolerance. */
function overview(chosen, outcomes) {
  const done = outcomes.map((o, i) => [chosen[i], o.result]).filter(([, r]) => r);
  if (!done.length) return [];
  const series = (pick) => done.map(([run, r]) => ({ name: run.title, xs: r.history.step, ys: pick(r) }));
  const sparsity = (r) => {
    const s = r.history.weights["dense/kernel"].sparsity;
    return s[sparsityKey(s, num("train-tol"))];
  };
  return [
    el("h3", {}, "all runs"),
    el("div", { class: "results" },
      el("figure", { class: "plot" }, el("figcaption", {}, "data_loss over steps"),
        lineChart(series((r) => r.history.losses.data_loss), { xlabel: "step", ylabel: "data_loss", label: "data loss of every run", logY: true })),
      el("figure", { class: "plot" }, el("figcaption", {}, `sparsity of dense/kernel at tolerance ${num("train-tol")}`),
        lineChart(series(sparsity), { xlabel: "step", ylabel: "sparsity", label: "sparsity of every run" }))),
  ];
}

async function runAll(event) {
  event?.preventDefault();
  const button = $("#train-run");
  if (button.disabled) return;
  button.disabled = true;
  try {
    await runAllOnce();
  } finally {
    button.disabled = false;
  }
}

async function runAllOnce() {
  view.dataset.state = "busy";
  clearErrors(view);
  const chosen = RUNS.filter((run) => $(`#train-run-${run.key}`).checked);
  if (!chosen.length) return showError(view, { error: { message: "choose at least one run" } });
  const data = problem();
  const requests = chosen.map((run) => trainRequest(run, data));
  showRequests(view, requests.map((r) => curlJson("v1/train", r, ["accept: text/event-stream"], "-N")));
  const columns = input("train-columns");
  columns.replaceChildren();
  const boxes = chosen.map((run) => {
    const column = el("div", { class: "column", "data-run": run.key },
      el("h3", {}, run.title), el("progress", { max: "1", value: "0", "aria-label": `${run.title} progress` }),
      el("p", { class: "status", "aria-live": "polite" }, "starting"));
    columns.append(column);
    return column;
  });
  // One run at a time: the service may bound concurrent work, and the columns fill in turn.
  const outcomes = [];
  for (const [i, run] of chosen.entries()) outcomes.push(await stream(run, requests[i], boxes[i]));
  const failed = outcomes.find((o) => o.error);
  outcomes.forEach((o, i) => { if (o.error) $(".status", boxes[i]).textContent = o.error.error?.message ?? "failed"; });
  outcomes.forEach((o, i) => { if (o.result) drawRun(chosen[i], o.result, boxes[i], data.features); });
  const rows = outcomes.map((o, i) => [chosen[i].title, ...(o.result ? [fmt(o.result.steps), fmt(o.result.history.losses.data_loss.at(-1))] : ["—", "—"])]);
  input("train-progress").replaceChildren(table(["run", "steps", "data_loss at the last step"], rows), ...overview(chosen, outcomes));
  if (failed) return showError(view, failed.error, ERROR_FIELDS);
  view.dataset.state = "done";
}

export function init() {
  const fieldset = $("fieldset.runs", view);
  for (const run of RUNS) {
    const id = `train-run-${run.key}`;
    fieldset.append(el("div", { class: "check" },
      el("input", { type: "checkbox", id, ...(run.checked ? { checked: "" } : {}) }),
      el("label", { for: id }, run.title)));
  }
  $("#train-form").addEventListener("submit", runAll);
  view.dataset.state = "idle";
}

