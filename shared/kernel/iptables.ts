/**
 * iptables / ip6tables through iptables-save and iptables-restore (one transaction per call),
 * under the one lock every iptables owner of ours takes (`withIptablesLock`: portmap, bridge's
 * masquerade), besides iptables' own xtables lock (`-w`).
 */
import type { Family } from '../ipnet.ts';
import { withLock } from '../flock.ts';
import { run } from './exec.ts';

export const IPTABLES_LOCK_DIR = '/run/cni-ts/locks';
const LOCK_NAME = 'iptables.lock';

export const withIptablesLock = <T>(body: () => Promise<T>): Promise<T> => withLock(IPTABLES_LOCK_DIR, body, LOCK_NAME);

const tool = (f: Family, what: 'save' | 'restore'): string => `${f === 4 ? 'iptables' : 'ip6tables'}-${what}`;

/** `iptables-save -t TABLE` text; undefined when it failed and `allowFail` (else it throws). */
export async function iptablesSave(f: Family, table: string, opts: { allowFail?: boolean } = {}): Promise<string | undefined> {
  const r = await run(tool(f, 'save'), ['-t', table], { allowFail: opts.allowFail });
  return r.exitCode === 0 ? r.stdout : undefined;
}

/** `iptables-restore --noflush -w WAIT` with `script` (`*table ... COMMIT`): one transaction. */
export async function iptablesRestore(f: Family, script: string, waitSeconds: number): Promise<void> {
  await run(tool(f, 'restore'), ['--noflush', '-w', String(waitSeconds)], { input: script });
}

/** Whether iptables is usable here (`iptables -w 5 -t nat -S OUTPUT`): undefined, or why not. */
export async function iptablesUnusable(): Promise<string | undefined> {
  const r = await run('iptables', ['-w', '5', '-t', 'nat', '-S', 'OUTPUT'], { allowFail: true });
  return r.exitCode === 0 ? undefined : r.stderr.trim() || `exit ${r.exitCode}`;
}
