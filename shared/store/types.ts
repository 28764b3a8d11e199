/**
 * The cluster store contract (see ../shared/design/node-agent.md): Kubernetes-shaped objects
 * under keys `<prefix>/<kind>/<namespace>/<name>` (cluster-scoped kinds use namespace "").
 * Two backends pass one contract test suite: a file backend (the embedded default for one host,
 * safe with many writers: plugin processes, cnictl, the agent) and etcd (a cluster).
 *
 * Every write is compare-and-swap on a revision; watches resume from a revision. Revisions are
 * store-wide and increase with every write (etcd's mod_revision; the file backend keeps a
 * counter), so "everything after revision R" is well defined for both.
 */
import type { CniObject, Kind } from '../objects/types.ts';

/** A stored object with the revision of its last write. */
export interface Stored<T extends CniObject = CniObject> {
  object: T;
  /** store revision of the write that produced this version */
  revision: number;
}

export interface ObjectRef {
  kind: Kind;
  /** "" for cluster-scoped kinds (Namespace, AdminNetworkPolicy, BaselineAdminNetworkPolicy) */
  namespace: string;
  name: string;
}

export type WatchEvent =
  | { type: 'put'; ref: ObjectRef; object: CniObject; revision: number }
  | { type: 'delete'; ref: ObjectRef; revision: number }
  /**
   * The watch could not resume from the revision asked for (the file backend's event log or
   * etcd's compacted history no longer reaches back that far, or a reconnect lost the place):
   * `items` is the whole current state of the watched kinds at `revision`. Replace what you
   * hold with it (objects you hold that are not in `items` were deleted); events strictly
   * after `revision` follow.
   */
  | { type: 'resync'; revision: number; items: Stored[] };

export interface PutOptions {
  /**
   * Compare-and-swap: 0 = create only if absent; N = replace only if the stored revision is N;
   * undefined = unconditional upsert.
   */
  expectRevision?: number;
}

/** Thrown by put/delete when `expectRevision` does not match (the caller re-reads and retries). */
export class ConflictError extends Error {
  constructor(
    readonly ref: ObjectRef,
    readonly actual: number,
  ) {
    super(`${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}: revision is ${actual}`);
  }
}

/** Thrown when the backend cannot be reached or read now (plugins map it to CNI code 11). */
export class StoreUnavailableError extends Error {}

/**
 * Objects the store returns (get, list, watch) are frozen: a backend may hand the same object
 * to several callers (the file backend keeps what it decoded). Copy before changing.
 */
export interface ObjectStore {
  get<T extends CniObject = CniObject>(ref: ObjectRef): Promise<Stored<T> | undefined>;
  /** Write; returns the new revision. */
  put(object: CniObject, opts?: PutOptions): Promise<number>;
  /** Delete; false when absent. `expectRevision` as for put (0 is not meaningful). */
  delete(ref: ObjectRef, opts?: PutOptions): Promise<boolean>;
  /** Every object of a kind (optionally one namespace), and the store revision they were read at. */
  list<T extends CniObject = CniObject>(kind: Kind, namespace?: string): Promise<{ items: Stored<T>[]; revision: number }>;
  /**
   * Events for `kinds` (all when omitted) strictly after `fromRevision`, in revision order.
   * A caller that lists at revision R and watches from R misses nothing: every change after R
   * reaches it. Treat a `put` as "this object is now X, as of revision N": a backend may
   * coalesce several writes of one object that land between two of its reads into the last
   * one (the file backend does; etcd delivers each), and may deliver an event again after a
   * reconnect. When it cannot resume from `fromRevision` it sends one `resync` (full state)
   * and continues from there. Returns a stop function.
   */
  watch(onEvent: (e: WatchEvent) => void, opts: { fromRevision: number; kinds?: Kind[] }): Promise<() => void>;
  close(): Promise<void>;
}

/** Same shape as the overlay plugin's `store` key, and the agent config's `store`. */
export type StoreConfig =
  | { type: 'file'; path: string }
  | {
      type: 'etcd';
      endpoints: string[];
      prefix?: string;
      /** TLS: file paths */
      caFile?: string;
      certFile?: string;
      keyFile?: string;
      username?: string;
      password?: string;
    };
