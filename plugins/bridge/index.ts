/**
 * bridge: attach a container to a Linux bridge on the host through a veth pair, with IPAM by
 * delegation, the bridge as gateway, masquerade and MAC spoof checks. Drop-in for the Go
 * reference `bridge` (same config keys).
 */
import { bestEffort } from '../../shared/cni/besteffort.ts';
import { definePlugin, type GcRequest, type Request } from '../../shared/cni/plugin.ts';
import { delegate, ipamDel, reservationInUse, withIpam } from '../../shared/cni/delegate.ts';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import type { Interface, Result } from '../../shared/cni/types.ts';
import { entriesFor, masqueradeBackend, type MasqueradeBackend, type MasqueradeOwner } from '../../shared/firewall/masquerade.ts';
import { canonicalCIDR, canonicalIP, familyOf } from '../../shared/ipnet.ts';
import { bridgeBatch, routes as readRoutes, type RouteInfo } from '../../shared/kernel/ip.ts';
import { configureIface, deleteLink, getLink, linkAddresses, linkKind, ownNetnsLinkNames, randomMac } from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { setSysctls } from '../../shared/kernel/sysctl.ts';
import { createVethPair, hostVethCandidates, hostVethName, livePairOf } from '../../shared/kernel/veth.ts';
import schema from '../../conf/schemas/bridge.schema.json' with { type: 'json' };
import { ensureBridge, portVlanCommands } from './bridge.ts';
import { vlanFilteringSupported } from '../../shared/kernel/link.ts';
import { needsVlanFiltering, resolveSettings, type BridgeConf, type BridgeSettings } from './config.ts';
import { firewallTransaction, macspoofAdd, macspoofDel, macspoofGc, macspoofPresent } from './macspoof.ts';
import { pickDns, planAdd } from './plan.ts';

const ownerOf = (req: Request<BridgeConf>): MasqueradeOwner => ({
  network: req.config.name,
  containerId: req.env.containerId,
  ifname: req.env.ifname,
});

const backendOf = (s: BridgeSettings): Promise<MasqueradeBackend> =>
  masqueradeBackend(s.masqBackend, { nftTable: s.nftTable, iptablesChain: s.iptablesChain });

/** Settings for DEL/GC: a malformed MAC must not block the cleanup. */
function lenientSettings(req: Request<BridgeConf>): BridgeSettings {
  try {
    return resolveSettings(req.config, req.env);
  } catch {
    return resolveSettings({ ...req.config, args: undefined, runtimeConfig: undefined }, { args: new Map() });
  }
}

/** The host-side veth of the attachment: the one recorded in prevResult, else the derived name. */
function hostVethOf(req: Request<BridgeConf>, s: BridgeSettings): string {
  const recorded = req.prevResult?.interfaces?.find((i) => !i.sandbox && i.name !== s.bridge)?.name;
  return recorded ?? hostVethName(req.env.containerId, req.env.ifname);
}

/** Whether `ifname` in `netns` holds one of `cidrs` (a live interface using the IPAM result). */
async function inUseByContainer(ifname: string, netns: string, cidrs: string[]): Promise<boolean> {
  const l = await getLink(ifname, netns).catch(() => undefined);
  if (!l || !cidrs.length) return false;
  const have = new Set(linkAddresses(l).map((a) => canonicalCIDR(a)));
  return cidrs.some((c) => have.has(canonicalCIDR(c)));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** With `enabledad`, wait (bounded) until DAD has finished on the container's IPv6 addresses. */
async function settleAddresses(ifname: string, netns: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const l = await getLink(ifname, netns);
    const pending = (l?.addr_info ?? []).filter((a) => a.tentative);
    if (!pending.length) return;
    if (pending.some((a) => a.dadfailed))
      throw new CniError(
        ErrorCode.Conflict,
        `IPv6 duplicate address detection failed on ${ifname}`,
        pending.map((a) => a.local).join(', '),
      );
    await sleep(100);
  }
  throw new CniError(ErrorCode.KernelOperation, `IPv6 addresses on ${ifname} still tentative after 10 s`);
}

