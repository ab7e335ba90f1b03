// sr-serve: what every page shares: the JSON fetch helper and the model badge.
"use strict";

async function getJSON(url, options) {
  const r = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : r.statusText;
    const err = new Error(`${r.status}: ${detail}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const modelInfo = getJSON("/v1/model").then((m) => {
  const badge = document.getElementById("model-badge");
  if (badge) badge.textContent = `${m.name} · x${m.scale} · ${m.backend || ""}`;
  return m;
}).catch((e) => {
  const badge = document.getElementById("model-badge");
  if (badge) badge.textContent = `model: ${e.message}`;
  throw e;
});
