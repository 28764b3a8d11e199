/**
 * Network namespaces and links for tests, always with a test prefix and always removed:
 * register cleanups with `cleanup.add` and run `cleanup.run()` in afterEach/afterAll.
 */
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { uid } from './run.ts';

export async function sh(
  cmd: string,
  args: string[],
  opts: { input?: string; allowFail?: boolean } = {},
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await execa(cmd, args, { input: opts.input, reject: false });
  const out = { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
  if (out.exitCode !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${out.stderr}`);
  return out;
}

export class Cleanup {
  private tasks: Array<() => Promise<unknown>> = [];
  add(fn: () => Promise<unknown>): void {
    this.tasks.push(fn);
  }
  async run(): Promise<void> {
    const t = this.tasks.reverse();
    this.tasks = [];
    for (const fn of t) {
      try {
        await fn();
      } catch {
        /* best effort */
      }
    }
  }
}

export interface TestNetns {
  name: string;
  path: string;
}

/** `ip netns add <prefix>-<random>`; removal registered on `cleanup`. */
export async function makeNetns(cleanup: Cleanup, prefix = 'cnits'): Promise<TestNetns> {
  const name = `${prefix}-${uid('')}`;
  await sh('ip', ['netns', 'add', name]);
  cleanup.add(() => deleteNetns(name));
  return { name, path: `/var/run/netns/${name}` };
}

export async function deleteNetns(name: string): Promise<void> {
  if (existsSync(`/var/run/netns/${name}`)) await sh('ip', ['netns', 'del', name], { allowFail: true });
}

/** Run a command inside a netns. */
export async function inNs(
  ns: TestNetns | string,
  cmd: string,
  args: string[],
  allowFail = false,
  input?: string,
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const p = typeof ns === 'string' ? ns : ns.path;
  return sh('nsenter', [`--net=${p}`, '--', cmd, ...args], { allowFail, input });
}

export async function linkExists(name: string, ns?: TestNetns): Promise<boolean> {
  const r = ns
    ? await inNs(ns, 'ip', ['link', 'show', 'dev', name], true)
    : await sh('ip', ['link', 'show', 'dev', name], { allowFail: true });
  return r.exitCode === 0;
}

export async function deleteLink(name: string): Promise<void> {
  await sh('ip', ['link', 'del', name], { allowFail: true });
}

/**
 * Skip reason when the kernel cannot create a link of `kind` (with `extra` type arguments, e.g.
 * `['vlan_filtering', '1']`), or '' when it can. The probe link is always deleted.
 */
export async function kernelLacks(kind: string, extra: string[] = []): Promise<string> {
  const name = uid('k');
  const r = await sh('ip', ['link', 'add', name, 'type', kind, ...extra], { allowFail: true });
  await deleteLink(name);
  if (r.exitCode === 0) return '';
  return `kernel cannot create ${[kind, ...extra].join(' ')} links: ${r.stderr.trim()}`;
}

/**
 * A random /30 of 198.18.0.0/15 (the benchmarking range: 32768 choices) for a host <-> "outside"
 * veth in the root namespace. Tests run in parallel, so their outsides must not share a
 * prefix, or traffic would reach another test's namespace.
 */
export function randomTransferNet(): { host: string; outside: string } {
  const n = randomBytes(2).readUInt16BE(0) & 0x7fff;
  const p = `198.${18 + (n >> 14)}.${(n >> 6) & 255}`;
  const base = (n & 63) * 4;
  return { host: `${p}.${base + 1}`, outside: `${p}.${base + 2}` };
}

/**
 * Count ICMP echo requests arriving in `ns` per source address (an nft table local to that
 * namespace, removed on `cleanup`): returns a reader of the counts so far.
 */
export async function countEchoSources(cleanup: Cleanup, ns: TestNetns, sources: string[]): Promise<() => Promise<Record<string, number>>> {
  const table = `cnits_seen_${uid('')}`;
  const rules = sources.map((s) => `add rule inet ${table} in ip saddr ${s} icmp type echo-request counter`).join('\n');
  await inNs(
    ns,
    'nft',
    ['-f', '/dev/stdin'],
    false,
    `add table inet ${table}\nadd chain inet ${table} in { type filter hook input priority 0; }\n${rules}\n`,
  );
  cleanup.add(() => inNs(ns, 'nft', ['delete', 'table', 'inet', table], true));
  return async () => {
    const r = await inNs(ns, 'nft', ['-j', 'list', 'table', 'inet', table]);
    const out: Record<string, number> = {};
    for (const o of (JSON.parse(r.stdout) as { nftables: Array<{ rule?: { expr: Array<Record<string, unknown>> } }> }).nftables) {
      if (!o.rule) continue;
      const src = (o.rule.expr[0] as { match: { right: string } }).match.right;
      out[src] = (o.rule.expr.find((e) => 'counter' in e) as { counter: { packets: number } }).counter.packets;
    }
    return out;
  };
}
