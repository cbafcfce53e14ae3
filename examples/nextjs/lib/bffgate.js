/**
 * bffgate.js — the browser helper for a bffgate backend-for-frontend gateway.
 *
 * NO TOKENS IN JAVASCRIPT. The browser holds only HttpOnly session cookies, which scripts cannot
 * read; the gateway keeps the access and refresh tokens and attaches them to upstream calls
 * itself. This module therefore never reads, receives or stores a token — there is none to
 * see. The only session data it handles is the user object the gateway chooses to expose, and
 * it persists nothing (no localStorage, sessionStorage or document.cookie).
 *
 * What it adds on top of `fetch`:
 * - `X-CSRF: 1` and `credentials: "same-origin"` on every gateway call: the gateway refuses
 *   `/api/*` requests without the header, which a cross-site form or image cannot send.
 * - 401 `unauthenticated` / `session_expired`: tells every tab the session ended and sends the
 *   page to the login page with a `returnTo`, so apps need no 401 plumbing of their own.
 * - 503 `refresh_unavailable`: the gateway could not refresh *for now* and kept the session, so
 *   the request is retried with exponential backoff when its body can be sent again.
 * - Session events (`login`, `logout`, `expired`) in this tab and, via
 *   `BroadcastChannel("bffgate")`, in the other tabs of the same origin.
 *
 * Dependency-free ES module; no build step. Types: bffgate.d.ts.
 */

const CHANNEL_NAME = "bffgate";
const SESSION_EVENT_TYPES = new Set(["login", "logout", "expired"]);
/** Problem codes meaning "no usable session": retrying cannot help, logging in can. */
const LOGIN_REQUIRED_CODES = new Set(["unauthenticated", "session_expired"]);

let config = normalize({});

/** Callbacks registered with onSessionChange (wrapped, so one callback can subscribe twice). */
const listeners = new Set();
/** The cross-tab channel: undefined until first needed, null where BroadcastChannel is missing. */
let channel;
/**
 * True once this tab knows the session is over, so a burst of parallel 401s announces
 * "expired" once instead of once per request. Cleared by a login or a successful getUser().
 */
let sessionEndAnnounced = false;

