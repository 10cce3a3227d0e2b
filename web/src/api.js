// The page's one way to the REST API: same origin, under /api (CloudFront routes it to API
// Gateway; locally cloud/local/dashboard.py to the local API), with the user's ID token.
// Every failure becomes an ApiError whose message a person can act on; the page shows it and
// keeps what it had on screen.

export const TIMEOUT_MS = 8000;

export class ApiError extends Error {
  constructor(kind, message, status = 0) {
    super(message);
    this.kind = kind; // "offline" | "timeout" | "bad" | "http" | "auth"
    this.status = status;
  }
}

let tokenSource = async () => {
  throw new ApiError("auth", "Not signed in.");
};
let onUnauthorized = () => {};

export function configureApi({ token, unauthorized }) {
  tokenSource = token;
  onUnauthorized = unauthorized;
}

export function unreadable(what) {
  return new ApiError("bad", `The API sent an answer the page cannot read (${what}). Showing what was last received.`);
}

// Throws unreadable(what) unless ok: the page never draws from a response of the wrong shape.
export function expectShape(ok, what) {
  if (!ok) throw unreadable(what);
}

export async function api(path, { method = "GET", body, timeoutMs = TIMEOUT_MS } = {}) {
  let token;
  try {
    token = await tokenSource();
  } catch (e) {
    onUnauthorized();
    throw new ApiError("auth", "Your session has ended: sign in again.", 401);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  let text;
  try {
    response = await fetch("/api" + path, {
      method,
      headers: { Authorization: token, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: controller.signal,
      cache: "no-store",
      credentials: "omit",
    });
    text = await response.text();
  } catch (e) {
    if (controller.signal.aborted) {
      throw new ApiError("timeout", `The API did not answer within ${timeoutMs / 1000} s. Retrying; what is shown may be old.`);
    }
    throw new ApiError("offline", "Cannot reach the API (the network or the service is down). Retrying; what is shown may be old.");
  } finally {
    clearTimeout(timer);
  }
  let data;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = undefined;
  }
  if (response.status === 401) {
    onUnauthorized();
    throw new ApiError("auth", "Your session has ended: sign in again.", 401);
  }
  if (!response.ok) {
    const why = data && typeof data.message === "string" ? data.message : `HTTP ${response.status}`;
    throw new ApiError("http", `The API refused the request (${response.status}): ${why}`, response.status);
  }
  if (data === undefined) throw unreadable("not JSON");
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw unreadable("not a JSON object");
  return data;
}
