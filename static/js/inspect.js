// The inspector's station: a live queue over the line websockets, the image with the model's
// regions, and verdicts through the public API (POST /api/v1/captures/{id}/verdict).
import { api } from "./api.js";
import { element, svgElement } from "./dom.js";
import { Viewer } from "./viewer.js";

const config = JSON.parse(document.getElementById("inspect-config").textContent);
const $ = (id) => document.getElementById(id);

const state = {
  items: new Map(), // id -> queue item (the small event payload, or the full capture)
  order: [], // ids, oldest first
  currentId: null,
  current: null, // the full capture of the one on screen (from the claim)
  drawn: [], // the inspector's boxes on the current capture: [x0, y0, x1, y1]
  rejected: new Set(), // indexes of model regions the inspector rejected
  drawMode: false,
  heatmap: false,
  lastDecision: null, // {id, at} for undo
  busy: false,
  sockets: new Map(),
};

// The page's API calls, by path under its API root (config.api).
const call = (method, path, body, options) => api(method, `${config.api}${path}`, body, options);

const viewer = new Viewer({
  viewport: $("viewport"),
  stage: $("stage"),
  zoomLevel: $("zoom-level"),
  imageSize: () => state.current && { width: state.current.width, height: state.current.height },
});

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.dataset.kind = kind;
}

// ---- queue ----

function bumpDepth(line, step) {
  const depth = document.querySelector(`.line-chip[data-line="${CSS.escape(line)}"] [data-role="depth"]`);
  const value = Number.parseInt(depth?.textContent, 10);
  if (depth && !Number.isNaN(value)) depth.textContent = String(Math.max(0, value + step));
}

// Waiting for a human: a pending capture, or a model verdict pending its audit review.
function awaitsHuman(item) {
  return !item.status || item.status === "pending" || item.audit_status === "pending";
}

function isAuditReview(item) {
  return item?.audit_status === "pending";
}

function addItem(item) {
  if (!awaitsHuman(item)) return;
  if (!state.items.has(item.id)) state.order.push(item.id);
  state.items.set(item.id, { ...state.items.get(item.id), ...item });
  state.order.sort((a, b) => state.items.get(a).received_at.localeCompare(state.items.get(b).received_at));
}

function removeItem(id) {
  if (!state.items.has(id)) return;
  const index = state.order.indexOf(id);
  state.items.delete(id);
  state.order.splice(index, 1);
  if (id === state.currentId) {
    state.currentId = null;
    state.current = null;
    const next = state.order[Math.min(index, state.order.length - 1)];
    if (next) select(next);
    else showCapture(null);
  }
}

function age(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return seconds < 90 ? `${seconds}s` : `${Math.round(seconds / 60)}m`;
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren(
    ...state.order.map((id, index) => {
      const item = state.items.get(id);
      const row = document.createElement("li");
      row.dataset.id = id;
      row.className = id === state.currentId ? "current" : "";
      row.append(
        element("span", { class: "pos" }, index + 1),
        element("span", { class: "line" }, item.line),
        element("span", { class: "age", "data-received": item.received_at }, age(item.received_at)),
        element("span", { class: "why" }, item.audit ? "audit" : item.reason || ""),
      );
      row.addEventListener("click", () => select(id));
      return row;
    }),
  );
  $("queue-count").textContent = String(state.order.length);
  $("queue-empty").hidden = state.order.length > 0;
  list.querySelector(".current")?.scrollIntoView({ block: "nearest" });
}

async function resync() {
  // The server's queue is the truth: add what is missing, drop what is gone (merge by id).
  try {
    const data = await call("GET", `/queue?lines=${encodeURIComponent(config.lines.join(","))}`);
    const fresh = new Set(data.items.map((item) => item.id));
    for (const id of [...state.order]) if (!fresh.has(id)) removeItem(id);
    for (const item of data.items) addItem(item);
    for (const line of data.lines) {
      const chip = document.querySelector(`.line-chip[data-line="${CSS.escape(line.code)}"]`);
      if (!chip) continue;
      chip.querySelector('[data-role="depth"]').textContent = String(line.queue_depth);
      const level = chip.querySelector('[data-role="level"]');
      level.textContent = line.automation_level;
      level.className = `level level-${line.automation_level}`;
    }
    $("my-count").textContent = String(data.me.decisions);
    $("my-median").textContent = data.me.median_seconds ?? "–";
    renderQueue();
    if (!state.currentId && state.order.length) select(state.order[0]);
  } catch (error) {
    say(`Could not load the queue: ${error.message}`, "error");
  }
}

