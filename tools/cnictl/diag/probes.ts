/**
 * The probes of `cnictl diag`, run from the source's network namespace: iputils ping and
 * tracepath, dig, and a TCP/UDP port test (this executable itself, re-run inside the netns as
 * `cnictl diag _port`, since a port test needs a socket there). The tools are started by
 * shared/kernel/probes.ts; parsing their output is here and pure (unit-tested).
 */
import net from 'node:net';
import dgram from 'node:dgram';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { dig, inNetns, ping, tracepath } from '../../../shared/kernel/probes.ts';
import type { DnsReport, Hop, PingReport, PortReport, PortState } from './schema.ts';

// ---------------------------------------------------------------- parsers (pure)

/** iputils ping output → sent, received, loss, rtt min/avg/max, ICMP errors. */
export function parsePing(target: string, out: string): PingReport {
  const stats = /(\d+) packets transmitted, (\d+) received(?:, \+(\d+) errors)?(?:, \+\d+ duplicates)?, ([\d.]+)% packet loss/.exec(out);
  const rtt = /rtt min\/avg\/max\/mdev = ([\d.]+)\/([\d.]+)\/([\d.]+)\/[\d.]+ ms/.exec(out);
  const errors = [
    ...new Set(
      out
        .split('\n')
        .filter((l) => /^From \S+ icmp_seq=\d+ /.test(l))
        .map((l) => l.replace(/ icmp_seq=\d+/, '').trim()),
    ),
  ];
  const sent = stats ? Number(stats[1]) : 0;
  const received = stats ? Number(stats[2]) : 0;
  return {
    target,
    sent,
    received,
    lossPercent: stats ? Number(stats[4]) : 100,
    rttMinMs: rtt ? Number(rtt[1]) : null,
    rttAvgMs: rtt ? Number(rtt[2]) : null,
    rttMaxMs: rtt ? Number(rtt[3]) : null,
    errors,
  };
}

/**
 * iputils tracepath output → hops (the last line per hop number), whether the target was
 * reached, and the path MTU (the `Resume: pmtu N` line, else the last `pmtu N` seen: a
 * tracepath cut short by its time bound still knows what the routers on the way said).
 */
export function parseTracepath(out: string): { hops: Hop[]; reached: boolean; pathMtu: number | null } {
  const hops = new Map<number, Hop>();
  let reached = false;
  let pathMtu: number | null = null;
  for (const line of out.split('\n')) {
    const resume = /Resume: pmtu (\d+)/.exec(line);
    if (resume) {
      pathMtu = Number(resume[1]);
      continue;
    }
    const pm = /pmtu (\d+)/.exec(line);
    if (pm) pathMtu = Number(pm[1]);
    const m = /^\s*(\d+)(\??):\s+(\S+)(?:\s+([\d.]+)ms)?(.*)$/.exec(line);
    if (!m || m[3] === '[LOCALHOST]') continue;
    const hop = Number(m[1]);
    if (m[3] === 'no') {
      if (!hops.has(hop)) hops.set(hop, { hop, address: null, name: null, rttMs: null });
      continue;
    }
    const address = m[3]!;
    if (!/^[\d.]+$|:/.test(address)) continue;
    if (/reached/.test(m[5] ?? '')) reached = true;
    const bang = /!([HNPA])/.exec(m[5] ?? '')?.[1];
    const why = bang ? `${{ H: 'host', N: 'network', P: 'protocol', A: 'communication' }[bang]} unreachable (!${bang})` : null;
    hops.set(hop, { hop, address, name: why, rttMs: m[4] ? Number(m[4]) : null });
  }
  return { hops: [...hops.values()].sort((a, b) => a.hop - b.hop), reached, pathMtu };
}

