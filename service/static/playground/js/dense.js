// One Dense layer view (seeds 000 and 001): the three penalty terms, the outputs and each
// term's gradient per parameter, from one POST /v1/dense.
import {
  $, authHeaders, bars, clearErrors, curlJson, el, heatmap, InputError, parseField, postJson, showError,
  showInputError, showRequests,
  tickets,
} from "./common.js";

const view = $("#dense");
const runs = tickets();
const input = (id) => $(`#${id}`, view);

// seed 001: the kernel and bias Keras drew for reference case
// seed_dense3_l1_l2_l1_ones_2x2x4_times3 (tests/reference/vectors/dense.json).
const PRESETS = {
  seed001: {
    inputs: "[[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]]",
    kernel: "[[0.49913177, 0.69652647, -0.04094114], [-0.8659489, 0.5622707, 0.047769386],\n [0.43266872, 0.23136215, 0.056189764], [-0.4926279, 0.30498105, -0.46216375]]",
    bias: "[-0.8470673, -0.052689873, 0.3222303]",
    activation: "linear",
    regularizers: {
      kernel_regularizer: { type: "l1", l1: 0.1 },
      bias_regularizer: { type: "l2", l2: 0.1 },
      activity_regularizer: { type: "l1", l1: 0.1 },
    },
  },
  // seed 000: every weight within [-0.3, 0.3], yet inputs in the hundreds give outputs in
  // the hundreds; switch the activation to sigmoid to see the activity gradient vanish.
  seed000: {
    inputs: "[[120, 340, 200, 80], [300, 150, 90, 260]]",
    kernel: "[[0.3, -0.2], [0.25, 0.1], [-0.1, 0.3], [0.2, 0.15]]",
    bias: "[0.0, 0.0]",
    activation: "linear",
    regularizers: {
      kernel_regularizer: { type: "l2", l2: 0.01 },
      bias_regularizer: null,
      activity_regularizer: { type: "l2", l2: 0.01 },
    },
  },
};

/** A labelled regularizer picker inside a fieldset: type, l1, l2, factor, mode. */
function regularizerControl(fieldset) {
  const name = fieldset.dataset.reg;
  const id = (part) => `dense-${name}-${part}`;
  const number = (part, value) => el("div", { class: "field", "data-part": part },
    el("label", { for: id(part) }, part),
    el("input", { id: id(part), type: "number", min: "0", step: "0.01", value }));
  const type = el("select", { id: id("type") },
    ...["none", "l1", "l2", "l1l2", "orthogonal"].map((t) => el("option", { value: t }, t)));
  const mode = el("select", { id: id("mode") }, el("option", {}, "rows"), el("option", {}, "columns"));
  fieldset.append(
    el("div", { class: "field" }, el("label", { for: id("type") }, "type"), type),
    number("l1", "0.01"), number("l2", "0.01"), number("factor", "0.01"),
    el("div", { class: "field", "data-part": "mode" }, el("label", { for: id("mode") }, "mode"), mode),
    el("span", { class: "error", "data-error-for": name, role: "alert" }));
  const value = (part) => +$(`#${id(part)}`).value;
  const parts = { none: [], l1: ["l1"], l2: ["l2"], l1l2: ["l1", "l2"], orthogonal: ["factor", "mode"] };
  const refresh = () => {
    for (const field of fieldset.querySelectorAll("[data-part]")) {
      field.hidden = !parts[type.value].includes(field.dataset.part);
    }
  };
  type.addEventListener("change", refresh);
  refresh();
  return {
    spec() {
      const t = type.value;
      if (t === "none") return null;
      if (t === "orthogonal") return { type: t, factor: value("factor"), mode: mode.value };
      return Object.fromEntries([["type", t], ...parts[t].map((p) => [p, value(p)])]);
    },
    set(spec) {
      type.value = spec?.type ?? "none";
      for (const p of ["l1", "l2", "factor"]) if (spec && p in spec) $(`#${id(p)}`).value = spec[p];
      if (spec?.mode) mode.value = spec.mode;
      refresh();
    },
  };
}

const controls = {};

function loadPreset() {
  const preset = PRESETS[input("dense-preset").value];
  input("dense-inputs").value = preset.inputs;
  input("dense-kernel").value = preset.kernel;
  input("dense-bias").value = preset.bias;
  input("dense-activation").value = preset.activation;
  input("dense-activation-params").value = "";
  input("dense-norm").value = "batch";
  for (const [name, spec] of Object.entries(preset.regularizers)) controls[name].set(spec);
}

export function denseRequest() {
  const params = parseField("activation", input("dense-activation-params").value, { optional: true });
  if (params !== null && (typeof params !== "object" || Array.isArray(params))) {
    throw new InputError("activation", "activation parameters must be a JSON object such as {\"negative_slope\": 0.1}");
  }
  const name = input("dense-activation").value;
  return {
    inputs: parseField("inputs", input("dense-inputs").value),
    kernel: parseField("kernel", input("dense-kernel").value),
    bias: parseField("bias", input("dense-bias").value, { optional: true }),
    activation: params ? { name, ...params } : name,
    kernel_regularizer: controls.kernel_regularizer.spec(),
    bias_regularizer: controls.bias_regularizer.spec(),
    activity_regularizer: controls.activity_regularizer.spec(),
    activity_normalization: input("dense-norm").value,
    return_gradients: true,
  };
}

async function compute(event) {
  event?.preventDefault();
  const ticket = runs.next();
  view.dataset.state = "busy";
  clearErrors(view);
  let request;
  try {
    request = denseRequest();
  } catch (exc) {
    if (exc instanceof InputError) return showInputError(view, exc);
    throw exc;
  }
  showRequests(view, [curlJson("v1/dense", request)]);
  const answer = await postJson("v1/dense", request);
  if (runs.stale(ticket)) return;
  if (answer.status !== 200) return showError(view, answer.body);
  draw(answer.body);
  view.dataset.state = "done";
}

function draw(body) {
  const losses = Object.entries(body.losses).map(([name, value]) => ({
    name, value, colour: name === "total" ? "hsl(0 0% 35%)" : undefined,
  }));
  input("dense-losses").replaceChildren(el("figcaption", {}, "losses (each term and total)"), bars(losses, { label: "losses" }));
  input("dense-outputs").replaceChildren(heatmap("outputs", body.outputs));
  const grid = input("dense-gradients");
  grid.replaceChildren();
  for (const [parameter, terms] of Object.entries(body.gradients ?? {})) {
    grid.append(el("div", { class: "row", "data-parameter": parameter },
      el("h4", {}, `∂term/∂${parameter}`),
      ...Object.entries(terms).map(([term, tensor]) => heatmap(term, tensor, { name: `${parameter}.${term}` }))));
  }
}

export async function init() {
  const list = await fetch("v1/activations", { headers: authHeaders() }).then((r) => r.json());
  const select = input("dense-activation");
  for (const a of list.activations) select.append(el("option", { value: a.name }, a.name));
  for (const fieldset of view.querySelectorAll("fieldset.reg")) {
    controls[fieldset.dataset.reg] = regularizerControl(fieldset);
  }
  input("dense-load").addEventListener("click", () => { loadPreset(); compute(); });
  $("#dense-form").addEventListener("submit", compute);
  loadPreset();
  await compute();
}
