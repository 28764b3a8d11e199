/**
 * Where hosts publish their subnet leases: `SubnetLease` objects of the cluster store
 * (shared/store: the file backend for one host or a shared filesystem, etcd for a cluster), so
 * the overlay, the agent and `cnictl get leases` share one store implementation.
 *
 * One object per leased subnet, cluster-scoped, named `<network>.<10.244.3.0-24>`, with `spec`
 * {network, subnet, publicIP, vtepMAC, hostname?, expires (RFC 3339)}. A claim is
 * compare-and-swap on the revision the claimer read: create-if-absent, or replace an expired
 * lease only if nobody wrote it since, so two hosts never get one subnet. A lease is renewed
 * only by its holder (same publicIP, CAS again) and counts as free once `expires` has passed.
 * Everything read goes through lease-parse.ts: store content comes from other hosts.
 *
 * The overlay `store` key keeps its shape; `storeLayoutOf` maps it onto the cluster store's
 * StoreConfig (docs/overlay.md "Store"), and the previous version's leases (its JSON file, its
 * etcd keys `<prefix>/subnets/*`) are read alongside (legacy.ts) until they expire or their
 * holder renews into the new layout.
 */
import { existsSync, statSync } from 'node:fs';
import type { Logger } from '../cni/log.ts';
import type { SubnetLease } from '../objects/types.ts';
import {
  ConflictError,
  openStore as openObjectStore,
  type ObjectRef,
  type ObjectStore,
  type StoreConfig,
  type Stored,
} from '../store/index.ts';
import { DEFAULTS, type StoreConf } from './config.ts';
import { LegacyEtcd, LegacyFile, MAX_TTL_MS, type LegacySource, type RawRange } from './legacy.ts';
import { parseLease, printable, validLeases, type LeaseContext } from './lease-parse.ts';
import { subnetFromKey, subnetKey, type Lease, type RawLease, type Store } from './store-contract.ts';

export * from './store-contract.ts';

export const LEASE_KIND = 'SubnetLease';

/** Where the leases of an overlay `store` key live: the cluster store, and the previous version's layout to read as well. */
export interface LeaseStoreLayout {
  config: StoreConfig;
  legacy?: { type: 'file'; path: string } | { type: 'etcd'; dir: string };
}

/** Whether a file store `path` names the previous version's JSON lease file (rather than a store directory). */
export function isLegacyFilePath(p: string): boolean {
  try {
    if (existsSync(p)) return !statSync(p).isDirectory();
  } catch {
    /* unreadable: decided by the name */
  }
  return p.endsWith('.json');
}

/**
 * The overlay `store` key as the cluster store's StoreConfig:
 * - `{"type":"file","path":DIR}` → the file store in DIR (the agent's own store when it is the same DIR);
 * - `{"type":"file","path":"…/leases.json"}` (an existing file, or a path ending in .json that is no directory: the
 *   previous version's lease file) → the file store in `…/leases.json.d/`, the file read as legacy;
 * - `{"type":"etcd","endpoints":E,"prefix":P}` → etcd E, objects under P (default `/cni-ts`, the
 *   agent's default), the previous version's keys `P/subnets/*` (default `/cni-ts/overlay/subnets/*`) read as legacy.
 */
export function storeLayoutOf(conf: StoreConf): LeaseStoreLayout {
  if (conf.type === 'etcd') {
    const legacyPrefix = (conf.prefix ?? DEFAULTS.etcdPrefix).replace(/\/+$/, '');
    return {
      config: { type: 'etcd', endpoints: conf.endpoints, ...(conf.prefix !== undefined ? { prefix: conf.prefix } : {}) },
      legacy: { type: 'etcd', dir: `${legacyPrefix}/subnets/` },
    };
  }
  if (isLegacyFilePath(conf.path)) return { config: { type: 'file', path: `${conf.path}.d` }, legacy: { type: 'file', path: conf.path } };
  return { config: { type: 'file', path: conf.path } };
}

/** The object name of a network's lease of `subnet`. */
export const leaseName = (network: string, subnet: string): string => `${network}.${subnetKey(subnet)}`;

/** `expires` (RFC 3339 text) in ms, or why it is unusable (such a lease counts as expired). */
function expiresOf(x: unknown, now: number): number | string {
  if (typeof x !== 'string' || x.length > 40) return `expires ${printable(x, 40)} is not a timestamp`;
  const ms = Date.parse(x);
  if (!Number.isFinite(ms) || ms <= 0) return `expires ${printable(x, 40)} is not a timestamp`;
  if (ms > now + MAX_TTL_MS) return `expires ${x} is further away than the longest lease TTL`;
  return ms;
}

/** The validated lease of a raw record, when it is one. */
function held(raw: RawLease): Lease | undefined {
  const p = parseLease(raw);
  return p.ok ? p.lease : undefined;
}

