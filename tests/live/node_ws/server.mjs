// A WebSocket API on Node's `ws` package, for bffgate's live-connection tests.
// Prints "BFFGATE_NODE_WS <port>" once it listens (port 0: an ephemeral one).
// /echo echoes every message (text as text, binary as binary); every handshake's Authorization,
// Cookie, Origin and sub-protocols are recorded and served as JSON at GET /_handshakes.
import http from "node:http";
import { WebSocketServer } from "ws";

const handshakes = [];
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/_handshakes") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(handshakes));
    return;
  }
  res.writeHead(404, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: "not_found" }));
});
const sockets = new WebSocketServer({
  server,
  maxPayload: 16 * 1024 * 1024,
  handleProtocols: (protocols) => protocols.values().next().value ?? false,
});
sockets.on("connection", (socket, req) => {
  handshakes.push({
    path: req.url,
    authorization: req.headers.authorization ?? null,
    cookie: req.headers.cookie ?? null,
    origin: req.headers.origin ?? null,
    protocols: req.headers["sec-websocket-protocol"] ?? null,
  });
  if (req.url !== "/echo") {
    socket.close(4404, "no such socket");
    return;
  }
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`BFFGATE_NODE_WS ${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
