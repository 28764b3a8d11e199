/**
 * The thin kernel layer of host-device: find the host interface, move it into the container
 * and back, and put its host settings back. Every change is one `ip -batch` per namespace.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import type { Result, Route } from '../../shared/cni/types.ts';
import { ipSequence, listLinks, type LinkInfo } from '../../shared/kernel/ip.ts';
import { netnsExists } from '../../shared/kernel/netns.ts';
import { canonicalCIDR, canonicalIP, familyOf } from '../../shared/ipnet.ts';
import { describeSelector, normalizeMac, type Selector } from './config.ts';
import { decodeAlias, type DeviceRecord, type SavedAddr } from './record.ts';

export const SYS_BUS_PCI = '/sys/bus/pci/devices';
/** Drivers that mean the NIC is driven from userspace (DPDK): there is no netdev to move. */
const USERSPACE_DRIVERS = ['vfio-pci', 'uio_pci_generic', 'igb_uio'];

/** The netns of this very process, as a path `ip ... netns` understands from inside any netns. */
export const hostNetnsPath = (): string => `/proc/${process.pid}/ns/net`;

export type Found = { kind: 'link'; link: LinkInfo } | { kind: 'dpdk'; pci: string } | { kind: 'absent'; why: string };

function netdevNamesUnder(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Where the selector points on the host, from the host link list (and sysfs for paths). */
export function locate(sel: Selector, links: LinkInfo[]): Found {
  const byName = (names: string[]): LinkInfo | undefined =>
    names.map((n) => links.find((l) => l.ifname === n)).find((l) => l !== undefined);
  switch (sel.by) {
    case 'device': {
      const l = byName([sel.name]);
      return l ? { kind: 'link', link: l } : { kind: 'absent', why: `no interface named "${sel.name}" in the host network namespace` };
    }
    case 'hwaddr': {
      const l = links.find((x) => x.address && normalizeMac(x.address) === sel.mac && x.ifname !== 'lo');
      return l ? { kind: 'link', link: l } : { kind: 'absent', why: `no interface with MAC ${sel.mac} in the host network namespace` };
    }
    case 'kernelpath': {
      if (!existsSync(sel.path)) throw invalidConfig(sel.field, `no such device in sysfs: ${sel.path}`);
      const l = byName(netdevNamesUnder(path.join(sel.path, 'net')));
      return l ? { kind: 'link', link: l } : { kind: 'absent', why: `${sel.path} has no network interface in the host network namespace` };
    }
    case 'pciBusID': {
      const dev = path.join(SYS_BUS_PCI, sel.pci);
      if (!existsSync(dev)) throw invalidConfig(sel.field, `no PCI device ${sel.pci} on this host (${dev} does not exist)`);
      let driver: string;
      try {
        driver = path.basename(readlinkSync(path.join(dev, 'driver')));
      } catch {
        driver = '';
      }
      if (USERSPACE_DRIVERS.includes(driver)) return { kind: 'dpdk', pci: sel.pci };
      let names = netdevNamesUnder(path.join(dev, 'net'));
      if (!names.length) {
        for (const sub of netdevNamesUnder(dev).filter((n) => n.startsWith('virtio')))
          names = names.concat(netdevNamesUnder(path.join(dev, sub, 'net')));
      }
      const l = byName(names);
      return l
        ? { kind: 'link', link: l }
        : { kind: 'absent', why: `PCI device ${sel.pci} has no network interface in the host network namespace` };
    }
  }
}

export const notFound = (sel: Selector, why: string): CniError =>
  new CniError(ErrorCode.InvalidConfig, `host-device: ${describeSelector(sel)} not found: ${why}`, `field "${sel.field}"`);

/** The host settings DEL puts back. Link-local and dynamic (SLAAC, DHCP) addresses are the kernel's. */
export function hostAddrs(link: LinkInfo): SavedAddr[] {
  const out: SavedAddr[] = [];
  for (const a of link.addr_info ?? []) {
    if (a.scope === 'link' || a.scope === 'host' || a.dynamic) continue;
    const cidr = `${a.local}/${a.prefixlen}`;
    const b = (a as { broadcast?: string }).broadcast;
    out.push(b && a.family === 'inet' ? { cidr, broadcast: b } : { cidr });
  }
  return out;
}

export const isUp = (l: LinkInfo): boolean => l.flags.includes('UP');
const aliasOf = (l: LinkInfo): string => (typeof l.ifalias === 'string' ? l.ifalias : '');

/** Host side of ADD: tag the device with its record, park it under its transit name, move it. */
export async function moveIn(rec: DeviceRecord, alias: string, netns: string): Promise<void> {
  await ipSequence([
    ['link', 'set', 'dev', rec.hostName, 'down'],
    ['link', 'set', 'dev', rec.hostName, 'alias', alias],
    ['link', 'set', 'dev', rec.hostName, 'name', rec.tmpName],
    ['link', 'set', 'dev', rec.tmpName, 'netns', netns],
  ]);
}

function routeArgs(r: Route, gw: string | undefined, ifname: string): string[] {
  const a = ['route', 'add', r.dst];
  if (gw) a.push('via', gw);
  a.push('dev', ifname);
  if (r.mtu) a.push('mtu', String(r.mtu));
  if (r.advmss) a.push('advmss', String(r.advmss));
  if (r.priority !== undefined) a.push('metric', String(r.priority));
  if (r.table !== undefined) a.push('table', String(r.table));
  if (r.scope !== undefined) a.push('scope', String(r.scope));
  return a;
}

/**
 * Container side of ADD, one batch: final name, up, IPAM addresses (IPv6 without DAD), routes.
 * A route without a gateway takes the gateway of the first address of its family, as the
 * reference's ConfigureIface does.
 */
export function containerCommands(tmpName: string, ifname: string, ipam: Result | undefined): string[][] {
  const cmds: string[][] = [
    ['link', 'set', 'dev', tmpName, 'name', ifname],
    ['link', 'set', 'dev', ifname, 'up'],
  ];
  const gwByFamily = new Map<number, string>();
  for (const ip of ipam?.ips ?? []) {
    const fam = familyOf(ip.address);
    cmds.push(['addr', 'add', ip.address, 'dev', ifname, ...(fam === 6 ? ['nodad'] : [])]);
    if (ip.gateway && !gwByFamily.has(fam)) gwByFamily.set(fam, ip.gateway);
  }
  for (const r of ipam?.routes ?? []) cmds.push(routeArgs(r, r.gw ?? gwByFamily.get(familyOf(r.dst)), ifname));
  return cmds;
}

/** Container side of DEL: down, transit name, back to the host netns. */
export async function moveOut(rec: DeviceRecord, current: string, netns: string): Promise<void> {
  const cmds: string[][] = [['link', 'set', 'dev', current, 'down']];
  if (current !== rec.tmpName) cmds.push(['link', 'set', 'dev', current, 'name', rec.tmpName]);
  cmds.push(['link', 'set', 'dev', rec.tmpName, 'netns', hostNetnsPath()]);
  await ipSequence(cmds, netns);
}

/**
 * Host side of DEL: original name, MTU, MAC, addresses, alias, admin state; only what differs.
 * The alias is cleared only after everything else succeeded, so a failed DEL can be retried.
 */
export function restoreCommands(
  rec: DeviceRecord,
  cur: { ifname: string; mtu?: number; address?: string; up?: boolean },
  takenNames: Set<string>,
): string[][] {
  const name = rec.hostName;
  const cmds: string[][] = [];
  if (cur.ifname !== name) {
    if (takenNames.has(name)) {
      throw new CniError(
        ErrorCode.Conflict,
        `host-device: cannot give "${name}" its name back: another host interface is called "${name}"`,
        `the device stays as "${cur.ifname}"; rename or remove the other interface and repeat DEL`,
      );
    }
    cmds.push(['link', 'set', 'dev', cur.ifname, 'name', name]);
  }
  if (rec.mtu && cur.mtu !== rec.mtu) cmds.push(['link', 'set', 'dev', name, 'mtu', String(rec.mtu)]);
  if (rec.mac && (!cur.address || normalizeMac(cur.address) !== normalizeMac(rec.mac)))
    cmds.push(['link', 'set', 'dev', name, 'address', rec.mac]);
  for (const a of rec.addrs) cmds.push(['addr', 'replace', a.cidr, ...(a.broadcast ? ['broadcast', a.broadcast] : []), 'dev', name]);
  cmds.push(['link', 'set', 'dev', name, 'alias', rec.alias]);
  if (rec.up) cmds.push(['link', 'set', 'dev', name, 'up']);
  return cmds;
}

/** The device of `rec` in a list of links: by alias, by transit name, by ifindex and MAC. */
export function findRecorded(links: LinkInfo[], rec: DeviceRecord, opts: { containerName?: string } = {}): LinkInfo | undefined {
  const byAlias = links.find((l) => decodeAlias(aliasOf(l))?.key === rec.key);
  if (byAlias) return byAlias;
  const byTransit = links.find((l) => l.ifname === rec.tmpName);
  if (byTransit) return byTransit;
  const sameMac = (l: LinkInfo): boolean => !!l.address && !!rec.mac && normalizeMac(l.address) === normalizeMac(rec.mac);
  // ifindex alone could name an unrelated interface of the container: the MAC must agree too.
  const byIndex = links.find((l) => l.ifindex === rec.ifindex && l.ifname !== 'lo' && sameMac(l));
  if (byIndex) return byIndex;
  // The reference plugin's own tag: the alias is the host name.
  return opts.containerName ? links.find((l) => l.ifname === opts.containerName && aliasOf(l) === rec.hostName) : undefined;
}

/** True when the device on the host still carries our tag or transit name (not given back yet). */
export const needsRestore = (l: LinkInfo, rec: DeviceRecord): boolean =>
  decodeAlias(aliasOf(l))?.key === rec.key || l.ifname === rec.tmpName || l.ifname !== rec.hostName;

export type GiveBack = 'restored' | 'already-home' | 'gone';

/** How long DEL waits for the kernel to hand a NIC back from a namespace being torn down. */
export const RETURN_WAIT_MS = 3000;

/** A host interface carrying `rec`'s alias tag, found by reading sysfs (no process spawned). */
function taggedInSysfs(rec: DeviceRecord): boolean {
  let names: string[];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    return false;
  }
  for (const n of names) {
    try {
      if (decodeAlias(readFileSync(`/sys/class/net/${n}/ifalias`, 'utf8').trim())?.key === rec.key) return true;
    } catch {
      /* gone meanwhile */
    }
  }
  return false;
}

