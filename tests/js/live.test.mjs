// Unit tests for the live connections of src/bffgate/static/bffgate.js (openSocket, events):
// `node --test tests/js/`. WebSocket, fetch, location and BroadcastChannel are stand-ins.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

/** Stands in for WebSocket: records the URL and protocols; a test opens, feeds and closes it. */
class FakeWebSocket {
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    this.sent.push(data);
  }
  close(code = 1000, reason = "") {
    this.drop(code, reason);
  }
  open() {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }
  message(data) {
    this.onmessage?.(new MessageEvent("message", { data }));
  }
  drop(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
globalThis.WebSocket = FakeWebSocket;
globalThis.BroadcastChannel = class {
  postMessage() {}
  close() {}
};
const navigations = [];
globalThis.location = {
  protocol: "https:",
  host: "app.example",
  pathname: "/dashboard",
  search: "",
  assign(url) {
    navigations.push(url);
  },
};

const { CloseCodes, configure, events, getUser, onSessionChange, openSocket } = await import(
  "../../src/bffgate/static/bffgate.js"
);

function problem(status, code) {
  return new Response(JSON.stringify({ status, code }), {
    status,
    headers: { "content-type": "application/problem+json" },
  });
}

/** A fetch answering from `answers` in order (the last repeats), recording each call. */
function fakeFetch(...answers) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, headers: new Headers(init?.headers) });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    return typeof answer === "function" ? answer() : answer.clone();
  };
  fn.calls = calls;
  return fn;
}

/** An event-stream answer whose body is `chunks`, then ends (a drop, as far as the reader knows). */
function eventStream(...chunks) {
  const body = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
      controller.close();
    },
  });
  return () => new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
}

