// Bring a model view: upload a .keras file to POST /v1/model (multipart: part `model` the
// file, part `request` the JSON of the remaining fields); per-layer report and diagnostics.
import {
  $, authHeaders, bars, clearErrors, curlAuth, el, fmt, InputError, parseField, readJson,
  shellQuote, showError, showInputError, showRequests, table, unreachable, url,
} from "./common.js";

const view = $("#model");
const input = (id) => $(`#${id}`, view);


async function compute(event) {
  event?.preventDefault();
  const button = $("#model-run");
  if (button.disabled) return;
  button.disabled = true;
  try {
    await computeOnce();
  } finally {
    button.disabled = false;
  }
}

async function computeOnce() {
  view.dataset.state = "busy";
  clearErrors(view);
  const file = input("model-file").files[0];
  let request;
  try {
    if (!file) throw new InputError("model", "choose a .keras file first");
    request = parseField("request", input("model-request").value);
  } catch (exc) {
    if (exc instanceof InputError) return showInputError(view, exc);
    throw exc;
  }
  const json = JSON.stringify(request);
  showRequests(view, [`curl -s ${url("v1/model")}${curlAuth()} -F ${shellQuote(`model=@${file.name}`)} -F ${shellQuote(`request=${json}`)}`]);
  const form = new FormData();
  form.append("model", file, file.name);
  form.append("request", json);
  let response;
  try {
    response = await fetch(url("v1/model"), { method: "POST", body: form, headers: { accept: "application/json", ...authHeaders() } });
  } catch (exc) {
    return showError(view, unreachable(exc));
  }
  const body = await readJson(response);
  if (response.status !== 200) return showError(view, body, { weights: "model", inputs: "request", targets: "request", loss: "request" });
  draw(body);
  view.dataset.state = "done";
}

function draw(body) {
  const losses = Object.entries(body.losses).map(([name, value]) => ({ name, value, colour: name === "total" ? "hsl(0 0% 35%)" : undefined }));
  input("model-losses").replaceChildren(el("figcaption", {}, "losses (each term and total)"), bars(losses, { label: "model losses" }));
  const layerRows = (body.layers ?? []).map((layer) => [
    layer.name, layer.class_name, JSON.stringify(layer.output_shape),
    el("span", {}, ...Object.entries(layer.losses ?? {}).map(([k, v]) =>
      el("span", { class: "term", "data-name": `${layer.name}/${k}`, "data-value": fmt(v) }, `${k} = ${fmt(v)} `))),
  ]);
  input("model-layers").replaceChildren(table(["layer", "class", "output shape", "penalty terms"], layerRows, "per-layer report"));
  const diagnostics = body.diagnostics ?? [];
  input("model-diagnostics").replaceChildren(diagnostics.length
    ? table(["code", "layer", "message"], diagnostics.map((d) => [d.code, d.layer ?? "", d.message]), "diagnostics")
    : el("p", {}, "no diagnostics"));
}

export function init() {
  $("#model-form").addEventListener("submit", compute);
  view.dataset.state = "idle";
}