/**
 * A physical NIC (no link kind) in a namespace whose last reference just went is returned to
 * the initial namespace by the kernel's namespace cleanup, which runs asynchronously: wait for
 * it a little. Virtual devices (veth, macvlan, tap, ...) are destroyed instead, never waited for.
 */
async function returnedBySysfs(rec: DeviceRecord, ms: number): Promise<boolean> {
  const step = 50;
  for (let waited = 0; waited <= ms; waited += step) {
    if (taggedInSysfs(rec)) return true;
    await new Promise((r) => setTimeout(r, step));
  }
  return false;
}

/**
 * Put the recorded device back on the host wherever it is now: in the container netns (when
 * it still exists), or already on the host (the kernel returns physical NICs from a deleted
 * netns; a crashed DEL may have left it half done).
 */
export async function giveBack(rec: DeviceRecord, netns: string | undefined, containerName: string | undefined): Promise<GiveBack> {
  const candidates = [netns, rec.netns].filter((n, i, all): n is string => !!n && all.indexOf(n) === i && netnsExists(n));
  for (const ns of candidates) {
    const inside = findRecorded(await listLinks(ns), rec, { containerName });
    if (!inside) continue;
    await moveOut(rec, inside.ifname, ns);
    // Moving keeps MTU and MAC; addresses are flushed by the move. A clash with the host name
    // makes the batch fail; DEL then explains it (see index.ts) and keeps the record.
    await ipSequence(restoreCommands(rec, { ifname: rec.tmpName, mtu: inside.mtu, address: inside.address }, new Set()));
    return 'restored';
  }
  let host = await listLinks();
  let dev = findRecorded(host, rec);
  if (!dev && !candidates.length && !rec.kind && (await returnedBySysfs(rec, RETURN_WAIT_MS))) {
    host = await listLinks();
    dev = findRecorded(host, rec);
  }
  if (!dev) return 'gone';
  if (!needsRestore(dev, rec)) return 'already-home';
  await ipSequence(restoreCommands(rec, dev, new Set(host.filter((l) => l !== dev).map((l) => l.ifname))));
  return 'restored';
}

