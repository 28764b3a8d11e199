// Long-running probe of the runtime the executables ship (docs/DEVELOPING.md, "Runtime"): a
// node:http server and keep-alive client, a node:dgram UDP ping-pong and timers, all on
// 127.0.0.1, for PROBE_SECONDS (default 60). Prints one JSON line: requests and datagrams sent
// and answered, errors, lateness of a 10 ms interval's ticks (p50/p99/max), RSS at start and end.
//   bun build --compile --bytecode --format=cjs bench/runtime-probe.cjs --outfile /tmp/probe && /tmp/probe
//   node bench/runtime-probe.cjs
'use strict';
const http = require('node:http');
const dgram = require('node:dgram');

const seconds = Number(process.env.PROBE_SECONDS || 60);
const stats = {
  runtime: process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.versions.node}`,
  seconds,
  http: { sent: 0, ok: 0, errors: 0 },
  udp: { sent: 0, echoed: 0, errors: 0 },
  timers: { fired: 0 },
  rssStartMiB: 0,
  rssEndMiB: 0,
};
const late = [];
const mib = () => Math.round((process.memoryUsage().rss / 1048576) * 10) / 10;

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ len: body.length, url: req.url }));
  });
});
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const udpServer = dgram.createSocket('udp4');
const udpClient = dgram.createSocket('udp4');

udpServer.on('message', (msg, rinfo) => udpServer.send(msg, rinfo.port, rinfo.address));
udpServer.on('error', () => stats.udp.errors++);
udpClient.on('message', () => stats.udp.echoed++);
udpClient.on('error', () => stats.udp.errors++);

function request(port) {
  stats.http.sent++;
  const payload = JSON.stringify({ n: stats.http.sent, pad: 'x'.repeat(512) });
  const req = http.request(
    {
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: `/r/${stats.http.sent}`,
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    },
    (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        if (res.statusCode === 200 && JSON.parse(body).len === payload.length) stats.http.ok++;
        else stats.http.errors++;
      });
    },
  );
  req.on('error', () => stats.http.errors++);
  req.end(payload);
}

server.listen(0, '127.0.0.1', () => {
  udpServer.bind(0, '127.0.0.1', () => {
    const httpPort = server.address().port;
    const udpPort = udpServer.address().port;
    stats.rssStartMiB = mib();
    const t0 = performance.now();
    let last = t0;
    const tick = setInterval(() => {
      const now = performance.now();
      late.push(now - last - 10); // how much later than 10 ms after the previous tick
      last = now;
      stats.timers.fired++;
      request(httpPort);
      stats.udp.sent++;
      udpClient.send(Buffer.from(`ping ${stats.udp.sent}`), udpPort, '127.0.0.1');
    }, 10);
    // many short timers too: set and cleared, as an agent's retries and timeouts are
    const churn = setInterval(() => {
      for (let i = 0; i < 50; i++) clearTimeout(setTimeout(() => stats.http.errors++, 1000));
    }, 20);
    setTimeout(() => {
      clearInterval(tick);
      clearInterval(churn);
      setTimeout(() => {
        stats.rssEndMiB = mib();
        late.sort((a, b) => a - b);
        const q = (p) => Math.round(late[Math.min(late.length - 1, Math.floor(late.length * p))] * 10) / 10;
        stats.timers.lateMs = { p50: q(0.5), p99: q(0.99), max: q(1) };
        console.log(JSON.stringify(stats));
        agent.destroy();
        server.close();
        udpServer.close();
        udpClient.close();
        process.exitCode =
          stats.http.errors || stats.udp.errors || stats.http.ok !== stats.http.sent || stats.udp.echoed < stats.udp.sent * 0.999 ? 1 : 0;
      }, 500);
    }, seconds * 1000);
  });
});
