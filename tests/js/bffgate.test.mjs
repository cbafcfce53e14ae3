// Unit tests for src/bffgate/static/bffgate.js: `node --test tests/js/`.
// No browser and no npm packages: fetch is injected with configure(), and location and
// BroadcastChannel are stubbed on globalThis before the module is loaded.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

/** Stands in for BroadcastChannel: records what this tab posts, lets a test play another tab. */
class FakeChannel {
  static instances = [];
  constructor(name) {
    this.name = name;
    this.posted = [];
    this.onmessage = null;
    FakeChannel.instances.push(this);
  }
  postMessage(data) {
    this.posted.push(structuredClone(data));
  }
  /** Deliver `data` as if another tab had posted it. */
  receive(data) {
    this.onmessage?.({ data });
  }
  close() {}
}
globalThis.BroadcastChannel = FakeChannel;

const navigations = [];
globalThis.location = {
  pathname: "/orders",
  search: "?page=2",
  assign(url) {
    navigations.push(url);
  },
};

const bff = await import("../../src/bffgate/static/bffgate.js");
const { BffError, configure, customFetch, getUser, login, loginRedirect, logout, onSessionChange } = bff;

const demoUser = { id: "demo", name: "Demo User", email: "demo@example.com" };

/** The module's one channel (it is created lazily, on first use). */
function channel() {
  assert.equal(FakeChannel.instances.length, 1, "exactly one channel is opened");
  assert.equal(FakeChannel.instances[0].name, "bffgate");
  return FakeChannel.instances[0];
}

/** Another tab reports a login: the module then treats the session as live again. */
function anotherTabLoggedIn() {
  onSessionChange(() => {})(); // make sure the channel is open
  channel().receive({ type: "login", user: demoUser });
}

/** A fetch that answers from `answers` in order (the last one repeats) and records each call. */
function fakeFetch(...answers) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init, headers: new Headers(init?.headers) });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    return typeof answer === "function" ? answer() : answer.clone();
  };
  fn.calls = calls;
  return fn;
}

function json(status, body, type = "application/json") {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": type } });
}

function problem(status, code) {
  return json(status, { type: "about:blank", title: code, status, code }, "application/problem+json");
}

let unsubscribers = [];
/** Subscribe for this test only; returns the array the events land in. */
function recordEvents() {
  const events = [];
  unsubscribers.push(onSessionChange((event) => events.push(event)));
  return events;
}

beforeEach(() => {
  navigations.length = 0;
  for (const ch of FakeChannel.instances) ch.posted.length = 0;
});

afterEach(() => {
  for (const unsubscribe of unsubscribers) unsubscribe();
  unsubscribers = [];
  mock.restoreAll();
  configure({});
});

// --- customFetch: what is sent ------------------------------------------------------------------

test("customFetch sends X-CSRF and same-origin credentials to the proxy path", async () => {
  const fetch = fakeFetch(json(200, [{ id: 1 }]));
  configure({ fetch });
  const body = JSON.stringify({ name: "Pen" });
  const response = await customFetch("/items?page=2", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Trace": "abc" },
    body,
  });

  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), [{ id: 1 }]);
  assert.equal(fetch.calls.length, 1);
  const [call] = fetch.calls;
  assert.equal(call.url, "/api/rest/proxy/items?page=2");
  assert.equal(call.headers.get("X-CSRF"), "1");
  assert.equal(call.init.credentials, "same-origin");
  // The caller's own options survive.
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.body, body);
  assert.equal(call.headers.get("content-type"), "application/json");
  assert.equal(call.headers.get("x-trace"), "abc");
});

test("customFetch forces same-origin credentials and the CSRF header over caller values", async () => {
  const fetch = fakeFetch(json(200, {}));
  configure({ fetch });
  await customFetch("/items", { credentials: "omit", headers: new Headers({ "X-CSRF": "" }) });
  assert.equal(fetch.calls[0].init.credentials, "same-origin");
  assert.equal(fetch.calls[0].headers.get("X-CSRF"), "1");
});

