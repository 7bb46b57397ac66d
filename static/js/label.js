// The labeler's annotation page (/label/) and the reviewer's (/label/review/): boxes,
// polygons and brush masks (brush.js) over the image, defect types, image label, zoom/pan,
// keyboard, autosave.
// Autosave: every change is written to localStorage at once and PUT to the API shortly after
// (with the revision the page last saw), so a reload or a dropped connection loses nothing.
import { api, errorMessage, NETWORK } from "./api.js";
import { element, svgElement } from "./dom.js";
import { Brush } from "./brush.js";
import { Viewer } from "./viewer.js";

const config = JSON.parse(document.getElementById("label-config").textContent);
// Defect types from the taxonomy of the task's line (else the default one): name, label,
// colour, hotkey, severity. A region may carry a name the taxonomy does not offer (an import's,
// a deactivated type): it keeps it, shown as it is.
function typesFor(lineCode) {
  const taxonomy = config.lineTaxonomies[lineCode] || config.defaultTaxonomy;
  return config.taxonomies[taxonomy] || config.taxonomies[config.defaultTaxonomy] || [];
}
let TYPES = typesFor(null);
const typeOf = (name) => TYPES.find((type) => type.name === name);
const firstType = () => TYPES[0]?.name || "other";
const $ = (id) => document.getElementById(id);
const review = config.mode === "review";

const state = {
  annotation: null, // from the API
  label: "",
  regions: [],
  selected: -1,
  tool: "select",
  draft: null, // polygon points being drawn, or {box start} while dragging a box
  showModel: true,
  dirty: false,
  saving: false,
  saveTimer: null,
  reviews: [],
  reviewIndex: 0,
};

// The page's API calls, by path under its API root (config.api).
const call = (method, path, body) => api(method, `${config.api}${path}`, body);

const viewer = new Viewer({
  viewport: $("viewport"),
  stage: $("stage"),
  zoomLevel: $("zoom-level"),
  imageSize,
  fitFraction: 0.95,
  wheelFactor: 1.15,
  decimals: 1,
});

// Brush and eraser: mask regions painted in image pixels on a canvas under the overlay.
const brush = new Brush({
  canvas: $("mask-layer"),
  slider: $("brush-size"),
  sizeLabel: $("brush-size-value"),
  imageSize,
  colourOf: (name) => typeOf(name)?.colour,
});
const painting = () => state.tool === "brush" || state.tool === "eraser";

function say(text, kind = "") {
  $("message").textContent = text;
  $("message").dataset.kind = kind;
}

// The keyboard list's defect types, as the current task's taxonomy has them.
function renderTypeKeys() {
  const list = $("type-keys");
  list.replaceChildren();
  for (const type of TYPES.filter((t) => t.hotkey)) {
    const swatch = element("span", { class: "swatch" });
    swatch.style.background = type.colour; // the CSSOM: the CSP refuses style attributes
    const minor = type.severity === "minor" && element("span", { class: "muted" }, " (minor)");
    list.append(element("dt", {}, type.hotkey.toUpperCase()), element("dd", {}, swatch, type.label, minor));
  }
}

function saveState(text, stateName) {
  $("save-state").textContent = text;
  $("save-state").dataset.state = stateName;
}

// --- local copy (nothing lost on reload or a dropped connection) ---
const localKey = (id) => `label-annotation-${id}`;
function keepLocally() {
  if (!state.annotation) return;
  localStorage.setItem(localKey(state.annotation.id), JSON.stringify({
    revision: state.annotation.revision, label: state.label, regions: state.regions,
  }));
}
function restoreLocal(annotation) {
  const raw = localStorage.getItem(localKey(annotation.id));
  if (!raw) return false;
  try {
    const copy = JSON.parse(raw);
    if (copy.revision !== annotation.revision) return false; // the server has newer work
    state.label = copy.label;
    state.regions = copy.regions;
    return true;
  } catch { return false; }
}

function changed() {
  if (review) { render(); return; }
  state.dirty = true;
  keepLocally();
  saveState("unsaved", "idle");
  clearTimeout(state.saveTimer);
  state.saveTimer = setTimeout(save, 700);
  render();
}

async function save() {
  if (!state.annotation || !state.dirty || state.saving || review) return true;
  state.saving = true;
  saveState("saving…", "idle");
  const body = { label: state.label, regions: state.regions, revision: state.annotation.revision };
  try {
    const saved = await call("PUT", `/annotations/${state.annotation.id}`, body);
    state.saving = false;
    state.annotation.revision = saved.revision;
    state.dirty = false;
    keepLocally();
    saveState(`saved (rev ${saved.revision})`, "live");
    return true;
  } catch (error) {
    state.saving = false;
    if (error.code === NETWORK || error.status >= 500) {
      saveState("offline: kept in this browser, retrying", "offline");
      state.saveTimer = setTimeout(save, 3000);
    } else {
      say(errorMessage(error, "Not saved."), "error");
      saveState("not saved", "offline");
    }
    return false;
  }
}

