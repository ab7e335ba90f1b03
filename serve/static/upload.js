// sr-serve upload page: send each dropped file as a job, show its progress, then the three
// panels (nearest | bicubic | model) with one shared zoom and pan, and the x4 TIFF to download.
"use strict";

const items = [];          // {file, row, bar, state, job, images}
let current = null;        // the item shown
const view = { z: 1, ox: 0, oy: 0 };  // canvas px per HR px, offset in canvas px
const canvases = ["nearest", "bicubic", "model"].map((n) => document.getElementById(`panel-${n}`));

// ------------------------------------------------------------------ model card summary
modelInfo.then((m) => {
  const body = document.getElementById("card-body");
  body.className = "";
  body.replaceChildren();
  const kv = el("dl", { class: "kv" });
  const add = (k, v) => { kv.append(el("dt", {}, k), el("dd", {}, v)); };
  add("name", m.name);
  add("architecture", m.architecture);
  add("scale", `x${m.scale}`);
  add("halo", `${m.halo} LR px`);
  if (m.cost && m.cost.macs_per_lr_pixel) {
    add("cost", `${(m.cost.macs_per_lr_pixel / 1000).toFixed(1)} k multiply-accumulates per LR pixel`
      + (m.cost.params ? `, ${m.cost.params.toLocaleString("en")} parameters` : ""));
  }
  add("artifact", `${m.artifact} (${m.format}, ${m.precision})`);
  add("backend", m.backend || "?");
  const train = m.training || {};
  const stages = train.stages || [];
  if (stages.length > 2) {
    // long run, then each fine-tune: "+ 8000 quantisation-aware", "+ 40000 at depth 8"
    const parts = stages.map((st, i) => {
      const bits = [`${st.steps} steps`];
      if (st.quant_aware) bits.push("quantisation-aware");
      if (st.mode === "distill") {
        const n = st.teacher_ensemble > 1 ? `${st.teacher_ensemble}-copy ` : "";
        bits.push(st.self_distilled ? `distilled from its own ${n}self-ensemble` : `distilled from a ${n}teacher`);
      }
      if (i > 0 && st.depth && stages[i - 1].depth && st.depth !== stages[i - 1].depth) bits.push(`deepened to ${st.depth} layers`);
      return (i ? "+ " : "") + bits.join(", ");
    });
    add("training", `${stages[0].mode || ""} ${parts.join("; ")}`);
  } else if (train.steps && train.started_from_steps) {
    const kind = train.quant_aware ? "quantisation-aware " : "";
    add("training", `${train.mode || ""} ${train.started_from_steps} steps, then ${train.steps} ${kind}fine-tune steps`);
  } else if (train.steps) add("training", `${train.mode || ""} ${train.steps} steps`);
  add("limits", `${(m.limits.max_upload_bytes / 2 ** 20).toFixed(0)} MB, ${(m.limits.max_pixels / 1e6).toFixed(1)} Mpx per upload`);
  body.append(kv);
  const src = (m.training && m.training.sources) || [];
  if (src.length) {
    body.append(el("h2", {}, "Training sources"));
    const ul = el("ul", { class: "sources" });
    for (const s of src) ul.append(el("li", {}, s.source + (s.licence ? ` · ${s.licence}` : "")));
    body.append(ul);
  }
  const rows = Object.entries(m.heldout || {});
  if (rows.length) {
    body.append(el("h2", {}, "Held-out gain over bicubic"));
    const t = el("table", { class: "metrics" });
    t.append(el("tr", {}, el("th", {}, "LR made by"), el("th", {}, "PSNR dB"), el("th", {}, "gain"), el("th", {}, "worst")));
    for (const [row, e] of rows) {
      const g = e.gain_db_vs_bicubic, w = e.worst_gain_db;
      const fmt = (v) => (typeof v === "number" ? (v >= 0 ? "+" : "") + v.toFixed(2) : "–");
      const tr = el("tr", {}, el("td", {}, row), el("td", {}, typeof e.psnr_model === "number" ? e.psnr_model.toFixed(2) : "–"));
      tr.append(el("td", { class: g >= 0 ? "pos" : "neg" }, fmt(g)), el("td", { class: w >= 0 ? "pos" : "neg" }, fmt(w)));
      t.append(tr);
    }
    body.append(t);
    if (m.heldout_sources) body.append(el("p", { class: "hint muted" }, `held out: ${m.heldout_sources.join(", ")}`));
  }
}).catch(() => {});

