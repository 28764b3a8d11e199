/**
 * Round-trip time readers for the metrics sampler (docs/monitoring.md, "Latency"):
 * - `icmpRtt`: one ICMP echo from this netns to an endpoint's address (`ping -c 1`), bounded
 *   by a timeout; undefined when no reply came in time.
 * - `tcpRtt`: the kernel's smoothed RTT of the established TCP sockets inside a netns
 *   (`ss -tin`, read in the container's netns): the mean over sockets, undefined without any.
 * Probes go only to the addresses callers pass (endpoint addresses).
 */
import { run } from './exec.ts';

/** `ping` output → the reply's RTT in seconds (undefined: no reply). */
export function parsePing(stdout: string): number | undefined {
  const m = /time[=<]([0-9.]+) ms/.exec(stdout);
  return m ? Number(m[1]) / 1000 : undefined;
}

/** One ICMP echo to `ip` (v4 or v6), waiting at most `timeoutMs`. */
export async function icmpRtt(ip: string, timeoutMs = 1000, netns?: string): Promise<number | undefined> {
  const wait = Math.max(0.2, timeoutMs / 1000).toFixed(1);
  const r = await run('ping', [ip.includes(':') ? '-6' : '-4', '-n', '-c', '1', '-W', wait, '-q', ip], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const m = /= [0-9.]+\/([0-9.]+)\//.exec(r.stdout); // -q: "rtt min/avg/max/mdev = a/b/c/d ms"
  return m ? Number(m[1]) / 1000 : parsePing(r.stdout);
}

/** `ss -tin` output → the RTTs (seconds) of its established sockets. */
export function parseSsRtts(stdout: string): number[] {
  const out: number[] = [];
  for (const m of stdout.matchAll(/\brtt:([0-9.]+)\/[0-9.]+/g)) out.push(Number(m[1]) / 1000);
  return out;
}

/** Mean kernel RTT (seconds) of the established TCP sockets in `netns`; undefined without any. */
export async function tcpRtt(netns: string): Promise<number | undefined> {
  const r = await run('ss', ['-t', '-i', '-n', 'state', 'established'], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const rtts = parseSsRtts(r.stdout);
  return rtts.length ? rtts.reduce((a, b) => a + b, 0) / rtts.length : undefined;
}
