/** Shared pieces of the runtime tests: private temp trees, unique subnets, leak checks. */
import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deleteLink, makeNetns, randomTransferNet, sh, type Cleanup, type TestNetns } from '../netns.ts';
import { nftTableOf, portmapTableOf, type TestNetwork } from './conflist.ts';

/** A private temp directory, removed on cleanup (mounts below it are detached first, never crossed). */
export function makeTempTree(cleanup: Cleanup, prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  cleanup.add(async () => {
    await unmountBelow(dir);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Lazily unmount everything mounted at or below `dir`, deepest first. */
export async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await sh('umount', ['-l', m], { allowFail: true });
}

/** A random /24 in 10.128.0.0/9 for one test network (subnet, gateway, a free static address). */
export function randomSubnet(): { subnet: string; gateway: string; prefix: string } {
  const b = 128 + randomInt(0, 127);
  const c = randomInt(0, 256);
  const prefix = `10.${b}.${c}`;
  return { subnet: `${prefix}.0/24`, gateway: `${prefix}.1`, prefix };
}

/** A random /30 for the host<->"outside" veth: [host, outside] (see randomTransferNet). */
export const randomTransfer = randomTransferNet;

/** Random unprivileged host port for one test. */
export function randomHostPort(): number {
  return randomInt(20000, 40000);
}

/** IP reservation files host-local keeps in its dataDir/<network> (everything but its lock and last-reserved markers). */
export function reservations(dataDir: string, network: string): string[] {
  const d = path.join(dataDir, network);
  if (!existsSync(d)) return [];
  return readdirSync(d).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip') && !f.startsWith('.'));
}

/** Ports of a bridge (veth host ends still enslaved to it). */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const r = await sh('ip', ['-json', 'link', 'show', 'master', bridge], { allowFail: true });
  if (r.exitCode !== 0 || !r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}

/**
 * Lines of the host's firewall (nft ruleset, which includes iptables-nft rules, plus
 * iptables-save) mentioning any needle: a string (substring) or a number (a port, as a whole word).
 */
export async function firewallLinesMentioning(needles: Array<string | number>): Promise<string[]> {
  const nft = await sh('nft', ['list', 'ruleset'], { allowFail: true });
  const ipt = await sh('iptables-save', [], { allowFail: true });
  const lines = `${nft.stdout}\n${ipt.stdout}`.split('\n');
  const match = (l: string, n: string | number): boolean =>
    typeof n === 'number' ? new RegExp(`(^|[^0-9.])${n}([^0-9.]|$)`).test(l) : !!n && l.includes(n);
  return lines.filter((l) => needles.some((n) => match(l, n)));
}

/**
 * Masquerade lines of the host's firewall for a pod address: ours (`ip saddr A ip daddr !=
 * SUBNET ... masquerade`) and the reference bridge's iptables-nft (`-s A/32 ... -j CNI-...`).
 */
export async function masqueradeLinesOf(ip: string): Promise<string[]> {
  return firewallLinesMentioning([`saddr ${ip} `, `-s ${ip}/32 `, `saddr ${ip}/32 `]);
}

/**
 * What a test expects of the masquerade of a pod with ipMasq on: at least one line for its
 * address, and each of ours scoped to traffic from that address to outside the pod subnet.
 */
export async function expectScopedMasquerade(ip: string, subnet: string, ours: boolean): Promise<void> {
  const lines = await masqueradeLinesOf(ip);
  if (!lines.length) throw new Error(`no masquerade rule for ${ip}`);
  if (!ours) return;
  const bad = lines.filter((l) => !(l.includes(`ip saddr ${ip} ip daddr != ${subnet} `) && l.includes('masquerade')));
  if (bad.length) throw new Error(`masquerade for ${ip} not scoped to ${subnet}: ${bad.join(' | ')}`);
}

/**
 * Remove runtime-made network namespaces (containerd: cni-*, podman: netns-*) that hold an
 * address in `prefix`.0/24 (a subnet unique to one test): what a runtime leaves behind when a
 * plugin's DEL failed. Returns their names.
 */
export async function removeLeftoverNetns(prefix: string): Promise<string[]> {
  const dir = '/run/netns';
  if (!existsSync(dir)) return [];
  const gone: string[] = [];
  for (const name of readdirSync(dir).filter((n) => n.startsWith('cni-') || n.startsWith('netns-'))) {
    const r = await sh('ip', ['-n', name, '-j', '-4', 'addr', 'show'], { allowFail: true });
    if (r.exitCode !== 0 || !r.stdout.includes(`"${prefix}.`)) continue;
    await sh('ip', ['netns', 'del', name], { allowFail: true });
    gone.push(name);
  }
  return gone;
}

/** Result cache files libcni keeps under /var/lib/cni/results for one network name. */
export function cachedResults(network: string, dir = '/var/lib/cni/results'): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.startsWith(`${network}-`));
}