/** Compare the container interface with prevResult; code 105 naming the first difference. */
export function checkInterface(link: LinkInfo | undefined, ifname: string, mac: string | undefined, ips: string[]): void {
  const mismatch = (msg: string): CniError => new CniError(ErrorCode.CheckMismatch, `host-device CHECK: ${msg}`);
  if (!link) throw mismatch(`interface "${ifname}" not found in the container`);
  if (mac && normalizeMac(link.address ?? '') !== normalizeMac(mac))
    throw mismatch(`interface "${ifname}" has MAC ${link.address ?? '(none)'}, prevResult says ${mac}`);
  const have = new Set((link.addr_info ?? []).map((a) => canonicalCIDR(`${a.local}/${a.prefixlen}`)));
  for (const ip of ips) if (!have.has(canonicalCIDR(ip))) throw mismatch(`address ${ip} is missing on "${ifname}"`);
}

/** prevResult routes missing from the container's route table of one family (dst and gateway compared). */
export function missingRoutes(want: Route[], have: Array<{ dst: string; gateway?: string }>, family: 4 | 6): Route[] {
  const norm = (dst: string): string => {
    if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
    return canonicalCIDR(dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`) ?? dst;
  };
  const present = have.map((h) => ({ dst: norm(h.dst), gw: h.gateway ? canonicalIP(h.gateway) : undefined }));
  return want
    .filter((r) => familyOf(r.dst) === family)
    .filter((r) => {
      const dst = canonicalCIDR(r.dst) ?? r.dst;
      const gw = r.gw ? canonicalIP(r.gw) : undefined;
      return !present.some((p) => p.dst === dst && (!gw || p.gw === gw));
    });
}