const sameFields = (a: Lease, b: Lease): boolean =>
  a.subnet === b.subnet && a.publicIP === b.publicIP && a.vtepMAC === b.vtepMAC && (a.hostname ?? '') === (b.hostname ?? '');

interface Read {
  raw: RawLease;
  /** unexpired (an unusable `expires` is expired) */
  live: boolean;
  expiresMs: number;
}

/** The leases of one overlay network in the cluster store (and, read-only, in the previous layout). */
export class ClusterLeaseStore implements Store {
  private readonly prefix: string;
  constructor(
    readonly objects: ObjectStore,
    readonly network: string,
    private readonly legacy?: LegacySource,
    private readonly ownsObjects = true,
  ) {
    this.prefix = `${network}.`;
  }

  private ref(subnet: string): ObjectRef {
    return { kind: LEASE_KIND, namespace: '', name: leaseName(this.network, subnet) };
  }

  /** A stored object as a raw record for the parser, with its expiry. */
  private read(s: Stored<SubnetLease>, now: number): Read {
    const o = s.object;
    const spec = (o.spec ?? {}) as unknown as Record<string, unknown>;
    const name = o.metadata.name;
    const subnet = name.startsWith(this.prefix) ? subnetFromKey(name.slice(this.prefix.length)) : name;
    let text: string;
    try {
      text = JSON.stringify(spec);
    } catch {
      text = '';
    }
    const raw: RawLease = { subnet, value: text };
    const exp = expiresOf(spec.expires, now);
    if (typeof exp === 'string') raw.invalid = exp;
    else if (!name.startsWith(this.prefix)) raw.invalid = `object name ${printable(name, 80)} is not "${this.prefix}<subnet>"`;
    return { raw, live: typeof exp === 'number' && exp > now, expiresMs: typeof exp === 'number' ? exp : 0 };
  }

  /** This network's lease objects (spec.network names it). */
  private async mine(): Promise<Stored<SubnetLease>[]> {
    const { items } = await this.objects.list<SubnetLease>(LEASE_KIND);
    return items.filter((s) => (s.object.spec as { network?: unknown } | undefined)?.network === this.network);
  }

  async list(): Promise<RawLease[]> {
    const now = Date.now();
    const [objs, legacy] = await Promise.all([this.mine(), this.legacy ? this.legacy.records() : []]);
    const out: RawLease[] = [];
    const subnets = new Set<string>();
    const holders = new Set<string>();
    for (const s of objs) {
      const r = this.read(s, now);
      subnets.add(r.raw.subnet);
      if (r.raw.invalid) out.push(r.raw);
      else if (r.live) {
        out.push(r.raw);
        const l = held(r.raw);
        if (l) holders.add(l.publicIP);
      }
    }
    // The previous layout: a subnet the cluster store has an object for, or a host that holds a
    // live lease there, has moved on (its record only waits for its etcd TTL or file expiry).
    for (const l of legacy) {
      if (subnets.has(l.raw.subnet)) continue;
      if (l.raw.invalid) out.push(l.raw);
      else if (l.live && !holders.has(held(l.raw)?.publicIP ?? '')) out.push(l.raw);
    }
    return out;
  }

  private objectOf(lease: Lease, ttl: number): SubnetLease {
    return {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'SubnetLease',
      metadata: { name: leaseName(this.network, lease.subnet) },
      spec: {
        network: this.network,
        subnet: lease.subnet,
        publicIP: lease.publicIP,
        vtepMAC: lease.vtepMAC,
        ...(lease.hostname ? { hostname: lease.hostname } : {}),
        expires: new Date(Date.now() + ttl * 1000).toISOString(),
      },
    };
  }

  /** Compare-and-swap write; false when someone else wrote first. */
  private async write(lease: Lease, ttl: number, expectRevision: number): Promise<boolean> {
    try {
      await this.objects.put(this.objectOf(lease, ttl), { expectRevision });
      return true;
    } catch (e) {
      if (e instanceof ConflictError) return false;
      throw e;
    }
  }

  /** The previous layout's live record of `subnet`, if any. */
  private async legacyRecord(subnet: string): Promise<RawLease | undefined> {
    if (!this.legacy) return undefined;
    return (await this.legacy.records()).find((r) => r.live && r.raw.subnet === subnet)?.raw;
  }

  async create(lease: Lease, ttl: number): Promise<boolean> {
    const cur = await this.objects.get<SubnetLease>(this.ref(lease.subnet));
    if (cur) {
      if (this.read(cur, Date.now()).live) return false;
      return this.write(lease, ttl, cur.revision); // expired: replace it, unless someone did first
    }
    const old = await this.legacyRecord(lease.subnet);
    if (old && held(old)?.publicIP !== lease.publicIP) return false; // held by a host of the previous layout
    return this.write(lease, ttl, 0);
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    const cur = await this.objects.get<SubnetLease>(this.ref(lease.subnet));
    if (!cur) {
      // This host's lease in the previous layout: carried over into the cluster store.
      const old = await this.legacyRecord(lease.subnet);
      if (!old || old.invalid || held(old)?.publicIP !== lease.publicIP) return false;
      return this.write(lease, ttl, 0);
    }
    const now = Date.now();
    const r = this.read(cur, now);
    const mine = r.raw.invalid ? undefined : held(r.raw);
    if (!r.live || mine?.publicIP !== lease.publicIP) return false;
    // Unchanged and written less than a sixth of the TTL ago: no write (every write wakes every
    // peer's watch; the agent renews at a third of the TTL at the latest).
    if (sameFields(mine, lease) && r.expiresMs - now > (ttl * 1000 * 5) / 6) return true;
    return this.write(lease, ttl, cur.revision);
  }