async function add(req: Request<BridgeConf>): Promise<Result> {
  const s = resolveSettings(req.config, req.env);
  const { netns, ifname, containerId } = req.env;
  requireNetns(netns);
  if (needsVlanFiltering(s) && !(await vlanFilteringSupported())) {
    throw new CniError(
      ErrorCode.KernelFeatureMissing,
      'bridge VLAN filtering is not available in this kernel: vlan and vlanTrunk cannot be used',
      'feature: bridge vlan_filtering (CONFIG_BRIDGE_VLAN_FILTERING); "ip link add type bridge vlan_filtering 1" is refused',
    );
  }
  // A repeated ADD of a live attachment must fail before IPAM and the firewall are asked for
  // anything: IPAM would hand back the live attachment's own reservation (and the masquerade
  // rules carry its owner tag), so the undo of a failed ADD would release what the running
  // container holds. Live means: one of the attachment's host veth names exists (procfs, no
  // process) and is the peer of CNI_IFNAME in the netns (two reads, only in that case).
  const candidates = hostVethCandidates(containerId, ifname);
  const hostLinks = ownNetnsLinkNames() ?? new Set<string>();
  const taken = candidates.filter((n) => hostLinks.has(n));
  const live = await livePairOf(taken, ifname, netns);
  if (live) {
    throw new CniError(
      ErrorCode.Conflict,
      `container ${containerId} is already attached to network ${req.config.name} as ${ifname} (host veth ${live})`,
      'a repeated ADD changes nothing; DEL the attachment before adding it again',
    );
  }
  const free = candidates.filter((n) => !hostLinks.has(n));
  if (!free.length)
    throw new CniError(ErrorCode.Conflict, `every host veth name for ${containerId}/${ifname} is taken`, candidates.join(', '));
  // Read the bridge while IPAM allocates (one process spawn less on the critical path).
  // setImmediate: after IPAM has asked for its store lock (spawn() blocks for a fork; the
  // lock is the longer wait, so it goes first).
  const observed = new Promise<Awaited<ReturnType<typeof getLink>>>((resolve, reject) =>
    setImmediate(() => getLink(s.bridge).then(resolve, reject)),
  );
  observed.catch(() => undefined);
  const body = async (ipam: Result): Promise<Result> => {
    const plan = planAdd(ipam, s);
    const br = await ensureBridge(
      {
        name: s.bridge,
        mtu: s.mtu,
        promisc: s.promiscMode,
        gateways: plan.bridgeGateways,
        forceAddress: s.forceAddress,
        vlanFiltering: needsVlanFiltering(s),
      },
      observed,
    );
    let hostName = free[0];
    const hostMac = randomMac();
    const contMac = s.mac ?? randomMac();
    const mtu = s.mtu ?? (br.mtu !== 1500 ? br.mtu : undefined);
    const undo: Array<() => Promise<unknown>> = [];
    // The firewall rules (masquerade, MAC spoof check) depend on nothing the veth steps make:
    // their transaction runs while the pair is created and configured. Kernel changes like
    // these wait for RCU grace periods, so overlapping them is most of what can be saved.
    let firewall: Promise<void> = Promise.resolve();
    let undoFirewall = true;
    try {
      const owner = ownerOf(req);
      const masq = s.ipMasq ? entriesFor(plan.ips.map((i) => i.address)) : [];
      const backend = masq.length ? await backendOf(s) : undefined;
      if (masq.length) undo.push(() => backend!.del(owner));
      if (s.macspoofchk) undo.push(() => macspoofDel(s.nftTable, owner));
      // masquerade (nftables) and the MAC spoof check in one transaction (./macspoof.ts)
      const joined = backend?.addScript && { script: backend.addScript(owner, masq), msgs: backend.addMsgs?.(owner, masq) };
      if (backend && !joined) firewall = backend.add(owner, masq);
      const spoof = s.macspoofchk ? { table: s.nftTable, owner, port: hostName, mac: contMac } : undefined;
      if (joined || spoof) firewall = firewall.then(() => firewallTransaction(joined || undefined, spoof));
      firewall.catch(() => undefined); // awaited below, on success and on failure
      const hostCmds = (name: string): string[][] => {
        const cmds = [['link', 'set', 'dev', name, 'master', br.name]];
        if (s.hairpinMode) cmds.push(['link', 'set', 'dev', name, 'type', 'bridge_slave', 'hairpin', 'on']);
        if (s.portIsolation) cmds.push(['link', 'set', 'dev', name, 'type', 'bridge_slave', 'isolated', 'on']);
        cmds.push(['link', 'set', 'dev', name, 'up']);
        return cmds;
      };
      // A name taken since the procfs read above (by a colliding attachment) moves on to the next candidate.
      const first = hostName;
      for (let i = 0; ; i++) {
        try {
          await createVethPair({ hostName, peerName: ifname, peerNetns: netns, mtu, hostMac, peerMac: contMac }, hostCmds(hostName));
          break;
        } catch (e) {
          const conflict = e instanceof CniError && e.code === ErrorCode.Conflict;
          // The pair may exist with a later batch line failed; a Conflict means it was not ours.
          if (!conflict) await deleteLink(hostName).catch(() => false);
          if (conflict && i + 1 < free.length && ownNetnsLinkNames()?.has(hostName)) {
            hostName = free[i + 1];
            continue;
          }
          // CNI_IFNAME exists in the container and carries an address IPAM just returned: the
          // attachment is live (made by something that names its host end otherwise, e.g. the
          // reference plugin): IPAM handed back its reservation, the rules carry its owner tag.
          if (
            conflict &&
            (await inUseByContainer(
              ifname,
              netns,
              plan.ips.map((x) => x.address),
            ))
          ) {
            undoFirewall = false;
            throw reservationInUse(e);
          }
          throw e;
        }
      }
      if (s.macspoofchk && hostName !== first) {
        const port = hostName;
        firewall = firewall.then(() => macspoofDel(s.nftTable, owner)).then(() => macspoofAdd(s.nftTable, owner, port, contMac));
        firewall.catch(() => undefined);
      }
      undo.push(() => deleteLink(hostName));
      if (needsVlanFiltering(s)) {
        const cmds = portVlanCommands(hostName, s.vlan, s.vlanTrunk, s.preserveDefaultVlan);
        await bridgeBatch(cmds);
      }
      if (!s.disableContainerInterface) {
        await configureIface(ifname, { addresses: plan.containerAddrs, routes: plan.containerRoutes, up: true }, netns, !s.enableDad);
        if (s.enableDad && plan.families.includes(6)) await settleAddresses(ifname, netns);
      }
      if (s.isGateway || s.ipMasq) {
        const fwd: Record<string, string> = {};
        if (plan.families.includes(4)) fwd['net.ipv4.ip_forward'] = '1';
        if (plan.families.includes(6)) fwd['net.ipv6.conf.all.forwarding'] = '1';
        await setSysctls(fwd);
      }
      await firewall;
    } catch (e) {
      await firewall.catch(() => undefined);
      if (!undoFirewall) {
        // Our `add rule` duplicated the live attachment's rules (same owner tag): remove only
        // the duplicates, keeping one rule per address.
        if (s.ipMasq && plan.ips.length)
          await (await backendOf(s)).dedupe(ownerOf(req)).catch((d: unknown) => req.log.warn(`undo after failed ADD: ${String(d)}`));
        throw e;
      }
      for (const u of undo.reverse()) await u().catch((d: unknown) => req.log.warn(`undo after failed ADD: ${String(d)}`));
      throw e;
    }
    const withMtu = (i: Interface, m: number | undefined): Interface => (m ? { ...i, mtu: m } : i);
    const result: Result = {
      interfaces: [
        withMtu({ name: br.name, mac: br.mac }, br.mtu),
        withMtu({ name: hostName, mac: hostMac }, mtu ?? 1500),
        withMtu({ name: ifname, mac: contMac, sandbox: netns }, mtu ?? 1500),
      ],
      ips: plan.ips,
      routes: plan.routes,
    };
    const dns = pickDns(req.config.dns, ipam.dns);
    if (dns) result.dns = dns;
    return result;
  };
  return s.layer3 ? withIpam(req, body) : body({});
}

