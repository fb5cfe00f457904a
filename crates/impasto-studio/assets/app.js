// impasto studio: the page's behaviour. Plain JavaScript, no framework, nothing fetched from
// elsewhere. The server pushes a job's progress over server-sent events; this script draws it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  defaults: null,       // the server's JobParams defaults (the CLI's)
  uploads: new Map(),   // id -> upload
  photo: null,          // upload id
  styles: [],           // [{id, weight}]
  startFrom: null,      // job id whose result starts the next job
  jobs: new Map(),      // id -> job record
  watching: null,       // job id
  source: null,         // EventSource of the watched job
  losses: new Map(),    // iteration -> loss point, of the watched job
};

// Fields of the form and how they map to the request.
const NUMBER = ["size", "iterations", "style_weight", "tv_weight", "style_scale", "content_weight",
  "start_size", "scale_iterations", "seed", "bit_depth"];
const TEXT = ["preserve_color", "scales", "optimizer", "model", "pooling", "init"];
const LIST = ["content_layers", "style_layers"];

async function api(method, url, body, headers) {
  const res = await fetch(url, { method, body, headers });
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.field = data && data.field;
    throw err;
  }
  return data;
}

function showError(field, message) {
  const el = document.querySelector(`.err[data-for="${field}"]`) || document.querySelector('.err[data-for="general"]');
  el.textContent = message;
}
function clearErrors() { document.querySelectorAll("form .err, .panel .err[data-for]").forEach((e) => { e.textContent = ""; }); }

// ---- uploads -------------------------------------------------------------------------------

async function uploadFiles(files, role) {
  clearErrors();
  for (const file of files) {
    $("#upload-status").textContent = `uploading ${file.name}…`;
    try {
      const up = await api("POST", `/api/uploads?name=${encodeURIComponent(file.name)}`, file);
      state.uploads.set(up.id, up);
      if (role === "photo") state.photo = up.id; else addStyle(up.id);
      $("#upload-status").textContent = `uploaded ${up.name} (${up.width}×${up.height})`;
    } catch (e) {
      showError(e.field || "file", `${file.name}: ${e.message}`);
      $("#upload-status").textContent = "";
    }
  }
  renderChosen();
  renderLibrary();
}

function addStyle(id) {
  if (!state.styles.some((s) => s.id === id)) state.styles.push({ id, weight: 1 });
}

function thumb(up, buttons) {
  const div = document.createElement("div");
  div.className = "thumb";
  div.dataset.id = up.id;
  const img = document.createElement("img");
  img.src = `/api/uploads/${up.id}/thumb.png`;
  img.alt = up.name;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = up.name;
  name.title = `${up.name}, ${up.width}×${up.height}`;
  div.append(img, name);
  for (const b of buttons) div.append(b);
  return div;
}

function button(text, onclick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (cls) b.className = cls;
  b.addEventListener("click", onclick);
  return b;
}

function renderChosen() {
  const photo = $("#chosen-photo");
  photo.replaceChildren();
  const up = state.uploads.get(state.photo);
  if (up) photo.append(thumb(up, [button("×", () => { state.photo = null; renderChosen(); }, "secondary")]));
  const styles = $("#chosen-styles");
  styles.replaceChildren();
  for (const s of state.styles) {
    const u = state.uploads.get(s.id);
    if (!u) continue;
    const w = document.createElement("input");
    w.type = "number"; w.step = "any"; w.min = "0"; w.value = s.weight; w.title = "blend weight";
    w.addEventListener("input", () => { s.weight = Number(w.value); });
    styles.append(thumb(u, [w, button("×", () => {
      state.styles = state.styles.filter((x) => x.id !== s.id); renderChosen();
    }, "secondary")]));
  }
}

function renderLibrary() {
  const lib = $("#library");
  lib.replaceChildren();
  for (const up of state.uploads.values()) {
    lib.append(thumb(up, [
      button("photo", () => { state.photo = up.id; renderChosen(); }, "use-photo"),
      button("painting", () => { addStyle(up.id); renderChosen(); }, "use-style"),
    ]));
  }
}

function setupDrop(zone, input, role) {
  input.addEventListener("change", () => { uploadFiles([...input.files], role); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = [...e.dataTransfer.files];
    uploadFiles(role === "photo" ? files.slice(0, 1) : files, role);
  });
}

// ---- the form --------------------------------------------------------------------------------

function fillForm(p) {
  for (const k of NUMBER.concat(TEXT)) if ($("#" + k)) $("#" + k).value = p[k];
  for (const k of LIST) $("#" + k).value = p[k].join(",");
  $("#style_layer_weights").value = p.style_layer_weights ? p.style_layer_weights.join(",") : "";
  $("#lr").value = p.lr == null ? "" : p.lr;
}

