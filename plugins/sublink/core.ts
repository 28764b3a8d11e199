/**
 * The interface plugins that create one virtual link for the container — macvlan, ipvlan, vlan
 * (on a `master`) and dummy (none) — share everything but the link: the master lookup (the
 * default-route interface when none is given, in the container with `linkInContainer`), the
 * MTU bound, creation under a temporary name directly in the container then a rename (the
 * reference's collision workaround), IPAM, the result ([container interface], addresses on
 * interface 0, `dns` from the config as the references), DEL, CHECK, GC, STATUS.
 */
import { bestEffort } from '../../shared/cni/besteffort.ts';
import { delegate, ipamDel, withIpam } from '../../shared/cni/delegate.ts';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import type { CniEnv } from '../../shared/cni/env.ts';
import { definePlugin, type GcRequest, type Plugin, type Request } from '../../shared/cni/plugin.ts';
import type { NetConfBase, Result, Route } from '../../shared/cni/types.ts';
import { randomHex } from '../../shared/hash.ts';
import { canonicalCIDR, canonicalIP, familyOf } from '../../shared/ipnet.ts';
import { trySetSysctls } from '../../shared/kernel/sysctl.ts';
import { ipBatch, ipJson, routes as readRoutes, type LinkInfo, type RouteInfo } from '../../shared/kernel/ip.ts';
import {
  addLinkOfKind,
  deleteLink,
  getLink,
  ifaceConfigCommands,
  linkAddresses,
  linkKind,
  type RouteSpec,
} from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';

export interface SublinkSettings {
  /** undefined: the default-route interface (kinds with a master) */
  master?: string;
  mtu?: number;
  linkInContainer: boolean;
  layer3: boolean;
}

export interface SublinkSpec<C extends NetConfBase, S extends SublinkSettings> {
  name: string;
  kind: string;
  about: string;
  schema: object;
  /** whether the link sits on a master */
  hasMaster: boolean;
  /** whether `ipam` must be configured (vlan, dummy, ipvlan) */
  ipamRequired: boolean;
  resolve(c: C, env: Pick<CniEnv, 'args'>): S;
  /** `ip link add` argv creating `tmp` (on `master`) directly inside `netns` */
  addCommand(s: S, master: string | undefined, tmp: string, netns: string): string[];
  /** what differs between the link and the settings (kind-specific data), for CHECK */
  drift(l: LinkInfo, s: S): string | undefined;
  /** `ip` lines run in the same batch right after the `addCommand` (tap: MTU, MAC, bridge port) */
  then?(s: S, tmp: string): string[][];
}

/** The interface of the first default route (IPv4, then IPv6) in `netns` (undefined: this process's). */
export async function defaultRouteInterface(netns?: string): Promise<string> {
  for (const fam of ['-4', '-6']) {
    const rs = await ipJson<RouteInfo[]>([fam, 'route', 'show', 'default'], netns);
    const dev = rs.find((r) => r.dev)?.dev;
    if (dev) return dev;
  }
  throw new CniError(
    ErrorCode.InvalidConfig,
    'no master given and no default route interface found',
    netns ? `in ${netns}` : 'in the host network namespace',
  );
}

/** The references' bound: 0 (the master's) up to the master's MTU. */
export function checkMtu(mtu: number | undefined, masterMtu: number): void {
  if (mtu !== undefined && mtu > masterMtu) throw invalidConfig('mtu', `invalid MTU ${mtu}, must be [0, master MTU(${masterMtu})]`);
}

const mismatch = (what: string, details = ''): CniError => new CniError(ErrorCode.CheckMismatch, what, details);

function normalizeDst(r: RouteInfo, fam: 4 | 6): string {
  if (r.dst === 'default') return fam === 4 ? '0.0.0.0/0' : '::/0';
  return canonicalCIDR(r.dst.includes('/') ? r.dst : `${r.dst}/${fam === 4 ? 32 : 128}`) ?? r.dst;
}

