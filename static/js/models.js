// Registry pages: forms and buttons that call the registry API (a refusal, e.g. the gate, is
// shown in the server's words), and the live progress of training runs (polled from their
// database row every second until they finish).
import { api, errorMessage } from "./api.js";

// The server's words for a refusal; a bare status when it answered without any.
const refusalText = (error) => errorMessage(error, `Refused (HTTP ${error.status}).`);

function refusalNear(element) {
  const scope = element.closest("form, section, .panel") || document;
  return scope.querySelector('[data-role="refusal"]');
}

function formBody(form) {
  const body = {};
  for (const element of form.elements) {
    if (!element.name || element.disabled) continue;
    const wrapper = element.closest("[data-show-for]");
    if (wrapper && wrapper.hidden) continue;
    if (element.type === "checkbox") body[element.name] = element.checked;
    else if (element.value === "") continue;
    else if (element.type === "number") body[element.name] = Number(element.value);
    else if (element.type === "datetime-local") body[element.name] = new Date(element.value).toISOString();
    else body[element.name] = element.value;
  }
  for (const key of ["model_version", "dataset_version", "percent"]) {
    if (key in body) body[key] = Number(body[key]);
  }
  return body;
}

for (const form of document.querySelectorAll("form.api-form")) {
  const source = form.querySelector('[data-role="source"]');
  const showFor = () => {
    for (const part of form.querySelectorAll("[data-show-for]")) {
      part.hidden = source && part.dataset.showFor !== source.value;
    }
  };
  if (source) {
    source.addEventListener("change", showFor);
    showFor();
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refusal = refusalNear(form);
    if (refusal) refusal.textContent = "";
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const data = await api(form.dataset.method || "POST", form.dataset.api, formBody(form));
      if (form.dataset.then === "run") location.assign(`/models/runs/${data.id}/`);
      else location.reload();
    } catch (error) {
      if (refusal) refusal.textContent = refusalText(error);
      if (button) button.disabled = false;
    }
  });
}

// A choice that reloads the page with it (no inline handler: the Content-Security-Policy).
for (const select of document.querySelectorAll("select[data-submit-on-change]")) {
  select.addEventListener("change", () => select.form.submit());
}

for (const button of document.querySelectorAll("button[data-api]")) {
  button.addEventListener("click", async () => {
    const refusal = refusalNear(button);
    if (refusal) refusal.textContent = "";
    button.disabled = true;
    try {
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      await api(button.dataset.method || "POST", button.dataset.api, body);
      location.reload();
    } catch (error) {
      if (refusal) refusal.textContent = refusalText(error);
      button.disabled = false;
    }
  });
}

// --- training runs: a run's page, and the running rows of the index ---
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function set(scope, role, text) {
  const element = scope.querySelector(`[data-role="${role}"]`);
  if (element) element.textContent = text;
  return element;
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "—";
}

function render(scope, run) {
  scope.dataset.status = run.status;
  const status = set(scope, "status", run.status);
  if (status) status.className = `status status-${run.status}`;
  const bar = scope.querySelector('[data-role="bar"]');
  if (bar) bar.value = run.percent;
  set(scope, "percent", `${run.percent}%`);
  set(scope, "epoch", run.epoch);
  set(scope, "step", run.step);
  set(scope, "total", run.total_steps || "?");
  set(scope, "loss", fixed(run.last_loss, 4));
  set(scope, "worker", run.worker_id || "—");
  set(scope, "error", run.error || "");
  if (scope.id === "run") {
    const log = set(document, "log", run.log);
    if (log) log.scrollTop = log.scrollHeight;
  }
  const history = document.querySelector('[data-role="history"]');
  if (history && scope.id === "run") {
    history.replaceChildren(
      ...run.history.map((entry) => {
        const row = document.createElement("tr");
        for (const value of [
          entry.epoch, entry.step, fixed(entry.train_loss, 4), fixed(entry.val_loss, 4),
          fixed(entry.val_auroc, 3), fixed(entry.val_average_precision, 3), fixed(entry.elapsed_s, 1),
        ]) {
          const cell = document.createElement("td");
          cell.textContent = value;
          row.append(cell);
        }
        return row;
      }),
    );
  }
  const cancel = scope.querySelector('[data-role="cancel"]');
  if (cancel) cancel.hidden = FINISHED.has(run.status);
  if (run.model_version && scope.id === "run") {
    const result = scope.querySelector('[data-role="result"]');
    if (result && !result.querySelector("a")) {
      const link = document.createElement("a");
      link.href = `/models/${run.model_version}/`;
      link.textContent = "The new model: evaluation and rollout";
      result.replaceChildren(link);
    }
  }
}

function watch(scope) {
  const id = scope.dataset.runId;
  const tick = async () => {
    try {
      const run = await api("GET", `/api/v1/models/training-runs/${id}`);
      render(scope, run);
      if (FINISHED.has(run.status)) {
        if (scope.id !== "run") setTimeout(() => location.reload(), 500);
        return;
      }
    } catch (error) {
      // A restart of the web server: keep trying.
    }
    setTimeout(tick, 1000);
  };
  tick();
}

const page = document.getElementById("run");
if (page) {
  const cancel = page.querySelector('[data-role="cancel"]');
  cancel?.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      render(page, await api("POST", `/api/v1/models/training-runs/${page.dataset.runId}/cancel`));
    } catch (error) {
      set(page, "refusal", refusalText(error));
      cancel.disabled = false;
    }
  });
  if (!FINISHED.has(page.dataset.status)) watch(page);
}
for (const row of document.querySelectorAll("tr[data-run-id]")) {
  if (!FINISHED.has(row.dataset.status)) watch(row);
}
