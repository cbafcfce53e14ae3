// An Express 5 app that records every request it receives: an API behind a route.
//   EXPRESS_DIR=<folder with node_modules/express> node express_recorder.mjs <port>
// The same interface as fastapi_recorder.py: GET /__log, POST /__reject, anything else 200.
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.EXPRESS_DIR}/package.json`);
const express = require('express');

const app = express();
const received = [];
const rejected = new Set();

app.get('/__log', (req, res) => res.json(received));
app.post('/__reject', express.text({ type: '*/*' }), (req, res) => {
  rejected.add(req.body);
  res.json({ ok: true });
});
app.all('/{*rest}', (req, res) => {
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
  received.push({ method: req.method, path: req.originalUrl, headers });
  const authorization = req.get('authorization') ?? '';
  if (rejected.has(authorization.replace(/^Bearer /, ''))) return res.status(401).json({ error: 'invalid_token' });
  res.json({ api: 'express', path: req.originalUrl.split('?')[0], authorized: Boolean(authorization) });
});

app.listen(Number(process.argv[2]), '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
