/**
 * overlay: a VXLAN pod network spanning hosts. Each host leases a subnet of the cluster
 * network from a shared store (etcd or a JSON file), owns one VXLAN device, and routes every
 * other host's subnet to that host's VTEP. Pods attach to a local bridge in the host subnet.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import { requireNetns } from '../../shared/kernel/netns.ts';
import { trace } from '../../shared/trace.ts';
import schema from '../../conf/schemas/overlay.schema.json' with { type: 'json' };
import { settingsOf, type OverlayConf, type Settings } from '../../shared/overlay/config.ts';
import { converge, STORE_DEADLINE_MS } from '../../shared/overlay/converge.ts';
import { checkEncryption } from '../../shared/overlay/encryption.ts';
import { hostDrift, mtuOf, readHost, underlayOf } from '../../shared/overlay/host.ts';
import { cachedLease, isHostSubnet, podsOn, subnetCount } from '../../shared/overlay/lease.ts';
import { delegateBridge } from './attach.ts';
import { listLeases, openStore, withDeadline, type Store } from '../../shared/overlay/store.ts';

async function withStore<T>(s: Settings, body: (store: Store) => Promise<T>, log?: Request<OverlayConf>['log']): Promise<T> {
  const t0 = performance.now();
  const store = await withDeadline('connect', STORE_DEADLINE_MS, () => openStore(s.store, s.name));
  log?.debug(`store client (${s.store.type}) ready in ${(performance.now() - t0).toFixed(1)} ms`);
  trace(`overlay: ${s.store.type} store client ready`);
  try {
    return await body(store);
  } finally {
    await store.close().catch(() => undefined);
  }
}

async function prepare(req: Request<OverlayConf>): Promise<Settings> {
  const s = settingsOf(req.config);
  await checkEncryption(s.encryption);
  return s;
}

export default definePlugin<OverlayConf>({
  name: 'overlay',
  about: 'VXLAN pod network across hosts; per-host subnets leased from etcd or a file store',
  schema,
  validateConfig(config) {
    settingsOf(config);
  },

  async add(req) {
    const s = await prepare(req);
    requireNetns(req.env.netns);
    const c = await withStore(s, (store) => converge(s, store, req.log), req.log);
    return (await delegateBridge('ADD', req, s, c.lease.subnet, c.mtu)) ?? {};
  },

  async del(req) {
    // Pod only, never the store: works while etcd is down, repeated, or with CNI_NETNS empty.
    const s = settingsOf(req.config);
    const lease = cachedLease(s);
    if (!lease) return; // this host never attached a pod to this network
    await delegateBridge('DEL', req, s, lease.subnet, s.mtu ?? 0);
  },

  async check(req) {
    // Verifies, never creates: a host without this network set up fails before any store or
    // kernel change; a set-up host renews its lease and reconciles peers only.
    const s = await prepare(req);
    const cached = cachedLease(s);
    if (!cached)
      throw new CniError(
        ErrorCode.UnknownContainer,
        `overlay: network ${s.name} is not set up on this host`,
        `no subnet lease in ${s.stateDir}: this host never attached a pod to it`,
      );
    const st = await readHost(s);
    const u = underlayOf(s, st);
    if (!st.links.some((l) => l.ifname === s.vxlan || l.ifname === s.bridge)) {
      throw new CniError(
        ErrorCode.UnknownContainer,
        `overlay: network ${s.name} is not set up on this host`,
        `neither ${s.vxlan} nor ${s.bridge} exists`,
      );
    }
    const drift = hostDrift(s, u, cached, st);
    if (drift.length) throw new CniError(ErrorCode.CheckMismatch, `overlay: ${drift[0]}`, drift.join('; '));
    await delegateBridge('CHECK', req, s, cached.subnet, mtuOf(s, u));
    await withStore(s, (store) => converge(s, store, req.log, { verifyOnly: cached }));
  },

  async gc(req) {
    const s = settingsOf(req.config);
    const lease = cachedLease(s);
    if (lease) await delegateBridge('GC', req, s, lease.subnet, s.mtu ?? 0);
  },

  async status(req) {
    const s = settingsOf(req.config);
    await checkEncryption(s.encryption);
    const st = await readHost(s);
    const vtepUp = st.links.some((l) => l.ifname === s.vxlan);
    let leases;
    const u = underlayOf(s, st);
    try {
      leases = await withStore(s, (store) =>
        withDeadline('list', STORE_DEADLINE_MS, () =>
          listLeases(store, { network: s.network, subnetLen: s.subnetLen, family: u.family }, req.log),
        ),
      );
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (vtepUp)
        throw new CniError(
          ErrorCode.NotAvailableLimitedConnectivity,
          'overlay store unreachable; existing pods keep the peers they had',
          why,
        );
      throw new CniError(ErrorCode.NotAvailable, 'overlay store unreachable', why);
    }
    const mine = leases.find((l) => l.publicIP === u.ip && isHostSubnet(s, l.subnet));
    const had = cachedLease(s);
    if (had && mine?.subnet !== had.subnet && (mine !== undefined || leases.some((l) => l.subnet === had.subnet))) {
      // Lost: another host holds our subnet (or we hold another one). The next ADD would refuse
      // to renumber while pods still use the old subnet.
      const pods = podsOn(s, had.subnet);
      if (pods.length)
        throw new CniError(
          ErrorCode.NotAvailable,
          `this host lost its lease of ${had.subnet} and ${pods.length} pod(s) still use it`,
          'the next ADD refuses to renumber; delete those pods first',
        );
    }
    if (mine) return;
    // No lease yet: the next ADD takes one, as long as a subnet is free.
    const taken = leases.filter((l) => isHostSubnet(s, l.subnet)).length;
    if (taken >= subnetCount(s.network, s.subnetLen)) {
      throw new CniError(
        ErrorCode.NotAvailable,
        'this host holds no subnet lease and none is free',
        had ? `its lease of ${had.subnet} expired and was taken` : `all ${taken} host subnets are leased`,
      );
    }
  },
});
