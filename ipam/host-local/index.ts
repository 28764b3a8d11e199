/**
 * host-local IPAM: addresses from configured ranges, reserved in files on this host
 * (layout compatible with the reference plugin, see store.ts). Pure logic is in range.ts and
 * config.ts; this file holds the verbs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { inProcessFlock, requestFlock, withFlock, type FlockRequest } from '../../shared/flock.ts';
import { trace, tracing } from '../../shared/trace.ts';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { IPConfig, Result } from '../../shared/cni/types.ts';
import { formatIP, parseCIDR, type IP } from '../../shared/ipnet.ts';
import schema from '../../conf/schemas/host-local.schema.json' with { type: 'json' };
import { assignRequested, parseRangeSets, requestedIPs, storeDir, type HostLocalConf } from './config.ts';
import { readResolvConf } from './dns.ts';
import { describeRangeSet, familyOfSet, freeCount, nextFree, rangeFor, rangeSetContains, type RangeSet } from './range.ts';
import { LOCK_NAME, ownedBy, parseOwner, probeCreatable, Store, type Reservation, type Reserver } from './store.ts';

/** Files of writers that died mid-way are collected by GC (and temporaries by ADD) after this long. */
const STALE_MS = 60_000;
/** Temporaries whose writer process is gone are removed by the next ADD after this long. */
const DEAD_WRITER_MS = 10_000;

function reservedValues(list: Reservation[], set: RangeSet): Set<bigint> {
  const fam = familyOfSet(set);
  return new Set(list.filter((r) => r.ip.family === fam).map((r) => r.ip.value));
}

/**
 * The store lock (flock(2) on `<store>/lock`, the reference's lock). A plugin process has
 * nothing else to do while it waits: `block` sleeps in the kernel until the holder closes the
 * file (shared/flock.ts), so the lock never sits free while a waiter's timer runs.
 */
const lockFile = (store: Store): string => path.join(store.dir, LOCK_NAME);
const requestStoreLock = (store: Store): FlockRequest => requestFlock(lockFile(store), 60, { block: true });
const storeLocked = <T>(store: Store, body: () => T): Promise<T> => withFlock(lockFile(store), async () => body(), 60, { block: true });

function ipConfig(set: RangeSet, ip: IP): IPConfig {
  const r = rangeFor(set, ip);
  if (!r) throw new CniError(ErrorCode.Internal, `${formatIP(ip)} is not in range set ${describeRangeSet(set)}`);
  return { address: `${formatIP(ip)}/${r.subnet.prefix}`, gateway: formatIP(r.gateway) };
}

/**
 * Reserve one address per range set for the attachment, or return the ones it already holds.
 * The store is read before the lock is taken (a runtime never runs two operations on one
 * attachment at once, and an address reserved meanwhile by someone else only makes a link
 * fail with EEXIST, after which the next one is tried), so the lock covers just the round
 * robin cursor and the links.
 */