function readForm() {
  const p = {};
  for (const k of NUMBER) p[k] = Number($("#" + k).value);
  for (const k of TEXT) p[k] = $("#" + k).value;
  for (const k of LIST) p[k] = $("#" + k).value.split(",").map((s) => s.trim()).filter(Boolean);
  const lw = $("#style_layer_weights").value.trim();
  if (lw) p.style_layer_weights = lw.split(",").map(Number);
  const lr = $("#lr").value.trim();
  if (lr) p.lr = Number(lr);
  p.content = state.photo || "";
  p.styles = state.styles.map((s) => s.id);
  if (state.styles.some((s) => s.weight !== 1)) p.style_blend_weights = state.styles.map((s) => s.weight);
  if (state.startFrom) p.start_from = state.startFrom;
  return p;
}

async function startJob(e) {
  e.preventDefault();
  clearErrors();
  try {
    const job = await api("POST", "/api/jobs", JSON.stringify(readForm()), { "Content-Type": "application/json" });
    state.jobs.set(job.id, job);
    setStartFrom(null);
    renderJobs();
    watch(job.id);
  } catch (err) {
    showError(err.field || "general", err.message);
  }
}

function setStartFrom(id) {
  state.startFrom = id;
  const note = $("#start-from");
  note.hidden = !id;
  note.replaceChildren();
  if (id) {
    const job = state.jobs.get(id);
    note.append(`Starts from the result of “${job ? job.title : id}”. `,
      button("don't", () => setStartFrom(null), "secondary"));
  }
}

// ---- watching a job -------------------------------------------------------------------------

function watch(id) {
  if (state.source) state.source.close();
  state.watching = id;
  state.losses = new Map();
  $("#instant-box").hidden = true;
  $("#live").removeAttribute("src");
  $("#speed").textContent = "–"; $("#eta").textContent = "–";
  drawChart();
  const source = new EventSource(`/api/jobs/${id}/events`);
  state.source = source;
  source.onmessage = (m) => {
    if (state.watching !== id) return;
    const ev = JSON.parse(m.data);
    switch (ev.type) {
      case "snapshot":
        state.losses = new Map(ev.losses.map((l) => [l.iteration * 100 + l.scale, l]));
        showJob(ev.job);
        drawChart();
        break;
      case "progress":
        state.losses.set(ev.loss.iteration * 100 + ev.loss.scale, ev.loss);
        $("#iteration").textContent = `${ev.loss.iteration} / ${ev.total_iterations}`;
        $("#speed").textContent = ev.it_s.toFixed(2);
        $("#eta").textContent = duration(ev.eta_s);
        $("#loss").textContent = ev.loss.total.toExponential(3);
        drawChart();
        break;
      case "preview":
        $("#live").src = `/api/jobs/${id}/preview.png?v=${ev.version}`;
        break;
      case "instant":
        $("#instant").src = `/api/jobs/${id}/instant.png`;
        $("#instant-box").hidden = false;
        break;
      case "status":
        showJob(ev.job);
        if (!["queued", "running"].includes(ev.job.status)) source.close();
        break;
    }
  };
}

function showJob(job) {
  state.jobs.set(job.id, job);
  renderJobs();
  if (state.watching !== job.id) return;
  $("#job-title").textContent = job.title;
  const pos = job.status === "queued" && job.position ? ` (position ${job.position} in the queue)` : "";
  $("#status").textContent = job.status + pos;
  $("#status").className = "status-" + job.status;
  if (job.iterations_done) $("#iteration").textContent = `${job.iterations_done} / ${job.total_iterations}`;
  if (job.best_loss != null) $("#loss").textContent = job.best_loss.toExponential(3);
  if (job.preview_version && !$("#live").getAttribute("src")) {
    $("#live").src = `/api/jobs/${job.id}/preview.png?v=${job.preview_version}`;
  }
  if (job.has_result && !["queued", "running"].includes(job.status)) {
    $("#live").src = `/api/jobs/${job.id}/result.png?v=final`;
  }
  if (job.has_instant) {
    $("#instant").src = `/api/jobs/${job.id}/instant.png`;
    $("#instant-box").hidden = false;
  }
  $("#job-error").textContent = job.error || "";
  $("#cancel").disabled = !["queued", "running"].includes(job.status);
  const dl = $("#download-result");
  dl.hidden = !job.has_result;
  dl.href = `/api/jobs/${job.id}/result.png`;
  dl.textContent = job.params.bit_depth === 16 ? "Download PNG (16-bit)" : "Download PNG";
  const csv = $("#download-losses");
  csv.hidden = !job.iterations_done && !job.has_result;
  csv.href = `/api/jobs/${job.id}/losses.csv`;
  $("#command").textContent = job.command;
}

