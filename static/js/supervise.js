// The supervisor's line settings: PATCH /api/v1/lines/<code>; a refusal (guard rail, bad
// thresholds) is shown beside the form in the server's words.
import { api, errorMessage } from "./api.js";

const NUMBERS = [
  "pass_threshold",
  "fail_threshold",
  "audit_percent",
  "edge_audit_percent",
  "min_agreement_percent",
];

for (const form of document.querySelectorAll("form.line-settings")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refusal = form.querySelector('[data-role="refusal"]');
    refusal.textContent = "";
    const fields = new FormData(form);
    const data = Object.fromEntries(fields);
    data.inspectors = fields.getAll("inspectors");
    for (const name of NUMBERS) data[name] = Number(data[name]);
    data.min_shadow_captures = Number.parseInt(data.min_shadow_captures, 10);
    // Empty: keep images for ever.
    data.image_retention_days =
      data.image_retention_days === "" ? null : Number.parseInt(data.image_retention_days, 10);
    try {
      await api("PATCH", `/api/v1/lines/${encodeURIComponent(form.dataset.line)}`, data);
    } catch (error) {
      refusal.textContent = errorMessage(error, `The change was refused (HTTP ${error.status}).`);
      return;
    }
    location.reload();
  });
}