async function del(req: Request<BridgeConf>): Promise<void> {
  const s = lenientSettings(req);
  const { netns, ifname } = req.env;
  const owner = ownerOf(req);
  const { step, done } = bestEffort();
  // Independent deletions, each waiting on the kernel (a link's unregister and an nft commit
  // wait for RCU grace periods, ~15-30 ms apiece): run them at once.
  await Promise.all([
    step(async () => {
      // The container end, inside the netns: deleting it takes its host peer with it, and it
      // is this attachment's by definition. A host veth is never deleted by name: the name
      // is a hash that another attachment may hold (a collision), and when the netns is gone
      // the pair went with it.
      if (netnsExists(netns)) await deleteLink(ifname, netns);
    }),
    s.ipMasq && step(async () => (await backendOf(s)).del(owner)),
    s.macspoofchk && step(() => macspoofDel(s.nftTable, owner)),
    s.layer3 && step(() => ipamDel(req)),
  ]);
  done();
}

const mismatch = (what: string, details = ''): CniError => new CniError(ErrorCode.CheckMismatch, what, details);

function normalizeDst(r: RouteInfo, fam: 4 | 6): string {
  if (r.dst === 'default') return fam === 4 ? '0.0.0.0/0' : '::/0';
  return canonicalCIDR(r.dst.includes('/') ? r.dst : `${r.dst}/${fam === 4 ? 32 : 128}`) ?? r.dst;
}

