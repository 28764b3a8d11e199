/**
 * etcd lease store. Each host subnet is one key, `<prefix>/subnets/10.244.3.0-24`, holding the
 * lease as JSON and bound to an etcd lease with the TTL, so etcd deletes it (and tells every
 * watcher) when the holder stops renewing. Creation is a transaction: put only if the key has
 * no version yet.
 */
import { Etcd3, type IKeyValue } from 'etcd3';
import { DEFAULTS } from './config.ts';
import { parseLease } from './lease-parse.ts';
import { subnetFromKey, subnetKey, type Lease, type RawLease, type Store } from './store-contract.ts';

const CALL_DEADLINE_MS = 3000;

/** The raw record under `key`: its subnet (from the key) and the stored JSON text. */
const rawOf = (key: string, value: string): RawLease => ({ subnet: subnetFromKey(key.slice(key.lastIndexOf('/') + 1)), value });

/** The held lease under `key`, syntax-checked (renew/release compare against it). */
function heldLease(key: string, value: string): Lease | undefined {
  const p = parseLease(rawOf(key, value));
  return p.ok ? p.lease : undefined;
}

const encode = (l: Lease): string =>
  JSON.stringify({ publicIP: l.publicIP, vtepMAC: l.vtepMAC, ...(l.hostname ? { hostname: l.hostname } : {}) });

export class EtcdStore implements Store {
  private readonly client: Etcd3;
  private readonly dir: string;
  constructor(endpoints: string[], prefix: string = DEFAULTS.etcdPrefix, persistent = false) {
    this.dir = `${prefix.replace(/\/+$/, '')}/subnets/`;
    this.client = new Etcd3({
      hosts: endpoints,
      dialTimeout: 2000,
      // A plugin call must fail fast (code 11); the agent retries on its own schedule.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + (persistent ? 5000 : CALL_DEADLINE_MS) }),
    });
  }

  private key(subnet: string): string {
    return this.dir + subnetKey(subnet);
  }

  async list(): Promise<RawLease[]> {
    const all = await this.client.getAll().prefix(this.dir).strings();
    return Object.entries(all).map(([k, v]) => rawOf(k, v));
  }

  private async grant(ttl: number): Promise<string> {
    const r = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 });
    return String(r.ID);
  }

  private async revoke(id: string): Promise<void> {
    if (id && id !== '0') await this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
  }

  async create(lease: Lease, ttl: number): Promise<boolean> {
    const id = await this.grant(ttl);
    const key = this.key(lease.subnet);
    const r = await this.client
      .if(key, 'Version', '==', 0)
      .then(this.client.put(key).value(encode(lease)).lease(id))
      .commit();
    if (!r.succeeded) await this.revoke(id);
    return r.succeeded;
  }

  private async current(subnet: string): Promise<IKeyValue | undefined> {
    const r = await this.client.get(this.key(subnet)).exec();
    return r.kvs[0];
  }

  /** One keepalive on an etcd lease; false when etcd says it has expired (TTL 0). */
  private async keepaliveOnce(id: string): Promise<boolean> {
    const stream = await this.client.leaseClient.leaseKeepAlive();
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('lease keepalive: no answer')), CALL_DEADLINE_MS);
        stream.on('data', (d: { TTL: string }) => {
          clearTimeout(t);
          resolve(d);
        });
        stream.on('error', (e: Error) => {
          clearTimeout(t);
          reject(e);
        });
        stream.write({ ID: id });
      });
      return Number(res.TTL) > 0;
    } finally {
      stream.end();
    }
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    const kv = await this.current(lease.subnet);
    if (!kv) return false;
    const held = heldLease(kv.key.toString(), kv.value.toString());
    if (!held || held.publicIP !== lease.publicIP) return false;
    const key = this.key(lease.subnet);
    if (encode(held) !== encode(lease) || kv.lease === '0') {
      // Changed fields, or a lease without TTL: rewrite it, guarded on the revision we read.
      const id = await this.grant(ttl);
      const r = await this.client
        .if(key, 'Mod', '==', kv.mod_revision)
        .then(this.client.put(key).value(encode(lease)).lease(id))
        .commit();
      if (!r.succeeded) {
        await this.revoke(id);
        return false;
      }
      await this.revoke(kv.lease);
      return true;
    }
    return this.keepaliveOnce(kv.lease);
  }

  async release(subnet: string, publicIP: string): Promise<void> {
    const kv = await this.current(subnet);
    if (!kv) return;
    const held = heldLease(kv.key.toString(), kv.value.toString());
    if (held?.publicIP !== publicIP) return;
    const key = this.key(subnet);
    await this.client.if(key, 'Mod', '==', kv.mod_revision).then(this.client.delete().key(key)).commit();
    await this.revoke(kv.lease);
  }

  async watch(onChange: () => void): Promise<() => void> {
    const w = await this.client.watch().prefix(this.dir).create();
    w.on('put', () => onChange());
    w.on('delete', () => onChange());
    // After a reconnect events may have been missed: resync.
    w.on('connected', () => onChange());
    w.on('error', () => undefined);
    return () => {
      void w.cancel().catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
