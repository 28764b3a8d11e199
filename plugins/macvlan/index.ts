/**
 * macvlan: a macvlan sub-interface of a host interface (`master`) as the container's
 * interface, IPAM optional (L2 only without). Drop-in for the Go reference `macvlan`: same
 * keys, same result ([container interface], addresses on interface 0, DNS from the config).
 */
import { delegate, ipamDel, withIpam } from '../../shared/cni/delegate.ts';
import { bestEffort } from '../../shared/cni/besteffort.ts';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type GcRequest, type Request } from '../../shared/cni/plugin.ts';
import type { Result, Route } from '../../shared/cni/types.ts';
import { canonicalCIDR, canonicalIP, familyOf } from '../../shared/ipnet.ts';
import { run } from '../../shared/kernel/exec.ts';
import { ipBatch, ipJson, routes as readRoutes, type RouteInfo } from '../../shared/kernel/ip.ts';
import { addLinkOfKind, deleteLink, getLink, ifaceConfigCommands, linkAddresses, linkKind, type RouteSpec } from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { randomHex } from '../../shared/hash.ts';
import schema from '../../conf/schemas/macvlan.schema.json' with { type: 'json' };
import { checkMtu, macvlanAddCommand, resolveMacvlan, type MacvlanConf, type MacvlanSettings } from './config.ts';

/** The interface of the first default route (IPv4, then IPv6) in `netns` (undefined: this process's). */
async function defaultRouteInterface(netns?: string): Promise<string> {
  for (const fam of ['-4', '-6']) {
    const rs = await ipJson<RouteInfo[]>([fam, 'route', 'show', 'default'], netns);
    const dev = rs.find((r) => r.dev)?.dev;
    if (dev) return dev;
  }
  throw new CniError(ErrorCode.InvalidConfig, 'no master given and no default route interface found', netns ? `in ${netns}` : 'in the host network namespace');
}

/** The master's name and MTU, checked to exist (in the container with linkInContainer). */
async function masterOf(s: MacvlanSettings, netns: string): Promise<{ name: string; mtu: number }> {
  const where = s.linkInContainer ? netns : undefined;
  const name = s.master ?? (await defaultRouteInterface(where));
  const l = await getLink(name, where);
  if (!l) throw new CniError(ErrorCode.InvalidConfig, `master ${name} does not exist${where ? ` in ${where}` : ''}`);
  return { name, mtu: l.mtu };
}

async function add(req: Request<MacvlanConf>): Promise<Result> {
  const s = resolveMacvlan(req.config, req.env);
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const master = await masterOf(s, netns);
  checkMtu(s.mtu, master.mtu);
  // A temporary name: the kernel checks the name in the namespace it creates the link in
  // (the reference's "kernel bug" workaround); renamed inside the container.
  const tmp = `mv${randomHex(5)}`.slice(0, 12);
  await addLinkOfKind(macvlanAddCommand(s, master.name, tmp, netns), 'macvlan', s.linkInContainer ? netns : undefined);
  const configure = async (ipam?: Result): Promise<Result> => {
    try {
      const cmds: string[][] = [['link', 'set', 'dev', tmp, 'name', ifname]];
      const result: Result = { interfaces: [{ name: ifname, sandbox: netns }] };
      if (ipam) {
        if (!ipam.ips?.length) throw new CniError(ErrorCode.InvalidConfig, 'IPAM plugin returned missing IP config');
        result.ips = ipam.ips.map((i) => ({ ...i, interface: 0 }));
        result.routes = (ipam.routes ?? []).map((r) => ({ ...r }));
        const gwOf = (r: Route): string | undefined => r.gw ?? result.ips!.find((i) => familyOf(i.address) === familyOf(r.dst) && i.gateway)?.gateway;
        const routes: RouteSpec[] = result.routes.map((r) => ({ dst: r.dst, gw: gwOf(r), mtu: r.mtu, advmss: r.advmss, metric: r.priority, table: r.table, scope: r.scope }));
        // arp_notify/ndisc_notify as the reference (best effort: IPv6 may be off); no DAD wait
        const sysctls = [`net.ipv4.conf.${ifname}.arp_notify=1`, `net.ipv6.conf.${ifname}.ndisc_notify=1`, `net.ipv6.conf.${ifname}.accept_dad=0`];
        await ipBatch(cmds, netns);
        await run('sysctl', ['-q', '-w', '-e', ...sysctls], { netns, allowFail: true });
        await ipBatch(ifaceConfigCommands(ifname, { addresses: result.ips.map((i) => ({ cidr: i.address, nodad: true })), up: true, routes }), netns);
      } else {
        cmds.push(['link', 'set', 'dev', ifname, 'up']);
        await ipBatch(cmds, netns);
      }
      const l = await getLink(ifname, netns);
      if (l?.address) result.interfaces![0].mac = l.address;
      if (req.config.dns) result.dns = req.config.dns;
      return result;
    } catch (e) {
      await deleteLink(tmp, netns).catch(() => false);
      await deleteLink(ifname, netns).catch(() => false);
      throw e;
    }
  };
  if (!s.layer3) return configure();
  try {
    return await withIpam(req, configure);
  } catch (e) {
    // IPAM itself failed: the link made above goes too
    await deleteLink(tmp, netns).catch(() => false);
    throw e;
  }
}

