// The dataset versions page: freezing the reviewed labels into a new version (POST
// /api/v1/datasets); a refusal is shown under the form in the server's words.
import { api, errorMessage } from "./api.js";

const form = document.getElementById("dataset-form");
form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form).entries());
  if (!data.line) delete data.line;
  data.seed = Number(data.seed || 0);
  try {
    await api("POST", "/api/v1/datasets", data);
  } catch (error) {
    const message = document.getElementById("dataset-message");
    message.className = "error";
    message.textContent = errorMessage(error, `Not frozen (HTTP ${error.status}).`);
    return;
  }
  location.reload();
});
