/**
 * conntrack(8) through argv arrays: list entries, delete entries by destination, and follow
 * events (`conntrack -E`, a long-running child whose lines are handed to a callback).
 */
import { run } from './exec.ts';
import { childProcess } from '../spawn.ts';

export interface CtEntry {
  /** NEW / UPDATE / DESTROY for events; undefined for a listing */
  event?: 'NEW' | 'UPDATE' | 'DESTROY';
  proto: string;
  /** TCP state (ESTABLISHED, TIME_WAIT, ...); undefined for UDP */
  state?: string;
  orig: { src: string; dst: string; sport: number; dport: number };
  reply: { src: string; dst: string; sport: number; dport: number };
}

/** Parse one line of `conntrack -L` / `conntrack -E` output (undefined when it is not an entry). */
export function parseConntrackLine(line: string): CtEntry | undefined {
  const m = /^\s*(?:\[(NEW|UPDATE|DESTROY)\]\s+)?(tcp|udp|sctp)\s+\d+\s+(?:\d+\s+)?(.*)$/.exec(line);
  if (!m) return undefined;
  const rest = m[3]!;
  const state = /^([A-Z_]+)\s/.exec(rest)?.[1];
  const tuples: Array<Record<string, string>> = [];
  let cur: Record<string, string> = {};
  for (const tok of rest.split(/\s+/)) {
    const kv = /^(src|dst|sport|dport)=(.+)$/.exec(tok);
    if (!kv) continue;
    if (kv[1]! in cur) {
      tuples.push(cur);
      cur = {};
    }
    cur[kv[1]!] = kv[2]!;
  }
  tuples.push(cur);
  const t = (x: Record<string, string> | undefined): CtEntry['orig'] | undefined =>
    x?.src && x.dst ? { src: x.src, dst: x.dst, sport: Number(x.sport ?? 0), dport: Number(x.dport ?? 0) } : undefined;
  const orig = t(tuples[0]);
  const reply = t(tuples[1]);
  if (!orig || !reply) return undefined;
  return {
    ...(m[1] ? { event: m[1] as CtEntry['event'] } : {}),
    proto: m[2]!,
    ...(state && state !== 'src' ? { state } : {}),
    orig,
    reply,
  };
}

export type CtFamily = 'ipv4' | 'ipv6';

/** Every entry of one family of the table (`conntrack -L -f`; IPv4 when not given). */
export async function conntrackList(netns?: string, family: CtFamily = 'ipv4'): Promise<CtEntry[]> {
  const r = await run('conntrack', ['-L', '-f', family], { netns, allowFail: true });
  return r.stdout
    .split('\n')
    .map(parseConntrackLine)
    .filter((e): e is CtEntry => !!e);
}

/**
 * End the tracked connections of a service VIP:port that were translated to a backend
 * (`conntrack -D` by original destination and reply source). Returns how many were deleted.
 */
export async function conntrackDeleteBackend(
  f: { proto: 'tcp' | 'udp'; vip: string; port: number; backend: string; backendPort: number },
  netns?: string,
): Promise<number> {
  const r = await run(
    'conntrack',
    [
      '-D',
      '-f',
      f.vip.includes(':') ? 'ipv6' : 'ipv4',
      '-p',
      f.proto,
      '--orig-dst',
      f.vip,
      '--orig-port-dst',
      String(f.port),
      '--reply-src',
      f.backend,
      '--reply-port-src',
      String(f.backendPort),
    ],
    { netns, allowFail: true },
  );
  const m = /(\d+) flow entries have been deleted/.exec(r.stderr);
  return m ? Number(m[1]) : 0;
}

/**
 * Follow conntrack events of one family (`opts.family`, IPv4 when not given; `opts.events`
 * narrows NEW,UPDATE,DESTROY, e.g. "NEW"): `onEntry` per parsed line. Returns a stop function.
 * The child is restarted by the caller if it exits (`onExit`).
 */
export function conntrackEvents(
  onEntry: (e: CtEntry) => void,
  onExit: (why: string) => void,
  netns?: string,
  opts: { family?: CtFamily; events?: string } = {},
): () => void {
  const args = ['-E', '-f', opts.family ?? 'ipv4', '-e', opts.events ?? 'NEW,UPDATE,DESTROY', '-o', 'timestamp'];
  const [file, argv] = netns ? ['nsenter', [`--net=${netns}`, '--', 'conntrack', ...args]] : ['conntrack', args];
  const child = childProcess().spawn(file, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let buf = '';
  let err = '';
  let stopped = false;
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/^\[\d+\.\d+\]\s*/, '');
      buf = buf.slice(i + 1);
      const e = parseConntrackLine(line);
      if (e) onEntry(e);
    }
  });
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2000)));
  child.on('error', (e) => {
    if (!stopped) onExit(e.message);
  });
  child.on('close', (code, signal) => {
    if (!stopped) onExit(`conntrack -E exited (${code ?? signal}): ${err.trim()}`);
  });
  return () => {
    stopped = true;
    child.kill('SIGTERM');
  };
}

/**
 * Delete the UDP entries whose original destination port is `port` (`conntrack -D`): flows to
 * a host port seen before a mapping existed. Returns conntrack's complaint when it failed
 * (exit 1, "0 flow entries", is not a failure), else undefined.
 */
export async function conntrackDeleteUdpToPort(family: 4 | 6, port: number, netns?: string): Promise<string | undefined> {
  const r = await run('conntrack', ['-D', '-f', family === 4 ? 'ipv4' : 'ipv6', '-p', 'udp', '--orig-port-dst', String(port)], {
    netns,
    allowFail: true,
  });
  return r.exitCode > 1 ? r.stderr.trim() : undefined;
}
