// The dataset versions page: freezing the reviewed labels into a new version (POST
// /api/v1/datasets), and importing an archive (POST /api/v1/datasets/imports); a refusal is
// shown under the form in the server's words.
import { ApiError, BAD_RESPONSE, NETWORK, api, csrfToken, errorMessage } from "./api.js";
import { element } from "./dom.js";

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

// Importing an archive: the upload (with its progress), then the import's row polled every
// second until it is done or failed, with the refused files and why (as text, never markup).
const importForm = document.getElementById("import-form");
const panel = document.getElementById("import-status");
const bar = document.getElementById("import-progress");
const state = document.getElementById("import-state");
const counts = document.getElementById("import-counts");
const errorList = document.getElementById("import-errors");

function uploadArchive(formData, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/v1/datasets/imports");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("error", () =>
      reject(new ApiError({ status: 0, code: NETWORK, message: "The server could not be reached." })),
    );
    request.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(request.responseText);
      } catch {
        data = null;
      }
      if (request.status >= 200 && request.status < 300 && data) resolve(data);
      else if (typeof data?.error?.message === "string")
        reject(new ApiError({ status: request.status, code: data.error.code, message: data.error.message, body: data }));
      else reject(new ApiError({ status: request.status, code: BAD_RESPONSE, message: `HTTP ${request.status}` }));
    });
    request.send(formData);
  });
}

function showImport(job) {
  bar.value = Math.round((job.progress || 0) * 100);
  const version = job.dataset_version ? ` - dataset version ${job.dataset_version}` : "";
  state.className = job.status === "failed" ? "error" : "";
  state.textContent = `${job.status}${version}${job.error ? `: ${job.error}` : ""}`;
  const c = job.counts || {};
  counts.textContent =
    c.imported === undefined
      ? c.entries !== undefined
        ? `${c.entries} files in the archive`
        : ""
      : `${c.imported} imported, ${c.refused} refused, ${c.duplicates} duplicates` +
        (c.seen_before ? `, ${c.seen_before} already in earlier versions` : "");
  errorList.replaceChildren(...(job.errors || []).map((message) => element("li", {}, message)));
}

async function follow(id) {
  for (;;) {
    let job;
    try {
      job = await api("GET", `/api/v1/datasets/imports/${id}`);
    } catch (error) {
      state.textContent = errorMessage(error, `Could not read the import (HTTP ${error.status}).`);
      if (error.status >= 400 && error.status < 500) throw error; // gone or not allowed: stop
      await new Promise((resolve) => setTimeout(resolve, 3000));
      continue;
    }
    showImport(job);
    if (job.status === "done" || job.status === "failed") return job;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

importForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = importForm.querySelector("button[type=submit]");
  button.disabled = true;
  panel.hidden = false;
  errorList.replaceChildren();
  counts.textContent = "";
  state.className = "";
  try {
    const job = await uploadArchive(new FormData(importForm), (share) => {
      bar.value = Math.round(share * 100);
      state.textContent = `uploading ${Math.round(share * 100)}%`;
    });
    showImport(job);
    const finished = await follow(job.id);
    if (finished.status === "done") {
      const link = element("a", { href: location.pathname }, "show the new version");
      state.append(" ", link);
    }
  } catch (error) {
    state.className = "error";
    state.textContent = errorMessage(error, `Not imported (HTTP ${error.status}).`);
  } finally {
    button.disabled = false;
  }
});
