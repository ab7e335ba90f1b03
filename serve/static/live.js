// sr-serve live page: the frame with its ROI box (drag a new one), the ROI super-resolved by
// the chosen method, over a WebSocket or MJPEG (both parsed here, so both are measured alike).
"use strict";

const frameCanvas = document.getElementById("frame");
const roiCanvas = document.getElementById("roi");
const msg = document.getElementById("live-msg");
const params = new URLSearchParams(location.search);
let last = null;           // the newest header
let frameBitmap = null;    // the newest frame (drawn with the ROI box)
let dragBox = null;        // {x0, y0, x1, y1} in frame pixels while dragging
const shownTimes = [];     // when each of the last frames was drawn (for FPS here)
let shown = 0;
let transport = null;      // {send(settings), close()}

function setText(id, v) { document.getElementById(id).textContent = v; }

function fpsHere() {
  const now = performance.now();
  while (shownTimes.length && now - shownTimes[0] > 2000) shownTimes.shift();
  if (shownTimes.length < 2) return 0;
  return (shownTimes.length - 1) / ((shownTimes[shownTimes.length - 1] - shownTimes[0]) / 1000);
}

function fitCanvas(c, w, h) {
  if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
}

function drawFrame() {
  if (!frameBitmap || !last) return;
  fitCanvas(frameCanvas, frameBitmap.width, frameBitmap.height);
  const ctx = frameCanvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(frameBitmap, 0, 0);
  const lw = Math.max(1, frameBitmap.width / 256);
  ctx.lineWidth = lw;
  ctx.strokeStyle = "#4fb3a9";
  const [x, y, w, h] = last.roi;
  ctx.strokeRect(x + lw / 2, y + lw / 2, w - lw, h - lw);
  if (dragBox) {
    ctx.strokeStyle = "#f0b44c";
    ctx.setLineDash([4 * lw, 3 * lw]);
    const b = norm(dragBox);
    ctx.strokeRect(b[0], b[1], b[2], b[3]);
    ctx.setLineDash([]);
  }
}

function drawRoi(bitmap) {
  fitCanvas(roiCanvas, bitmap.width, bitmap.height);
  const ctx = roiCanvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
}

async function onPacket(header, frameBlob, roiBlob) {
  const [fb, rb] = await Promise.all([createImageBitmap(frameBlob), createImageBitmap(roiBlob)]);
  if (frameBitmap) frameBitmap.close();
  frameBitmap = fb;
  last = header;
  drawFrame();
  drawRoi(rb);
  rb.close();
  shown += 1;
  shownTimes.push(performance.now());
  setText("frames", shown);
  setText("fps", fpsHere().toFixed(1));
  setText("server-fps", header.fps.toFixed(1));
  setText("sr-ms", header.sr_ms.toFixed(1));
  setText("latency", Math.max(0, Date.now() - header.t_capture * 1000).toFixed(0));
  setText("frame-caption", `${header.source} · ${header.frame_w}×${header.frame_h} · drag a box to choose the ROI`);
  setText("roi-caption", `ROI ${header.roi[2]}×${header.roi[3]} at ${header.roi[0]},${header.roi[1]} · ${header.mode} x${header.scale}`);
  for (const b of document.querySelectorAll("#modes button")) b.classList.toggle("on", b.dataset.mode === header.mode);
  msg.textContent = "";
}