let resyncTimer = null;
function resyncSoon(delay = 400) {
  clearTimeout(resyncTimer);
  resyncTimer = setTimeout(resync, delay);
}

// ---- history: the lines' newest verdicts, and who gave them ----

const HISTORY_SIZE = 15;

// HH:MM on the inspector's clock (24 h, as the line's shift boards show times).
function hhmm(iso) {
  const at = new Date(iso);
  return `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
}

// Who gave the verdict, in words; an edge verdict says which model and when, at the station.
function decidedBy(capture) {
  const edge = capture.edge;
  if (capture.decided_by === "edge" && edge) {
    return `edge model ${edge.model_label}, decided at the station at ${hhmm(edge.decided_at)} during an outage`;
  }
  if (edge) return `${capture.decided_by} (overrode the edge model ${edge.model_label})`;
  return capture.decided_by || "";
}

async function loadHistory() {
  try {
    const pages = await Promise.all(
      config.lines.map((line) =>
        call("GET", `/captures?status=decided&limit=${HISTORY_SIZE}&line=${encodeURIComponent(line)}`),
      ),
    );
    const captures = pages
      .flatMap((page) => page.results)
      .sort((a, b) => b.received_at.localeCompare(a.received_at))
      .slice(0, HISTORY_SIZE);
    $("history").replaceChildren(
      ...captures.map((capture) =>
        element(
          "li",
          { "data-id": capture.id, class: capture.decided_by === "edge" ? "edge" : "" },
          element("b", {}, capture.line),
          ` ${capture.verdict} · ${hhmm(capture.received_at)} · `,
          element("span", { class: "who" }, decidedBy(capture)),
        ),
      ),
    );
  } catch (error) {
    say(`Could not load the history: ${error.message}`, "error");
  }
}

let historyTimer = null;
function historySoon(delay = 1500) {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(loadHistory, delay);
}

// ---- claims ----

let renewTimer = null;

async function select(id) {
  if (!state.items.has(id) || state.busy) return;
  const previous = state.currentId;
  if (previous === id && state.current) return;
  state.currentId = id;
  renderQueue();
  if (previous && previous !== id) release(previous);
  try {
    const capture = await call("POST", `/captures/${id}/claim`);
    if (state.currentId !== id) return; // moved on meanwhile
    showCapture(capture);
    clearInterval(renewTimer);
    renewTimer = setInterval(() => renew(id), (config.leaseSeconds * 1000) / 3);
  } catch (error) {
    if (error.status === 409 || error.status === 404) {
      say("Another inspector took that one.", "info");
      removeItem(id);
      renderQueue();
    } else {
      say(error.message, "error");
    }
  }
}

function renew(id) {
  if (state.currentId !== id) return;
  call("POST", `/captures/${id}/claim`).catch((error) => {
    if (error.status === 409) removeItem(id);
  });
}

function release(id) {
  call("POST", `/captures/${id}/release`, undefined, { keepalive: true }).catch(() => {});
}

window.addEventListener("pagehide", () => {
  if (state.currentId) release(state.currentId);
});

function move(step) {
  if (!state.order.length) return;
  const index = state.order.indexOf(state.currentId);
  const next = Math.max(0, Math.min(state.order.length - 1, (index < 0 ? 0 : index) + step));
  select(state.order[next]);
}

// ---- the image and its regions (zoom and pan: viewer.js) ----

function modelRegions() {
  return state.current?.model?.regions || [];
}

function suggestion() {
  // An audit sample: Enter confirms the verdict the model already gave the station.
  const verdict = isAuditReview(state.current) ? state.current.verdict : state.current?.model?.verdict;
  return verdict === "pass" || verdict === "fail" ? verdict : null;
}

function showCapture(capture) {
  state.current = capture;
  state.drawn = [];
  state.rejected = new Set();
  fillDrawTypes();
  state.heatmap = false;
  setDrawMode(false);
  $("stage").hidden = !capture;
  $("region-tip").hidden = true;
  $("viewer-empty").hidden = Boolean(capture);
  $("heatmap").hidden = true;
  for (const action of ["accept", "pass", "fail"]) {
    document.querySelector(`.decide [data-action="${action}"]`).disabled = !capture;
  }
  if (!capture) {
    $("capture-info").textContent = "";
    $("model-box").textContent = "";
    return;
  }
  const photo = $("photo");
  photo.style.width = `${capture.width}px`;
  photo.style.height = `${capture.height}px`;
  photo.src = capture.image_url;
  const heat = $("heatmap");
  heat.style.width = photo.style.width;
  heat.style.height = photo.style.height;
  heat.removeAttribute("src");
  const overlay = $("overlay");
  overlay.setAttribute("viewBox", `0 0 ${capture.width} ${capture.height}`);
  overlay.style.width = photo.style.width;
  overlay.style.height = photo.style.height;
  viewer.fit();
  $("capture-info").replaceChildren(
    element("div", {}, element("b", {}, capture.line), ` · station ${capture.station_name}`),
    element(
      "div",
      { class: "muted" },
      `${new Date(capture.received_at).toLocaleTimeString()} · ${capture.width}×${capture.height}` +
        ` · ${capture.automation_level}${capture.audit ? " · audit sample" : ""}`,
    ),
  );
  renderModel();
  renderOverlay();
}

function renderModel() {
  const box = $("model-box");
  const model = state.current.model;
  $("heatmap-button").disabled = !state.current.heatmap_url;
  $("accept-button").disabled = !suggestion();
  $("accept-button").firstChild.textContent = isAuditReview(state.current) ? "Confirm model " : "Accept model ";
  if (!model && isAuditReview(state.current) && state.current.edge) {
    // The station's edge model decided during an outage; the phone has left with its verdict.
    box.replaceChildren(
      element(
        "div",
        { class: "audit-note", "data-role": "audit" },
        "Audit: the station's ",
        decidedBy(state.current),
        ", gave ",
        element("b", {}, state.current.verdict),
        ". Enter confirms it; the other verdict (P or F) overrides it and the station gets a correction.",
      ),
    );
    return;
  }
  if (!model) {
    box.replaceChildren(
      element(
        "p",
        { class: "muted" },
        `Judge the image yourself: the model's opinion is not shown on this line (${state.current.automation_level}).`,
      ),
    );
    return;
  }
  const verdict = model.verdict;
  const regions = modelRegions();
  box.replaceChildren(
    element(
      "div",
      { class: `suggest suggest-${verdict}` },
      "Model: ",
      element("b", {}, verdict),
      " ",
      element("span", { class: "score" }, `score ${model.score.toFixed(3)}`),
    ),
    element(
      "p",
      { class: "muted" },
      `${regions.length} region${regions.length === 1 ? "" : "s"} highlighted${
        regions.length ? "; click one to reject it" : ""}.`,
    ),
  );
  if (isAuditReview(state.current)) {
    box.prepend(
      element(
        "div",
        { class: "audit-note", "data-role": "audit" },
        "Audit: the model already decided ",
        element("b", {}, state.current.verdict),
        ". Enter confirms it; the other verdict (P or F) overrides it and the station gets a correction.",
      ),
    );
  }
}

