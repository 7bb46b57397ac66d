// The supervisor's defect taxonomies (/supervise/defect-types/): each form calls
// /api/v1/taxonomies...; a refusal (duplicate hotkey, a type in use) is shown beside it in the
// server's words, a success reloads the page (with the new audit row).
import { api, errorMessage } from "./api.js";

const root = "/api/v1/taxonomies";
const path = (...parts) => [root, ...parts.map(encodeURIComponent)].join("/");

function handle(form, send) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await run(form, send);
  });
}

async function run(form, send) {
  const refusal = form.querySelector('[data-role="refusal"]');
  refusal.textContent = "";
  try {
    await send(form);
  } catch (error) {
    refusal.textContent = errorMessage(error, `The change was refused (HTTP ${error.status}).`);
    return;
  }
  location.reload();
}

for (const form of document.querySelectorAll("form.type-form")) {
  const url = path(form.dataset.taxonomy, "defect-types", form.dataset.type);
  // The row's inputs belong to the form through their form="" attribute.
  handle(form, () => {
    const fields = form.elements;
    return api("PATCH", url, {
      label: fields.label.value,
      colour: fields.colour.value,
      hotkey: fields.hotkey.value,
      severity: fields.severity.value,
      order: Number.parseInt(fields.order.value || "0", 10),
      is_active: fields.is_active.checked,
    });
  });
  form.querySelector('[data-action="delete"]').addEventListener("click", () => run(form, () => api("DELETE", url)));
}

for (const form of document.querySelectorAll("form.type-add")) {
  handle(form, () => {
    const data = Object.fromEntries(new FormData(form));
    return api("POST", path(form.dataset.taxonomy, "defect-types"), data);
  });
}

for (const form of document.querySelectorAll("form.taxonomy-lines")) {
  handle(form, () => api("PATCH", path(form.dataset.taxonomy), { lines: new FormData(form).getAll("lines") }));
}

for (const form of document.querySelectorAll("form.taxonomy-add")) {
  handle(form, () => api("POST", root, Object.fromEntries(new FormData(form))));
}
