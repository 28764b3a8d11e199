/**
 * `--capture SECONDS`: tcpdump on the source's and the target's host-side interfaces while the
 * probes run (shared/kernel/probes.ts), then tshark reads each pcap back as fields and
 * `summarize` (pure) counts what people look for: packets by protocol, TCP handshakes completed,
 * SYNs nobody answered, resets, retransmissions, ICMP errors, top talkers. `-w FILE` keeps
 * the captures, merged into one pcap (mergecap).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mergePcaps, startCapture, tsharkFields, type Capture } from '../../../shared/kernel/probes.ts';
import type { CaptureReport, CaptureSide } from './schema.ts';

/** The tshark fields `summarize` reads, in this order. */
export const CAPTURE_FIELDS = [
  'ip.src',
  'ip.dst',
  'ipv6.src',
  'ipv6.dst',
  '_ws.col.Protocol',
  'tcp.stream',
  'tcp.flags.syn',
  'tcp.flags.ack',
  'tcp.flags.reset',
  'tcp.analysis.retransmission',
  'icmp.type',
  'icmp.code',
];

const ICMP_TEXT: Record<string, string> = {
  '3/0': 'net unreachable',
  '3/1': 'host unreachable',
  '3/2': 'protocol unreachable',
  '3/3': 'port unreachable',
  '3/4': 'fragmentation needed',
  '3/9': 'net administratively prohibited',
  '3/10': 'host administratively prohibited',
  '3/13': 'communication administratively prohibited',
  '11/0': 'TTL exceeded in transit',
  '11/1': 'fragment reassembly time exceeded',
  '12/0': 'parameter problem',
};
const ICMP_ERROR_TYPES = new Set([3, 4, 5, 11, 12]);

const flag = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v !== 'False';

/** tshark `-T fields` lines (CAPTURE_FIELDS, tab-separated) → the summary of one interface. */
export function summarize(iface: string, of: string, lines: string): CaptureSide {
  const protocols: Record<string, number> = {};
  const talkers = new Map<string, number>();
  const icmp = new Map<string, number>();
  const streams = new Map<string, { syn: boolean; synAck: boolean; ack: boolean; rst: boolean }>();
  let packets = 0;
  let resets = 0;
  let retransmissions = 0;
  for (const line of lines.split('\n')) {
    if (!line.trim()) continue;
    const [src4, dst4, src6, dst6, proto, stream, syn, ack, rst, retrans, itype, icode] = line.split('\t');
    packets++;
    const p = proto || 'other';
    protocols[p] = (protocols[p] ?? 0) + 1;
    const src = src4 || src6;
    const dst = dst4 || dst6;
    if (src && dst) talkers.set(`${src}\t${dst}`, (talkers.get(`${src}\t${dst}`) ?? 0) + 1);
    if (stream) {
      const s = streams.get(stream) ?? { syn: false, synAck: false, ack: false, rst: false };
      if (flag(syn) && !flag(ack)) s.syn = true;
      else if (flag(syn) && flag(ack)) s.synAck = true;
      else if (flag(ack) && s.synAck) s.ack = true;
      if (flag(rst)) s.rst = true;
      streams.set(stream, s);
    }
    if (flag(rst)) resets++;
    if (flag(retrans)) retransmissions++;
    if (itype && ICMP_ERROR_TYPES.has(Number(itype))) icmp.set(`${itype}/${icode || 0}`, (icmp.get(`${itype}/${icode || 0}`) ?? 0) + 1);
  }
  const all = [...streams.values()];
  return {
    interface: iface,
    of,
    packets,
    protocols,
    handshakesCompleted: all.filter((s) => s.syn && s.synAck && s.ack).length,
    synWithoutAnswer: all.filter((s) => s.syn && !s.synAck && !s.rst).length,
    resets,
    retransmissions,
    icmpErrors: [...icmp.entries()].map(([k, count]) => {
      const [type, code] = k.split('/').map(Number) as [number, number];
      return { type, code, text: ICMP_TEXT[k] ?? `type ${type} code ${code}`, count };
    }),
    topTalkers: [...talkers.entries()]
      .map(([k, n]) => {
        const [src, dst] = k.split('\t') as [string, string];
        return { src, dst, packets: n };
      })
      .sort((a, b) => b.packets - a.packets || a.src.localeCompare(b.src))
      .slice(0, 5),
  };
}

export interface RunningCapture {
  /** stop, summarise, keep the pcap when asked; never throws (errors go into the report) */
  finish(): Promise<CaptureReport>;
}

/**
 * Start tcpdump on each of `ifaces` (host-side interfaces, in this process's netns). The
 * capture lasts at least `seconds` (finish() waits for the rest) and until the probes are done.
 */
export async function startCaptures(
  ifaces: Array<{ iface: string; of: string }>,
  seconds: number,
  keep: string | undefined,
): Promise<RunningCapture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cnictl-diag-'));
  const started = Date.now();
  const caps: Array<{ cap: Capture; of: string }> = [];
  let error: string | null = null;
  for (const [i, x] of ifaces.entries()) {
    try {
      caps.push({ cap: await startCapture(x.iface, path.join(dir, `${i}.pcap`), seconds), of: x.of });
    } catch (e) {
      error = (e as Error).message;
    }
  }
  return {
    async finish() {
      // at least `seconds`, and a moment for the last answers of the probes to arrive
      const left = Math.max(seconds * 1000 - (Date.now() - started), 300);
      await new Promise((r) => setTimeout(r, left));
      await Promise.all(caps.map((c) => c.cap.stop()));
      const interfaces: CaptureSide[] = [];
      for (const c of caps) {
        const r = await tsharkFields(c.cap.file, CAPTURE_FIELDS);
        if (r.exitCode !== 0 && !r.stdout) error = `tshark: ${r.stderr.trim() || r.error || `exit ${r.exitCode}`}`;
        interfaces.push(summarize(c.cap.iface, c.of, r.stdout));
      }
      let file: string | null = null;
      if (keep && caps.length) {
        const r =
          caps.length === 1
            ? await copyFile(caps[0]!.cap.file, keep).then(
                () => ({ exitCode: 0, stderr: '' }),
                (e: Error) => ({ exitCode: 1, stderr: e.message }),
              )
            : await mergePcaps(
                keep,
                caps.map((c) => c.cap.file),
              );
        if (r.exitCode === 0) file = path.resolve(keep);
        else error = `mergecap: ${r.stderr.trim()}`;
      }
      rmSync(dir, { recursive: true, force: true });
      return { seconds, file, interfaces, error };
    },
  };
}