test("customFetch prefixes basePath, with or without a trailing slash", async () => {
  for (const basePath of ["/gw", "/gw/"]) {
    const fetch = fakeFetch(json(200, {}));
    configure({ fetch, basePath });
    await customFetch("/items");
    assert.equal(fetch.calls[0].url, "/gw/api/rest/proxy/items");
  }
});

test("customFetch uses globalThis.fetch when none is configured", async () => {
  const fetch = fakeFetch(json(200, {}));
  mock.method(globalThis, "fetch", fetch);
  await customFetch("/items");
  assert.equal(fetch.calls.length, 1);
});

test("customFetch rejects a path that does not start with '/' and sends nothing", async () => {
  const fetch = fakeFetch(json(200, {}));
  configure({ fetch });
  for (const bad of ["items", "", "http://evil.example/x", "../x", undefined, null, 42]) {
    await assert.rejects(customFetch(bad), TypeError, `path ${String(bad)}`);
  }
  assert.equal(fetch.calls.length, 0);
});

// --- customFetch: 401 ---------------------------------------------------------------------------

test("401 unauthenticated: 'expired' is broadcast and onUnauthenticated gets returnTo", async () => {
  const handled = [];
  configure({ fetch: fakeFetch(problem(401, "unauthenticated")), onUnauthenticated: (...args) => handled.push(args) });
  const events = recordEvents();
  anotherTabLoggedIn(); // start from a live session so "expired" is news

  const response = await customFetch("/items");

  assert.equal(response.status, 401);
  // The body is still unread and usable by the caller.
  assert.equal((await response.json()).code, "unauthenticated");
  assert.deepEqual(handled, [
    ["/orders?page=2", { loginUrl: "/login?returnTo=%2Forders%3Fpage%3D2", code: "unauthenticated" }],
  ]);
  assert.deepEqual(navigations, [], "onUnauthenticated replaces the navigation");
  assert.deepEqual(events.at(-1), { type: "expired" });
  assert.deepEqual(channel().posted.at(-1), { type: "expired" });
});

test("401 session_expired without a handler navigates to loginPage?returnTo=", async () => {
  configure({ fetch: fakeFetch(problem(401, "session_expired")), loginPage: "/signin?x=1" });
  const response = await customFetch("/items");
  assert.equal(response.status, 401);
  assert.deepEqual(navigations, ["/signin?x=1&returnTo=%2Forders%3Fpage%3D2"]);
});

test("parallel 401s announce 'expired' once but every caller gets its Response", async () => {
  let handled = 0;
  configure({ fetch: fakeFetch(problem(401, "unauthenticated")), onUnauthenticated: () => handled++ });
  const events = recordEvents();
  anotherTabLoggedIn();
  const responses = await Promise.all(Array.from({ length: 5 }, () => customFetch("/items")));
  assert.deepEqual(responses.map((r) => r.status), [401, 401, 401, 401, 401]);
  assert.equal(events.filter((e) => e.type === "expired").length, 1);
  assert.equal(handled, 5);
});

test("a 401 without a session problem code (the upstream's own 401) is returned untouched", async () => {
  const onUnauthenticated = mock.fn();
  configure({ fetch: fakeFetch(json(401, { error: "invalid_token" })), onUnauthenticated });
  const response = await customFetch("/items");
  assert.equal(response.status, 401);
  assert.deepEqual(await response.json(), { error: "invalid_token" });
  assert.equal(onUnauthenticated.mock.callCount(), 0);
  assert.deepEqual(navigations, []);
});

test("a throwing onUnauthenticated does not turn the Response into a rejection", async () => {
  mock.method(console, "error", () => {});
  configure({
    fetch: fakeFetch(problem(401, "unauthenticated")),
    onUnauthenticated: () => {
      throw new Error("boom");
    },
  });
  const response = await customFetch("/items");
  assert.equal(response.status, 401);
  assert.equal(console.error.mock.callCount(), 1);
});

