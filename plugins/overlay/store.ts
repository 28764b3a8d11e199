/**
 * Where hosts publish their subnet leases. Two backends behind one contract (the same tests run
 * against both): etcd for a cluster, a JSON file for one host or a shared filesystem.
 * A lease is created only when its subnet is free (atomic create-if-absent), renewed only by
 * its holder, and disappears once its TTL passes without renewal.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import type { Logger } from '../../shared/cni/log.ts';
import type { StoreConf } from './config.ts';
import { validLeases, type LeaseContext, type RawLease } from './lease-parse.ts';

export type { RawLease } from './lease-parse.ts';

export interface Lease {
  /** the host subnet, CIDR: "10.244.3.0/24" */
  subnet: string;
  /** the host's underlay address, where peers send its VXLAN packets */
  publicIP: string;
  /** the MAC of the host's VTEP */
  vtepMAC: string;
  hostname?: string;
}

export interface Store {
  /**
   * Every live (unexpired) lease record, as stored: untrusted input from other hosts. Read
   * leases through `listLeases`, which validates every field (lease-parse.ts).
   */
  list(): Promise<RawLease[]>;
  /** Create the lease if its subnet is free; false when someone holds it. */
  create(lease: Lease, ttlSeconds: number): Promise<boolean>;
  /**
   * Extend a lease this host holds (same subnet and publicIP) and update its other fields;
   * false when the subnet is no longer held by this host.
   */
  renew(lease: Lease, ttlSeconds: number): Promise<boolean>;
  /** Give a subnet up; only the holder (publicIP) can. */
  release(subnet: string, publicIP: string): Promise<void>;
  /** Call `onChange` when leases change (may also call spuriously). Returns a stop function. */
  watch(onChange: () => void): Promise<() => void>;
  close(): Promise<void>;
}

/** Store errors that mean "not reachable now": code 11, the runtime may retry. */
export function unavailable(what: string, err: unknown): CniError {
  if (err instanceof CniError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new CniError(ErrorCode.TryAgainLater, `overlay store unavailable: ${what}`, msg.split('\n')[0] ?? '');
}

/** Run a store operation with a deadline; failures and timeouts become code 11. */
export async function withDeadline<T>(what: string, ms: number, op: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      op(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } catch (e) {
    throw unavailable(what, e);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export async function openStore(conf: StoreConf, opts: { persistent?: boolean } = {}): Promise<Store> {
  if (conf.type === 'file') return new (await import('./store-file.ts')).FileStore(conf.path);
  return new (await import('./store-etcd.ts')).EtcdStore(conf.endpoints, conf.prefix, opts.persistent ?? false);
}

/** Key-safe form of a subnet: 10.244.3.0/24 -> 10.244.3.0-24 (flannel spells it the same way). */
export const subnetKey = (subnet: string): string => subnet.replace('/', '-');
export const subnetFromKey = (key: string): string => key.replace(/-(\d+)$/, '/$1');

/** The valid live leases of a store; invalid records are skipped and logged (once per content). */
export async function listLeases(store: Store, ctx: LeaseContext, log?: Logger): Promise<Lease[]> {
  return validLeases(await store.list(), ctx, log);
}