/** Result cache files (any network) naming one of these container/sandbox IDs. */
export function cachedResultsOf(ids: string[], dir = '/var/lib/cni/results'): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => ids.some((id) => f.includes(id)));
}

/** Poll `fn` until it returns true (bounded tries, no wall-clock assertion). */
export async function eventually(fn: () => Promise<boolean>, tries = 50, pauseMs = 200): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  return false;
}

/** Lines of a log file (empty when it does not exist). */
export function logLines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

/**
 * HTTP/1.0 GET / with busybox nc (optionally from inside a netns); the body, or '' when the
 * connection failed. (busybox-static's `wget -q` crashes on this host; nc is enough.)
 */
export async function httpGet(netnsPath: string | undefined, addr: string, port: number): Promise<string> {
  const argv = ['busybox', 'nc', '-w', '3', addr, String(port)];
  const [cmd, args] = netnsPath ? ['nsenter', [`--net=${netnsPath}`, '--', ...argv]] : [argv[0], argv.slice(1)];
  const r = await sh(cmd, args, { allowFail: true, input: 'GET / HTTP/1.0\r\n\r\n' });
  const at = r.stdout.indexOf('\r\n\r\n');
  return r.exitCode === 0 && r.stdout.startsWith('HTTP/1.') && at >= 0 ? r.stdout.slice(at + 4) : '';
}

/** httpGet, retried until it answers (a published port takes a moment); '' when it never does. */
export async function httpBody(netnsPath: string | undefined, addr: string, port: number): Promise<string> {
  let out = '';
  await eventually(
    async () => {
      out = await httpGet(netnsPath, addr, port);
      return out.length > 0;
    },
    40,
    250,
  );
  return out;
}

/**
 * "The outside": a namespace of the test linked to the host by a veth (`hostEnd` on the host,
 * eth0 inside) on a TEST-NET-2 /30; `transfer.host` is the host's address on it.
 */
export async function makeOutside(
  cleanup: Cleanup,
  prefix: string,
  hostEnd: string,
): Promise<{ ns: TestNetns; transfer: { host: string; outside: string } }> {
  const ns = await makeNetns(cleanup, prefix);
  const transfer = randomTransfer();
  await sh('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
  cleanup.add(() => deleteLink(hostEnd));
  await sh('ip', ['-batch', '-'], { input: `addr add ${transfer.host}/30 dev ${hostEnd}\nlink set ${hostEnd} up\n` });
  await sh('nsenter', [`--net=${ns.path}`, '--', 'ip', '-batch', '-'], {
    input: `addr add ${transfer.outside}/30 dev eth0\nlink set eth0 up\nlink set lo up\n`,
  });
  return { ns, transfer };
}

/**
 * Remove what a runtime test's network may leave: its bridge, its nft tables, and (registered
 * first, so it runs after the runtime's own teardown) namespaces in its subnet that a failed DEL
 * left behind, reported under `label`.
 */
export function cleanupNetwork(cleanup: Cleanup, net: TestNetwork, subnetPrefix: string, label: string): void {
  cleanup.add(() => deleteLink(net.bridge));
  cleanup.add(async () => {
    for (const fam of ['inet', 'bridge']) await sh('nft', ['delete', 'table', fam, nftTableOf(net)], { allowFail: true });
    await sh('nft', ['delete', 'table', 'inet', portmapTableOf(net)], { allowFail: true });
  });
  cleanup.add(async () => {
    const left = await removeLeftoverNetns(subnetPrefix);
    if (left.length) console.log(`${label}: removed netns left behind by the runtime: ${left.join(' ')}`);
  });
}
