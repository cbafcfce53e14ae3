// An Express 5 API with jsonwebtoken access and refresh tokens, the common Node pattern:
//
//   POST /auth/login    express.json() {username, password} -> {accessToken, refreshToken}
//   POST /auth/refresh  the refresh token -> a new pair; every refresh token is single-use
//                       (rotation), and presenting a used one again revokes its whole family
//                       (reuse detection)
//   POST /auth/logout   the refresh token -> its family revoked; 204
//   GET|POST /api/echo  Authorization: Bearer <access token>; echoes the caller, raw query and body
//
// REFRESH_TOKEN_IN=cookie is the other common variant: the API keeps the refresh token in its OWN
// HttpOnly cookie (Set-Cookie on login and refresh, read back with cookie-parser on /auth/refresh and
// /auth/logout) and answers only {accessToken} in JSON. REFRESH_TOKEN_IN=body (the default) sends and
// takes it as the JSON field refreshToken.
//
// Settings from the environment: ACCESS_TOKEN_SECRET, REFRESH_TOKEN_SECRET, ACCESS_TOKEN_TTL (seconds),
// REFRESH_TOKEN_IN. Usage: node server.mjs PORT (listens on 127.0.0.1).
import { randomUUID } from "node:crypto";
import cookieParser from "cookie-parser";
import express from "express";
import jwt from "jsonwebtoken";

const USERS = new Map([
  ["alice", "wonderland"],
  ["bob", "builder"],
]);
const REFRESH_COOKIE = "refreshToken";
const REFRESH_TTL = "7d";
const refreshInCookie = (process.env.REFRESH_TOKEN_IN ?? "body") === "cookie";
const accessTtl = Number(process.env.ACCESS_TOKEN_TTL ?? "900");
const accessSecret = process.env.ACCESS_TOKEN_SECRET;
const refreshSecret = process.env.REFRESH_TOKEN_SECRET;

// jti -> { family, used } for every refresh token issued; revoked families are forgotten.
const refreshTokens = new Map();
function issueTokens(res, username, family = randomUUID()) {
  const jti = randomUUID();
  refreshTokens.set(jti, { family, used: false });
  const accessToken = jwt.sign({ sub: username }, accessSecret, { expiresIn: accessTtl });
  const refreshToken = jwt.sign({ sub: username }, refreshSecret, { expiresIn: REFRESH_TTL, jwtid: jti });
  if (refreshInCookie) {
    res.cookie(REFRESH_COOKIE, refreshToken, {
      httpOnly: true,
      secure: true,
      sameSite: "strict",
      path: "/auth",
      maxAge: 7 * 24 * 3600 * 1000,
    });
    return res.json({ accessToken });
  }
  return res.json({ accessToken, refreshToken });
}

function presentedRefreshToken(req) {
  return refreshInCookie ? req.cookies?.[REFRESH_COOKIE] : req.body?.refreshToken;
}

function revokeFamily(family) {
  for (const [jti, entry] of refreshTokens) {
    if (entry.family === family) refreshTokens.delete(jti);
  }
}

function verifyRefreshToken(token) {
  try {
    return jwt.verify(token, refreshSecret);
  } catch {
    return null;
  }
}

function authenticateToken(req, res, next) {
  const header = req.headers.authorization;
  const token = header?.startsWith("Bearer ") ? header.slice(7) : null;
  if (!token) return res.status(401).json({ error: "missing_token" });
  jwt.verify(token, accessSecret, (err, payload) => {
    if (err) return res.status(401).json({ error: "invalid_token", message: err.message });
    req.user = payload.sub;
    next();
  });
}

const app = express();
app.use(express.json());
app.use(cookieParser());

app.post("/auth/login", (req, res) => {
  const { username, password } = req.body ?? {};
  if (typeof password !== "string" || USERS.get(username) !== password) {
    return res.status(401).json({ error: "invalid_credentials" });
  }
  issueTokens(res, username);
});

app.post("/auth/refresh", (req, res) => {
  const payload = verifyRefreshToken(presentedRefreshToken(req));
  const entry = payload && refreshTokens.get(payload.jti);
  if (!entry) {
    return res.status(401).json({ error: "invalid_refresh_token" });
  }
  if (entry.used) {
    // A rotated-out token came back: someone kept a copy. End the whole login.
    revokeFamily(entry.family);
    return res.status(401).json({ error: "refresh_token_reused" });
  }
  entry.used = true;
  issueTokens(res, payload.sub, entry.family);
});

app.post("/auth/logout", (req, res) => {
  const payload = verifyRefreshToken(presentedRefreshToken(req));
  const entry = payload && refreshTokens.get(payload.jti);
  if (entry) revokeFamily(entry.family);
  if (refreshInCookie) res.clearCookie(REFRESH_COOKIE, { path: "/auth" });
  res.sendStatus(204);
});

// The raw query string: req.query is the parsed form of it.
const rawQuery = (req) => new URL(req.originalUrl, "http://localhost").search.slice(1);

app.get("/api/echo", authenticateToken, (req, res) => {
  res.json({ user: req.user, method: "GET", query: rawQuery(req), json: null });
});

app.post("/api/echo", authenticateToken, (req, res) => {
  res.json({ user: req.user, method: "POST", query: rawQuery(req), json: req.body ?? null });
});

const server = app.listen(Number(process.argv[2]), "127.0.0.1", (error) => {
  if (error) throw error;
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
