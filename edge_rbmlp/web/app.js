// edge-rbmlp page: draw a digit, paste a review, watch the camera and the service.
// Plain browser JavaScript, nothing loaded from outside the service.
"use strict";

const state = { models: [], token: null, digitBusy: false, digitPending: false, strokes: 0, inked: false };
const $ = (id) => document.getElementById(id);

(function readToken() {
  const m = /token=([^&]+)/.exec(location.hash);
  if (m) { localStorage.setItem("edge-rbmlp-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  state.token = localStorage.getItem("edge-rbmlp-token");
})();

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401 && !state.tokenDeclined) {
    const token = window.prompt("This service needs its API token:");
    if (token) { state.token = token; localStorage.setItem("edge-rbmlp-token", token); return api(path, options); }
    state.tokenDeclined = true; // ask once per page load, not on every refresh
  }
  return resp;
}

function count(name) {
  const ds = document.body.dataset;
  ds[name] = String(Number(ds[name] || 0) + 1);
}

function showBars(list, labels, probs) {
  const top = probs.indexOf(Math.max(...probs));
  list.replaceChildren(...labels.map((label, i) => {
    const li = document.createElement("li");
    if (i === top) li.className = "top";
    const name = document.createElement("span"); name.textContent = label;
    const bar = document.createElement("span"); bar.className = "bar";
    const fill = document.createElement("span"); fill.style.width = (100 * probs[i]).toFixed(1) + "%";
    bar.append(fill);
    const value = document.createElement("span"); value.textContent = probs[i].toFixed(3);
    li.append(name, bar, value);
    return li;
  }));
}

// -- digit pad ------------------------------------------------------------------------------------
const pad = $("pad");
const ctx = pad.getContext("2d");

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  state.inked = false;
  $("digit-label").textContent = "\u2013";
  $("digit-note").textContent = "draw with the mouse or a finger";
  $("digit-probs").replaceChildren();
  document.body.dataset.digitLabel = "";
}

function padPoint(ev) {
  const r = pad.getBoundingClientRect();
  return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
}

let drawing = false, last = null;
pad.addEventListener("pointerdown", (ev) => {
  drawing = true; last = padPoint(ev); pad.setPointerCapture(ev.pointerId);
  ctx.beginPath(); ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fillStyle = "#000"; ctx.fill();
  state.inked = true;
  ev.preventDefault();
});
pad.addEventListener("pointermove", (ev) => {
  if (!drawing) return;
  const p = padPoint(ev);
  ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
  last = p;
  classifyDigit();
  ev.preventDefault();
});
function endStroke() {
  if (!drawing) return;
  drawing = false; state.strokes += 1; document.body.dataset.strokes = String(state.strokes);
  classifyDigit();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("clear").addEventListener("click", clearPad);

// at most one request in flight; the latest drawing is always classified last
async function classifyDigit() {
  const model = $("digit-model").value;
  if (!model || !state.inked) return;
  if (state.digitBusy) { state.digitPending = true; return; }
  state.digitBusy = true;
  document.body.dataset.digitBusy = "1";
  try {
    do {
      state.digitPending = false;
      const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
      const resp = await api("/classify/" + encodeURIComponent(model), {
        method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
      count("digitRequests");
      const body = await resp.json();
      if (resp.ok) {
        $("digit-label").textContent = body.label;
        // where the time went: the engine is a few microseconds of it
        $("digit-note").textContent = `${(100 * Math.max(...body.probabilities)).toFixed(1)}% \u00b7 ` +
          `${body.total_us.toFixed(0)} \u00b5s = decode ${body.decode_us.toFixed(0)} + preprocess ` +
          `${body.preprocess_us.toFixed(0)} + inference ${body.inference_us.toFixed(1)} (${body.backend})`;
        showBars($("digit-probs"), modelLabels(model), body.probabilities);
        document.body.dataset.digitLabel = body.label;
      } else {
        if (body.reason) $("digit-label").textContent = "?";  // refused: no single digit in the picture
        $("digit-note").textContent = body.error || ("HTTP " + resp.status);
      }
    } while (state.digitPending);
  } catch (err) {
    $("digit-note").textContent = "cannot reach the service: " + err;
  } finally {
    state.digitBusy = false;
    document.body.dataset.digitBusy = "0";
  }
}

// -- review -----------------------------------------------------------------------------------------
let reviewTimer = null, reviewSeq = 0;
$("review").addEventListener("input", () => {
  clearTimeout(reviewTimer);
  reviewTimer = setTimeout(classifyReview, 250);
});
async function classifyReview() {
  const model = $("text-model").value, text = $("review").value;
  if (!model) return;
  if (!text.trim()) { $("text-label").textContent = "\u2013"; $("text-probs").replaceChildren(); return; }
  const seq = ++reviewSeq;
  const resp = await api("/classify/" + encodeURIComponent(model), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }) });
  const body = await resp.json();
  count("textRequests");
  if (seq !== reviewSeq) return; // a newer edit is on its way
  if (resp.ok) {
    $("text-label").textContent = body.label + (body.low_confidence ? ` (unsure: ${body.known_words} known words)` : "");
    showBars($("text-probs"), modelLabels(model), body.probabilities);
    document.body.dataset.textLabel = body.label;
  } else {
    $("text-label").textContent = "";
    $("text-probs").replaceChildren(Object.assign(document.createElement("li"), { className: "error", textContent: body.error }));
  }
}