// --- loading ---
function show(annotation) {
  state.annotation = annotation;
  TYPES = typesFor(annotation.task.line);
  renderTypeKeys();
  state.label = annotation.label;
  state.regions = annotation.regions.map((r) => ({ ...r }));
  state.selected = -1;
  state.draft = null;
  state.dirty = false;
  if (!review && restoreLocal(annotation)) {
    state.dirty = true;
    say("Restored your unsaved changes from this browser.", "ask");
    save();
  } else {
    say("");
  }
  const task = annotation.task;
  const score = task.model_score == null ? "no model score" : `model score ${task.model_score.toFixed(2)}`;
  const info = element("div", {},
    element("b", {}, `Task ${task.id}`), ` · ${task.line || "import"} · `,
    element("span", { class: "level" }, task.source),
    element("br"),
    element("span", { class: "muted" },
      `${score}; inspector said ${task.pre_verdict || "–"}; by ${annotation.labeler}`));
  if (task.agreement) {
    info.append(element("br"), element("span", { class: "note" },
      `Two labelers: labels ${task.agreement.label_match ? "match" : "differ"}, IoU ${task.agreement.region_iou}`));
  }
  $("task-info").replaceChildren(info);
  $("review-note").replaceChildren();
  if (annotation.review_note && !review) {
    $("review-note").append(element("p", { class: "note" }, `Sent back: ${annotation.review_note}`));
  }
  const photo = $("photo");
  photo.onload = () => { viewer.fit(); render(); };
  photo.src = task.image_url;
  $("stage").hidden = false;
  $("viewer-empty").hidden = true;
  for (const id of ["submit-button", "skip-button", "accept-button", "sendback-button"]) {
    if ($(id)) $(id).disabled = false;
  }
  saveState(review ? "" : `rev ${annotation.revision}`, "live");
  render();
}

function clearView(text) {
  state.annotation = null;
  $("stage").hidden = true;
  $("viewer-empty").hidden = false;
  $("viewer-empty").textContent = text;
  $("task-info").replaceChildren();
  $("regions").replaceChildren();
  saveState("", "idle");
  for (const id of ["submit-button", "skip-button", "accept-button", "sendback-button"]) {
    if ($(id)) $(id).disabled = true;
  }
}

function filters() {
  const form = new FormData($("filters"));
  const body = {};
  for (const [key, value] of form.entries()) if (value) body[key] = key === "since" ? `${value}T00:00:00Z` : value;
  return body;
}

async function next() {
  if (state.annotation && state.dirty) await save();
  let task;
  try {
    task = await call("POST", "/label-tasks/next", filters());
  } catch (error) {
    say(errorMessage(error, "Could not get a task."), "error");
    return;
  }
  if (task === null) { clearView("No open tasks. Well done."); return; } // 204: none open
  show(task);
}

async function submit() {
  if (!state.annotation) return;
  clearTimeout(state.saveTimer);
  const body = { label: state.label, regions: state.regions };
  let submitted;
  try {
    submitted = await call("POST", `/annotations/${state.annotation.id}/submit`, body);
  } catch (error) {
    say(errorMessage(error, "Not submitted."), "error");
    return;
  }
  localStorage.removeItem(localKey(state.annotation.id));
  state.dirty = false;
  say(`Task ${submitted.task.id} submitted.`, "pass");
  await next();
  if (!state.annotation) say(`Task ${submitted.task.id} submitted. No more open tasks.`, "pass");
}

async function skip() {
  if (!state.annotation) return;
  await save();
  // A release that fails leaves the task to its lease running out; the labeler moves on anyway.
  await call("POST", `/annotations/${state.annotation.id}/release`).catch(() => {});
  await next();
}

async function loadReviews() {
  state.reviews = await call("GET", "/reviews").catch(() => []);
  const list = $("queue");
  list.replaceChildren();
  $("queue-count").textContent = state.reviews.length;
  state.reviews.forEach((item, index) => {
    const li = element("li", {},
      element("span", { class: "pos" }, index + 1),
      element("span", { class: "line" }, item.task.line || "–"),
      element("span", { class: "age" }, item.label),
      element("span", { class: "why" },
        `${item.labeler} · ${item.task.source}${item.task.agreement ? " · conflict" : ""}`));
    li.addEventListener("click", () => pickReview(index));
    list.append(li);
  });
  if (!state.reviews.length) { clearView("Nothing to review."); return; }
  pickReview(Math.min(state.reviewIndex, state.reviews.length - 1));
}

