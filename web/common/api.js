// The pages' one way to the server: JSON over fetch to /v1 (and /signout), with the session
// cookie (same origin) and, on every request that changes state, the CSRF header the server
// requires of cookie-authenticated requests (src/platform/session.rs).

export class ApiError extends Error {
  // status 0 and code "network": the server could not be reached (offline).
  constructor(status, code, message, body) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.body = body;
  }
  get offline() {
    return this.status === 0;
  }
}

const TIMEOUT_MS = 15000;

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CampusPay-CSRF"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: ctl.signal,
    });
  } catch (e) {
    throw new ApiError(0, "network", String(e));
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (resp.status !== 204) {
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
  }
  if (!resp.ok) {
    const code = (data && data.code) || "http_" + resp.status;
    throw new ApiError(resp.status, code, (data && data.message) || resp.statusText, data);
  }
  return data;
}

// A random UUID v4. crypto.randomUUID exists only in secure contexts (https, localhost); a
// phone on the campus LAN over plain http still has getRandomValues.
export function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
