/**
 * iproute2 through its machine-readable faces: `ip -json` for reading, `ip -batch -` for
 * writing many changes in one process.
 */
import { batchable, batchScript } from './batch.ts';
import { run, type RunResult } from './exec.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { nlGetLink, nlIpBatch, nlLinksNamed, nlListLinks, nlRouteGet, nlRoutes, nlRules } from './netlink/rtnl.ts';
import type { RuleEntry } from './netlink/rule.ts';
import type { LinkInfo, RouteInfo } from './iptypes.ts';

export type { AddrInfo, LinkInfo, RouteInfo } from './iptypes.ts';

export async function ipJson<T>(args: string[], netns?: string): Promise<T> {
  const r = await run('ip', ['-json', ...args], { netns });
  const text = r.stdout.trim();
  return (text ? JSON.parse(text) : []) as T;
}

/** Details of one link, or undefined when it does not exist. */
export async function getLink(name: string, netns?: string): Promise<LinkInfo | undefined> {
  const nl = await nlGetLink(name, netns); // in-process under Bun (netlink/rtnl.ts), undefined: use ip
  if (nl !== undefined) return nl ?? undefined;
  const r = await run('ip', ['-json', '-details', 'addr', 'show', 'dev', name], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const list = JSON.parse(r.stdout || '[]') as LinkInfo[];
  return list[0];
}

export async function listLinks(netns?: string): Promise<LinkInfo[]> {
  return ipJson<LinkInfo[]>(['-details', 'addr', 'show'], netns);
}

/**
 * Run several `ip` commands (each an argv without the leading "ip") in one process. Every
 * argument must be one plain word (`batchToken`: code 100 otherwise, before anything runs).
 */
export async function ipBatch(cmds: string[][], netns?: string, family?: 4 | 6): Promise<void> {
  if (!cmds.length) return;
  const script = batchScript(cmds, 'ip -batch'); // checks every word, whichever path runs it
  // `family`: lines that need -4/-6 (an IPv6 `rule`), which batch lines cannot carry themselves (in-process: rules only)
  if (await nlIpBatch(cmds, netns, family)) return;
  await run('ip', [...(family ? [`-${family}`] : []), '-batch', '-'], { input: script, netns });
}

/** Batches of `ip` lines that need their family given (`ip rule` with an IPv6 source): one process per family. */
export async function ipBatchByFamily(cmds: { 4: string[][]; 6: string[][] }, netns?: string): Promise<void> {
  await Promise.all([ipBatch(cmds[4], netns, 4), ipBatch(cmds[6], netns, 6)]);
}

/** Several `bridge` commands (argv without "bridge": `fdb ...`, `vlan ...`) in one process, checked like `ipBatch`. */
export async function bridgeBatch(cmds: string[][], netns?: string): Promise<void> {
  if (!cmds.length) return;
  await run('bridge', ['-batch', '-'], { input: batchScript(cmds, 'bridge -batch'), netns });
}

export async function routes(family: 4 | 6, netns?: string, extra: string[] = []): Promise<RouteInfo[]> {
  const nl = await nlRoutes(family, netns, extra);
  if (nl) return nl;
  return ipJson<RouteInfo[]>([`-${family}`, 'route', 'show', ...extra], netns);
}

/**
 * `ip -json ARGS` read that tolerates failure (a link or namespace gone): the parsed list, or
 * undefined when `ip` failed.
 */
export async function ipJsonMaybe<T>(args: string[], netns?: string): Promise<T | undefined> {
  const r = await run('ip', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/** `bridge -json ARGS`, like `ipJsonMaybe`. */
export async function bridgeJsonMaybe<T>(args: string[], netns?: string): Promise<T | undefined> {
  const r = await run('bridge', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/**
 * `ip -json -batch -`: several commands in one process whose JSON output (of the `show`
 * commands among them) is returned as text (one JSON document per line).
 */
export async function ipBatchJson(cmds: string[][], netns?: string): Promise<string> {
  const script = batchScript(cmds, 'ip -batch'); // checks every word, whichever path runs it
  // In-process (netlink) when the batch is changes the module knows followed by one `addr show
  // dev NAME` (loopback's ADD): the changes, then that link read back as `ip -json` prints it.
  const last = cmds[cmds.length - 1];
  if (last?.length === 4 && last[0] === 'addr' && last[1] === 'show' && last[2] === 'dev' && (await nlIpBatch(cmds.slice(0, -1), netns))) {
    const link = await nlGetLink(last[3], netns);
    if (link) return JSON.stringify([link]);
    if (link === null)
      throw new CniError(ErrorCode.KernelOperation, `ip: Device "${last[3]}" does not exist${netns ? ` (in ${netns})` : ''}`);
  }
  return (await run('ip', ['-json', '-batch', '-'], { netns, input: script })).stdout;
}

/**
 * Run `ip` commands in order, stopping at the first failure: in one `ip -batch` process when
 * every argument is a plain word (`batchable`), else one process each with argv (an odd alias
 * or path: argv carries any byte, the batch parser would split or cut it).
 */
export async function ipSequence(cmds: string[][], netns?: string): Promise<void> {
  if (!cmds.length) return;
  if (batchable(cmds)) {
    await ipBatch(cmds, netns);
    return;
  }
  for (const c of cmds) await run('ip', c, { netns });
}

/**
 * `cmds` and then `argvOnly`, lines whose values may hold any byte (an interface alias): all in
 * one in-process netlink pass under Bun (no batch parsing there); else `cmds` as one `ip
 * -batch` and each of `argvOnly` as its own `ip` process (argv carries any byte).
 */
export async function ipBatchThenArgv(cmds: string[][], argvOnly: string[][], netns?: string): Promise<void> {
  if (cmds.length + argvOnly.length && (await nlIpBatch([...cmds, ...argvOnly], netns))) return;
  await ipBatch(cmds, netns);
  for (const c of argvOnly) await run('ip', c, { netns });
}

/** One `ip` command with argv (any byte in a value); throws on failure, or returns the outcome with allowFail. */
export async function ipCommand(args: string[], opts: { netns?: string; allowFail?: boolean } = {}): Promise<RunResult> {
  return run('ip', args, opts);
}

/** `ip -json route get DST` (in `netns`): the route the kernel picks, or why there is none ("Network is unreachable"). */
export async function routeGet(dst: string, netns?: string): Promise<{ route?: RouteInfo & { prefsrc?: string }; error?: string }> {
  const nl = await nlRouteGet(dst, netns); // in-process under Bun (netlink/rtnl.ts), undefined: use ip
  if (nl) return nl;
  const r = await run('ip', ['-json', 'route', 'get', dst], { netns, allowFail: true });
  if (r.exitCode !== 0) return { error: r.stderr.replace(/^RTNETLINK answers:\s*/, '').trim() || `exit ${r.exitCode}` };
  const list = JSON.parse(r.stdout || '[]') as Array<RouteInfo & { prefsrc?: string }>;
  return list[0] ? { route: list[0] } : { error: 'no route' };
}

/** The device of the route `ip route get DST` picks (undefined: none): one netlink request in-process (`routeGet`), else `ip`. */
export async function routeDev(dst: string, netns?: string): Promise<string | undefined> {
  return (await routeGet(dst, netns)).route?.dev;
}

/** `ip -json -details link show`: every link of the netns, without addresses (in-process under Bun). */
export async function linkList(netns?: string): Promise<LinkInfo[]> {
  const nl = await nlListLinks(netns);
  if (nl) return nl;
  return ipJson<LinkInfo[]>(['-details', 'link', 'show'], netns);
}

/** The links of these names (absent ones left out), as `ip -json -details link show` gives them (in-process under Bun: no dump). */
export async function linksNamed(names: string[], netns?: string): Promise<LinkInfo[]> {
  const nl = await nlLinksNamed(names, netns);
  if (nl) return nl;
  const want = new Set(names);
  return (await ipJson<LinkInfo[]>(['-details', 'link', 'show'], netns)).filter((l) => want.has(l.ifname));
}

export type { RuleEntry } from './netlink/rule.ts';

/** `ip -json -<family> rule show` (in-process under Bun): priority, src, srclen, table of each rule, with its family. */
export async function rules(family: 4 | 6, netns?: string): Promise<RuleEntry[]> {
  const nl = await nlRules(family, netns);
  if (nl) return nl;
  return (await ipJson<Array<Omit<RuleEntry, 'family'>>>([`-${family}`, 'rule', 'show'], netns)).map((r) => ({ ...r, family }));
}

/** A route as `ip -d` prints it: type, protocol and scope always there (`unicast`, `boot`, `global` when the plain print leaves them out). */
export const withDetails = (r: RouteInfo): RouteInfo => ({
  ...r,
  type: r.type ?? 'unicast',
  protocol: r.protocol ?? 'boot',
  scope: r.scope ?? 'global',
});

/**
 * `ip -json -d -<family> route show dev DEV table main`: the routes of one device in the main
 * table with `-d`'s always-printed type, protocol and scope (in-process under Bun).
 */
export async function mainRoutesOf(family: 4 | 6, dev: string, netns?: string): Promise<RouteInfo[]> {
  const nl = await nlRoutes(family, netns, []);
  if (nl) return nl.filter((r) => r.dev === dev).map(withDetails);
  return ipJson<RouteInfo[]>(['-d', `-${family}`, 'route', 'show', 'dev', dev, 'table', 'main'], netns);
}