export function sublinkPlugin<C extends NetConfBase, S extends SublinkSettings>(spec: SublinkSpec<C, S>): Plugin<C> {
  const settings = (c: C, env: Pick<CniEnv, 'args'>): S => {
    const s = spec.resolve(c, env);
    if (spec.ipamRequired && !s.layer3) throw invalidConfig('ipam.type', `is required by ${spec.name}`);
    return s;
  };

  async function masterOf(s: S, netns: string): Promise<{ name: string; mtu: number } | undefined> {
    if (!spec.hasMaster) return undefined;
    const where = s.linkInContainer ? netns : undefined;
    const name = s.master ?? (await defaultRouteInterface(where));
    const l = await getLink(name, where);
    if (!l) throw new CniError(ErrorCode.InvalidConfig, `master ${name} does not exist${where ? ` in ${where}` : ''}`);
    return { name, mtu: l.mtu };
  }

  async function add(req: Request<C>): Promise<Result> {
    const s = settings(req.config, req.env);
    const { netns, ifname } = req.env;
    requireNetns(netns);
    const master = await masterOf(s, netns);
    if (master) checkMtu(s.mtu, master.mtu);
    const tmp = `${spec.kind.slice(0, 3)}${randomHex(5)}`;
    // The link first, as the references: a kernel without the driver fails before IPAM allocates.
    await addLinkOfKind(
      spec.addCommand(s, master?.name, tmp, netns),
      spec.kind,
      master && !s.linkInContainer ? undefined : netns,
      spec.then?.(s, tmp),
    ).catch(async (e: unknown) => {
      // a `then` line failed after the link was made: it goes (a kind without `then` made nothing)
      if (spec.then) await deleteLink(tmp, netns).catch(() => false);
      throw e;
    });
    // Renamed before IPAM, as the references: an IPAM that works on the interface (dhcp) needs its name.
    await ipBatch([['link', 'set', 'dev', tmp, 'name', ifname]], netns).catch(async (e: unknown) => {
      await deleteLink(tmp, netns).catch(() => false);
      throw e;
    });
    const configure = async (ipam?: Result): Promise<Result> => {
      try {
        const result: Result = { interfaces: [{ name: ifname, sandbox: netns }] };
        if (ipam) {
          if (!ipam.ips?.length) throw new CniError(ErrorCode.InvalidConfig, 'IPAM plugin returned missing IP config');
          result.ips = ipam.ips.map((i) => ({ ...i, interface: 0 }));
          result.routes = (ipam.routes ?? []).map((r) => ({ ...r }));
          const gwOf = (r: Route): string | undefined =>
            r.gw ?? result.ips!.find((i) => familyOf(i.address) === familyOf(r.dst) && i.gateway)?.gateway;
          const routes: RouteSpec[] = result.routes.map((r) => ({
            dst: r.dst,
            gw: gwOf(r),
            mtu: r.mtu,
            advmss: r.advmss,
            metric: r.priority,
            table: r.table,
            scope: r.scope,
          }));
          // arp_notify/ndisc_notify as the references (best effort: IPv6 may be off); no DAD wait
          await trySetSysctls(
            {
              [`net.ipv4.conf.${ifname}.arp_notify`]: '1',
              [`net.ipv6.conf.${ifname}.ndisc_notify`]: '1',
              [`net.ipv6.conf.${ifname}.accept_dad`]: '0',
            },
            netns,
          );
          await ipBatch(
            ifaceConfigCommands(ifname, { addresses: result.ips.map((i) => ({ cidr: i.address, nodad: true })), up: true, routes }),
            netns,
          );
        } else {
          await ipBatch([['link', 'set', 'dev', ifname, 'up']], netns);
        }
        const l = await getLink(ifname, netns);
        if (l?.address) result.interfaces![0].mac = l.address;
        if (req.config.dns) result.dns = req.config.dns;
        return result;
      } catch (e) {
        await deleteLink(ifname, netns).catch(() => false);
        throw e;
      }
    };
    if (!s.layer3) return configure();
    try {
      return await withIpam(req, configure);
    } catch (e) {
      // IPAM itself failed: the link made above goes too
      await deleteLink(ifname, netns).catch(() => false);
      throw e;
    }
  }

  async function del(req: Request<C>): Promise<void> {
    const { netns, ifname } = req.env;
    const { step, done } = bestEffort();
    const link = (): Promise<void> =>
      step(async () => {
        if (netnsExists(netns)) await deleteLink(ifname, netns);
      });
    // dhcp before the link, as the references order every DEL: its daemon sends DHCPRELEASE through the interface
    if (req.config.ipam?.type === 'dhcp') await step(() => ipamDel(req)).then(link);
    else await Promise.all([link(), req.config.ipam?.type && step(() => ipamDel(req))]);
    done();
  }

  async function check(req: Request<C>): Promise<void> {
    const s = settings(req.config, req.env);
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
    if (linkKind(l) !== spec.kind) throw mismatch(`interface ${ifname} in ${netns} is not a ${spec.kind}`, `kind ${linkKind(l) ?? 'none'}`);
    const drift = spec.drift(l, s);
    if (drift) throw mismatch(`${ifname}: ${drift}`);
    if (master && s.linkInContainer && l.link !== master.name)
      throw mismatch(`${ifname} is not on master ${master.name}`, `link ${String(l.link)}`);
    const wantMac = ifaces[idx].mac;
    if (wantMac && l.address?.toLowerCase() !== wantMac.toLowerCase())
      throw mismatch(`interface ${ifname} has MAC ${l.address}, prevResult says ${wantMac}`);
    const have = new Set(linkAddresses(l).map((a) => canonicalCIDR(a)));
    for (const ip of (prev.ips ?? []).filter((i) => i.interface === idx))
      if (!have.has(canonicalCIDR(ip.address))) throw mismatch(`address ${ip.address} is missing on ${ifname}`);
    for (const fam of [...new Set((prev.routes ?? []).map((r) => familyOf(r.dst)))]) {
      const table = await readRoutes(fam, netns, ['table', 'all']);
      for (const r of (prev.routes ?? []).filter((x) => familyOf(x.dst) === fam)) {
        const dst = canonicalCIDR(r.dst);
        if (
          !table.some(
            (k) =>
              normalizeDst(k, fam) === dst &&
              k.dev === ifname &&
              (!r.gw || (k.gateway !== undefined && canonicalIP(k.gateway) === canonicalIP(r.gw))),
          )
        ) {
          throw mismatch(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
        }
      }
    }
  }

  async function gc(req: GcRequest<C>): Promise<void> {
    if (req.config.ipam?.type) await delegate(req.config.ipam.type, 'GC', req);
  }

  async function status(req: Request<C>): Promise<void> {
    if (req.config.ipam?.type) await delegate(req.config.ipam.type, 'STATUS', req);
  }

  return definePlugin<C>({
    name: spec.name,
    about: spec.about,
    schema: spec.schema,
    validateConfig(config, req) {
      if (req.env.command === 'ADD' || req.env.command === 'CHECK') settings(config, req.env);
    },
    add,
    del,
    check,
    gc,
    status,
  });
}
