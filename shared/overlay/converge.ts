/**
 * One reconcile of this host with the store, shared by ADD, CHECK and the agent: hold (or
 * take) a subnet lease, make the VTEP, the local bridge and the masquerade table right, and
 * install exactly the live peers. Store work comes before any kernel change, so an unreachable
 * store (code 11) never leaves a half-configured host.
 */
import { hostname } from 'node:os';
import type { Logger } from '../cni/log.ts';
import { ipBatch } from '../kernel/ip.ts';
import { setSysctls } from '../kernel/sysctl.ts';
import { withLock } from '../flock.ts';
import { trace } from '../trace.ts';
import type { Settings } from './config.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { contains, parseCIDR } from '../ipnet.ts';
import {
  applyMasq,
  applyPeers,
  masqInPlace,
  gatewayOf,
  localNets,
  mtuOf,
  planPeers,
  planVtep,
  readHost,
  underlayOf,
  type Underlay,
} from './host.ts';
import { acquireLease, podsOn, saveLease, vtepMacFor } from './lease.ts';
import { planBridge } from './hostbridge.ts';
import { listLeases, withDeadline, type Lease, type Store } from './store.ts';

export const STORE_DEADLINE_MS = 8000;

export interface Converged {
  lease: Lease;
  underlay: Underlay;
  mtu: number;
  peers: Lease[];
  added: string[];
  removed: string[];
  vtepRecreated: boolean;
}

export interface ConvergeOptions {
  /** re-apply the masquerade table when it is not in place (default true; the agent does it on its first pass) */
  masq?: boolean;
  /**
   * CHECK: the host must already be set up for `lease` (verified by the caller). Renews the
   * lease and reconciles peers, but never takes another subnet, never creates or changes
   * the VTEP, the bridge or the masquerade table (a difference fails with code 105).
   */
  verifyOnly?: Lease;
}

/** Refuse to leave `from` while host-local still holds pod addresses in it (issue: silent renumbering). */
export function renumberGuard(s: Settings, log: Logger, verifyOnly: boolean): (from: string, to: string) => void {
  return (from, to) => {
    const pods = podsOn(s, from);
    if (verifyOnly || pods.length) {
      const why = pods.length
        ? `${pods.length} pod address(es) of this host are still in ${from} (${pods.slice(0, 5).join(', ')}${pods.length > 5 ? ', ...' : ''})`
        : 'CHECK never renumbers';
      log.error(
        `LEASE LOST: this host's lease of ${from} (network ${s.name}) is gone or held by another host; not renumbering to ${to}: ${why}. Delete those pods (or release their addresses) to let the host take a new subnet.`,
      );
      throw new CniError(
        ErrorCode.TryAgainLater,
        `overlay: this host lost its lease of ${from} and its pods still use it; refusing to renumber`,
        why,
      );
    }
    log.warn(`lease of ${from} lost and no pod uses it: renumbering to ${to}`);
  };
}

export async function converge(s: Settings, store: Store, log: Logger, opts: ConvergeOptions = {}): Promise<Converged> {
  return withLock(
    s.stateDir,
    async () => {
      const t0 = performance.now();
      const st = await readHost(s);
      const t1 = performance.now();
      const u = underlayOf(s, st);
      const me = { publicIP: u.ip, vtepMAC: vtepMacFor(u.ip, s.vni), hostname: hostname() };
      const ctx = { network: s.network, subnetLen: s.subnetLen, family: u.family };
      const { lease, leases } = await withDeadline('lease', STORE_DEADLINE_MS, async () => {
        const leases = await listLeases(store, ctx, log);
        return { lease: await acquireLease(store, s, me, leases, renumberGuard(s, log, !!opts.verifyOnly)), leases };
      });
      if (opts.verifyOnly && (lease.subnet !== opts.verifyOnly.subnet || lease.vtepMAC !== opts.verifyOnly.vtepMAC)) {
        throw new CniError(
          ErrorCode.CheckMismatch,
          `overlay: the store's lease (${lease.subnet}) differs from the host's (${opts.verifyOnly.subnet})`,
        );
      }
      saveLease(s, lease);
      const t2 = performance.now();
      trace(`overlay: host read ${(t1 - t0).toFixed(1)} ms, store ${(t2 - t1).toFixed(1)} ms`);
      const mtu = mtuOf(s, u);
      const vtep = planVtep(s, u, lease, st);
      const br = st.links.find((l) => l.ifname === s.bridge);
      const gw = gatewayOf(lease.subnet);
      const gwCidr = `${gw}/${s.subnetLen}`;
      const hasGw = !!br?.addr_info?.some((a) => a.local === gw);
      // Addresses of an earlier lease on the bridge (a renumbered host): removed, so that subnet
      // is no longer held here and can be routed to its new holder.
      const stale = (br?.addr_info ?? [])
        .filter((a) => a.family === 'inet' && `${a.local}/${a.prefixlen}` !== gwCidr && contains(s.network, parseCIDR(`${a.local}/32`)!))
        .map((a) => `${a.local}/${a.prefixlen}`);
      const local = [
        ...vtep.cmds,
        ...stale.map((a) => ['addr', 'del', a, 'dev', s.bridge]),
        ...planBridge(s, lease.subnet, mtu, !!br, hasGw),
      ];
      if (opts.verifyOnly && local.length)
        throw new CniError(
          ErrorCode.CheckMismatch,
          `overlay: host state of network ${s.name} differs`,
          local.map((c) => c.join(' ')).join('; '),
        );
      if (stale.length) log.warn(`removing addresses of an earlier lease from ${s.bridge}: ${stale.join(' ')}`);
      await ipBatch(local);
      const plan = planPeers(s, lease, leases, st, vtep.recreated, localNets(s, st, stale));
      await applyPeers(plan);
      if (plan.skipped.length)
        log.error(
          `not routing peer subnet(s) ${plan.skipped.join(' ')} into ${s.vxlan}: a local device holds an address in them (this host's pods would be cut off)`,
        );
      if (plan.added.length || plan.removed.length)
        log.info(`peers: added ${plan.added.join(' ') || '-'}; removed ${plan.removed.join(' ') || '-'}`);
      if (vtep.recreated) log.info(`VTEP ${s.vxlan} created: vni ${s.vni} local ${u.ip} dev ${u.dev} mtu ${mtu} subnet ${lease.subnet}`);
      if (!opts.verifyOnly) {
        await setSysctls({ 'net.ipv4.ip_forward': '1' });
        if ((opts.masq !== false || vtep.recreated || stale.length) && !masqInPlace(s, lease, st)) await applyMasq(s, lease);
      }
      log.debug(
        `converge: host read ${(t1 - t0).toFixed(1)} ms, store ${(t2 - t1).toFixed(1)} ms, kernel ${(performance.now() - t2).toFixed(1)} ms`,
      );
      const peers = leases.filter((l) => l.subnet !== lease.subnet && l.publicIP !== lease.publicIP);
      return { lease, underlay: u, mtu, peers, added: plan.added, removed: plan.removed, vtepRecreated: vtep.recreated };
    },
    'host.lock',
  );
}
