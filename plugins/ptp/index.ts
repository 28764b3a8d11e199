/**
 * ptp: a veth pair per container, routed from the host (no bridge). The container gets its
 * IPAM address with the gateway (the host veth's /32 or /128) as next hop for everything,
 * the host a route to the container address through the veth. Drop-in for the Go reference
 * `ptp` (same config keys, same result: [host veth, container interface]).
 */
import { bestEffort } from '../../shared/cni/besteffort.ts';
import { delegate, ipamDel, reservationInUse, withIpam } from '../../shared/cni/delegate.ts';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type GcRequest, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { entriesFor, masqueradeBackend, type MasqueradeBackend, type MasqueradeOwner } from '../../shared/firewall/masquerade.ts';
import { canonicalCIDR, canonicalIP, familyOf } from '../../shared/ipnet.ts';
import { routes as readRoutes, type RouteInfo } from '../../shared/kernel/ip.ts';
import {
  configureIface,
  deleteLink,
  getLink,
  linkAddresses,
  linkKind,
  ownNetnsLinkNames,
  randomMac,
  type RouteSpec,
} from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { setSysctls } from '../../shared/kernel/sysctl.ts';
import { createVethPair, hostVethCandidates, livePairOf } from '../../shared/kernel/veth.ts';
import schema from '../../conf/schemas/ptp.schema.json' with { type: 'json' };
import { pickDns } from '../bridge/plan.ts';
import { resolvePtp, type PtpConf, type PtpSettings } from './config.ts';
import { planPtp } from './plan.ts';

const ownerOf = (req: Request<PtpConf>): MasqueradeOwner => ({
  network: req.config.name,
  containerId: req.env.containerId,
  ifname: req.env.ifname,
});
const backendOf = (s: PtpSettings): Promise<MasqueradeBackend> =>
  masqueradeBackend(s.masqBackend, { nftTable: s.nftTable, iptablesChain: s.iptablesChain });

async function add(req: Request<PtpConf>): Promise<Result> {
  const s = resolvePtp(req.config);
  const { netns, ifname, containerId } = req.env;
  requireNetns(netns);
  // A repeated ADD of a live attachment fails before IPAM is asked (IPAM would hand back the
  // live reservation, and the undo would release it), as bridge does.
  const candidates = hostVethCandidates(containerId, ifname);
  const hostLinks = ownNetnsLinkNames() ?? new Set<string>();
  const live = await livePairOf(
    candidates.filter((n) => hostLinks.has(n)),
    ifname,
    netns,
  );
  if (live) {
    throw new CniError(
      ErrorCode.Conflict,
      `container ${containerId} is already attached to network ${req.config.name} as ${ifname} (host veth ${live})`,
      'DEL the attachment before adding it again',
    );
  }
  const free = candidates.filter((n) => !hostLinks.has(n));
  if (!free.length)
    throw new CniError(ErrorCode.Conflict, `every host veth name for ${containerId}/${ifname} is taken`, candidates.join(', '));
  return withIpam(req, async (ipam) => {
    const plan = planPtp(ipam);
    const hostName = free[0];
    const hostMac = randomMac();
    const contMac = randomMac();
    const owner = ownerOf(req);
    const undo: Array<() => Promise<unknown>> = [];
    try {
      const fwd: Record<string, string> = {};
      if (plan.families.includes(4)) fwd['net.ipv4.ip_forward'] = '1';
      if (plan.families.includes(6)) fwd['net.ipv6.conf.all.forwarding'] = '1';
      await setSysctls(fwd);
      try {
        await createVethPair({ hostName, peerName: ifname, peerNetns: netns, mtu: s.mtu, hostMac, peerMac: contMac });
      } catch (e) {
        const conflict = e instanceof CniError && e.code === ErrorCode.Conflict;
        if (!conflict) await deleteLink(hostName).catch(() => false);
        // CNI_IFNAME exists in the container with an address IPAM just returned: a live
        // attachment made by someone else (the reference names its host veth otherwise).
        if (
          conflict &&
          (await inUseByContainer(
            ifname,
            netns,
            plan.ips.map((i) => i.address),
          ))
        )
          throw reservationInUse(e);
        throw e;
      }
      undo.push(() => deleteLink(hostName));
      // Host side first: the container's routes via the gateway need nothing on the host, but
      // the host's gateway address must be there before the container sends anything.
      await Promise.all([
        configureIface(hostName, { addresses: plan.hostAddrs, up: true, routes: plan.hostRoutes }, undefined, true),
        configureIface(ifname, { addresses: plan.containerAddrs, routes: plan.containerRoutes, up: true }, netns, true),
      ]);
      if (s.ipMasq) {
        const backend = await backendOf(s);
        undo.push(() => backend.del(owner));
        await backend.add(owner, entriesFor(plan.ips.map((i) => i.address)));
      }
    } catch (e) {
      for (const u of undo.reverse()) await u().catch((d: unknown) => req.log.warn(`undo after failed ADD: ${String(d)}`));
      throw e;
    }
    const result: Result = {
      interfaces: [
        { name: hostName, mac: hostMac },
        { name: ifname, mac: contMac, sandbox: netns },
      ],
      ips: plan.ips,
      routes: plan.routes,
    };
    const dns = pickDns(req.config.dns, ipam.dns);
    if (dns) result.dns = dns;
    return result;
  });
}

async function inUseByContainer(ifname: string, netns: string, cidrs: string[]): Promise<boolean> {
  const l = await getLink(ifname, netns).catch(() => undefined);
  if (!l) return false;
  const have = new Set(linkAddresses(l).map((a) => canonicalCIDR(a)));
  return cidrs.some((c) => have.has(canonicalCIDR(c)));
}