function pickReview(index) {
  state.reviewIndex = index;
  [...$("queue").children].forEach((li, i) => li.classList.toggle("current", i === index));
  show(state.reviews[index]);
}

async function decide(action) {
  if (!state.annotation) return;
  const note = $("review-text").value;
  const body = action === "accept" ? { note, label: state.label, regions: state.regions } : { note };
  let decided;
  try {
    decided = await call("POST", `/annotations/${state.annotation.id}/${action}`, body);
  } catch (error) {
    say(errorMessage(error, "Refused."), "error");
    return;
  }
  $("review-text").value = "";
  say(action === "accept" ? `Accepted task ${decided.task.id}.` : `Sent task ${decided.task.id} back.`, "pass");
  const message = $("message").textContent;
  await loadReviews();
  say(message, "pass");
}

// --- geometry (zoom and pan: viewer.js) ---
function imageSize() {
  return { width: $("photo").naturalWidth || 1, height: $("photo").naturalHeight || 1 };
}
function bounds(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}
function moveRegion(region, dx, dy) {
  const { width: w, height: h } = imageSize();
  const [x0, y0, x1, y1] = region.box;
  if (region.shape === "mask") [dx, dy] = [Math.round(dx), Math.round(dy)]; // a mask's box is whole pixels
  dx = Math.max(-x0, Math.min(w - x1, dx));
  dy = Math.max(-y0, Math.min(h - y1, dy));
  region.box = [x0 + dx, y0 + dy, x1 + dx, y1 + dy];
  if (region.points) region.points = region.points.map(([x, y]) => [x + dx, y + dy]);
  return [dx, dy];
}