// ------------------------------------------------------------------ files in
const drop = document.getElementById("drop");
const input = document.getElementById("files");
input.addEventListener("change", () => { for (const f of input.files) add(f); input.value = ""; });
for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
drop.addEventListener("drop", (e) => { for (const f of e.dataTransfer.files) add(f); });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => e.preventDefault());

function add(file) {
  const state = el("span", { class: "state" }, "waiting");
  const bar = el("progress", { max: "1", value: "0" });
  const row = el("li", {}, el("div", { class: "name" }, el("b", { title: file.name }, file.name), state), bar);
  // the self-ensemble and strength chosen when the file was added: a later change applies to later files
  const ensemble = document.getElementById("ensemble").value;
  const strength = document.getElementById("strength").value;
  const item = { file, row, bar, stateEl: state, state: "waiting", job: null, images: null, ensemble, strength };
  row.addEventListener("click", () => { if (item.state === "done") show(item); });
  document.getElementById("queue").prepend(row);
  items.push(item);
  pump();
}

// one upload at a time from this page: the server's queue is for everyone
let busy = false;
function pump() {
  if (busy) return;
  const next = items.find((i) => i.state === "waiting");
  if (!next) return;
  busy = true;
  run(next).finally(() => { busy = false; pump(); });
}

function setState(item, text, frac) {
  item.stateEl.textContent = text;
  if (frac !== undefined) item.bar.value = frac;
}

function fail(item, msg) {
  item.state = "failed";
  setState(item, "failed", 0);
  item.bar.remove();
  item.row.append(el("div", { class: "err" }, msg));
}