// --- customFetch: 503 refresh_unavailable -------------------------------------------------------

test("503 refresh_unavailable is retried with exponential backoff", async () => {
  const timers = mock.method(globalThis, "setTimeout"); // records delays, still really waits
  const fetch = fakeFetch(problem(503, "refresh_unavailable"), problem(503, "refresh_unavailable"), json(200, { ok: 1 }));
  configure({ fetch, backoffMs: 2, retries: 3 });

  const response = await customFetch("/items", { method: "POST", body: "{}" });

  assert.equal(response.status, 200);
  assert.equal(fetch.calls.length, 3);
  assert.deepEqual(timers.mock.calls.map((c) => c.arguments[1]), [2, 4]);
  // Every attempt is a complete request, body included.
  assert.ok(fetch.calls.every((c) => c.init.body === "{}" && c.headers.get("X-CSRF") === "1"));
});

test("503 refresh_unavailable gives up after `retries` retries and returns the last answer", async () => {
  const timers = mock.method(globalThis, "setTimeout");
  const fetch = fakeFetch(problem(503, "refresh_unavailable"));
  configure({ fetch, backoffMs: 1, retries: 2 });

  const response = await customFetch("/items");

  assert.equal(response.status, 503);
  assert.equal((await response.json()).code, "refresh_unavailable");
  assert.equal(fetch.calls.length, 3, "one try plus two retries");
  assert.deepEqual(timers.mock.calls.map((c) => c.arguments[1]), [1, 2]);
});

test("retries: 0 means a single attempt", async () => {
  const fetch = fakeFetch(problem(503, "refresh_unavailable"));
  configure({ fetch, retries: 0 });
  assert.equal((await customFetch("/items")).status, 503);
  assert.equal(fetch.calls.length, 1);
});

test("503 is not retried when the request body is a stream (it cannot be sent twice)", async () => {
  const fetch = fakeFetch(problem(503, "refresh_unavailable"));
  configure({ fetch, backoffMs: 1 });
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("data"));
      controller.close();
    },
  });
  const response = await customFetch("/upload", { method: "POST", body, duplex: "half" });
  assert.equal(response.status, 503);
  assert.equal(fetch.calls.length, 1);
});

test("an upstream 503 without the refresh_unavailable code is not retried", async () => {
  for (const answer of [json(503, { error: "maintenance" }), new Response("down", { status: 503 })]) {
    const fetch = fakeFetch(answer);
    configure({ fetch, backoffMs: 1 });
    assert.equal((await customFetch("/items")).status, 503);
    assert.equal(fetch.calls.length, 1);
  }
});

// The backoff is far longer than the test's timeout, so a sleep that ignores the signal fails it.
test("aborting during the backoff rejects at once instead of waiting", { timeout: 1000 }, async () => {
  const fetch = fakeFetch(problem(503, "refresh_unavailable"));
  configure({ fetch, backoffMs: 3000 });
  const controller = new AbortController();
  const pending = customFetch("/items", { signal: controller.signal });
  setImmediate(() => controller.abort(new Error("user left")));
  await assert.rejects(pending, /user left/);
  assert.equal(fetch.calls.length, 1);
});

// --- customFetch: everything else ---------------------------------------------------------------

test("other statuses are returned untouched, without retry or navigation", async () => {
  const onUnauthenticated = mock.fn();
  const cases = [
    json(200, { ok: true }),
    json(201, { id: 7 }),
    json(404, { error: "not_found" }),
    json(500, { error: "boom" }),
    problem(403, "csrf_failed"),
    problem(400, "invalid_url"),
    problem(413, "payload_too_large"),
    problem(502, "upstream_unavailable"),
    problem(504, "upstream_timeout"),
  ];
  for (const answer of cases) {
    const fetch = mock.fn(async () => answer);
    configure({ fetch, onUnauthenticated, backoffMs: 1 });
    const response = await customFetch("/items");
    assert.equal(response, answer, `status ${answer.status}: the very same Response`);
    assert.equal(response.bodyUsed, false);
    assert.equal(fetch.mock.callCount(), 1);
  }
  assert.equal(onUnauthenticated.mock.callCount(), 0);
  assert.deepEqual(navigations, []);
});

