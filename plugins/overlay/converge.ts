/**
 * One reconcile of this host with the store, shared by ADD, CHECK and the agent: hold (or
 * take) a subnet lease, make the VTEP, the local bridge and the masquerade table right, and
 * install exactly the live peers. Store work comes before any kernel change, so an unreachable
 * store (code 11) never leaves a half-configured host.
 */
import { hostname } from 'node:os';
import type { Logger } from '../../shared/cni/log.ts';
import { ipBatch } from '../../shared/kernel/ip.ts';
import { setSysctls } from '../../shared/kernel/sysctl.ts';
import { withLock } from '../../shared/flock.ts';
import { trace } from '../../shared/cni/trace.ts';
import type { Settings } from './config.ts';
import { applyMasq, applyPeers, masqInPlace, gatewayOf, mtuOf, planPeers, planVtep, readHost, underlayOf, type Underlay } from './host.ts';
import { acquireLease, saveLease, vtepMacFor } from './lease.ts';
import { planBridge } from './hostbridge.ts';
import { withDeadline, type Lease, type Store } from './store.ts';

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

export async function converge(s: Settings, store: Store, log: Logger, opts: { masq?: boolean } = {}): Promise<Converged> {
  return withLock(s.stateDir, async () => {
    const t0 = performance.now();
    const st = await readHost(s);
    const t1 = performance.now();
    const u = underlayOf(s, st);
    const me = { publicIP: u.ip, vtepMAC: vtepMacFor(u.ip, s.vni), hostname: hostname() };
    const { lease, leases } = await withDeadline('lease', STORE_DEADLINE_MS, async () => {
      const leases = await store.list();
      return { lease: await acquireLease(store, s, me, leases), leases };
    });
    saveLease(s, lease);
    const t2 = performance.now();
    trace(`overlay: host read ${(t1 - t0).toFixed(1)} ms, store ${(t2 - t1).toFixed(1)} ms`);
    const mtu = mtuOf(s, u);
    const vtep = planVtep(s, u, lease, st);
    const br = st.links.find((l) => l.ifname === s.bridge);
    const gw = gatewayOf(lease.subnet);
    const hasGw = !!br?.addr_info?.some((a) => a.local === gw);
    await ipBatch([...vtep.cmds, ...planBridge(s, lease.subnet, mtu, !!br, hasGw)]);
    const plan = planPeers(s, lease, leases, st, vtep.recreated);
    await applyPeers(plan);
    if (plan.added.length || plan.removed.length) log.info(`peers: added ${plan.added.join(' ') || '-'}; removed ${plan.removed.join(' ') || '-'}`);
    if (vtep.recreated) log.info(`VTEP ${s.vxlan} created: vni ${s.vni} local ${u.ip} dev ${u.dev} mtu ${mtu} subnet ${lease.subnet}`);
    await setSysctls({ 'net.ipv4.ip_forward': '1' });
    if ((opts.masq !== false || vtep.recreated) && !masqInPlace(s, lease, st)) await applyMasq(s, lease);
    log.debug(`converge: host read ${(t1 - t0).toFixed(1)} ms, store ${(t2 - t1).toFixed(1)} ms, kernel ${(performance.now() - t2).toFixed(1)} ms`);
    const peers = leases.filter((l) => l.subnet !== lease.subnet && l.publicIP !== lease.publicIP);
    return { lease, underlay: u, mtu, peers, added: plan.added, removed: plan.removed, vtepRecreated: vtep.recreated };
  }, 'host.lock');
}
