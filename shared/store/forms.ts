/**
 * Forms of stored objects every backend and caller shares: references, the stored form, the
 * revision stamp, freezing, the kinds. The backends import this (not index.ts, which opens
 * them), so the store has no import cycle.
 */
import { isClusterScoped, type CniObject, type Kind } from '../objects/types.ts';
import type { ObjectRef, Stored } from './types.ts';

/**
 * The reference of an object: its kind, namespace and name. A namespaced object without a
 * namespace is in "default" (as kubectl does); cluster-scoped kinds have namespace "".
 */
export function refOf(object: CniObject): ObjectRef {
  const kind = object.kind;
  return { kind, namespace: isClusterScoped(kind) ? '' : object.metadata.namespace || 'default', name: object.metadata.name };
}

/** "Kind ns/name" (or "Kind name" for cluster-scoped kinds), for messages. */
export function refString(ref: ObjectRef): string {
  return `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
}

/**
 * The stored form of an object: namespace filled in (or dropped for cluster-scoped kinds),
 * resourceVersion removed (the store sets it on read).
 */
export function storedForm(object: CniObject): CniObject {
  const ref = refOf(object);
  if (!ref.name || typeof ref.name !== 'string') throw new Error(`${object.kind}: metadata.name is required`);
  const metadata = { ...object.metadata };
  delete metadata.resourceVersion;
  if (ref.namespace) metadata.namespace = ref.namespace;
  else delete metadata.namespace;
  return { ...object, metadata } as CniObject;
}

/**
 * The object as read: metadata.resourceVersion is the revision of its last write; frozen, as
 * every object the store hands out (copy what you change: `{...o, metadata: {...}}`).
 */
export function withRevision<T extends CniObject>(object: T, revision: number): Stored<T> {
  return deepFreeze({ object: { ...object, metadata: { ...object.metadata, resourceVersion: String(revision) } }, revision });
}

/** Freeze an object and everything in it (objects the store hands out are shared and read-only). */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export const ALL_KINDS: readonly Kind[] = [
  'Namespace',
  'NetworkPolicy',
  'AdminNetworkPolicy',
  'BaselineAdminNetworkPolicy',
  'Service',
  'EndpointSlice',
  'Endpoint',
  'SubnetLease',
  'BackendHealth',
  'DockerNetwork',
  'DockerEndpoint',
  'DockerPool',
];
