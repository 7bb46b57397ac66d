// The pages' one way to the JSON API: the CSRF token, and one error shape for every failure.
// The server's API errors are `{"error": {"code": ..., "message": ...}}` (core/errors.py); a
// network failure or an answer that is not such JSON is turned into the same shape here.

export const NETWORK = "network"; // no answer at all: status 0
export const BAD_RESPONSE = "bad_response"; // an answer, but not the JSON the API sends

export class ApiError extends Error {
  constructor({ status, code, message, body = null }) {
    super(message);
    this.name = "ApiError";
    this.status = status; // the HTTP status; 0 when the server could not be reached
    this.code = code; // the server's code, or NETWORK / BAD_RESPONSE
    this.body = body; // the parsed JSON answer, when there was one
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// The error in words for a person: the server's own message, or the page's `fallback` when
// the server answered without one (a proxy's HTML error page, an empty 502).
export function errorMessage(error, fallback) {
  return error?.code === BAD_RESPONSE && fallback ? fallback : error?.message || fallback || "";
}

// Sends `body` as JSON and resolves to the parsed answer (null for an empty one, e.g. 204);
// rejects with an ApiError for anything else. `keepalive` lets a request outlive the page.
export async function api(method, path, body, { keepalive = false } = {}) {
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      keepalive,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    text = await response.text();
  } catch {
    throw new ApiError({ status: 0, code: NETWORK, message: "The server could not be reached." });
  }
  let data = null;
  let parsed = text === "";
  if (!parsed) {
    try {
      data = JSON.parse(text);
      parsed = true;
    } catch {
      data = null;
    }
  }
  if (response.ok && parsed) return data;
  const reason = data?.error;
  if (!response.ok && typeof reason?.message === "string") {
    throw new ApiError({ status: response.status, code: reason.code, message: reason.message, body: data });
  }
  throw new ApiError({ status: response.status, code: BAD_RESPONSE, message: `HTTP ${response.status}`, body: data });
}