function uploadJob(item) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = `ensemble=${encodeURIComponent(item.ensemble)}&strength=${encodeURIComponent(item.strength)}`;
    xhr.open("POST", `/v1/jobs?${query}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setState(item, `uploading ${Math.round((100 * e.loaded) / e.total)}%`, 0.3 * (e.loaded / e.total));
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 202) resolve(body);
      else {
        const retry = xhr.getResponseHeader("Retry-After");
        reject(new Error(`${xhr.status}: ${(body && body.detail) || xhr.statusText}${retry ? ` (retry in ${retry} s)` : ""}`));
      }
    };
    xhr.onerror = () => reject(new Error("the connection to sr-serve failed"));
    xhr.send(item.file);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(item) {
  item.state = "running";
  try {
    let job = await uploadJob(item);
    item.job = job;
    while (job.state === "queued" || job.state === "running") {
      const label = job.state === "queued" ? `queued (${job.position || 0} ahead)` : `upscaling ${Math.round(100 * job.progress)}%`;
      setState(item, label, 0.3 + 0.7 * job.progress);
      await sleep(job.state === "queued" ? 400 : 200);
      job = await getJSON(`/v1/jobs/${job.id}`);
    }
    item.job = job;
    if (job.state !== "done") throw new Error(job.error || "failed");
    item.images = await loadPanels(job);
    item.state = "done";
    const o = job.output;
    setState(item, `${o.shape.join("×")} ${o.dtype} · ${job.seconds.toFixed(2)} s`, 1);
    item.bar.remove();
    show(item);
  } catch (e) {
    fail(item, e.message);
  }
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error(`could not load ${url}`));
    im.src = url;
  });
}

async function loadPanels(job, plane) {
  const q = plane === undefined || plane === null ? "" : `?plane=${plane}`;
  const [nearest, bicubic, model] = await Promise.all(["nearest", "bicubic", "model"].map((p) => loadImage(job.panels[p] + q)));
  return { nearest, bicubic, model };
}

// stacks: a slider picks the plane; the panels of that plane replace the shown ones, zoom kept
const planeBox = document.getElementById("plane-box");
const planeInput = document.getElementById("plane");
let planeTimer = null;
planeInput.addEventListener("input", () => {
  const item = current;
  if (!item) return;
  const k = +planeInput.value;
  document.getElementById("plane-label").textContent = `${k + 1} / ${item.job.preview.planes}`;
  clearTimeout(planeTimer);
  planeTimer = setTimeout(async () => {
    try {
      const images = await loadPanels(item.job, k);
      item.images = images;
      item.plane = k;
      if (current === item) draw();
    } catch (e) { document.getElementById("preview-note").textContent = e.message; }
  }, 120);
});

// ------------------------------------------------------------------ the three panels
function show(item) {
  current = item;
  for (const i of items) i.row.classList.toggle("sel", i === item);
  const job = item.job;
  const stem = item.file.name.replace(/\.[^.]*$/, "") || "image";
  const dl = document.getElementById("download");
  dl.href = job.result;
  dl.setAttribute("download", `${stem}_x${scaleOf(job)}.tif`);
  dl.classList.remove("disabled");
  document.getElementById("reset").disabled = false;
  const i = job.input;
  document.getElementById("result-title").textContent =
    `${item.file.name}: ${i.shape.join("×")} ${i.axes} ${i.dtype} → ${job.output.shape.join("×")} ${job.output.dtype}` +
    (job.ensemble > 1 ? ` · ${job.ensemble}-copy self-ensemble` : "") +
    (job.strength !== undefined && job.strength !== 1 ? ` · strength ${job.strength}` : "");
  const p = job.preview;
  planeBox.classList.toggle("hidden", !(p.planes > 1));
  if (p.planes > 1) {
    const k = item.plane === undefined ? p.plane_index : item.plane;
    planeInput.max = String(p.planes - 1);
    planeInput.value = String(k);
    document.getElementById("plane-label").textContent = `${k + 1} / ${p.planes}`;
  }
  const note = [];
  if (p.planes > 1) note.push(`one plane of ${p.planes} at a time (the slider picks it); the download holds them all`);
  if (p.cropped) note.push(`a ${p.crop.width}×${p.crop.height} LR crop at x ${p.crop.x}, y ${p.crop.y} (the download holds the whole image)`);
  document.getElementById("preview-note").textContent = note.length ? `Preview: ${note.join("; ")}.` : "";
  fit();
}

function scaleOf(job) {
  const iy = job.input.axes.indexOf("Y");
  return Math.round(job.output.shape[iy] / job.input.shape[iy]);
}

function size() {
  for (const c of canvases) {
    const r = c.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width * devicePixelRatio));
    if (c.width !== w || c.height !== w) { c.width = w; c.height = w; }
  }
}

function fit() {
  if (!current) return;
  size();
  const m = current.images.model, c = canvases[0];
  view.z = Math.min(c.width / m.naturalWidth, c.height / m.naturalHeight);
  view.ox = (c.width - m.naturalWidth * view.z) / 2;
  view.oy = (c.height - m.naturalHeight * view.z) / 2;
  draw();
}

function draw() {
  if (!current) return;
  const im = current.images;
  const hrW = im.model.naturalWidth, hrH = im.model.naturalHeight;
  const order = [im.nearest, im.bicubic, im.model];
  canvases.forEach((c, k) => {
    const ctx = c.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#06080a";
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.imageSmoothingEnabled = false;  // every pixel shown as it is (nearest is then exact)
    ctx.setTransform(view.z, 0, 0, view.z, view.ox, view.oy);
    ctx.drawImage(order[k], 0, 0, hrW, hrH);
  });
  document.getElementById("zoom").textContent = `${(view.z / devicePixelRatio * 100).toFixed(0)}% of the x4 result`;
}

let drag = null;
for (const c of canvases) {
  c.addEventListener("wheel", (e) => {
    if (!current) return;
    e.preventDefault();
    const r = c.getBoundingClientRect();
    const mx = (e.clientX - r.left) * devicePixelRatio, my = (e.clientY - r.top) * devicePixelRatio;
    const f = Math.exp(-e.deltaY * 0.0015);
    const z = Math.min(64, Math.max(0.02, view.z * f));
    view.ox = mx - ((mx - view.ox) * z) / view.z;
    view.oy = my - ((my - view.oy) * z) / view.z;
    view.z = z;
    draw();
  }, { passive: false });
  c.addEventListener("pointerdown", (e) => {
    if (!current) return;
    drag = { x: e.clientX, y: e.clientY, ox: view.ox, oy: view.oy };
    c.setPointerCapture(e.pointerId);
    c.classList.add("dragging");
  });
  c.addEventListener("pointermove", (e) => {
    if (!drag) return;
    view.ox = drag.ox + (e.clientX - drag.x) * devicePixelRatio;
    view.oy = drag.oy + (e.clientY - drag.y) * devicePixelRatio;
    draw();
  });
  const end = () => { drag = null; c.classList.remove("dragging"); };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  c.addEventListener("dblclick", fit);
}
document.getElementById("reset").addEventListener("click", fit);
window.addEventListener("resize", () => { if (current) { const z = view.z; size(); view.z = z; fit(); } });