/** dig `+comments +answer +stats` output → rcode, answers (TYPE DATA), server, time. */
export function parseDig(name: string, server: string, out: string): DnsReport {
  const rcode =
    /status: ([A-Z]+)/.exec(out)?.[1] ?? (/timed out|no servers could be reached|communications error/.test(out) ? 'TIMEOUT' : 'NONE');
  const answers: string[] = [];
  let section = '';
  for (const line of out.split('\n')) {
    const h = /^;; ([A-Z]+) SECTION:/.exec(line);
    if (h) section = h[1]!;
    if (!line.trim() || line.startsWith(';')) continue;
    const [, , , type, ...rest] = line.split(/\s+/);
    if (section === 'ANSWER' && type) answers.push(`${type} ${rest.join(' ')}`);
  }
  const ms = /Query time: (\d+) msec/.exec(out);
  const srv = /SERVER: ([^#\s]+)#/.exec(out)?.[1];
  return { name, server: srv ?? server, rcode, answers, ms: ms ? Number(ms[1]) : null };
}

// ---------------------------------------------------------------- runners

export async function runPing(target: string, count: number, netns: string | undefined): Promise<PingReport> {
  const r = await ping(target, count, { netns });
  return parsePing(target, `${r.stdout}\n${r.stderr}`);
}

export async function runTracepath(
  target: string,
  netns: string | undefined,
  maxHops = 6,
  timeoutMs = 5000,
): Promise<ReturnType<typeof parseTracepath> & { error: string | null }> {
  const r = await tracepath(target, maxHops, { netns, timeoutMs });
  const p = parseTracepath(r.stdout);
  return { ...p, error: r.exitCode !== 0 && !r.stdout ? r.stderr.trim() || r.error || `exit ${r.exitCode}` : null };
}

export async function runDig(name: string, server: string, netns: string | undefined): Promise<DnsReport> {
  const r = await dig(name, server, 'A', { netns });
  return parseDig(name, server, `${r.stdout}\n${r.stderr}`);
}

// ---------------------------------------------------------------- port test

/**
 * One TCP connect or UDP exchange from this process (what `cnictl diag _port` runs in the netns).
 * Bun reports ENETUNREACH/EHOSTUNREACH as ECONNREFUSED: the caller corrects "refused" when the
 * route lookup or ping showed the target unreachable (gather.ts).
 */
export async function portProbe(protocol: 'tcp' | 'udp', address: string, port: number, timeoutMs: number): Promise<PortReport> {
  await warmUp();
  return probeOnce(protocol, address, port, timeoutMs);
}

/** The first socket of a process loads the runtime's networking (tens of ms): not part of connectMs. */
function warmUp(): Promise<void> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: 9 });
    const done = (): void => {
      clearTimeout(t);
      c.destroy();
      resolve();
    };
    const t = setTimeout(done, 200);
    c.once('connect', done);
    c.once('error', done);
  });
}

function probeOnce(protocol: 'tcp' | 'udp', address: string, port: number, timeoutMs: number): Promise<PortReport> {
  const t0 = performance.now();
  const ms = (): number => Math.round((performance.now() - t0) * 1000) / 1000;
  const base = { address, port, protocol };
  if (protocol === 'tcp') {
    return new Promise((resolve) => {
      const c = net.connect({ host: address, port });
      const done = (state: PortState, connectMs: number | null, detail: string | null): void => {
        clearTimeout(t);
        c.destroy();
        resolve({ ...base, state, connectMs, detail });
      };
      const t = setTimeout(() => done('filtered', null, `no answer within ${timeoutMs} ms`), timeoutMs);
      c.once('connect', () => done('open', ms(), null));
      c.once('error', (e: NodeJS.ErrnoException) =>
        e.code === 'ECONNREFUSED' ? done('refused', ms(), 'connection refused (TCP reset)') : done('filtered', null, e.code ?? e.message),
      );
    });
  }
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    const done = (state: PortState, connectMs: number | null, detail: string | null): void => {
      clearTimeout(t);
      clearInterval(again);
      s.close();
      resolve({ ...base, state, connectMs, detail });
    };
    const t = setTimeout(
      () => done('filtered', null, `no answer within ${timeoutMs} ms (open or filtered: UDP says nothing when a datagram is taken)`),
      timeoutMs,
    );
    s.on('message', () => done('open', ms(), 'answered'));
    s.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'ECONNREFUSED' ? done('refused', ms(), 'ICMP port unreachable') : done('filtered', null, e.code ?? e.message),
    );
    let again: ReturnType<typeof setInterval> | undefined;
    s.connect(port, address, () => {
      const send = (): void => s.send(Buffer.from('cnictl-diag\n'));
      send();
      again = setInterval(send, Math.max(100, Math.floor(timeoutMs / 4)));
    });
  });
}

/** argv that runs this executable as cnictl (multi-call: by the invoked name or `cni-ts cnictl`). */
export function selfCnictl(): string[] {
  const exe = process.execPath;
  const base = path.basename(exe);
  if (base === 'cnictl') return [exe];
  if (/^(node|bun)(\.exe)?$/.test(base)) return [exe, ...process.execArgv, process.argv[1] ?? '', 'cnictl'];
  // another hard link of the multi-call executable (a plugin's or tool's name): its sibling cnictl
  const sibling = path.join(path.dirname(exe), 'cnictl');
  return existsSync(sibling) ? [sibling] : [exe, 'cnictl'];
}

/** The port test from inside `netns` (this executable re-run there), bounded by `timeoutMs`. */
export async function runPortProbe(
  protocol: 'tcp' | 'udp',
  address: string,
  port: number,
  netns: string | undefined,
  timeoutMs = 2000,
): Promise<PortReport> {
  if (!netns) return portProbe(protocol, address, port, timeoutMs);
  const [cmd, ...pre] = selfCnictl();
  const r = await inNetns([cmd!, ...pre, 'diag', '_port', protocol, address, String(port), String(timeoutMs)], {
    netns,
    timeoutMs: timeoutMs + 5000,
  });
  try {
    return JSON.parse(r.stdout) as PortReport;
  } catch {
    return {
      address,
      port,
      protocol,
      state: 'filtered',
      connectMs: null,
      detail: `port test did not run: ${r.stderr.trim() || r.error || `exit ${r.exitCode}`}`,
    };
  }
}
