// Helpers shared by the page modules: CSRF header, JSON requests, job polling, UUIDs.

/** Return the CSRF token that the page carries in its csrf-token meta tag. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

/** An error from the API, with the HTTP status and the body's error object. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Return the user-facing message of an API error response body. */
export function errorMessage(status, body) {
  if (body && body.error && body.error.message) {
    return body.error.message;
  }
  if (status === 413) {
    return "the file is larger than the upload limit";
  }
  return `the server answered with status ${status}`;
}

/**
 * Send a JSON request to the API and return the parsed response body.
 * Throws ApiError with the server's message for any status other than 2xx.
 */
export async function apiFetch(url, { method = "GET", body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 204) {
    return null;
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, errorMessage(response.status, parsed), parsed);
  }
  return parsed;
}

/** Return a random UUID (version 4), also where crypto.randomUUID is missing (plain HTTP). */
export function newUuid() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Poll /api/v1/jobs/<id> until the job is done or failed; call onProgress with each state.
 * Returns the final job object.
 */
export async function pollJob(jobId, onProgress, intervalMs = 500) {
  for (;;) {
    const job = await apiFetch(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
    if (onProgress) {
      onProgress(job);
    }
    if (job.status === "done" || job.status === "failed") {
      return job;
    }
    await sleep(intervalMs);
  }
}

/** Set a Bootstrap progress bar (the .progress element) to a fraction from 0 to 1. */
export function setProgress(progressElement, fraction, text = "") {
  const bar = progressElement.querySelector(".progress-bar");
  const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  bar.style.width = `${percent}%`;
  bar.textContent = text;
  progressElement.setAttribute("aria-valuenow", String(percent));
}

/** Show a message in an alert element (as text), or hide it when the message is empty. */
export function showAlert(element, message) {
  const target = element.querySelector(".alert-text") || element;
  target.textContent = message || "";
  element.classList.toggle("d-none", !message);
}

/** Format a share from 0 to 1 as a percentage, or an en dash for null. */
export function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}