async function allocate(req: Request<HostLocalConf>, sets: RangeSet[], store: Store): Promise<IPConfig[]> {
  const { containerId, ifname } = req.env;
  const wanted = assignRequested(sets, requestedIPs(req.config, req.env.args));
  // The flock(1) helper (process fallback) starts while we read the store and write the
  // reservation files. In-process flock(2) (Bun) takes a free lock at once, so it is asked for
  // after them: the lock is then not held across their fsync (shorter waits for concurrent ADDs).
  let lock = inProcessFlock() ? undefined : requestStoreLock(store);
  let asked = performance.now();
  let entered = asked;
  let released = asked;
  let isReleased = false;
  let cpuAt: NodeJS.CpuUsage | undefined;
  let reserver: Reserver | undefined;
  try {
    const snapshot = store.list();
    const mine = snapshot.filter((r) => ownedBy(r, containerId, ifname, true));
    const held = sets.map((set, idx) => {
      const h = mine.find((r) => rangeSetContains(set, r.ip));
      const want = wanted.get(idx);
      if (h && want && want.ip.value !== h.ip.value) {
        throw new CniError(
          ErrorCode.Conflict,
          `${containerId}/${ifname} already holds ${h.name} in range set ${idx}; requested ${formatIP(want.ip)} (${want.source})`,
          'DEL the attachment first',
        );
      }
      return h;
    });
    if (held.every(Boolean)) {
      req.log.info(`${containerId}/${ifname} already holds ${held.map((h) => h?.name).join(', ')}; returning them`);
      return sets.map((set, idx) => ipConfig(set, (held[idx] as Reservation).ip));
    }
    const res = (reserver = store.reserver(containerId, ifname, held.filter((h) => !h).length));
    // What the snapshot says is taken, per range set: worked out before the lock, which then
    // covers only the cursor reads, the links and the cursor writes (everyone else waits).
    const seen = sets.map((set, idx) => (held[idx] || wanted.has(idx) ? undefined : reservedValues(snapshot, set)));
    // The next address by the cursor as it is now: under the lock it is taken as is when the
    // cursor has not moved meanwhile (else worked out again, by code that has now run once).
    const guess = sets.map((set, idx) => {
      const r = seen[idx];
      if (!r) return undefined;
      const last = store.lastReserved(idx);
      return { last: last?.value, next: nextFree(set, r, last) };
    });
    if (!lock) {
      lock = requestStoreLock(store);
      asked = entered = performance.now();
    }
    await lock.granted;
    entered = performance.now();
    // with CNI_TS_TRACE: the CPU time spent holding the lock (getrusage; wall time includes preemption)
    if (tracing()) cpuAt = process.cpuUsage();
    const taken: string[] = [];
    let chosen: IP[];
    try {
      chosen = sets.map((set, idx) => {
        const h = held[idx];
        if (h) return h.ip;
        const want = wanted.get(idx);
        if (want) {
          if (!res.reserve(want.ip)) {
            const owner = store.ownerOf(want.ip);
            throw new CniError(
              ErrorCode.Conflict,
              `requested address ${formatIP(want.ip)} is already allocated${owner ? ` to ${owner.containerId}` : ''}`,
              want.source,
            );
          }
          taken.push(formatIP(want.ip));
          store.setLastReserved(idx, want.ip);
          return want.ip;
        }
        let reserved = seen[idx] as Set<bigint>;
        let fresh = false;
        let last = store.lastReserved(idx);
        const g = guess[idx];
        let next = g && g.last === last?.value ? g.next : nextFree(set, reserved, last);
        for (; ; next = nextFree(set, reserved, last)) {
          if (!next) {
            // The snapshot may be older than a release: look again before giving up.
            if (!fresh) {
              reserved = reservedValues(store.list(), set);
              fresh = true;
              continue;
            }
            throw new CniError(
              ErrorCode.PoolExhausted,
              `no IP addresses available in range set ${idx}: ${describeRangeSet(set)}`,
              `network ${req.config.name}`,
            );
          }
          if (res.reserve(next.ip)) {
            taken.push(formatIP(next.ip));
            store.setLastReserved(idx, next.ip);
            return next.ip;
          }
          // Reserved since the snapshot: move on.
          reserved.add(next.ip.value);
          last = next.ip;
        }
      });
    } catch (e) {
      for (const name of taken) store.release(name);
      throw e;
    }
    await lock.release();
    released = performance.now();
    if (cpuAt) cpuAt = process.cpuUsage(cpuAt);
    isReleased = true;
    trace('host-local: store lock released');
    return sets.map((set, idx) => ipConfig(set, chosen[idx]));
  } finally {
    if (!isReleased) {
      await lock?.release();
      released = performance.now();
      trace('host-local: store lock released');
    }
    reserver?.close();
    if (entered !== asked) {
      const cpu = cpuAt && isReleased ? `, ${((cpuAt.user + cpuAt.system) / 1000).toFixed(2)} ms CPU` : '';
      const figures = `waited ${(entered - asked).toFixed(1)} ms, held ${(released - entered).toFixed(1)} ms${cpu}`;
      trace(`host-local: store lock ${figures}`);
      req.log.debug(`store lock: ${figures}`);
    }
  }
}

function openStore(req: Request<HostLocalConf>, create: boolean): Store | undefined {
  return Store.open(storeDir(req.config), create);
}

