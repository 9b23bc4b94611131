import http from 'node:http';
import { run } from './work.js';

// The probes Kubernetes calls; the worker itself serves nothing else.
let ready = false;
const probes = http.createServer((req, res) => {
  const ok = req.url === '/healthz' || (req.url === '/readyz' && ready);
  res.writeHead(ok ? 200 : 503).end(ok ? 'ok' : 'not ready');
});
probes.listen(8080, '0.0.0.0');

const stop = new AbortController();
process.on('SIGTERM', () => stop.abort());
process.on('SIGINT', () => stop.abort());

// Replace with the queue this worker reads.
const next = async () => null;
ready = true;
console.log('Hello from payments-api');
await run(next, stop.signal, (result) => console.log(JSON.stringify(result)));
probes.close();
