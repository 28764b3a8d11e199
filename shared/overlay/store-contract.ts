/**
 * The contract of the overlay's lease store (what store.ts implements over the cluster store and
 * every caller holds): leases, raw records, store errors and keys. lease.ts, lease-parse.ts and
 * legacy.ts import this, and store.ts imports them, so no module imports its own importer.
 */
import { CniError, ErrorCode } from '../cni/errors.ts';

/** A lease record as a store holds it: the subnet its key names, and the stored value (JSON text or an object). */
export interface RawLease {
  subnet: string;
  value: unknown;
  /** set by a store that already knows the record is unusable (e.g. the file store's `expires`) */
  invalid?: string;
}

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
  /**
   * Call `onChange` when leases of this network change or one of them expires (may also call
   * spuriously). Returns a stop function.
   */
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

/** Key-safe form of a subnet: 10.244.3.0/24 -> 10.244.3.0-24 (flannel spells it the same way). */
export const subnetKey = (subnet: string): string => subnet.replace('/', '-');
export const subnetFromKey = (key: string): string => key.replace(/-(\d+)$/, '/$1');