// --- drawing ---
function render() {
  const svg = $("overlay");
  const { width: w, height: h } = imageSize();
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  if (state.showModel && state.annotation) {
    for (const region of state.annotation.task.model_regions || []) {
      const [x0, y0, x1, y1] = region.box;
      svgElement("rect", { class: "model-region", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, svg);
    }
  }
  state.regions.forEach((region, index) => {
    const g = svgElement("g", { class: `region t-${region.defect_type}${index === state.selected ? " selected" : ""}`, "data-index": index }, svg);
    const colour = typeOf(region.defect_type)?.colour;
    if (colour) g.style.setProperty("--type-colour", colour);
    if (region.shape === "polygon") {
      svgElement("polygon", { points: region.points.map((p) => p.join(",")).join(" "), "data-index": index }, g);
    } else {
      const [x0, y0, x1, y1] = region.box;
      const outline = region.shape === "mask" ? "mask-box" : null; // the pixels: brush.js's layer
      svgElement("rect", { class: outline, x: x0, y: y0, width: x1 - x0, height: y1 - y0, "data-index": index }, g);
    }
    const font = 12 / viewer.scale; // the same size on screen at any zoom
    const tag = svgElement("text", { class: "tag", x: region.box[0], y: Math.max(font, region.box[1] - 3 / viewer.scale) }, g);
    // Through the CSSOM: a style attribute would be refused by the Content-Security-Policy.
    tag.style.fontSize = `${font}px`;
    tag.style.strokeWidth = `${3 / viewer.scale}px`;
    tag.textContent = `${index + 1} ${region.defect_type}`;
    if (index === state.selected && region.shape !== "mask") {
      const r = 5 / viewer.scale;
      handles(region).forEach(([x, y], handle) => svgElement("circle", { class: "handle", cx: x, cy: y, r, "data-index": index, "data-handle": handle }, g));
    }
  });
  brush.draw(state.regions, state.selected);
  brush.drawCursor(svg, state.tool);
  if (state.draft?.points) {
    const pts = state.draft.points.map((p) => p.join(",")).join(" ");
    svgElement("polyline", { class: "draft", points: state.draft.cursor ? `${pts} ${state.draft.cursor.join(",")}` : pts }, svg);
  }
  if (state.draft?.start && state.draft.end) {
    const [x0, y0, x1, y1] = bounds([state.draft.start, state.draft.end]);
    svgElement("rect", { class: "draft", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, svg);
  }
  renderSide();
}

function handles(region) {
  if (region.shape === "polygon") return region.points;
  const [x0, y0, x1, y1] = region.box;
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
}

function renderSide() {
  document.querySelectorAll("[data-label]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.label === state.label)));
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === state.tool));
  document.querySelector('[data-action="model"]').classList.toggle("active", state.showModel);
  $("viewport").classList.toggle("drawing", state.tool !== "select");
  const list = $("regions");
  list.replaceChildren();
  state.regions.forEach((region, index) => {
    const li = document.createElement("li");
    li.className = index === state.selected ? "selected" : "";
    li.dataset.index = index;
    const select = document.createElement("select");
    select.setAttribute("aria-label", `Type of region ${index + 1}`);
    const options = typeOf(region.defect_type) ? TYPES : [...TYPES, { name: region.defect_type, label: region.defect_type }];
    for (const type of options) select.append(new Option(type.label, type.name, false, type.name === region.defect_type));
    select.addEventListener("change", () => { region.defect_type = select.value; changed(); });
    li.append(`${index + 1}. ${region.shape}`, select);
    li.addEventListener("click", (e) => { if (e.target !== select) { state.selected = index; render(); } });
    list.append(li);
  });
}

// --- pointer ---
let drag = null;
$("viewport").addEventListener("pointerdown", (event) => {
  if (!state.annotation || event.button !== 0) return;
  $("viewport").focus();
  const point = viewer.toImage(event);
  const target = event.target;
  if (painting()) {
    event.preventDefault(); // no text selection: dragging one would cancel the stroke
    brush.begin(state.tool, point, state.regions, state.regions[state.selected]);
    drag = { kind: "brush" };
    $("viewport").setPointerCapture(event.pointerId);
    render();
    return;
  }
  if (state.tool === "polygon") {
    state.draft = state.draft?.points ? state.draft : { points: [] };
    state.draft.points.push(point);
    render();
    return;
  }
  if (state.tool === "box") {
    state.draft = { start: point, end: point };
    drag = { kind: "box" };
  } else if (target.dataset.handle !== undefined) {
    state.selected = Number(target.dataset.index);
    drag = { kind: "handle", handle: Number(target.dataset.handle), index: state.selected };
  } else if (target.dataset.index !== undefined) {
    state.selected = Number(target.dataset.index);
    drag = { kind: "move", last: point, index: state.selected };
  } else {
    state.selected = -1;
    drag = { kind: "pan" };
    viewer.beginPan(event);
  }
  $("viewport").setPointerCapture(event.pointerId);
  render();
});
$("viewport").addEventListener("pointermove", (event) => {
  if (painting()) {
    brush.cursor = viewer.toImage(event);
    if (drag?.kind === "brush") brush.move(brush.cursor);
    render();
    return;
  }
  if (state.tool === "polygon" && state.draft?.points) { state.draft.cursor = viewer.toImage(event); render(); return; }
  if (!drag) return;
  const point = viewer.toImage(event);
  if (drag.kind === "pan") {
    viewer.panTo(event);
    return;
  }
  if (drag.kind === "box") state.draft.end = point;
  if (drag.kind === "move") {
    const [dx, dy] = moveRegion(state.regions[drag.index], point[0] - drag.last[0], point[1] - drag.last[1]);
    drag.last = state.regions[drag.index].shape === "mask" ? [drag.last[0] + dx, drag.last[1] + dy] : point;
    drag.moved = true;
  }
  if (drag.kind === "handle") {
    const region = state.regions[drag.index];
    if (region.shape === "polygon") {
      region.points[drag.handle] = point;
      region.box = bounds(region.points);
    } else {
      const corners = handles(region);
      corners[drag.handle] = point;
      const opposite = corners[(drag.handle + 2) % 4];
      region.box = bounds([point, opposite]);
    }
    drag.moved = true;
  }
  render();
});
$("viewport").addEventListener("pointerup", () => {
  if (!drag) return;
  if (drag.kind === "brush") {
    finishStroke();
  } else if (drag.kind === "box") {
    const [x0, y0, x1, y1] = bounds([state.draft.start, state.draft.end]);
    state.draft = null;
    if (x1 - x0 >= 2 && y1 - y0 >= 2) addRegion({ shape: "box", box: [x0, y0, x1, y1] });
  } else if (drag.moved) {
    changed();
  }
  drag = null;
  render();
});
// A pointer the browser takes away mid-stroke (a touch turned into a scroll): keep what was painted.
$("viewport").addEventListener("pointercancel", () => {
  if (drag?.kind !== "brush") return;
  finishStroke();
  drag = null;
  render();
});
$("viewport").addEventListener("pointerleave", () => { if (brush.cursor) { brush.cursor = null; render(); } });
$("viewport").addEventListener("dblclick", () => { if (state.tool === "polygon") closePolygon(); });

function addRegion(region) {
  const type = state.regions[state.selected]?.defect_type || firstType();
  state.regions.push({ defect_type: type, ...region });
  state.selected = state.regions.length - 1;
  if (state.label !== "defect") state.label = "defect";
  changed();
}

// A brush stroke ends: a new mask region is added (and selected), an erased-away one removed.
function finishStroke() {
  const selected = state.regions[state.selected];
  const { created, removed, edited } = brush.end();
  for (const region of removed) state.regions.splice(state.regions.indexOf(region), 1);
  if (created) { addRegion(created); return; }
  state.selected = state.regions.indexOf(selected);
  if (edited || removed.length) changed();
}

function closePolygon() {
  const points = state.draft?.points || [];
  // A double-click adds the same point twice: drop repeats.
  const unique = points.filter((p, i) => i === 0 || p[0] !== points[i - 1][0] || p[1] !== points[i - 1][1]);
  state.draft = null;
  if (unique.length >= 3) addRegion({ shape: "polygon", points: unique, box: bounds(unique) });
  else render();
}

function setTool(tool) {
  state.tool = tool;
  state.draft = null;
  render();
}

function deleteSelected() {
  if (state.selected < 0) return;
  state.regions.splice(state.selected, 1);
  state.selected = Math.min(state.selected, state.regions.length - 1);
  changed();
}

// --- buttons and keys ---
document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
document.querySelectorAll("[data-label]").forEach((b) => b.addEventListener("click", () => { state.label = b.dataset.label; changed(); }));
document.querySelector('[data-action="delete"]').addEventListener("click", deleteSelected);
document.querySelector('[data-action="model"]').addEventListener("click", () => { state.showModel = !state.showModel; render(); });
for (const [action, run] of Object.entries(viewer.zoomActions())) {
  document.querySelector(`[data-action="${action}"]`).addEventListener("click", run);
}
if (review) {
  $("accept-button").addEventListener("click", () => decide("accept"));
  $("sendback-button").addEventListener("click", () => decide("send-back"));
} else {
  $("next-button").addEventListener("click", next);
  $("submit-button").addEventListener("click", submit);
  $("skip-button").addEventListener("click", skip);
}

document.addEventListener("keydown", (event) => {
  if (event.target.matches("input, textarea, select")) return;
  const key = event.key;
  const region = state.regions[state.selected];
  if (event.ctrlKey && key === "Enter" && !review) { event.preventDefault(); submit(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    n: () => !review && next(), s: () => !review && submit(), x: () => !review && skip(),
    a: () => review && decide("accept"), r: () => (review ? decide("send-back") : setTool("box")),
    j: () => review && state.reviews.length && pickReview((state.reviewIndex + 1) % state.reviews.length),
    k: () => review && state.reviews.length && pickReview((state.reviewIndex - 1 + state.reviews.length) % state.reviews.length),
    o: () => { state.label = "ok"; changed(); }, d: () => { state.label = "defect"; changed(); },
    v: () => setTool("select"), p: () => setTool("polygon"),
    b: () => setTool("brush"), e: () => setTool("eraser"), "[": () => { brush.resize(-1); render(); }, "]": () => { brush.resize(1); render(); },
    m: () => { state.showModel = !state.showModel; render(); },
    M: () => { for (const r of state.annotation?.task.model_regions || []) addRegion({ shape: "box", box: r.box, defect_type: r.defect_type || firstType() }); },
    ...viewer.zoomKeys(),
    Delete: deleteSelected, Backspace: deleteSelected,
    Enter: () => state.tool === "polygon" && closePolygon(),
    Escape: () => { state.draft = null; state.selected = -1; render(); },
    Tab: () => { if (state.regions.length) { state.selected = (state.selected + 1) % state.regions.length; render(); } },
  };
  const typed = region && key.length === 1 && TYPES.find((t) => t.hotkey && t.hotkey === key.toLowerCase());
  if (typed) { region.defect_type = typed.name; changed(); event.preventDefault(); return; }
  if (region && key.startsWith("Arrow")) {
    const step = event.shiftKey ? 10 : 1;
    const [dx, dy] = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[key];
    moveRegion(region, dx, dy);
    changed();
    event.preventDefault();
    return;
  }
  const action = actions[key] || actions[key.toLowerCase()];
  if (action && !(key === "M" && !event.shiftKey)) { event.preventDefault(); action(); }
});
window.addEventListener("beforeunload", () => keepLocally());
window.addEventListener("online", () => save());
window.addEventListener("resize", () => state.annotation && viewer.fit());

renderTypeKeys();
if (review) loadReviews();
else next();