async function del(req: Request<PtpConf>): Promise<void> {
  const s = resolvePtp(req.config);
  const { netns, ifname } = req.env;
  const { step, done } = bestEffort();
  // The container end takes the host end, its gateway address and host routes with it.
  await Promise.all([
    step(async () => {
      if (netnsExists(netns)) await deleteLink(ifname, netns);
    }),
    s.ipMasq && step(async () => (await backendOf(s)).del(ownerOf(req))),
    step(() => ipamDel(req)),
  ]);
  done();
}

const mismatch = (what: string, details = ''): CniError => new CniError(ErrorCode.CheckMismatch, what, details);

function normalizeDst(r: RouteInfo, fam: 4 | 6): string {
  if (r.dst === 'default') return fam === 4 ? '0.0.0.0/0' : '::/0';
  return canonicalCIDR(r.dst.includes('/') ? r.dst : `${r.dst}/${fam === 4 ? 32 : 128}`) ?? r.dst;
}

/** Whether `table` has `want` (dst, device, and the gateway when it names one). */
function hasRoute(table: RouteInfo[], fam: 4 | 6, dev: string, want: RouteSpec): boolean {
  const dst = canonicalCIDR(want.dst);
  return table.some(
    (k) =>
      normalizeDst(k, fam) === dst &&
      k.dev === dev &&
      (!want.gw || (k.gateway !== undefined && canonicalIP(k.gateway) === canonicalIP(want.gw))),
  );
}

async function check(req: Request<PtpConf>): Promise<void> {
  const s = resolvePtp(req.config);
  const { netns, ifname } = req.env;
  const prev = req.prevResult!;
  requireNetns(netns);
  await delegate(req.config.ipam!.type, 'CHECK', req);
  const ifaces = prev.interfaces ?? [];
  const contIdx = ifaces.findIndex((i) => i.name === ifname && i.sandbox === netns);
  if (contIdx < 0) throw mismatch(`prevResult has no interface ${ifname} in ${netns}`);
  const cont = await getLink(ifname, netns);
  if (!cont) throw mismatch(`interface ${ifname} is missing in ${netns}`);
  if (linkKind(cont) !== 'veth') throw mismatch(`interface ${ifname} in ${netns} is not a veth`, `kind ${linkKind(cont) ?? 'none'}`);
  const wantMac = ifaces[contIdx].mac;
  if (wantMac && cont.address?.toLowerCase() !== wantMac.toLowerCase())
    throw mismatch(`interface ${ifname} has MAC ${cont.address}, prevResult says ${wantMac}`);
  const myIps = (prev.ips ?? []).filter((i) => i.interface === contIdx || i.interface === undefined);
  const plan = planPtp({ ips: myIps, routes: prev.routes });
  const have = new Set(linkAddresses(cont).map((a) => canonicalCIDR(a)));
  for (const ip of myIps) if (!have.has(canonicalCIDR(ip.address))) throw mismatch(`address ${ip.address} is missing on ${ifname}`);
  const hostName = ifaces.find((i, n) => n !== contIdx && !i.sandbox)?.name;
  const host = hostName ? await getLink(hostName) : undefined;
  if (!hostName || !host) throw mismatch(`host veth ${hostName ?? '(none in prevResult)'} is missing`);
  if (linkKind(host) !== 'veth' || host.ifindex !== cont.link_index)
    throw mismatch(`host interface ${hostName} is not the peer of ${ifname}`);
  const hostHave = new Set(linkAddresses(host).map((a) => canonicalCIDR(a)));
  for (const a of plan.hostAddrs)
    if (!hostHave.has(canonicalCIDR(a.cidr))) throw mismatch(`gateway address ${a.cidr} is missing on host veth ${hostName}`);
  for (const fam of plan.families) {
    const [inside, onHost] = await Promise.all([readRoutes(fam, netns, ['table', 'all']), readRoutes(fam, undefined, ['table', 'all'])]);
    for (const r of plan.containerRoutes.filter((x) => familyOf(x.dst) === fam)) {
      if (!hasRoute(inside, fam, ifname, r)) throw mismatch(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
    }
    for (const r of plan.hostRoutes.filter((x) => familyOf(x.dst) === fam)) {
      if (!hasRoute(onHost, fam, hostName, r)) throw mismatch(`host route ${r.dst} dev ${hostName} is missing`);
    }
  }
  if (s.ipMasq && myIps.length) {
    const missing = await (await backendOf(s)).missing(ownerOf(req), entriesFor(myIps.map((i) => i.address)));
    if (missing.length) throw mismatch(`masquerade rule for ${missing.map((m) => m.ip).join(', ')} is missing`);
  }
}

async function gc(req: GcRequest<PtpConf>): Promise<void> {
  const s = resolvePtp(req.config);
  const { step, done } = bestEffort();
  if (s.ipMasq) await step(async () => (await backendOf(s)).gc(req.config.name, req.validAttachments));
  await step(() => delegate(req.config.ipam!.type, 'GC', req));
  done();
}

async function status(req: Request<PtpConf>): Promise<void> {
  await delegate(req.config.ipam!.type, 'STATUS', req);
}

export default definePlugin<PtpConf>({
  name: 'ptp',
  about: 'a routed veth pair per container (host veth holds the gateway /32, host routes to the container), IPAM, masquerade',
  schema,
  add,
  del,
  check,
  gc,
  status,
});