// ------------------------------------------------------------------ transports
function openWebSocket() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/live/ws`);
  ws.binaryType = "arraybuffer";
  let busy = false;
  let waiting = null;  // the newest message that came while one was being drawn
  const draw = (data) => {
    if (busy) { waiting = data; return; }  // older waiting ones are skipped: the newest wins
    const buf = new Uint8Array(data);
    const n = new DataView(data).getUint32(0);
    const header = JSON.parse(new TextDecoder().decode(buf.subarray(4, 4 + n)));
    const f0 = 4 + n, f1 = f0 + header.frame_bytes;
    busy = true;
    onPacket(header, new Blob([buf.subarray(f0, f1)], { type: "image/jpeg" }),
      new Blob([buf.subarray(f1, f1 + header.roi_bytes)], { type: "image/jpeg" })).finally(() => {
      busy = false;
      if (waiting) { const w = waiting; waiting = null; draw(w); }
    });
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") { msg.textContent = JSON.parse(e.data).error || ""; return; }
    draw(e.data);
  };
  ws.onclose = (e) => { if (transport && transport.ws === ws) msg.textContent = `feed closed${e.reason ? `: ${e.reason}` : ""}`; };
  return { ws, send: (s) => { if (ws.readyState === 1) ws.send(JSON.stringify(s)); }, close: () => ws.close() };
}

function indexOf(hay, needle, from) {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function openMjpeg() {
  const ctl = new AbortController();
  const enc = new TextEncoder();
  const sep = enc.encode("\r\n\r\n");
  let pending = null;
  (async () => {
    const r = await fetch("/v1/live/mjpeg?part=both", { signal: ctl.signal, credentials: "same-origin" });
    if (!r.ok) { msg.textContent = `MJPEG: ${r.status}`; return; }
    const reader = r.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const nb = new Uint8Array(buf.length + value.length);
      nb.set(buf); nb.set(value, buf.length); buf = nb;
      for (;;) {
        const h = indexOf(buf, sep, 0);
        if (h < 0) break;
        const head = new TextDecoder().decode(buf.subarray(0, h));
        const len = +(/Content-Length: (\d+)/i.exec(head) || [])[1];
        const kind = (/X-Part: (\w+)/i.exec(head) || [])[1];
        const hdr = (/X-Header: (.*)/i.exec(head) || [])[1];
        if (!(len >= 0) || buf.length < h + 4 + len + 2) break;
        const data = buf.slice(h + 4, h + 4 + len);
        buf = buf.slice(h + 4 + len + 2);
        const blob = new Blob([data], { type: "image/jpeg" });
        if (kind === "frame") pending = { header: JSON.parse(hdr), frame: blob };
        else if (kind === "roi" && pending) { const p = pending; pending = null; await onPacket(p.header, p.frame, blob); }
      }
    }
  })().catch((e) => { if (e.name !== "AbortError") msg.textContent = `MJPEG: ${e.message}`; });
  return {
    send: (s) => getJSON("/v1/live", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(s) })
      .catch((e) => { msg.textContent = e.message; }),
    close: () => ctl.abort(),
  };
}

function connect(kind) {
  if (transport) transport.close();
  shownTimes.length = 0;
  transport = kind === "mjpeg" ? openMjpeg() : openWebSocket();
}

// ------------------------------------------------------------------ controls
for (const b of document.querySelectorAll("#modes button")) {
  b.addEventListener("click", () => transport && transport.send({ mode: b.dataset.mode }));
}
const sel = document.getElementById("transport");
// MJPEG by default: it kept up better than the WebSocket in every setting measured
// (benchmarks/bench_serve_live.py); ?transport=ws picks the WebSocket
sel.value = params.get("transport") === "ws" ? "ws" : "mjpeg";
sel.addEventListener("change", () => connect(sel.value));

function framePoint(e) {
  const r = frameCanvas.getBoundingClientRect();
  return [((e.clientX - r.left) / r.width) * frameCanvas.width, ((e.clientY - r.top) / r.height) * frameCanvas.height];
}
function norm(b) {
  const x = Math.round(Math.min(b.x0, b.x1)), y = Math.round(Math.min(b.y0, b.y1));
  return [x, y, Math.max(1, Math.round(Math.abs(b.x1 - b.x0))), Math.max(1, Math.round(Math.abs(b.y1 - b.y0)))];
}
frameCanvas.addEventListener("pointerdown", (e) => {
  if (!last) return;
  const [x, y] = framePoint(e);
  dragBox = { x0: x, y0: y, x1: x, y1: y };
  frameCanvas.setPointerCapture(e.pointerId);
});
frameCanvas.addEventListener("pointermove", (e) => {
  if (!dragBox) return;
  [dragBox.x1, dragBox.y1] = framePoint(e);
  drawFrame();
});
frameCanvas.addEventListener("pointerup", () => {
  if (!dragBox) return;
  const b = norm(dragBox);
  dragBox = null;
  if (b[2] >= 4 && b[3] >= 4 && transport) transport.send({ roi: b });
  drawFrame();
});

getJSON("/v1/live").then((s) => {
  msg.textContent = s.error ? `source error: ${s.error}` : `source: ${s.source}`;
  connect(sel.value);
}).catch((e) => {
  msg.textContent = e.status === 404 ? "No live source: start sr-serve --source STACK.tif (or python demo_pi/run.py --serve)." : e.message;
});
setInterval(() => { if (shownTimes.length) setText("fps", fpsHere().toFixed(1)); }, 1000);
