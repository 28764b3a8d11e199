/** Kernel modules and features: load a module, probe a feature without touching the host. */
import { run, type RunResult } from './exec.ts';

/** Best effort `modprobe NAME` (a module built in, or no permission: the caller reads the effect). */
export async function tryModprobe(name: string): Promise<void> {
  await run('modprobe', [name], { allowFail: true });
}

/**
 * Run `argv` (a kernel tool, e.g. `ip link add ... type wireguard`) inside a throwaway network
 * namespace (`unshare --net`), so the probe never touches the host's devices or state.
 */
export async function probeInFreshNetns(argv: string[]): Promise<RunResult> {
  return run('unshare', ['--net', '--', ...argv], { allowFail: true });
}