  async release(subnet: string, publicIP: string): Promise<void> {
    const cur = await this.objects.get<SubnetLease>(this.ref(subnet));
    if (!cur) return;
    const r = this.read(cur, Date.now());
    if (r.raw.invalid || held(r.raw)?.publicIP !== publicIP) return;
    try {
      await this.objects.delete(this.ref(subnet), { expectRevision: cur.revision });
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e; // renewed or taken meanwhile: not ours to drop
    }
  }

  /**
   * Delete this network's leases that have expired (or carry an unusable expiry), each only if
   * still at the revision read: what etcd's TTL did in the previous layout. The agent calls it
   * now and then; a holder that comes back simply claims its subnet again. Returns the subnets.
   */
  async prune(): Promise<string[]> {
    const now = Date.now();
    const gone: string[] = [];
    for (const s of await this.mine()) {
      if (this.read(s, now).live) continue;
      try {
        const ref: ObjectRef = { kind: LEASE_KIND, namespace: '', name: s.object.metadata.name };
        if (await this.objects.delete(ref, { expectRevision: s.revision })) gone.push(this.read(s, now).raw.subnet);
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e; // renewed or claimed meanwhile
      }
    }
    return gone;
  }

  async watch(onChange: () => void): Promise<() => void> {
    // The cluster store's watch for joins, leaves and renewals; a timer for the next expiry
    // (an expired lease is no event).
    const expiries = new Map<string, number>();
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const track = (s: Stored<SubnetLease>): void => {
      const r = this.read(s, Date.now());
      if (r.expiresMs) expiries.set(s.object.metadata.name, r.expiresMs);
      else expiries.delete(s.object.metadata.name);
    };
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (stopped) return;
      const now = Date.now();
      let next = Infinity;
      for (const v of expiries.values()) if (v > now && v < next) next = v;
      if (next === Infinity) return;
      timer = setTimeout(
        () => {
          onChange();
          arm();
        },
        Math.min(next - now + 50, 2 ** 31 - 1),
      );
      timer.unref?.();
    };
    const ours = (o: object): boolean => ((o as { spec?: { network?: unknown } }).spec ?? {}).network === this.network;
    const { items, revision } = await this.objects.list<SubnetLease>(LEASE_KIND);
    for (const s of items) if (ours(s.object)) track(s);
    arm();
    const stop = await this.objects.watch(
      (e) => {
        if (e.type === 'resync') {
          expiries.clear();
          for (const s of e.items as Stored<SubnetLease>[]) if (ours(s.object)) track(s);
        } else if (e.type === 'put') {
          if (!ours(e.object)) {
            if (!expiries.delete(e.ref.name)) return;
          } else track({ object: e.object as SubnetLease, revision: e.revision });
        } else if (!expiries.delete(e.ref.name) && !e.ref.name.startsWith(this.prefix)) return;
        arm();
        onChange();
      },
      { fromRevision: revision, kinds: [LEASE_KIND] },
    );
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      stop();
    };
  }

  async close(): Promise<void> {
    if (this.ownsObjects) await this.objects.close();
  }
}

/** The legacy reader for a layout over an opened cluster store. */
function legacyOf(layout: LeaseStoreLayout, objects: ObjectStore): LegacySource | undefined {
  if (layout.legacy?.type === 'file') return new LegacyFile(layout.legacy.path);
  if (layout.legacy?.type === 'etcd' && typeof (objects as Partial<RawRange>).rawRange === 'function')
    return new LegacyEtcd(objects as unknown as RawRange, layout.legacy.dir);
  return undefined;
}

/** Open the lease store of overlay network `network` from its `store` key. */
export async function openStore(conf: StoreConf, network: string, opts: { persistent?: boolean } = {}): Promise<ClusterLeaseStore> {
  const layout = storeLayoutOf(conf);
  const objects = await openObjectStore(layout.config, { persistent: opts.persistent ?? false });
  return new ClusterLeaseStore(objects, network, legacyOf(layout, objects));
}

/** The valid live leases of a store; invalid records are skipped and logged (once per content). */
export async function listLeases(store: Store, ctx: LeaseContext, log?: Logger): Promise<Lease[]> {
  return validLeases(await store.list(), ctx, log);
}
