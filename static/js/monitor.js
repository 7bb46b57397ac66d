// The monitor pages: live alerts over the websocket (the page reloads when one opens, changes
// or closes), the supervisor's actions and alert rules sent to the monitoring API.
import { api, errorMessage } from "./api.js";

const live = document.querySelector('[data-role="live"]');

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/monitoring/`);
  socket.addEventListener("open", () => {
    if (live) {
      live.dataset.state = "live";
      live.textContent = "live";
    }
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "alert") location.reload();
  });
  socket.addEventListener("close", () => {
    if (live) {
      live.dataset.state = "down";
      live.textContent = "reconnecting…";
    }
    setTimeout(connect, 3000);
  });
}
connect();

const INTEGERS = ["last", "limit", "data_window", "decision_window", "decision_reference_size", "trend_window", "open_after", "close_after"];

function formData(form) {
  const data = {};
  for (const [name, value] of new FormData(form)) {
    if (INTEGERS.includes(name)) data[name] = Number.parseInt(value, 10);
    else data[name] = value;
  }
  return data;
}

for (const form of document.querySelectorAll("form.monitor-action")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const result = document.querySelector('[data-role="action-result"]');
    result.textContent = "";
    try {
      const answer = await api("POST", form.dataset.api, formData(form));
      if (answer?.url) {
        location.href = answer.url;
        return;
      }
      location.reload();
    } catch (error) {
      result.textContent = errorMessage(error, `Refused (HTTP ${error.status}).`);
    }
  });
}

for (const form of document.querySelectorAll("form.monitor-rules")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refusal = form.querySelector('[data-role="refusal"]');
    refusal.textContent = "";
    const data = formData(form);
    data.alert_on_warning = form.elements.alert_on_warning.checked;
    data.email_recipients = (data.email_recipients || "").split(",").map((s) => s.trim()).filter(Boolean);
    if (!data.webhook_secret) delete data.webhook_secret; // blank: keep the one set
    try {
      await api("PATCH", form.dataset.api, data);
      location.reload();
    } catch (error) {
      refusal.textContent = errorMessage(error, `The change was refused (HTTP ${error.status}).`);
    }
  });
}