function renderOverlay() {
  const overlay = $("overlay");
  overlay.replaceChildren();
  modelRegions().forEach((region, index) => {
    const group = svgElement("g", {
      class: `region model${state.rejected.has(index) ? " rejected" : ""}`,
      "data-index": index,
    });
    const title = svgElement("title", {});
    title.textContent = `${region.defect_type || "defect"} · score ${Number(region.score).toFixed(3)}${
      state.rejected.has(index) ? " · rejected" : ""}`;
    group.append(title);
    if (region.polygon && region.polygon.length > 2) {
      group.append(svgElement("polygon", { points: region.polygon.map((p) => p.join(",")).join(" ") }));
    }
    const [x0, y0, x1, y1] = region.box;
    group.append(svgElement("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "box" }));
    group.addEventListener("mousemove", (event) => {
      const tip = $("region-tip");
      const rect = $("viewport").getBoundingClientRect();
      tip.textContent = title.textContent;
      tip.style.left = `${event.clientX - rect.left + 14}px`;
      tip.style.top = `${event.clientY - rect.top + 14}px`;
      tip.hidden = false;
    });
    group.addEventListener("mouseleave", () => {
      $("region-tip").hidden = true;
    });
    group.addEventListener("click", (event) => {
      if (state.drawMode) return;
      event.stopPropagation();
      if (state.rejected.has(index)) state.rejected.delete(index);
      else state.rejected.add(index);
      renderOverlay();
    });
    overlay.append(group);
  });
  state.drawn.forEach((box) => {
    const [x0, y0, x1, y1] = box;
    const rect = svgElement("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "drawn" });
    const colour = lineTypes().find((type) => type.name === box.defectType)?.colour;
    if (colour) rect.style.stroke = colour; // the CSSOM: the CSP refuses style attributes
    overlay.append(rect);
  });
}

// The defect types a drawn box may be: the capture's line's taxonomy (config.defectTypes).
function lineTypes() {
  return config.defectTypes[state.current?.line] || [];
}

function fillDrawTypes() {
  const select = $("draw-type");
  const previous = select.value;
  select.replaceChildren(...lineTypes().map((type) => new Option(type.label, type.name, false, type.name === previous)));
}

function setDrawMode(on) {
  state.drawMode = on;
  $("viewport").classList.toggle("drawing", on);
  $("draw-button").classList.toggle("active", on);
}

function toggleHeatmap() {
  if (!state.current?.heatmap_url) return;
  state.heatmap = !state.heatmap;
  const heat = $("heatmap");
  if (state.heatmap && !heat.getAttribute("src")) {
    heat.onerror = () => {
      say("No heatmap for this capture.", "error");
      state.heatmap = false;
      heat.hidden = true;
    };
    heat.src = state.current.heatmap_url;
  }
  heat.hidden = !state.heatmap;
  $("heatmap-button").classList.toggle("active", state.heatmap);
}

(function pointer() {
  const viewport = $("viewport");
  let drag = null;
  viewport.addEventListener("mousedown", (event) => {
    if (!state.current || event.button !== 0) return;
    event.preventDefault();
    if (state.drawMode) {
      const start = viewer.toImage(event);
      drag = { kind: "draw", start, box: [...start, ...start] };
      drag.box.defectType = $("draw-type").value; // not in JSON: regionsFor sends it
      state.drawn.push(drag.box);
    } else {
      drag = { kind: "pan" };
      viewer.beginPan(event);
    }
  });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    if (drag.kind === "pan") {
      viewer.panTo(event);
    } else {
      const [x, y] = viewer.toImage(event);
      const [sx, sy] = drag.start;
      drag.box.splice(0, 4, Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y));
      renderOverlay();
    }
  });
  window.addEventListener("mouseup", () => {
    if (drag?.kind === "draw") {
      const [x0, y0, x1, y1] = drag.box;
      if (x1 - x0 < 2 || y1 - y0 < 2) state.drawn.pop(); // a click, not a box
      else say(`Box drawn (${x1 - x0}×${y1 - y0} px). Press F to fail with it.`);
      renderOverlay();
    }
    drag = null;
  });
  window.addEventListener("resize", () => viewer.fit());
})();

