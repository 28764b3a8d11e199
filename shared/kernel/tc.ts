/**
 * tc (iproute2 traffic control): `tc -batch -` for several changes in one process, `tc -json`
 * for reading. Every argument goes through `batchScript` (one plain word each).
 */
import { batchScript } from './batch.ts';
import { run, type RunResult } from './exec.ts';
import { sha512Hex } from '../hash.ts';
import { nlTcBatch, nlTcShow } from './netlink/rtnl.ts';

/** Several `tc` commands (argv without "tc") in one process; throws (code 100) on the first failure (`force`: runs them all). */
export async function tcBatch(
  cmds: string[][],
  opts: { netns?: string; allowFail?: boolean; force?: boolean } = {},
): Promise<RunResult | undefined> {
  if (!cmds.length) return undefined;
  const nl = await nlTcBatch(cmds, opts); // in-process under Bun (netlink/tc.ts), undefined: run tc
  if (nl) return nl;
  return run('tc', [...(opts.force ? ['-force'] : []), '-batch', '-'], {
    input: batchScript(cmds, 'tc -batch'),
    netns: opts.netns,
    allowFail: opts.allowFail,
  });
}

/** `tc -json <args>` parsed; [] when the device does not exist. */
export async function tcJson<T>(args: string[], netns?: string): Promise<T[]> {
  const nl = await nlTcShow(args, netns); // qdisc show / filter show ingress in-process under Bun
  if (nl) return nl as T[];
  const r = await run('tc', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0 || !r.stdout.trim()) return [];
  return JSON.parse(r.stdout) as T[];
}

export interface QdiscInfo {
  kind: string;
  handle: string;
  root?: boolean;
  parent?: string;
  options?: Record<string, unknown>;
}

export interface ClassInfo {
  kind: string;
  handle: string;
  /** bytes per second, from tc's rounded print (tc has no JSON for HTB classes) */
  rate?: number;
}

const UNIT: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** `tc class show dev D`: kind, handle and rate of each class (an RTM_GETTCLASS dump in-process under Bun, else `tc`'s text). */
export async function tcClasses(dev: string, netns?: string): Promise<ClassInfo[]> {
  const nl = await nlTcShow(['class', 'show', 'dev', dev], netns);
  if (nl) return nl as ClassInfo[];
  const r = await run('tc', ['class', 'show', 'dev', dev], { netns, allowFail: true });
  return r.exitCode === 0 ? parseClassText(r.stdout) : [];
}

/** `tc class show` text → kind, handle and rate (tc's rounded print) of each class. Pure. */
export function parseClassText(text: string): ClassInfo[] {
  return text
    .split('\n')
    .map((line) => ({ line, m: /^class (\S+) (\S+)/.exec(line) }))
    .filter((x): x is { line: string; m: RegExpExecArray } => x.m !== null)
    .map(({ line, m }) => {
      const rate = / rate (\d+(?:\.\d+)?)([KMGT]?)bit/.exec(line);
      return { kind: m[1], handle: m[2], rate: rate ? (Number(rate[1]) * UNIT[rate[2]]) / 8 : undefined };
    });
}

/** The IFB device of an attachment: "bwp" + the first 12 hex digits of SHA-512(network name + container ID), as the reference. */
export const ifbName = (networkName: string, containerId: string): string => `bwp${sha512Hex(networkName + containerId)}`.slice(0, 15);
