/**
 * Type declarations for bffgate.js, the browser helper of the bffgate BFF token gateway.
 *
 * The browser holds only HttpOnly cookies; no token ever reaches JavaScript, so nothing here
 * exposes one. The only session data is the user object the gateway chooses to return.
 */

/** The user data the gateway exposes (shape depends on the provider / userinfo endpoint). */
export interface BffUser {
  id?: string;
  name?: string;
  email?: string;
  [claim: string]: unknown;
}

/** `GET /api/auth/user`: times are Unix seconds. */
export interface BffSession {
  user: BffUser;
  /** When the current access token expires (the gateway refreshes it by itself). */
  expiresAt: number;
  /** When the session ends for good and the user must log in again. */
  sessionExpiresAt: number;
}

export type SessionEvent =
  | { type: "login"; user: BffUser | null }
  | { type: "logout" }
  | { type: "expired" };

export interface UnauthenticatedInfo {
  /** `loginPage?returnTo=<returnTo>`, where the default handler would navigate. */
  loginUrl: string;
  /** The gateway's problem code. */
  code: "unauthenticated" | "session_expired";
}

export interface BffOptions {
  /** Where the gateway is mounted ("" = same origin root). Default "". */
  basePath?: string;
  /** The app's login page, used after a 401. Default "/login". */
  loginPage?: string;
  /** Retries of a 503 `refresh_unavailable` answer. Default 3. */
  retries?: number;
  /** First backoff delay in ms; doubles on each retry. Default 250. */
  backoffMs?: number;
  /** The fetch to use. Default: `globalThis.fetch`, looked up at call time. */
  fetch?: typeof globalThis.fetch;
  /**
   * Called instead of `location.assign(loginUrl)` when a call finds the session gone.
   * `returnTo` is the current path + search.
   */
  onUnauthenticated?: (returnTo: string, info: UnauthenticatedInfo) => void;
}

/** An error answer from a gateway endpoint. */
export class BffError extends Error {
  constructor(message: string, details?: { status?: number; code?: string; body?: unknown });
  name: "BffError";
  /** HTTP status of the answer. */
  status: number;
  /** Problem `code` from the gateway, or the upstream's `error` (e.g. "invalid_credentials"). */
  code: string | undefined;
  /** The parsed JSON body, or null when there was none. */
  body: unknown;
}

/** Replace the configuration; omitted options get their defaults. */
export function configure(options?: BffOptions): void;

/**
 * Call `${basePath}/api/rest/proxy${path}` with `X-CSRF` and same-origin credentials.
 * Always resolves to the Response (also on 401, after starting the trip to the login page);
 * retries 503 `refresh_unavailable` with backoff when the body is not a stream.
 * Rejects with a TypeError when `path` does not start with "/".
 */
export function customFetch(path: `/${string}`, init?: RequestInit): Promise<Response>;

/** POST credentials to /api/auth/login; resolves to the user. Throws BffError on non-2xx. */
export function login(credentials: Record<string, unknown>): Promise<BffUser | null>;

/** Navigate to /api/auth/login?returnTo=… (oidc mode). Default: the current path + search. */
export function loginRedirect(returnTo?: string): void;

/** POST /api/auth/logout; navigates to the provider's `logoutUrl` when the gateway returns one. */
export function logout(): Promise<void>;

/** The current session, or null when there is none. Throws BffError on other errors. */
export function getUser(): Promise<BffSession | null>;

/** Session events from this tab and other tabs. Returns the unsubscribe function. */
export function onSessionChange(callback: (event: SessionEvent) => void): () => void;

/** Close codes the gateway sends on a relayed WebSocket (README "Live connections"). */
export const CloseCodes: {
  /** The session ended (logout, logout everywhere, back-channel logout, absolute lifetime). */
  readonly SESSION_ENDED: 4401;
  /** BFF_WS_MAX_PER_SESSION or BFF_WS_MAX_PER_PROCESS reached. */
  readonly TOO_MANY_SOCKETS: 4429;
  /** The API could not be reached, or its connection broke off. */
  readonly API_UNAVAILABLE: 4502;
  /** A message over BFF_WS_MAX_MESSAGE_BYTES. */
  readonly MESSAGE_TOO_BIG: 1009;
};

export interface LiveSocketEventMap {
  open: Event;
  message: MessageEvent;
  /** A drop: the socket reconnects after `delayMs`. */
  reconnect: CustomEvent<{ attempt: number; delayMs: number; code: number }>;
  /** Closed for good (by the page, a final code, or a session end). */
  close: CustomEvent<{ code: number; reason: string }>;
  error: Event;
}

/** A WebSocket through the gateway that reconnects after drops. */
export class LiveSocket extends EventTarget {
  readonly url: string;
  /** "blob" (default) or "arraybuffer", applied to every (re)connection. */
  binaryType: BinaryType;
  /** 0 connecting (also between reconnects), 1 open, 3 closed for good. */
  readonly readyState: 0 | 1 | 3;
  /** Throws an InvalidStateError DOMException while not open. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
  /** Close for good: no reconnect. */
  close(code?: number, reason?: string): void;
  addEventListener<K extends keyof LiveSocketEventMap>(
    type: K,
    listener: (event: LiveSocketEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

/**
 * Open `ws(s)://<page host>${basePath}/api/rest/proxy${path}`: the gateway authenticates it with the
 * session's cookies and sends the API the Bearer. Reconnects with backoff after a drop; close 4401
 * (or a refused handshake with no session left) reports "expired" like a 401.
 */
export function openSocket(path: `/${string}`, protocols?: string | string[]): LiveSocket;

/** Server-sent events through the gateway, EventSource-style (fetch-based, so X-CSRF is sent). */
export class LiveEvents extends EventTarget {
  /** 0 connecting, 1 open, 2 closed. */
  readonly readyState: 0 | 1 | 2;
  /** The last `id:` received; sent back as Last-Event-ID when reconnecting. */
  readonly lastEventId: string;
  close(): void;
  addEventListener(type: "open" | "error", listener: (event: Event) => void, options?: boolean | AddEventListenerOptions): void;
  /** "message", or the name given by an `event:` line. */
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void, options?: boolean | AddEventListenerOptions): void;
}

/** Read `${basePath}/api/rest/proxy${path}` as server-sent events; reconnects with Last-Event-ID. */
export function events(path: `/${string}`): LiveEvents;
