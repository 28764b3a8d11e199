import { statfsSync, statSync } from 'node:fs';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { childProcess } from '../spawn.ts';

const NSFS_MAGIC = 0x6e736673;
const PROC_MAGIC = 0x9fa0;

/** True when `path` is a live network namespace handle (a bind mount of nsfs or a /proc link). */
export function isNetns(path: string): boolean {
  try {
    const t = statfsSync(path).type;
    return t === NSFS_MAGIC || (t === PROC_MAGIC && /\/ns\/net$/.test(path));
  } catch {
    return false;
  }
}

export function netnsExists(path: string): boolean {
  if (!path) return false;
  try {
    statSync(path);
  } catch {
    return false;
  }
  return isNetns(path);
}

/** For ADD/CHECK: the netns must exist; anything else is the spec's code 3 / 4. */
export function requireNetns(path: string): void {
  if (!netnsExists(path)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_NETNS "${path}" is not a network namespace`,
      'CNI_NETNS must name an existing network namespace',
    );
  }
}

/**
 * A long-running child of ours started inside a network namespace (`nsenter --net=NETNS --
 * argv...`), stdout and stderr piped: e.g. the dhcp daemon's per-lease client, whose sockets
 * must live in the container's namespace. The caller owns the child (kill, wait).
 */
export function spawnInNetns(netns: string, argv: string[]): ChildProcessWithoutNullStreams {
  return childProcess().spawn('nsenter', [`--net=${netns}`, '--', ...argv], {
    stdio: ['pipe', 'pipe', 'pipe'],
  }) as ChildProcessWithoutNullStreams;
}
