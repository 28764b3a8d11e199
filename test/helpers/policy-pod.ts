/**
 * One "pod" of the network-policy matrix (run with Node 24 inside the pod's netns, not a test
 * file): serves TCP and UDP on the ports given in argv[2] (JSON {"tcp":[80,81],"udp":[80,81]})
 * and probes on request. Prints {"ready":true} once every port listens; then reads one JSON
 * request per stdin line, {"id":1,"timeoutMs":800,"probes":[{"ip":"10.1.2.3","port":80,
 * "proto":"tcp"}]}, and answers {"id":1,"results":[true,...]} (true: a TCP handshake
 * completed / a UDP datagram came back within the timeout). All probes of a request run at
 * once. Exits when stdin closes.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

interface Probe {
  ip: string;
  port: number;
  proto: 'tcp' | 'udp';
}

const ports = JSON.parse(process.argv[2] ?? '{}') as { tcp?: number[]; udp?: number[] };

async function serve(): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const port of ports.tcp ?? []) {
    const s = net.createServer((c) => {
      c.on('error', () => undefined);
      c.end('ok\n');
    });
    waits.push(new Promise((resolve, reject) => s.once('error', reject).listen({ port, host: '::', ipv6Only: false }, resolve)));
  }
  for (const port of ports.udp ?? []) {
    for (const type of ['udp4', 'udp6'] as const) {
      const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
      s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
      s.on('error', () => undefined);
      waits.push(new Promise((resolve) => s.bind(port, type === 'udp4' ? '0.0.0.0' : '::', resolve)));
    }
  }
  await Promise.all(waits);
}

/**
 * The timeout's verdict waits for one more poll of the sockets (setImmediate runs after it): a
 * process stalled past its timer on a loaded machine runs timers first and would call "no
 * answer" for an answer already waiting in the kernel.
 */
function afterPoll(f: () => void): () => void {
  return () => void setImmediate(f);
}

function probeTcp(p: Probe, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host: p.ip, port: p.port });
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      c.destroy();
      resolve(ok);
    };
    const t = setTimeout(
      afterPoll(() => done(false)),
      timeoutMs,
    );
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
}

function probeUdp(p: Probe, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(p.ip) ? 'udp6' : 'udp4');
    const payload = Buffer.from(`probe-${Math.random()}`);
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      clearInterval(resend);
      s.close();
      resolve(ok);
    };
    const t = setTimeout(
      afterPoll(() => done(false)),
      timeoutMs,
    );
    s.on('message', (m) => {
      if (m.equals(payload)) done(true);
    });
    s.on('error', () => done(false));
    const send = (): void => s.send(payload, p.port, p.ip, () => undefined);
    const resend = setInterval(send, Math.max(50, Math.floor(timeoutMs / 4)));
    send();
  });
}

await serve();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const req = JSON.parse(line) as { id: number; timeoutMs: number; probes: Probe[] };
  void Promise.all(req.probes.map((p) => (p.proto === 'udp' ? probeUdp(p, req.timeoutMs) : probeTcp(p, req.timeoutMs)))).then((results) =>
    process.stdout.write(`${JSON.stringify({ id: req.id, results })}\n`),
  );
});
rl.on('close', () => process.exit(0));
