/**
 * A service test "pod" (run with Node 24 inside a netns, not a test file): argv[2] is JSON
 * {"name":"x-a","tcp":[8080],"udp":[5353]}. Serves TCP (writes its name and a newline, then
 * keeps the connection until the client closes it) and UDP (answers every datagram with its
 * name). Prints {"ready":true} once listening; then one JSON request per stdin line, answered
 * {"id":N,...}:
 *   {"op":"hits","ip","port","proto","n"}  n sequential connections/datagrams → {"names":[...]}
 *   {"op":"hold","ip","port","n","gapMs"}   n connections kept open → {"names":[...]}
 *   {"op":"bench","ip","port","n","expect"} n sequential timed connections → {"ms":[...],"failed":N}
 *   {"op":"ping","timeoutMs"}              a line on every held connection → {"results":["x/a:ping"|"reset"|"closed"|"timeout",...]}
 *   {"op":"release"}                         close every held connection
 *   {"op":"try","ip","port","proto","timeoutMs"} one attempt → {"result":"<name>"|"refused"|"timeout"|"<error code>"}
 *   {"op":"stop"} / {"op":"start"}          stop or restart the TCP servers (health tests)
 *   {"op":"unlisten"}                        stop listening, keep the established connections
 */
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { name: string; tcp?: number[]; udp?: number[] };
let tcpServers: net.Server[] = [];
const conns = new Set<net.Socket>();
const held: net.Socket[] = [];

async function startTcp(): Promise<void> {
  await Promise.all(
    (cfg.tcp ?? []).map(
      (port) =>
        new Promise<void>((resolve, reject) => {
          const s = net.createServer((c) => {
            conns.add(c);
            c.on('error', () => undefined);
            c.on('close', () => conns.delete(c));
            c.on('end', () => c.end());
            c.on('data', (d: Buffer) => c.write(`${cfg.name}:${d.toString().trim()}\n`)); // echo with the name
            c.write(`${cfg.name}\n`);
          });
          tcpServers.push(s);
          s.once('error', reject).listen({ port, host: '::', ipv6Only: false }, resolve); // IPv4 and IPv6
        }),
    ),
  );
}

function stopTcp(keepConnections = false): Promise<void> {
  const all = tcpServers;
  tcpServers = [];
  if (!keepConnections) for (const c of conns) c.destroy();
  // close() stops listening at once; its callback waits for the connections, kept or not
  return Promise.all(all.map((s) => new Promise<void>((r) => (keepConnections ? (s.close(), r()) : s.close(() => r()))))).then(
    () => undefined,
  );
}

async function startUdp(): Promise<void> {
  await Promise.all(
    (cfg.udp ?? []).map(
      (port) =>
        new Promise<void>((resolve) => {
          const s = dgram.createSocket({ type: 'udp6', ipv6Only: false });
          s.on('message', (_m, r) => s.send(`${cfg.name}\n`, r.port, r.address));
          s.on('error', () => undefined);
          s.bind(port, '::', resolve);
        }),
    ),
  );
}

/**
 * A timeout's verdict waits for one more poll of the sockets (setImmediate runs after it): a
 * process stalled past its timer on a loaded machine runs timers first and would call "timeout"
 * for an answer already waiting in the kernel.
 */
function afterPoll(f: () => void): () => void {
  return () => void setImmediate(f);
}

function tcpOnce(ip: string, port: number, timeoutMs: number, keep = false): Promise<{ result: string; sock?: net.Socket }> {
  return new Promise((resolve) => {
    const c = net.connect({ host: ip, port });
    let buf = '';
    let settled = false;
    const done = (result: string, k = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      if (!k) c.destroy();
      resolve(k ? { result, sock: c } : { result });
    };
    const t = setTimeout(
      afterPoll(() => done('timeout')),
      timeoutMs,
    );
    c.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) done(buf.slice(0, i), keep);
    });
    c.once('error', (e: NodeJS.ErrnoException) =>
      done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : (e.code ?? e.message)),
    );
  });
}

function udpOnce(ip: string, port: number, timeoutMs: number): Promise<{ result: string }> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
    let settled = false;
    const done = (result: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      s.close();
      resolve({ result });
    };
    const t = setTimeout(
      afterPoll(() => done('timeout')),
      timeoutMs,
    );
    s.on('message', (m) => done(m.toString().trim()));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : (e.code ?? e.message)));
    s.connect(port, ip, () => s.send('hi'));
  });
}

interface Req {
  id: number;
  op: string;
  ip: string;
  port: number;
  proto?: 'tcp' | 'udp';
  n?: number;
  gapMs?: number;
  timeoutMs?: number;
  /** bench: the name a successful answer carries */
  expect?: string;
}

async function handle(r: Req): Promise<Record<string, unknown>> {
  const once = (): Promise<{ result: string }> =>
    r.proto === 'udp' ? udpOnce(r.ip, r.port, r.timeoutMs ?? 2000) : tcpOnce(r.ip, r.port, r.timeoutMs ?? 2000);
  switch (r.op) {
    case 'hits': {
      const names: string[] = [];
      for (let i = 0; i < (r.n ?? 1); i++) {
        names.push((await once()).result);
        if (r.gapMs) await new Promise((res) => setTimeout(res, r.gapMs));
      }
      return { names };
    }
    case 'hold': {
      const names: string[] = [];
      for (let i = 0; i < (r.n ?? 1); i++) {
        const x = await tcpOnce(r.ip, r.port, r.timeoutMs ?? 2000, true);
        names.push(x.result);
        if (x.sock) held.push(x.sock);
        if (r.gapMs) await new Promise((res) => setTimeout(res, r.gapMs));
      }
      return { names };
    }
    case 'bench': {
      // n sequential connections (connect → first line → close), each timed in ms
      const ms: number[] = [];
      let failed = 0;
      for (let i = 0; i < (r.n ?? 1); i++) {
        const t = performance.now();
        const x = await tcpOnce(r.ip, r.port, r.timeoutMs ?? 2000);
        if (x.result === r.expect) ms.push(performance.now() - t);
        else failed++;
      }
      return { ms, failed };
    }
    case 'ping':
      // one line on every held connection → "<name>:ping" | "reset" | "closed" | "timeout"
      return {
        results: await Promise.all(
          held.map(
            (sock) =>
              new Promise<string>((resolve) => {
                const done = (x: string): void => {
                  clearTimeout(t);
                  sock.removeAllListeners('data');
                  resolve(x);
                };
                const t = setTimeout(() => done('timeout'), r.timeoutMs ?? 1500);
                if (sock.destroyed) return done('closed');
                sock.once('data', (d: Buffer) => done(d.toString().trim()));
                sock.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNRESET' ? 'reset' : (e.code ?? e.message)));
                sock.once('close', () => done('closed'));
                sock.write('ping\n');
              }),
          ),
        ),
      };
    case 'release':
      for (const s of held.splice(0)) s.end();
      return {};
    case 'try':
      return { result: (await once()).result };
    case 'stop':
      await stopTcp();
      return {};
    case 'unlisten':
      await stopTcp(true);
      return {};
    case 'start':
      await startTcp();
      return {};
    default:
      return { error: `unknown op ${r.op}` };
  }
}

await startTcp();
await startUdp();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const r = JSON.parse(line) as Req;
  void handle(r).then((out) => process.stdout.write(`${JSON.stringify({ id: r.id, ...out })}\n`));
});
rl.on('close', () => process.exit(0));