/** An error answer from a gateway endpoint; `code` is the problem `code` (or upstream `error`). */
export class BffError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, body?: unknown}} [details]
   */
  constructor(message, { status = 0, code, body } = {}) {
    super(message);
    this.name = "BffError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/**
 * Set the options. Each call replaces the whole configuration; omitted options get defaults.
 * `fetch` defaults to the global fetch looked up at call time, so polyfills installed later work.
 */
export function configure(options = {}) {
  config = normalize(options);
}

function normalize({
  basePath = "",
  loginPage = "/login",
  retries = 3,
  backoffMs = 250,
  fetch,
  onUnauthenticated,
} = {}) {
  if (typeof basePath !== "string") throw new TypeError("bffgate: basePath must be a string");
  if (typeof loginPage !== "string" || !loginPage) throw new TypeError("bffgate: loginPage must be a non-empty string");
  if (!Number.isInteger(retries) || retries < 0) throw new TypeError("bffgate: retries must be an integer >= 0");
  if (!(backoffMs >= 0)) throw new TypeError("bffgate: backoffMs must be a number >= 0");
  if (fetch !== undefined && typeof fetch !== "function") throw new TypeError("bffgate: fetch must be a function");
  if (onUnauthenticated !== undefined && typeof onUnauthenticated !== "function") {
    throw new TypeError("bffgate: onUnauthenticated must be a function");
  }
  // "/app/" and "/app" mean the same mount point; without this the URLs would get "//api".
  return Object.freeze({ basePath: basePath.replace(/\/+$/, ""), loginPage, retries, backoffMs, fetch, onUnauthenticated });
}

/**
 * Call the remote API through the gateway: `${basePath}/api/rest/proxy${path}`.
 *
 * Resolves to the gateway's Response in every case (also on 401, after starting the trip to the
 * login page), so callers keep full control; it rejects only for a bad `path` or when fetch does.
 *
 * @param {string} path the remote API path, starting with "/" (e.g. "/items?page=2")
 * @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
export async function customFetch(path, init = {}) {
  // Only a path may be given: the gateway decides which host it goes to, never the caller.
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new TypeError(`bffgate: customFetch path must start with "/", got ${JSON.stringify(path)}`);
  }
  const { basePath, retries, backoffMs } = config; // a configure() mid-flight must not change this call
  const url = `${basePath}/api/rest/proxy${path}`;
  const request = gatewayInit(init);
  // A stream is consumed by the first attempt and cannot be sent again; every other body type
  // (string, Blob, FormData, URLSearchParams, buffers) is re-read by fetch on each call.
  const replayable = !(typeof ReadableStream === "function" && init.body instanceof ReadableStream);

  for (let attempt = 0; ; attempt++) {
    const response = await send(url, request);
    if (response.status === 401) {
      const code = await problemCode(response);
      if (LOGIN_REQUIRED_CODES.has(code)) sessionEnded(code);
      return response;
    }
    if (response.status !== 503 || !replayable || attempt >= retries) return response;
    // Only the gateway's own "refresh failed transiently" is retried: an upstream 503 passes
    // through untouched, since retrying a non-idempotent call there is not ours to decide.
    if ((await problemCode(response)) !== "refresh_unavailable") return response;
    response.body?.cancel().catch(() => {}); // free the connection; this answer is discarded
    await sleep(backoffMs * 2 ** attempt, init.signal);
  }
}

/**
 * Log in with credentials (rest provider): POST JSON to /api/auth/login.
 * @returns {Promise<object|null>} the user object from the gateway
 * @throws {BffError} on a non-2xx answer, e.g. status 401 with code "invalid_credentials"
 */
export async function login(credentials) {
  const { response, data } = await authCall("POST", "login", credentials);
  if (!response.ok) throw errorFrom(response, data);
  const user = data?.user ?? null;
  sessionEndAnnounced = false;
  emit({ type: "login", user });
  return user;
}

/**
 * Start a provider login (oidc mode): a full page navigation, because the provider's login page
 * cannot run inside fetch. The gateway comes back to `returnTo` (a local path) afterwards.
 */
export function loginRedirect(returnTo = currentPath()) {
  globalThis.location.assign(withQuery(`${config.basePath}/api/auth/login`, "returnTo", returnTo));
}

/**
 * End the session. Resolves once the gateway has cleared it; in oidc mode then navigates to the
 * provider's end-session URL so the provider's own session ends too.
 * A 401 means there was no session left to end — the outcome the caller wanted, so no error.
 * @throws {BffError} on any other non-2xx answer
 */
export async function logout() {
  const { response, data } = await authCall("POST", "logout");
  if (!response.ok && response.status !== 401) throw errorFrom(response, data);
  sessionEndAnnounced = true; // other tabs hear "logout"; later 401s need not add "expired"
  emit({ type: "logout" });
  const logoutUrl = data?.logoutUrl;
  // Only http(s) or local targets: never navigate to e.g. a javascript: URL, whatever the answer says.
  if (typeof logoutUrl === "string" && /^(https?:\/\/|\/(?![/\\]))/i.test(logoutUrl)) {
    globalThis.location.assign(logoutUrl);
  }
}

/**
 * The current session as the gateway reports it, or null when there is none (401).
 * @returns {Promise<{user: object, expiresAt: number, sessionExpiresAt: number} | null>}
 * @throws {BffError} on any other non-2xx answer
 */
export async function getUser() {
  const { response, data } = await authCall("GET", "user");
  if (response.status === 401) return null;
  if (!response.ok) throw errorFrom(response, data);
  sessionEndAnnounced = false;
  return data;
}

/**
 * Subscribe to session changes in this tab and in other tabs of the same origin.
 * @param {(event: {type: "login"|"logout"|"expired", user?: object|null}) => void} callback
 * @returns {() => void} unsubscribe
 */
export function onSessionChange(callback) {
  if (typeof callback !== "function") throw new TypeError("bffgate: onSessionChange needs a function");
  openChannel(); // listen for other tabs from now on, not only after this tab's first event
  const listener = (event) => callback(event);
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

// --- internals ---------------------------------------------------------------------------------

/** The same init with the CSRF header and same-origin cookies, which every gateway call needs. */
function gatewayInit(init) {
  const headers = new Headers(init.headers);
  headers.set("X-CSRF", "1");
  return { ...init, headers, credentials: "same-origin" };
}

function send(url, init) {
  const doFetch = config.fetch ?? globalThis.fetch;
  if (typeof doFetch !== "function") throw new TypeError("bffgate: no fetch available; pass configure({ fetch })");
  // Called with globalThis as `this`: browsers throw "Illegal invocation" for window.fetch otherwise.
  return doFetch.call(globalThis, url, init);
}

/** Call /api/auth/{endpoint}; `data` is the parsed JSON body, or null when there is none. */
async function authCall(method, endpoint, body) {
  // Accept: JSON, so the gateway never mistakes this for a page navigation (which gets a 302).
  const init = gatewayInit({ method, headers: { Accept: "application/json" } });
  if (body !== undefined) {
    init.headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  const response = await send(`${config.basePath}/api/auth/${endpoint}`, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Empty or non-JSON body: the status alone tells the story.
  }
  return { response, data };
}

/** The problem `code` of a JSON error answer, read from a clone so the caller's body stays unread. */
async function problemCode(response) {
  if (!/json/i.test(response.headers.get("content-type") ?? "")) return undefined;
  try {
    const body = await response.clone().json();
    return typeof body?.code === "string" ? body.code : undefined;
  } catch {
    return undefined;
  }
}

function errorFrom(response, body) {
  // Gateway problems carry `code`; upstream answers passed through often use `error` (OAuth style).
  const code = [body?.code, body?.error].find((value) => typeof value === "string");
  const detail = [body?.detail, body?.title, body?.error_description, body?.message].find((v) => typeof v === "string");
  const message = `bffgate: HTTP ${response.status}${code ? ` ${code}` : ""}${detail ? `: ${detail}` : ""}`;
  return new BffError(message, { status: response.status, code, body });
}

/** The session is gone: tell every tab (once), then go to the login page, coming back here after. */
function sessionEnded(code) {
  if (!sessionEndAnnounced) {
    sessionEndAnnounced = true;
    emit({ type: "expired" });
  }
  const returnTo = currentPath();
  const loginUrl = withQuery(config.loginPage, "returnTo", returnTo);
  if (config.onUnauthenticated) {
    // A failing handler must not turn the Response the caller awaits into a rejection.
    try {
      config.onUnauthenticated(returnTo, { loginUrl, code });
    } catch (error) {
      report(error);
    }
  } else {
    globalThis.location?.assign(loginUrl);
  }
}

function currentPath() {
  const loc = globalThis.location;
  return loc ? `${loc.pathname}${loc.search}` : "/";
}

function withQuery(url, name, value) {
  return `${url}${url.includes("?") ? "&" : "?"}${name}=${encodeURIComponent(value)}`;
}

/** Wait `ms`, but stop at once (rejecting with the abort reason) if the caller aborts the request. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function emit(event) {
  deliver(event);
  try {
    openChannel()?.postMessage(event); // a channel does not echo to itself: no double delivery here
  } catch (error) {
    report(error); // e.g. a user object that cannot be cloned; this tab was already told
  }
}

/** Call every listener; one throwing listener must not keep the others (or the caller) from running. */
function deliver(event) {
  for (const listener of [...listeners]) {
    try {
      listener(event);
    } catch (error) {
      report(error);
    }
  }
}

function openChannel() {
  if (channel !== undefined) return channel;
  channel = null;
  if (typeof globalThis.BroadcastChannel !== "function") return channel;
  try {
    channel = new globalThis.BroadcastChannel(CHANNEL_NAME);
  } catch {
    return channel; // e.g. an opaque origin: events then stay within this tab
  }
  channel.onmessage = ({ data }) => {
    // Any script of the origin can post here: accept only well-formed session events.
    if (!data || typeof data !== "object" || !SESSION_EVENT_TYPES.has(data.type)) return;
    sessionEndAnnounced = data.type !== "login";
    deliver(data.type === "login" ? { type: "login", user: data.user ?? null } : { type: data.type });
  };
  channel.unref?.(); // Node (tests, SSR): an open channel must not keep the process alive
  return channel;
}

function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}
