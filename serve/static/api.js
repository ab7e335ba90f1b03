// sr-serve API page: /openapi.json rendered with this server's own script (no external assets).
"use strict";

const base = `${location.protocol}//${location.host}`;
document.getElementById("examples").textContent = [
  "# upscale one image: the x4 result in the input's dtype, as a TIFF",
  `curl --fail --data-binary @cells.tif ${base}/v1/upscale -o cells_x4.tif`,
  "# the self-ensemble: 4 flipped/transposed copies averaged (4x the time)",
  `curl --fail --data-binary @cells.tif '${base}/v1/upscale?ensemble=4' -o cells_x4.tif`,
  "# half the model's change over bicubic (low-noise images sampled finer than the optics resolve)",
  `curl --fail --data-binary @cells.tif '${base}/v1/upscale?strength=0.5' -o cells_x4.tif`,
  "# with a token (sr-serve --host 0.0.0.0 prints one)",
  `curl --fail -H "Authorization: Bearer $TOKEN" --data-binary @cells.tif ${base}/v1/upscale -o cells_x4.tif`,
  "# a job with progress, for big images",
  `curl --data-binary @big.tif ${base}/v1/jobs        # -> {"id": ID, "state": "queued", ...}`,
  `curl ${base}/v1/jobs/ID                           # state, progress; then:`,
  `curl -o big_x4.tif ${base}/v1/jobs/ID/result.tif`,
  "# the model card's summary and the limits",
  `curl ${base}/v1/model`,
].join("\n");

getJSON("/openapi.json").then((spec) => {
  const root = document.getElementById("endpoints");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("div", { class: "ep" },
        el("div", { class: "line" }, el("span", { class: `method ${method}` }, method.toUpperCase()),
          el("span", { class: "path" }, path), el("span", { class: "muted" }, op.summary || "")));
      const ul = el("ul");
      for (const p of op.parameters || []) {
        ul.append(el("li", {}, `${p.in} parameter ${p.name}${p.required ? " (required)" : ""}${p.description ? `: ${p.description}` : ""}`));
      }
      if (op.requestBody) {
        const types = Object.keys(op.requestBody.content || {}).join(", ");
        ul.append(el("li", {}, `body: ${op.requestBody.description || ""} [${types}]`));
      }
      for (const [code, r] of Object.entries(op.responses || {})) {
        const types = Object.keys(r.content || {}).join(", ");
        ul.append(el("li", {}, `${code}: ${r.description || ""}${types ? ` [${types}]` : ""}`));
      }
      box.append(ul);
      root.append(box);
    }
  }
}).catch((e) => { document.getElementById("endpoints").textContent = e.message; });