async function check(req: Request<BridgeConf>): Promise<void> {
  const s = resolveSettings(req.config, req.env);
  const { netns, ifname } = req.env;
  const prev = req.prevResult;
  if (!prev) throw invalidConfig('prevResult', 'is required for CHECK');
  requireNetns(netns);
  if (s.layer3) await delegate(req.config.ipam!.type, 'CHECK', req);
  const ifaces = prev.interfaces ?? [];
  const contIdx = ifaces.findIndex((i) => i.name === ifname && i.sandbox === netns);
  if (contIdx < 0) throw mismatch(`prevResult has no interface ${ifname} in ${netns}`);
  const cont = await getLink(ifname, netns);
  if (!cont) throw mismatch(`interface ${ifname} is missing in ${netns}`);
  if (linkKind(cont) !== 'veth') throw mismatch(`interface ${ifname} in ${netns} is not a veth`, `kind ${linkKind(cont) ?? 'none'}`);
  const wantMac = ifaces[contIdx].mac;
  if (wantMac && cont.address?.toLowerCase() !== wantMac.toLowerCase())
    throw mismatch(`interface ${ifname} has MAC ${cont.address}, prevResult says ${wantMac}`);
  const myIps = (prev.ips ?? []).filter((i) => i.interface === contIdx);
  if (!s.disableContainerInterface) {
    const have = new Set(linkAddresses(cont).map((a) => canonicalCIDR(a)));
    for (const ip of myIps) if (!have.has(canonicalCIDR(ip.address))) throw mismatch(`address ${ip.address} is missing on ${ifname}`);
    const fams = [...new Set((prev.routes ?? []).map((r) => familyOf(r.dst)))];
    for (const fam of fams) {
      const table = await readRoutes(fam, netns, ['table', 'all']);
      for (const r of (prev.routes ?? []).filter((x) => familyOf(x.dst) === fam)) {
        const dst = canonicalCIDR(r.dst);
        const found = table.some(
          (k) =>
            normalizeDst(k, fam) === dst &&
            k.dev === ifname &&
            (!r.gw || (k.gateway !== undefined && canonicalIP(k.gateway) === canonicalIP(r.gw))),
        );
        if (!found) throw mismatch(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
      }
    }
  }
  const br = await getLink(s.bridge);
  if (!br || linkKind(br) !== 'bridge') throw mismatch(`bridge ${s.bridge} is missing`);
  const hostName = hostVethOf(req, s);
  const host = await getLink(hostName);
  if (!host) throw mismatch(`host veth ${hostName} is missing`);
  if (host.master !== s.bridge) throw mismatch(`host veth ${hostName} is not attached to ${s.bridge}`, `master ${host.master ?? 'none'}`);
  const owner = ownerOf(req);
  if (s.ipMasq && myIps.length) {
    const missing = await (await backendOf(s)).missing(owner, entriesFor(myIps.map((i) => i.address)));
    if (missing.length) throw mismatch(`masquerade rule for ${missing.map((m) => m.ip).join(', ')} is missing`);
  }
  if (s.macspoofchk && !(await macspoofPresent(s.nftTable, owner))) throw mismatch(`macspoofchk rule for ${hostName} is missing`);
}

async function gc(req: GcRequest<BridgeConf>): Promise<void> {
  const s = lenientSettings(req);
  const { step, done } = bestEffort();
  if (s.ipMasq) await step(async () => (await backendOf(s)).gc(req.config.name, req.validAttachments));
  if (s.macspoofchk) await step(() => macspoofGc(s.nftTable, req.config.name, req.validAttachments));
  if (s.layer3) await step(() => delegate(req.config.ipam!.type, 'GC', req));
  done();
}

async function status(req: Request<BridgeConf>): Promise<void> {
  if (req.config.ipam?.type) await delegate(req.config.ipam.type, 'STATUS', req);
}

export default definePlugin<BridgeConf>({
  name: 'bridge',
  about: 'attach containers to a Linux bridge with veth pairs (IPAM, gateway, masquerade, macspoofchk)',
  schema,
  validateConfig(config, req) {
    if (req.env.command === 'ADD' || req.env.command === 'CHECK') resolveSettings(config, req.env);
  },
  add,
  del,
  check,
  gc,
  status,
});