// --- auth endpoints -----------------------------------------------------------------------------

test("login POSTs JSON with X-CSRF, resolves to the user and emits 'login' here and to other tabs", async () => {
  const fetch = fakeFetch(json(200, { user: demoUser }));
  configure({ fetch });
  const events = recordEvents();

  const user = await login({ username: "demo", password: "demo" });

  assert.deepEqual(user, demoUser);
  const [call] = fetch.calls;
  assert.equal(call.url, "/api/auth/login");
  assert.equal(call.init.method, "POST");
  assert.equal(call.init.credentials, "same-origin");
  assert.equal(call.headers.get("X-CSRF"), "1");
  assert.equal(call.headers.get("content-type"), "application/json");
  assert.deepEqual(JSON.parse(call.init.body), { username: "demo", password: "demo" });
  assert.deepEqual(events, [{ type: "login", user: demoUser }]);
  assert.deepEqual(channel().posted, [{ type: "login", user: demoUser }]);
});

test("login failure throws BffError carrying status, code and body", async () => {
  configure({ fetch: fakeFetch(json(401, { error: "invalid_credentials" })) });
  const events = recordEvents();
  const error = await login({ username: "demo", password: "nope" }).then(
    () => assert.fail("login should have failed"),
    (e) => e,
  );
  assert.ok(error instanceof BffError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "BffError");
  assert.equal(error.status, 401);
  assert.equal(error.code, "invalid_credentials");
  assert.deepEqual(error.body, { error: "invalid_credentials" });
  assert.match(error.message, /401 invalid_credentials/);
  assert.deepEqual(events, [], "no session event for a failed login");
});

test("a gateway problem's `code` wins over other members, and a non-JSON body still gives a BffError", async () => {
  const body = { type: "about:blank", title: "Forbidden", code: "csrf_failed", error: "other" };
  configure({ fetch: fakeFetch(json(403, body, "application/problem+json")) });
  await assert.rejects(login({}), { name: "BffError", status: 403, code: "csrf_failed" });
  configure({ fetch: fakeFetch(new Response("<h1>Bad gateway</h1>", { status: 502 })) });
  await assert.rejects(login({}), { name: "BffError", status: 502, code: undefined, body: null });
});

test("getUser resolves to the session, sending X-CSRF", async () => {
  const session = { user: demoUser, expiresAt: 1_900_000_000, sessionExpiresAt: 1_900_028_800 };
  const fetch = fakeFetch(json(200, session));
  configure({ fetch, basePath: "/gw" });
  assert.deepEqual(await getUser(), session);
  assert.equal(fetch.calls[0].url, "/gw/api/auth/user");
  assert.equal(fetch.calls[0].init.method, "GET");
  assert.equal(fetch.calls[0].headers.get("X-CSRF"), "1");
  assert.equal(fetch.calls[0].headers.get("accept"), "application/json");
});

test("getUser resolves to null on 401 and throws BffError on other errors", async () => {
  configure({ fetch: fakeFetch(problem(401, "unauthenticated")) });
  assert.equal(await getUser(), null);
  assert.deepEqual(navigations, [], "getUser only reports; it does not navigate");
  configure({ fetch: fakeFetch(problem(503, "refresh_unavailable")) });
  await assert.rejects(getUser(), { name: "BffError", status: 503, code: "refresh_unavailable" });
});

