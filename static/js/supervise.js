// The supervisor's line settings: PATCH /api/v1/lines/<code>; a refusal (guard rail, bad
// thresholds) is shown beside the form in the server's words.
function csrf() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

const NUMBERS = ["pass_threshold", "fail_threshold", "audit_percent", "min_agreement_percent"];

for (const form of document.querySelectorAll("form.line-settings")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const refusal = form.querySelector('[data-role="refusal"]');
    refusal.textContent = "";
    const data = Object.fromEntries(new FormData(form));
    for (const name of NUMBERS) data[name] = Number(data[name]);
    data.min_shadow_captures = Number.parseInt(data.min_shadow_captures, 10);
    const response = await fetch(`/api/v1/lines/${form.dataset.line}`, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(data),
    });
    if (response.ok) {
      location.reload();
      return;
    }
    const body = await response.json().catch(() => null);
    refusal.textContent = body?.error?.message || `The change was refused (HTTP ${response.status}).`;
  });
}