// ---- verdicts ----

function regionsFor(verdict) {
  const model = modelRegions().map((region, index) => ({ region, index }));
  const rejected = model
    .filter(({ index }) => verdict === "pass" || state.rejected.has(index))
    .map(({ region }) => ({ box: region.box, defect_type: region.defect_type || "scratch", rejected: true }));
  if (verdict === "pass") return rejected;
  const kept = model
    .filter(({ index }) => !state.rejected.has(index))
    .map(({ region }) => ({ box: region.box, defect_type: region.defect_type || "scratch" }));
  const drawn = state.drawn.map((box) => ({ box: [...box], defect_type: box.defectType || lineTypes()[0]?.name || "other" }));
  return [...kept, ...drawn, ...rejected];
}

async function decide(verdict) {
  if (!state.current || state.busy) return;
  const regions = regionsFor(verdict);
  if (verdict === "fail" && !regions.some((region) => !region.rejected)) {
    setDrawMode(true);
    say("Where is the defect? Drag a box around it, then press F again.", "ask");
    return;
  }
  const id = state.current.id;
  state.busy = true;
  try {
    const audited = isAuditReview(state.current);
    const result = await call("POST", `/captures/${id}/verdict`, { verdict, regions });
    clearInterval(renewTimer);
    state.lastDecision = { id, at: Date.now(), verdict };
    updateUndo();
    if (audited && result.audit_status === "overridden") {
      say(`Overrode the model: ${verdict}. The station got a correction. Z to undo.`, verdict);
    } else if (audited) {
      say(`Confirmed the model's ${verdict}. Z to undo.`, verdict);
    } else {
      say(`${verdict === "pass" ? "Passed" : "Failed"}. Z to undo.`, verdict);
    }
    state.busy = false;
    removeItem(id);
    renderQueue();
    resyncSoon();
  } catch (error) {
    state.busy = false;
    say(error.message, "error");
    if (error.status === 409) {
      removeItem(id);
      renderQueue();
    }
  }
}

function accept() {
  const verdict = suggestion();
  if (!verdict) {
    say("No model suggestion here: press P or F.", "ask");
    return;
  }
  decide(verdict);
}

