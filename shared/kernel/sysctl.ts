import { readFileSync, writeFileSync } from 'node:fs';
import { run } from './exec.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { netlinkEnabled, readSysctlInNetns, writeSysctlInNetns } from './netlink/socket.ts';

const keyPath = (key: string): string => `/proc/sys/${key.replace(/\./g, '/')}`;

/** Set sysctls: on the host by writing /proc/sys, in a netns with one `sysctl -w` process. */
export async function setSysctls(values: Record<string, string>, netns?: string): Promise<void> {
  const keys = Object.keys(values);
  if (!keys.length) return;
  if (!netns) {
    for (const k of keys) {
      const p = keyPath(k);
      if (readFileSync(p, 'utf8').trim() !== values[k]) writeFileSync(p, values[k]);
    }
    return;
  }
  if (netlinkEnabled())
    return writeSysctlInNetns(
      keys.map((k) => [k, values[k]]),
      netns,
    ); // setns, no process
  await run('sysctl', ['-q', '-w', ...keys.map((k) => `${k}=${values[k]}`)], { netns });
}

export function getSysctl(key: string): string {
  return readFileSync(keyPath(key), 'utf8').trim();
}

/**
 * Read sysctls inside `netns` with one `sysctl -n` process (keys as dotted names or
 * /proc/sys-relative paths); values in the order of `keys`. Throws (code 100) naming the
 * key when one cannot be read.
 */
export async function readSysctls(keys: string[], netns: string): Promise<string[]> {
  if (!keys.length) return [];
  if (netlinkEnabled()) {
    // the /proc/sys files opened inside the netns (setns bracket), no process
    try {
      return readSysctlInNetns(keys, netns);
    } catch (e) {
      throw new CniError(
        ErrorCode.KernelOperation,
        `cannot read sysctl ${keys.join(', ')} in ${netns}`,
        e instanceof Error ? e.message : String(e),
      );
    }
  }
  const r = await run('sysctl', ['-n', ...keys], { netns, allowFail: true });
  const lines = r.stdout.replace(/\n$/, '').split('\n');
  if (r.exitCode !== 0 || lines.length !== keys.length) {
    throw new CniError(
      ErrorCode.KernelOperation,
      `cannot read sysctl ${keys.join(', ')} in ${netns}`,
      r.stderr.trim() || `${lines.length} values for ${keys.length} keys`,
    );
  }
  return lines;
}

/**
 * Best effort: set sysctls inside `netns` with one `sysctl -q -w -e` process (-e: keys this
 * kernel lacks, e.g. IPv6 off, are skipped); a failure is ignored.
 */
export async function trySetSysctls(values: Record<string, string>, netns?: string): Promise<void> {
  const keys = Object.keys(values);
  if (!keys.length) return;
  if (netns && netlinkEnabled()) {
    // one key at a time: a key this kernel lacks (sysctl -e) or a refused write is skipped, as the process path ignores them
    for (const k of keys) {
      try {
        writeSysctlInNetns([[k, values[k]]], netns);
      } catch {
        // best effort
      }
    }
    return;
  }
  await run('sysctl', ['-q', '-w', '-e', ...keys.map((k) => `${k}=${values[k]}`)], { netns, allowFail: true });
}
