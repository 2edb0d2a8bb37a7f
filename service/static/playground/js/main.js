// The playground's entry point: one view per tab (the URL's #hash), each initialised once.
import * as dense from "./dense.js";
import * as model from "./model.js";
import * as regularizers from "./regularizers.js";
import * as seed003 from "./seed003.js";
import * as train from "./train.js";

const VIEWS = { regularizers, dense, seed003, train, model };
const started = {};

function show() {
  const name = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "regularizers";
  for (const key of Object.keys(VIEWS)) {
    document.getElementById(key).hidden = key !== name;
    const tab = document.getElementById(`tab-${key}`);
    if (key === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (!started[name]) started[name] = VIEWS[name].init();
}

window.addEventListener("hashchange", show);
show();