function undoAvailable() {
  return state.lastDecision && Date.now() - state.lastDecision.at < config.undoSeconds * 1000;
}

function updateUndo() {
  $("undo-button").disabled = !undoAvailable();
}
setInterval(updateUndo, 500);

async function undo() {
  if (!undoAvailable() || state.busy) {
    say("Nothing to undo.", "info");
    return;
  }
  const { id } = state.lastDecision;
  state.busy = true;
  try {
    const capture = await call("POST", `/captures/${id}/undo`);
    state.lastDecision = null;
    updateUndo();
    if (state.currentId && state.currentId !== id) release(state.currentId);
    addItem(capture);
    state.currentId = id;
    state.busy = false;
    renderQueue();
    showCapture(capture);
    clearInterval(renewTimer);
    renewTimer = setInterval(() => renew(id), (config.leaseSeconds * 1000) / 3);
    say("Undone: the capture is open again and the station was told.", "info");
    resyncSoon();
  } catch (error) {
    state.busy = false;
    say(error.message, "error");
  }
}

// ---- keyboard and buttons ----

const actions = {
  accept,
  pass: () => decide("pass"),
  fail: () => decide("fail"),
  undo,
  ...viewer.zoomActions(),
  draw: () => setDrawMode(!state.drawMode),
  heatmap: toggleHeatmap,
};

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button && actions[button.dataset.action]) {
    button.blur(); // keep Enter for "accept", not for the last clicked button
    actions[button.dataset.action]();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select")) return;
  const key = event.key;
  const map = {
    Enter: accept,
    p: actions.pass,
    f: actions.fail,
    z: undo,
    ArrowDown: () => move(1),
    ArrowRight: () => move(1),
    j: () => move(1),
    ArrowUp: () => move(-1),
    ArrowLeft: () => move(-1),
    k: () => move(-1),
    b: actions.draw,
    h: toggleHeatmap,
    ...viewer.zoomKeys(),
    Escape: () => setDrawMode(false),
    Backspace: () => {
      state.drawn.pop();
      renderOverlay();
    },
  };
  const handler = map[key.length === 1 ? key.toLowerCase() : key];
  if (handler) {
    event.preventDefault();
    handler();
  }
});

// ---- live feed ----

function setConnection(stateName, text) {
  const badge = $("connection");
  badge.dataset.state = stateName;
  badge.textContent = text;
}

function connect(line, attempt = 0) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/lines/${line}/`);
  state.sockets.set(line, socket);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    switch (message.type) {
      case "hello":
        attempt = 0;
        if ([...state.sockets.values()].every((s) => s.readyState === WebSocket.OPEN)) {
          setConnection("live", "live");
        }
        resync(); // whatever happened while disconnected
        break;
      case "capture":
        if (message.capture.status === "decided") historySoon();
        if (awaitsHuman(message.capture)) bumpDepth(message.capture.line, 1);
        addItem(message.capture);
        renderQueue();
        if (!state.currentId && awaitsHuman(message.capture)) select(message.capture.id);
        resyncSoon(800);
        break;
      case "decision":
        historySoon();
        if (message.capture.decided_by === "human" || message.capture.audit_status) {
          bumpDepth(message.capture.line, -1);
        }
        removeItem(message.capture.id);
        renderQueue();
        resyncSoon(800);
        break;
      case "claimed":
        if (message.claimed_by !== config.userId) {
          removeItem(message.capture);
          renderQueue();
        }
        break;
      case "released":
        addItem(message.capture);
        renderQueue();
        if (!state.currentId) select(message.capture.id);
        break;
      case "reverted":
        if (message.capture.claimed_by !== config.userId) removeItem(message.capture.id);
        resyncSoon(800);
        break;
      case "line":
        resync();
        if (state.current) {
          // The model may now be shown or hidden: claim again to read the capture afresh.
          const id = state.currentId;
          state.current = null;
          select(id);
        }
        break;
      default:
        break;
    }
  };
  socket.onclose = (event) => {
    if (event.code >= 4400 && event.code < 4500) {
      setConnection("down", `refused (${event.code})`);
      return;
    }
    setConnection("down", "reconnecting…");
    const delay = Math.min(10000, 500 * 2 ** attempt);
    setTimeout(() => connect(line, attempt + 1), delay);
  };
}

setInterval(() => {
  for (const node of document.querySelectorAll(".queue .age")) node.textContent = age(node.dataset.received);
}, 5000);
setInterval(resync, 30000); // a safety net under the websocket
setInterval(loadHistory, 30000);

config.lines.forEach((line) => connect(line));
resync();
loadHistory();
