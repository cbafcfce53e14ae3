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
 * - Live connections: `openSocket(path, protocols)` (a WebSocket through the gateway) and
 *   `events(path)` (server-sent events), both reconnecting with backoff after a network drop and
 *   reporting a session end like a 401 does.
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

// --- live connections --------------------------------------------------------------------------

/** Close codes the gateway sends (README "Live connections"). */
export const CloseCodes = Object.freeze({
  SESSION_ENDED: 4401,
  TOO_MANY_SOCKETS: 4429,
  API_UNAVAILABLE: 4502,
  MESSAGE_TOO_BIG: 1009,
});
/** Closes after which reconnecting cannot help: a normal end, a refusal, an oversized message. */
const FINAL_CLOSE_CODES = new Set([1000, CloseCodes.TOO_MANY_SOCKETS, CloseCodes.MESSAGE_TOO_BIG]);
const MAX_RECONNECT_DELAY_MS = 30_000;

/**
 * A WebSocket to the remote API through the gateway (`/api/rest/proxy${path}`, ws: or wss: as the
 * page). The browser's cookies authenticate it; the gateway adds the Bearer. Events: "open",
 * "message" (MessageEvent), "reconnect" (CustomEvent, detail {attempt, delayMs, code}), "close"
 * (CustomEvent, detail {code, reason}: only once it will not reconnect), "error".
 *
 * After a drop (network, gateway restart, the API's own close other than 1000) it reconnects with
 * exponential backoff (configure's backoffMs, doubling, at most 30 s); the next handshake carries a
 * fresh token. Close 4401 (session ended), or a handshake refused because the session is gone, is
 * reported like a 401: "expired" to onSessionChange, then the login page or onUnauthenticated.
 *
 * @param {string} path the remote API path, starting with "/"
 * @param {string | string[]} [protocols] WebSocket sub-protocols, passed to the API
 * @returns {LiveSocket}
 */
export function openSocket(path, protocols) {
  return new LiveSocket(liveUrl(path, "openSocket", true), protocols);
}

export class LiveSocket extends EventTarget {
  constructor(url, protocols) {
    super();
    this.url = url;
    this.protocols = protocols;
    /** "blob" or "arraybuffer", applied to every (re)connection. */
    this.binaryType = "blob";
    /** 0 connecting (also between reconnects), 1 open, 3 closed for good. */
    this.readyState = 0;
    this.socket = null;
    this.attempt = 0;
    this.closedByPage = false;
    this.timer = undefined;
    this.connect();
  }

  /** Send on the open socket (throws, as WebSocket does, while it is not open). */
  send(data) {
    if (this.readyState !== 1 || !this.socket) throw new DOMException("bffgate: the socket is not open", "InvalidStateError");
    this.socket.send(data);
  }

  /** Close for good (no reconnect). */
  close(code = 1000, reason = "") {
    this.closedByPage = true;
    clearTimeout(this.timer);
    if (this.socket && this.socket.readyState < 2) this.socket.close(code, reason);
    else this.finish(code, reason);
  }

  connect() {
    const WebSocketClass = globalThis.WebSocket;
    if (typeof WebSocketClass !== "function") throw new TypeError("bffgate: no WebSocket in this environment");
    const socket = new WebSocketClass(this.url, this.protocols);
    socket.binaryType = this.binaryType;
    let opened = false;
    this.socket = socket;
    socket.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.readyState = 1;
      this.dispatchEvent(new Event("open"));
    };
    socket.onmessage = (event) => this.dispatchEvent(new MessageEvent("message", { data: event.data }));
    socket.onerror = () => this.dispatchEvent(new Event("error"));
    socket.onclose = (event) => {
      this.socket = null;
      this.closed(event.code, event.reason, opened).catch(report);
    };
  }

  async closed(code, reason, opened) {
    if (this.closedByPage || FINAL_CLOSE_CODES.has(code)) return this.finish(code, reason);
    if (code === CloseCodes.SESSION_ENDED) {
      this.finish(code, reason); // listeners hear the close before the page turns to the login
      return sessionEnded("session_expired");
    }
    // A handshake that failed says nothing about why (browsers hide the status): ask the gateway.
    if (!opened && !(await sessionStands())) {
      this.finish(code, reason);
      return sessionEnded("unauthenticated");
    }
    if (this.closedByPage) return this.finish(code, reason);
    const delayMs = Math.min(config.backoffMs * 2 ** this.attempt, MAX_RECONNECT_DELAY_MS);
    this.attempt += 1;
    this.readyState = 0;
    this.dispatchEvent(new CustomEvent("reconnect", { detail: { attempt: this.attempt, delayMs, code } }));
    this.timer = setTimeout(() => {
      if (!this.closedByPage) this.connect();
    }, delayMs);
  }

  finish(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
  }
}