function modelLabels(name) {
  const m = state.models.find((x) => x.name === name);
  return m ? m.labels : [];
}

// -- live panel and camera ------------------------------------------------------------------------------
function percentile(values, q) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function sparkline(series) {
  const c = $("spark"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const all = series.flatMap((s) => s.values);
  if (!all.length) { g.fillStyle = "#667085"; g.fillText("no inferences yet", 8, 40); return; }
  const max = Math.max(...all) * 1.1;
  const colours = ["#2563eb", "#16a34a", "#d97706", "#9333ea"];
  series.forEach((s, k) => {
    g.strokeStyle = colours[k % colours.length]; g.beginPath();
    s.values.forEach((v, i) => {
      const x = (i / Math.max(1, s.values.length - 1)) * (c.width - 4) + 2;
      const y = c.height - 4 - (v / max) * (c.height - 8);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = colours[k % colours.length]; g.fillText(s.name, 6, 12 + 12 * k);
  });
  g.fillStyle = "#667085"; g.fillText(`${max.toFixed(0)} \u00b5s`, c.width - 60, 12);
}

const kib = (n) => (n / 1024).toFixed(2) + " KiB";
const mib = (n) => (n / 1048576).toFixed(1) + " MiB";

async function refresh() {
  try {
    const resp = await api("/api/status");
    if (!resp.ok) return;
    const s = await resp.json();
    if (!state.models.length) setupModels(s.models);
    state.models = s.models;
    const rows = s.models.map((m) => {
      const tr = document.createElement("tr");
      const cells = [m.name, `${m.backend} / ${m.kernel}`, fmt(percentile(m.recent_latency_us, 0.5)),
                     fmt(percentile(m.recent_latency_us, 0.99)), kib(m.file_bytes), m.paper_kib.toFixed(2) + " KiB"];
      cells.forEach((v) => tr.append(Object.assign(document.createElement("td"), { textContent: v })));
      return tr;
    });
    document.querySelector("#live-table tbody").replaceChildren(...rows);
    sparkline(s.models.map((m) => ({ name: m.name, values: m.recent_latency_us })));
    $("memory").textContent = `memory: ${s.rss_bytes ? mib(s.rss_bytes) : "?"} resident, peak ${s.peak_rss_bytes ? mib(s.peak_rss_bytes) : "?"} \u00b7 up ${s.uptime_s.toFixed(0)} s`;
    showCamera(s.camera);
    await refreshReaders(s.camera);
  } catch (err) {
    $("memory").textContent = "cannot reach the service: " + err;
  }
}
const fmt = (v) => (v == null ? "\u2013" : v.toFixed(0));

let lastCameraTime = null;
function showCamera(cam) {
  state.camera = cam;
  const panel = $("camera-panel");
  const readersOnly = cam && state.readers && state.readers.readers.length && !cam.has_frame;  // readers replace the digit view
  if (!cam || (!cam.running && !cam.has_frame) || readersOnly) { panel.hidden = true; return; }
  panel.hidden = false;
  if (cam.last && cam.last.time !== lastCameraTime) {
    lastCameraTime = cam.last.time;
    const t = encodeURIComponent(cam.last.time);
    loadImage($("camera-frame"), "/api/camera/frame.png?t=" + t);
    loadImage($("camera-input"), "/api/camera/input.png?t=" + t);
    $("camera-label").textContent = cam.last.blank ? "\u2013" : cam.last.label;
    document.body.dataset.cameraLabel = cam.last.label;
  }
  $("camera-note").textContent = `${cam.model || ""}: ${cam.frames} frames, ${cam.errors} errors` +
    (cam.last_error ? ` (last: ${cam.last_error})` : "");
}
async function loadImage(img, url) {
  const resp = await api(url);
  if (!resp.ok) return;
  const old = img.src;
  img.src = URL.createObjectURL(await resp.blob());
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
}

// -- readers and the ROI editor ----------------------------------------------------------------------------
let lastReadersFrame = null;
async function refreshReaders(cam) {
  const resp = await api("/api/readers");
  if (!resp.ok) return;
  const r = await resp.json();
  state.readers = r;
  const panel = $("readers-panel");
  panel.hidden = r.readers.length === 0;
  if (r.readers.length && !(cam && cam.has_frame)) $("camera-panel").hidden = true;  // readers replace the digit view
  const values = {};
  const rows = r.readers.map((rd) => {
    const last = rd.last || {};
    values[rd.name] = last.valid ? last.value : null;
    const tr = document.createElement("tr");
    const status = last.valid ? "valid" : (last.reason || "no reading yet");
    const cells = [rd.name, last.value == null ? "\u2013" : last.value,
                   last.confidence == null ? "\u2013" : last.confidence.toFixed(3),
                   last.votes == null ? "\u2013" : `${last.votes}/${last.window}`, status];
    cells.forEach((v, i) => {
      const td = Object.assign(document.createElement("td"), { textContent: v });
      if (i === 4) td.className = last.valid ? "valid" : "error";
      tr.append(td);
    });
    return tr;
  });
  document.querySelector("#readers-table tbody").replaceChildren(...rows);
  document.body.dataset.readers = JSON.stringify(values);
  const mqtt = r.mqtt ? ` \u00b7 MQTT ${r.mqtt.broker}: ${r.mqtt.connected ? "connected" : "not connected"}` +
    (r.mqtt.last_error ? ` (${r.mqtt.last_error})` : "") + `, ${r.mqtt.published} published` : "";
  $("readers-note").textContent = `${r.frames} frames, ${r.errors} errors` +
    (r.last_error ? ` (last: ${r.last_error})` : "") + mqtt;
  if (r.frame && r.frame.ts !== lastReadersFrame) {
    lastReadersFrame = r.frame.ts;
    await loadImage($("readers-frame"), "/api/readers/frame.png?t=" + encodeURIComponent(r.frame.ts));
  }
  roi.setup(r, cam);
}

// The editor works in frame pixels: with readers the full-size frame (/api/readers/frame.png?boxes=0),
// otherwise the camera's preview, scaled back by the frame size it reports.
const roi = {
  boxes: [], frame: null, scale: 1, drag: null, ready: false, starts: "",
  canvas: $("roi-canvas"),
  setup(readers, cam) {
    const hasReaderFrame = readers && readers.frame;
    const hasCamFrame = cam && cam.has_frame && cam.last && cam.last.frame_width;
    $("roi-panel").hidden = !(hasReaderFrame || hasCamFrame);
    const names = (readers ? readers.readers : []).map((rd) => rd.name).join(",");
    if (names !== this.starts) {
      this.starts = names;
      $("roi-start").replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: "new reader" }),
        ...readers.readers.map((rd) => Object.assign(document.createElement("option"), { value: rd.name, textContent: rd.name })));
    }
    if (!this.ready && (hasReaderFrame || hasCamFrame)) { this.ready = true; this.load(); }
  },
  async load() {
    const readers = state.readers, cam = state.camera;
    let url, width;
    if (readers && readers.frame) { url = "/api/readers/frame.png?boxes=0&t=" + Date.now(); width = readers.frame.width; }
    else if (cam && cam.last) { url = "/api/camera/frame.png?t=" + Date.now(); width = cam.last.frame_width; }
    else return;
    const resp = await api(url);
    if (!resp.ok) return;
    const bitmap = await createImageBitmap(await resp.blob());
    this.frame = bitmap;
    this.scale = width / bitmap.width;  // frame pixels per preview pixel
    this.canvas.width = bitmap.width; this.canvas.height = bitmap.height;
    document.body.dataset.roiFrame = `${Math.round(bitmap.width * this.scale)}`;
    this.draw();
  },
  point(ev) {  // pointer -> frame pixels
    const r = this.canvas.getBoundingClientRect();
    const x = (ev.clientX - r.left) * this.canvas.width / r.width, y = (ev.clientY - r.top) * this.canvas.height / r.height;
    return [Math.max(0, x * this.scale), Math.max(0, y * this.scale)];
  },
  draw() {
    const g = this.canvas.getContext("2d");
    if (this.frame) g.drawImage(this.frame, 0, 0);
    const all = this.drag ? [...this.boxes, this.drag] : this.boxes;
    g.lineWidth = 2; g.font = "12px sans-serif";
    all.forEach((b, i) => {
      const [x, y, w, h] = b.map((v) => v / this.scale);
      g.strokeStyle = "#2563eb"; g.strokeRect(x, y, w, h);
      g.fillStyle = "#2563eb"; g.fillText(String(i + 1), x + 3, y + 13);
    });
    this.toml();
  },
  toml() {
    const name = ($("roi-name").value || "meter").replace(/[^A-Za-z0-9_-]/g, "_");
    const rois = this.boxes.map((b) => `[${b.join(", ")}]`).join(", ");
    const model = (state.models.find((m) => m.kind === "image") || { name: "mnist" }).name;
    $("roi-toml").textContent = this.boxes.length ?
      `[[readers]]\nname = "${name}"\nmodel = "${model}"\nrois = [${rois}]\nmin_confidence = 0.6\nvote = 3\n` :
      "draw a box around each digit, left to right";
    document.body.dataset.roiToml = this.boxes.length ? $("roi-toml").textContent : "";
  },
};
roi.canvas.addEventListener("pointerdown", (ev) => {
  const [x, y] = roi.point(ev);
  roi.origin = [x, y]; roi.drag = [Math.round(x), Math.round(y), 0, 0];
  roi.canvas.setPointerCapture(ev.pointerId); ev.preventDefault();
});
roi.canvas.addEventListener("pointermove", (ev) => {
  if (!roi.drag) return;
  const [x, y] = roi.point(ev), [x0, y0] = roi.origin;
  roi.drag = [Math.round(Math.min(x, x0)), Math.round(Math.min(y, y0)), Math.round(Math.abs(x - x0)), Math.round(Math.abs(y - y0))];
  roi.draw(); ev.preventDefault();
});
function roiEnd() {
  if (!roi.drag) return;
  if (roi.drag[2] >= 8 && roi.drag[3] >= 8) roi.boxes.push(roi.drag);  // the config needs w, h >= 8
  roi.drag = null; roi.draw();
}
roi.canvas.addEventListener("pointerup", roiEnd);
roi.canvas.addEventListener("pointercancel", roiEnd);
$("roi-undo").addEventListener("click", () => { roi.boxes.pop(); roi.draw(); });
$("roi-clear").addEventListener("click", () => { roi.boxes = []; roi.draw(); });
$("roi-refresh").addEventListener("click", () => roi.load());
$("roi-name").addEventListener("input", () => roi.toml());
$("roi-start").addEventListener("change", () => {
  const rd = (state.readers ? state.readers.readers : []).find((r) => r.name === $("roi-start").value);
  roi.boxes = rd ? rd.rois.map((b) => [...b]) : [];
  if (rd) $("roi-name").value = rd.name;
  roi.draw();
});

function setupModels(models) {
  const images = models.filter((m) => m.kind === "image"), texts = models.filter((m) => m.kind === "text");
  for (const [sel, list, panel] of [[$("digit-model"), images, $("digit-panel")], [$("text-model"), texts, $("text-panel")]]) {
    sel.replaceChildren(...list.map((m) => Object.assign(document.createElement("option"), { value: m.name, textContent: m.name })));
    panel.hidden = list.length === 0;
  }
  $("served").textContent = "serving " + models.map((m) => `${m.name} (${m.arch})`).join(", ");
  document.body.dataset.ready = "1";
}

ctx.lineWidth = 18; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
clearPad();
refresh();
setInterval(refresh, 1000);