test("logout POSTs with X-CSRF and emits 'logout'; no navigation without a logoutUrl", async () => {
  const fetch = fakeFetch(json(200, { message: "Logged out" }));
  configure({ fetch });
  const events = recordEvents();
  assert.equal(await logout(), undefined);
  assert.equal(fetch.calls[0].url, "/api/auth/logout");
  assert.equal(fetch.calls[0].init.method, "POST");
  assert.equal(fetch.calls[0].headers.get("X-CSRF"), "1");
  assert.deepEqual(events, [{ type: "logout" }]);
  assert.deepEqual(channel().posted, [{ type: "logout" }]);
  assert.deepEqual(navigations, []);
});

test("logout navigates to the provider's logoutUrl (oidc), but never to a script URL", async () => {
  const logoutUrl = "https://idp.example/logout?id_token_hint=x&post_logout_redirect_uri=https%3A%2F%2Fapp%2F";
  configure({ fetch: fakeFetch(json(200, { logoutUrl })) });
  await logout();
  assert.deepEqual(navigations, [logoutUrl]);

  navigations.length = 0;
  configure({ fetch: fakeFetch(json(200, { logoutUrl: "javascript:alert(1)" })) });
  await logout();
  assert.deepEqual(navigations, []);
});

test("logout treats 401 (no session left) as done and throws BffError on other errors", async () => {
  configure({ fetch: fakeFetch(problem(401, "unauthenticated")) });
  const events = recordEvents();
  await logout();
  assert.deepEqual(events, [{ type: "logout" }]);
  configure({ fetch: fakeFetch(json(500, { error: "boom" })) });
  await assert.rejects(logout(), { name: "BffError", status: 500 });
});

test("loginRedirect navigates to the gateway's login with an encoded returnTo", () => {
  configure({ basePath: "/gw" });
  loginRedirect("/x?y=1");
  loginRedirect();
  assert.deepEqual(navigations, [
    "/gw/api/auth/login?returnTo=%2Fx%3Fy%3D1",
    "/gw/api/auth/login?returnTo=%2Forders%3Fpage%3D2",
  ]);
});

// --- session events -----------------------------------------------------------------------------

test("onSessionChange delivers login and logout events, and unsubscribe stops delivery", async () => {
  configure({ fetch: fakeFetch(json(200, { user: demoUser, message: "Logged out" })) });
  const events = [];
  const unsubscribe = onSessionChange((event) => events.push(event));
  await login({ username: "demo", password: "demo" });
  await logout();
  unsubscribe();
  await login({ username: "demo", password: "demo" });
  assert.deepEqual(events, [{ type: "login", user: demoUser }, { type: "logout" }]);
});

test("events from other tabs reach the listeners; malformed messages are ignored", () => {
  const events = recordEvents();
  const ch = channel();
  ch.receive({ type: "logout" });
  ch.receive({ type: "login", user: demoUser });
  ch.receive({ type: "expired", token: "should-not-be-forwarded" });
  for (const junk of [null, "logout", 42, {}, { type: "pwned" }]) ch.receive(junk);
  assert.deepEqual(events, [{ type: "logout" }, { type: "login", user: demoUser }, { type: "expired" }]);
  assert.deepEqual(ch.posted, [], "received events are not echoed back");
});

test("a throwing listener does not stop the others or fail the call", async () => {
  mock.method(console, "error", () => {});
  configure({ fetch: fakeFetch(json(200, { user: demoUser })) });
  unsubscribers.push(
    onSessionChange(() => {
      throw new Error("listener bug");
    }),
  );
  const events = recordEvents();
  await login({});
  assert.deepEqual(events, [{ type: "login", user: demoUser }]);
  assert.equal(console.error.mock.callCount(), 1);
});

test("configure rejects nonsense options", () => {
  assert.throws(() => configure({ retries: -1 }), TypeError);
  assert.throws(() => configure({ retries: 1.5 }), TypeError);
  assert.throws(() => configure({ backoffMs: -5 }), TypeError);
  assert.throws(() => configure({ fetch: "nope" }), TypeError);
  assert.throws(() => configure({ onUnauthenticated: 1 }), TypeError);
  assert.throws(() => onSessionChange("nope"), TypeError);
});