/**
 * Server-sent events from the remote API through the gateway, EventSource-style: "open",
 * "message" and named events (MessageEvent with data and lastEventId), "error"; `close()`.
 *
 * Not the browser's EventSource itself: it cannot send the `X-CSRF` header the gateway requires on
 * every proxied call. This reads the stream with fetch (through customFetch, so a 401 reports the
 * session end and a 503 refresh_unavailable is retried) and parses the event-stream format; after
 * a drop it reconnects with `Last-Event-ID`, waiting the stream's `retry:` or the backoff.
 *
 * @param {string} path the remote API path, starting with "/"
 * @returns {LiveEvents}
 */
export function events(path) {
  liveUrl(path, "events", false);
  return new LiveEvents(path);
}

export class LiveEvents extends EventTarget {
  constructor(path) {
    super();
    this.path = path;
    /** 0 connecting, 1 open, 2 closed (as EventSource). */
    this.readyState = 0;
    this.lastEventId = "";
    this.attempt = 0;
    this.retryMs = undefined;
    this.abort = new AbortController();
    this.run().catch(report);
  }

  close() {
    this.readyState = 2;
    this.abort.abort();
  }

  async run() {
    while (this.readyState !== 2) {
      const headers = { Accept: "text/event-stream" };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      let response;
      try {
        response = await customFetch(this.path, { headers, signal: this.abort.signal, cache: "no-store" });
      } catch {
        if (this.readyState === 2) return;
        await this.dropped();
        continue;
      }
      const type = response.headers.get("content-type") ?? "";
      if (response.status === 200 && /^text\/event-stream/i.test(type) && response.body) {
        this.readyState = 1;
        this.attempt = 0;
        this.dispatchEvent(new Event("open"));
        try {
          await this.read(response.body);
        } catch {
          // a network drop mid-stream, or close(): decided below
        }
        if (this.readyState === 2) return;
        await this.dropped();
        continue;
      }
      response.body?.cancel().catch(() => {});
      // 401 was reported by customFetch; a refusal (4xx) will not change by asking again.
      if (response.status < 500) {
        this.readyState = 2;
        this.dispatchEvent(new Event("error"));
        return;
      }
      await this.dropped();
    }
  }

  async dropped() {
    this.readyState = 0;
    this.dispatchEvent(new Event("error"));
    const delayMs = this.retryMs ?? Math.min(config.backoffMs * 2 ** this.attempt, MAX_RECONNECT_DELAY_MS);
    this.attempt += 1;
    await sleep(delayMs, this.abort.signal).catch(() => {});
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { data: "", type: "" };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? "";
      for (const line of lines) event = this.line(line, event);
    }
  }

  /** One line of the event-stream format (the HTML standard's rules); the event being built. */
  line(line, event) {
    if (line === "") {
      if (event.data) {
        const data = event.data.endsWith("\n") ? event.data.slice(0, -1) : event.data;
        this.dispatchEvent(new MessageEvent(event.type || "message", { data, lastEventId: this.lastEventId }));
      }
      return { data: "", type: "" };
    }
    if (line.startsWith(":")) return event; // a comment (heartbeats)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") return { ...event, data: `${event.data}${value}\n` };
    if (field === "event") return { ...event, type: value };
    if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return event;
  }
}

/** The gateway URL of a live connection to `path` (ws:/wss: for sockets); checks `path` first. */
function liveUrl(path, name, socket) {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new TypeError(`bffgate: ${name} path must start with "/", got ${JSON.stringify(path)}`);
  }
  const relative = `${config.basePath}/api/rest/proxy${path}`;
  if (!socket) return relative;
  const loc = globalThis.location;
  return `${loc?.protocol === "https:" ? "wss:" : "ws:"}//${loc?.host ?? ""}${relative}`;
}

/** Whether the gateway still has a session for this tab (false only on a 401). */
async function sessionStands() {
  try {
    const { response } = await authCall("GET", "user");
    return response.status !== 401;
  } catch {
    return true; // the gateway is unreachable: a network drop, not a session end
  }
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