function duration(s) {
  if (!isFinite(s) || s <= 0) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// The loss chart: log10 of each loss against the iteration, drawn on our own canvas.
function drawChart() {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 58, R = 10, T = 12, B = 26;
  const pts = [...state.losses.values()].sort((a, b) => a.iteration - b.iteration || a.scale - b.scale);
  canvas.dataset.points = String(pts.length);
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#666";
  if (pts.length === 0) { ctx.fillText("losses appear here as the job runs", L, H / 2); return; }
  const series = [["total", "#2d2a26"], ["style", "#c0392b"], ["content", "#2471a3"]];
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) for (const [k] of series) {
    const v = p[k];
    if (v > 0 && isFinite(v)) { lo = Math.min(lo, Math.log10(v)); hi = Math.max(hi, Math.log10(v)); }
  }
  if (!isFinite(lo)) return;
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const maxIt = Math.max(1, pts[pts.length - 1].iteration);
  const x = (it) => L + (W - L - R) * (it / maxIt);
  const y = (v) => T + (H - T - B) * (1 - (Math.log10(v) - lo) / (hi - lo));
  ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    const yy = y(10 ** e);
    ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(W - R, yy); ctx.stroke();
    ctx.fillText(`1e${e}`, 4, yy + 4);
  }
  ctx.fillText("0", L, H - 8); ctx.fillText(String(maxIt), W - R - 24, H - 8);
  ctx.fillText("iteration", (W - L) / 2 + L - 20, H - 8);
  series.forEach(([k, color], i) => {
    ctx.strokeStyle = color; ctx.lineWidth = k === "total" ? 2 : 1.2;
    ctx.beginPath();
    let started = false;
    for (const p of pts) {
      if (!(p[k] > 0 && isFinite(p[k]))) continue;
      if (!started) { ctx.moveTo(x(p.iteration), y(p[k])); started = true; } else ctx.lineTo(x(p.iteration), y(p[k]));
    }
    ctx.stroke();
    ctx.fillStyle = color; ctx.fillText(k, W - R - 150 + i * 50, T + 8);
  });
}

// ---- queue and gallery ----------------------------------------------------------------------

function renderJobs() {
  const jobs = [...state.jobs.values()];
  const queue = $("#queue");
  queue.replaceChildren();
  for (const j of jobs.filter((j) => j.status === "running" || j.status === "queued")
    .sort((a, b) => (a.position ?? 0) - (b.position ?? 0))) {
    const li = document.createElement("li");
    li.dataset.id = j.id;
    const label = j.status === "running" ? "running" : `waiting, position ${j.position}`;
    li.append(`${j.title} — ${label} `, button("watch", () => watch(j.id), "secondary"),
      button("cancel", () => cancel(j.id), "cancel-job"));
    queue.append(li);
  }
  const gallery = $("#gallery");
  gallery.replaceChildren();
  for (const j of jobs.filter((j) => !["running", "queued"].includes(j.status)).reverse()) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = j.id;
    const img = document.createElement("img");
    if (j.has_result) img.src = `/api/jobs/${j.id}/result.png?v=final`;
    img.alt = j.title;
    img.addEventListener("click", () => watch(j.id));
    const title = document.createElement("div");
    title.textContent = j.title;
    const st = document.createElement("div");
    st.className = "status-" + j.status;
    st.textContent = `${j.status}${j.error ? ": " + j.error : ""}`;
    const p = j.params;
    const params = document.createElement("div");
    params.className = "params";
    params.textContent = `${p.size}px · ${j.iterations_done}/${j.total_iterations} it · style ${p.style_weight} · tv ${p.tv_weight}` +
      (p.preserve_color !== "none" ? ` · colours ${p.preserve_color}` : "");
    card.append(img, title, st, params, button("settings", () => useSettings(j, false), "secondary"));
    if (j.has_result) card.append(button("start from this", () => useSettings(j, true), "start-from"));
    gallery.append(card);
  }
}

function useSettings(job, fromResult) {
  fillForm(job.params);
  state.photo = job.params.content;
  state.styles = job.params.styles.map((id, i) => ({
    id, weight: job.params.style_blend_weights ? job.params.style_blend_weights[i] : 1,
  }));
  renderChosen();
  setStartFrom(fromResult ? job.id : null);
  $("#params").scrollIntoView({ behavior: "smooth" });
}

async function cancel(id) {
  try {
    const job = await api("POST", `/api/jobs/${id}/cancel`);
    showJob(job);
  } catch (e) {
    $("#job-error").textContent = e.message;
  }
}

function listenToList() {
  const source = new EventSource("/api/events");
  source.onmessage = async (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "job") { state.jobs.set(ev.job.id, ev.job); renderJobs(); }
    if (ev.type === "resync") await loadJobs();
  };
}

async function loadJobs() {
  for (const j of await api("GET", "/api/jobs")) state.jobs.set(j.id, j);
  renderJobs();
}

async function init() {
  const d = await api("GET", "/api/defaults");
  state.defaults = d.params;
  fillForm(d.params);
  $("#size").max = d.limits.max_size;
  for (const up of await api("GET", "/api/uploads")) state.uploads.set(up.id, up);
  renderLibrary();
  await loadJobs();
  listenToList();
  setupDrop($("#photo-drop"), $("#photo-input"), "photo");
  setupDrop($("#style-drop"), $("#style-input"), "style");
  $("#params").addEventListener("submit", startJob);
  $("#reset").addEventListener("click", () => { fillForm(state.defaults); setStartFrom(null); });
  $("#cancel").addEventListener("click", () => state.watching && cancel(state.watching));
  drawChart();
  document.body.dataset.ready = "1";
}

init().catch((e) => showError("general", `the studio could not start: ${e.message}`));