export default definePlugin<HostLocalConf>({
  name: 'host-local',
  about: 'IPAM: addresses from configured ranges, reserved in files on this host',
  schema,
  validateConfig(config, req) {
    storeDir(config);
    // DEL and GC need only the store location, so they work even if the ranges changed.
    if (req.env.command === 'ADD' || req.env.command === 'CHECK' || req.env.command === 'STATUS') {
      parseRangeSets(config, req.version);
    }
    if (req.env.command === 'ADD') requestedIPs(config, req.env.args);
  },

  async add(req) {
    const sets = parseRangeSets(req.config, req.version);
    const dns = req.config.ipam.resolvConf ? readResolvConf(req.config.ipam.resolvConf) : undefined;
    const store = openStore(req, true) as Store;
    let ips: IPConfig[];
    try {
      ips = await allocate(req, sets, store);
    } finally {
      const cleaned = store.cleanTemporaries(STALE_MS, DEAD_WRITER_MS);
      if (cleaned.length) req.log.info(`removed temporaries of killed writers: ${cleaned.join(', ')}`);
    }
    const result: Result = { ips };
    if (req.config.ipam.routes?.length) result.routes = req.config.ipam.routes.map((r) => ({ ...r }));
    if (dns && Object.keys(dns).length) result.dns = dns;
    return result;
  },

  async del(req) {
    const store = openStore(req, false);
    if (!store) return;
    const { containerId, ifname } = req.env;
    const ours = (list: Reservation[]): Reservation[] => {
      const mine = list.filter((r) => ownedBy(r, containerId, ifname));
      // Files of old reference versions hold the container ID only.
      return mine.length ? mine : list.filter((r) => r.owner?.containerId === containerId && r.owner.ifname === undefined);
    };
    // Nothing of this attachment (a repeated DEL): done without taking the lock.
    const found = ours(store.list());
    if (found.length === 0) return;
    // Under the lock only the files found are read again, not the whole store (a DEL holds
    // the lock for its own few files): still this attachment's? A file released meanwhile (GC)
    // and reserved again by someone else names another owner and stays.
    const stillOurs = (r: Reservation): boolean => {
      let owner;
      try {
        owner = parseOwner(readFileSync(path.join(store.dir, r.name), 'utf8'));
      } catch {
        return false;
      }
      return owner?.containerId === r.owner?.containerId && owner?.ifname === r.owner?.ifname;
    };
    await storeLocked(store, () => {
      const mine = found.filter(stillOurs);
      for (const r of mine) store.release(r.name);
      if (mine.length) req.log.info(`released ${mine.map((r) => r.name).join(', ')} of ${containerId}/${ifname}`);
    });
  },

  async check(req) {
    const sets = parseRangeSets(req.config, req.version);
    const { containerId, ifname } = req.env;
    const store = openStore(req, false);
    const mine = store ? store.list().filter((r) => ownedBy(r, containerId, ifname, true)) : [];
    if (mine.length === 0) {
      throw new CniError(
        ErrorCode.CheckMismatch,
        `host-local: no address is reserved for ${containerId}/${ifname} in network ${req.config.name}`,
      );
    }
    for (const ipc of req.prevResult?.ips ?? []) {
      const n = parseCIDR(ipc.address);
      if (!n || !sets.some((s) => rangeSetContains(s, n))) continue;
      if (!mine.some((r) => r.ip.family === n.family && r.ip.value === n.value)) {
        throw new CniError(
          ErrorCode.CheckMismatch,
          `host-local: ${ipc.address} of prevResult is not reserved for ${containerId}/${ifname}`,
          `reserved: ${mine.map((r) => r.name).join(', ')}`,
        );
      }
    }
  },

  async gc(req) {
    const store = openStore(req, false);
    if (!store) return;
    const valid = new Set(req.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
    const validIds = new Set(req.validAttachments.map((a) => a.containerID));
    await storeLocked(store, () => {
      const released: string[] = [];
      for (const r of store.list()) {
        const keep = r.owner
          ? r.owner.ifname === undefined
            ? validIds.has(r.owner.containerId)
            : valid.has(`${r.owner.containerId}\0${r.owner.ifname}`)
          : store.ageMs(r.name) < STALE_MS;
        if (keep) continue;
        store.release(r.name);
        released.push(r.name);
      }
      for (const tmp of store.staleTemporaries(STALE_MS)) store.discard(tmp);
      if (released.length) req.log.info(`GC released ${released.join(', ')}`);
    });
  },

  async status(req) {
    const sets = parseRangeSets(req.config, req.version);
    // STATUS creates nothing: an existing store is probed by writing a file in it; a store not
    // made yet only needs its nearest existing parent to be a writable directory.
    let store: Store | undefined;
    try {
      store = openStore(req, false);
      if (store) store.probe();
      else probeCreatable(storeDir(req.config));
    } catch (e) {
      if (e instanceof CniError && e.code === ErrorCode.InvalidConfig) throw e;
      throw new CniError(
        ErrorCode.NotAvailable,
        `host-local: the address store of network ${req.config.name} is not usable`,
        (e as Error).message,
      );
    }
    const list = store ? store.list() : [];
    sets.forEach((set, idx) => {
      if (freeCount(set, reservedValues(list, set)) <= 0n) {
        throw new CniError(
          ErrorCode.NotAvailable,
          `host-local: range set ${idx} is exhausted: ${describeRangeSet(set)}`,
          `network ${req.config.name}`,
        );
      }
    });
  },
});