/** Resolves with the next `type` event of `target`. */
function next(target, type) {
  return new Promise((resolve) => target.addEventListener(type, resolve, { once: true }));
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

let unsubscribe = () => {};
function recordSessionEvents() {
  const seen = [];
  unsubscribe = onSessionChange((event) => seen.push(event.type));
  return seen;
}

beforeEach(() => {
  FakeWebSocket.instances.length = 0;
  navigations.length = 0;
});

afterEach(() => {
  unsubscribe();
  configure({});
});

test("openSocket opens wss://host/api/rest/proxy/path with the protocols, under basePath", () => {
  configure({ basePath: "/app/" });
  const socket = openSocket("/live/ticks?every=1", ["chat.v1"]);
  const [ws] = FakeWebSocket.instances;
  assert.equal(ws.url, "wss://app.example/app/api/rest/proxy/live/ticks?every=1");
  assert.deepEqual(ws.protocols, ["chat.v1"]);
  socket.close();
});

test("openSocket rejects a path that does not start with '/'", () => {
  assert.throws(() => openSocket("live"), TypeError);
  assert.throws(() => events("https://evil.example/"), TypeError);
  assert.equal(FakeWebSocket.instances.length, 0);
});

test("messages and sends pass through once open; sending before open throws", async () => {
  const socket = openSocket("/echo");
  const [ws] = FakeWebSocket.instances;
  assert.throws(() => socket.send("early"), { name: "InvalidStateError" });
  const opened = next(socket, "open");
  ws.open();
  await opened;
  socket.send("hello");
  assert.deepEqual(ws.sent, ["hello"]);
  const message = next(socket, "message");
  ws.message("world");
  assert.equal((await message).data, "world");
  socket.close();
});

test("a network drop reconnects with backoff; the new socket works", async () => {
  configure({ backoffMs: 1, fetch: fakeFetch(new Response("{}", { status: 200 })) });
  const socket = openSocket("/ticks");
  FakeWebSocket.instances[0].open();
  const reconnect = next(socket, "reconnect");
  FakeWebSocket.instances[0].drop(1006);
  assert.deepEqual((await reconnect).detail, { attempt: 1, delayMs: 1, code: 1006 });
  const opened = next(socket, "open");
  while (FakeWebSocket.instances.length < 2) await tick();
  FakeWebSocket.instances[1].open();
  await opened;
  assert.equal(socket.readyState, 1);
  socket.close();
});

test("close 4401 (session ended) reports 'expired', goes to the login page, does not reconnect", async () => {
  const seen = recordSessionEvents();
  const socket = openSocket("/ticks");
  FakeWebSocket.instances[0].open();
  const closed = next(socket, "close");
  FakeWebSocket.instances[0].drop(CloseCodes.SESSION_ENDED, "session ended");
  assert.deepEqual((await closed).detail, { code: 4401, reason: "session ended" });
  assert.deepEqual(seen, ["expired"]);
  assert.deepEqual(navigations, ["/login?returnTo=%2Fdashboard"]);
  await tick();
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("a refused handshake with no session left reports the session end", async () => {
  const fetch = fakeFetch(problem(401, "unauthenticated"));
  const unauthenticated = [];
  configure({ fetch, onUnauthenticated: (returnTo, info) => unauthenticated.push(info.code) });
  const socket = openSocket("/ticks");
  const closed = next(socket, "close");
  FakeWebSocket.instances[0].drop(1006); // before open: the browser hides the 401
  await closed;
  assert.equal(fetch.calls[0].url, "/api/auth/user");
  assert.deepEqual(unauthenticated, ["unauthenticated"]);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("limits and normal closes are final; close() by the page stops reconnecting", async () => {
  for (const code of [1000, CloseCodes.TOO_MANY_SOCKETS, CloseCodes.MESSAGE_TOO_BIG]) {
    FakeWebSocket.instances.length = 0;
    const socket = openSocket("/ticks");
    FakeWebSocket.instances[0].open();
    const closed = next(socket, "close");
    FakeWebSocket.instances[0].drop(code);
    assert.equal((await closed).detail.code, code);
    assert.equal(socket.readyState, 3);
  }
  configure({ backoffMs: 1, fetch: fakeFetch(new Response("{}", { status: 200 })) });
  FakeWebSocket.instances.length = 0;
  const socket = openSocket("/ticks");
  FakeWebSocket.instances[0].open();
  socket.close();
  await tick();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(socket.readyState, 3);
});

test("events sends X-CSRF, parses messages, named events and ids", async () => {
  const fetch = fakeFetch(
    eventStream("id: 7\ndata: first\n\n: heartbeat\n\nevent: tick\ndata: a\ndata: b\n\n"),
    () => new Promise(() => {}), // the reconnection stays pending
  );
  configure({ fetch, backoffMs: 1 });
  const source = events("/events");
  const first = next(source, "message");
  const named = next(source, "tick");
  assert.equal((await first).data, "first");
  assert.equal((await first).lastEventId, "7");
  assert.equal((await named).data, "a\nb");
  assert.equal(fetch.calls[0].url, "/api/rest/proxy/events");
  assert.equal(fetch.calls[0].headers.get("X-CSRF"), "1");
  assert.equal(fetch.calls[0].headers.get("Accept"), "text/event-stream");
  while (fetch.calls.length < 2) await tick(); // the stream ended: it reconnects with Last-Event-ID
  assert.equal(fetch.calls[1].headers.get("Last-Event-ID"), "7");
  source.close();
  assert.equal(source.readyState, 2);
});

test("events on a 401 reports the session end and stops", async () => {
  configure({ fetch: fakeFetch(new Response('{"user": {}}', { status: 200 })) });
  await getUser(); // a live session again after the earlier tests' session end
  const seen = recordSessionEvents();
  const fetch = fakeFetch(problem(401, "session_expired"));
  configure({ fetch, onUnauthenticated: () => {} });
  const source = events("/events");
  await next(source, "error");
  assert.equal(source.readyState, 2);
  assert.deepEqual(seen, ["expired"]);
  assert.equal(fetch.calls.length, 1);
});