async function del(req: Request<MacvlanConf>): Promise<void> {
  const { netns, ifname } = req.env;
  const { step, done } = bestEffort();
  await Promise.all([
    step(async () => {
      if (netnsExists(netns)) await deleteLink(ifname, netns);
    }),
    req.config.ipam?.type && step(() => ipamDel(req)),
  ]);
  done();
}

const mismatch = (what: string, details = ''): CniError => new CniError(ErrorCode.CheckMismatch, what, details);

function normalizeDst(r: RouteInfo, fam: 4 | 6): string {
  if (r.dst === 'default') return fam === 4 ? '0.0.0.0/0' : '::/0';
  return canonicalCIDR(r.dst.includes('/') ? r.dst : `${r.dst}/${fam === 4 ? 32 : 128}`) ?? r.dst;
}

async function check(req: Request<MacvlanConf>): Promise<void> {
  const s = resolveMacvlan(req.config, req.env);
  const { netns, ifname } = req.env;
  const prev = req.prevResult!;
  requireNetns(netns);
  if (s.layer3) await delegate(req.config.ipam!.type, 'CHECK', req);
  const ifaces = prev.interfaces ?? [];
  const idx = ifaces.findIndex((i) => i.name === ifname && i.sandbox === netns);
  if (idx < 0) throw mismatch(`prevResult has no interface ${ifname} in ${netns}`);
  const master = await masterOf(s, netns).catch((e: unknown) => {
    throw mismatch(e instanceof Error ? e.message : String(e));
  });
  const l = await getLink(ifname, netns);
  if (!l) throw mismatch(`interface ${ifname} is missing in ${netns}`);
  if (linkKind(l) !== 'macvlan') throw mismatch(`interface ${ifname} in ${netns} is not a macvlan`, `kind ${linkKind(l) ?? 'none'}`);
  const mode = l.linkinfo?.info_data?.mode;
  if (mode !== s.mode) throw mismatch(`macvlan mode of ${ifname} is ${String(mode)}, configured ${s.mode}`);
  if (s.linkInContainer && l.link !== master.name) throw mismatch(`${ifname} is not on master ${master.name}`, `link ${String(l.link)}`);
  const wantMac = ifaces[idx].mac;
  if (wantMac && l.address?.toLowerCase() !== wantMac.toLowerCase()) throw mismatch(`interface ${ifname} has MAC ${l.address}, prevResult says ${wantMac}`);
  const have = new Set(linkAddresses(l).map((a) => canonicalCIDR(a)));
  for (const ip of (prev.ips ?? []).filter((i) => i.interface === idx)) if (!have.has(canonicalCIDR(ip.address))) throw mismatch(`address ${ip.address} is missing on ${ifname}`);
  for (const fam of [...new Set((prev.routes ?? []).map((r) => familyOf(r.dst)))]) {
    const table = await readRoutes(fam, netns, ['table', 'all']);
    for (const r of (prev.routes ?? []).filter((x) => familyOf(x.dst) === fam)) {
      const dst = canonicalCIDR(r.dst);
      if (!table.some((k) => normalizeDst(k, fam) === dst && k.dev === ifname && (!r.gw || (k.gateway !== undefined && canonicalIP(k.gateway) === canonicalIP(r.gw))))) {
        throw mismatch(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
      }
    }
  }
}

async function gc(req: GcRequest<MacvlanConf>): Promise<void> {
  if (req.config.ipam?.type) await delegate(req.config.ipam.type, 'GC', req);
}

async function status(req: Request<MacvlanConf>): Promise<void> {
  if (req.config.ipam?.type) await delegate(req.config.ipam.type, 'STATUS', req);
}

export default definePlugin<MacvlanConf>({
  name: 'macvlan',
  about: 'a macvlan sub-interface of a host interface in the container (bridge, private, vepa, passthru), IPAM optional',
  schema,
  validateConfig(config, req) {
    if (req.env.command === 'ADD' || req.env.command === 'CHECK') resolveMacvlan(config, req.env);
  },
  add,
  del,
  check,
  gc,
  status,
});
