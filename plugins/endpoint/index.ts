/**
 * endpoint: chained after the interface plugin. Registers the attachment in the cluster store
 * as an Endpoint (the one registration point of cni-ts) and programs this node's policy table
 * before it returns, so a pod that a default deny selects never passes a packet it should not,
 * whether the agent runs or not. Passes prevResult through, with its `dns` pointed at the
 * agent's DNS server (config.ts `dnsOf`).
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import { trace } from '../../shared/trace.ts';
import { nftTableText } from '../../shared/kernel/nft.ts';
import { loadAgentConfig, type AgentConfig } from '../../shared/agentconfig.ts';
import type { Ruleset } from '../../shared/policy/index.ts';
import { openStore, refOf, refString } from '../../shared/store/index.ts';
import { ConflictError, type ObjectStore, type Stored } from '../../shared/store/types.ts';
import type { Endpoint } from '../../shared/objects/types.ts';
import { compilePolicy, policySettings, programPolicy, storeError, withPolicyLock, type PolicySettings } from '../../shared/policysync.ts';
import schema from '../../conf/schemas/endpoint.schema.json' with { type: 'json' };
import { agentConfigPath, aliasesOf, dnsOf, endpointOf, identityOf, isAttachment, labelsOf, portsOf, type EndpointConf } from './config.ts';

interface Ctx {
  cfg: AgentConfig;
  s: PolicySettings;
  store: ObjectStore;
}

/** Load the host's agent config and open its store for the length of `body`. */
async function withStore<T>(req: Request<EndpointConf>, body: (c: Ctx) => Promise<T>): Promise<T> {
  const cfg = loadAgentConfig(agentConfigPath(req.config));
  const s = policySettings(cfg);
  let store: ObjectStore;
  try {
    store = await openStore(cfg.store);
  } catch (e) {
    throw storeError(e, `opening the ${cfg.store.type} store`);
  }
  trace('store open');
  try {
    return await body({ cfg, s, store });
  } finally {
    await store.close().catch(() => undefined);
  }
}

/**
 * This attachment's registrations (normally one): looked up by the name ADD gave it (from
 * CNI_ARGS, or `<pod>-<ifname>`), else found among every Endpoint (a runtime that sent other
 * CNI_ARGS on DEL, a repeated DEL).
 */
async function registrationsOf(c: Ctx, req: Request<EndpointConf>): Promise<Stored<Endpoint>[]> {
  const mine = (o: Endpoint): boolean => isAttachment(o, c.cfg.node, req.config.name, req.env.containerId, req.env.ifname);
  try {
    let id: { namespace: string; name: string } | undefined;
    try {
      id = identityOf(req.env.args, req.env.containerId);
    } catch {
      id = undefined;
    }
    if (id) {
      for (const name of [id.name, suffixed(id.name, req.env.ifname)]) {
        const got = await c.store.get<Endpoint>({ kind: 'Endpoint', namespace: id.namespace, name });
        if (got && mine(got.object)) return [got];
      }
    }
    return (await c.store.list<Endpoint>('Endpoint')).items.filter((i) => mine(i.object));
  } catch (e) {
    throw storeError(e, 'looking up the registration');
  }
}

const suffixed = (name: string, ifname: string): string =>
  `${name}-${ifname.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 253).replace(/-+$/, '');

/** Re-compile the node's table and apply the difference (the caller holds the lock). */
async function program(c: Ctx): Promise<void> {
  await programPolicy(c.store, c.cfg.node, c.s);
}

/**
 * The name to register under: the pod's, unless that name already holds another attachment
 * of the same container (a second network or interface of one pod): then `<pod>-<ifname>`.
 */
async function nameFor(c: Ctx, ep: Endpoint): Promise<Endpoint> {
  const cur = await c.store.get<Endpoint>(refOf(ep));
  const o = cur?.object;
  if (!o || o.spec.containerId !== ep.spec.containerId || (o.spec.network === ep.spec.network && o.spec.ifname === ep.spec.ifname))
    return ep;
  return { ...ep, metadata: { ...ep.metadata, name: suffixed(ep.metadata.name, ep.spec.ifname) } };
}

/** Delete registrations (compare-and-swap on what was read; the caller re-programs). */
async function unregister(c: Ctx, stale: Stored<Endpoint>[]): Promise<void> {
  for (const r of stale) {
    try {
      await c.store.delete(refOf(r.object), { expectRevision: r.revision });
    } catch (e) {
      if (e instanceof ConflictError) continue; // re-registered meanwhile by a newer ADD: theirs now
      throw storeError(e, `deleting ${refString(refOf(r.object))}`);
    }
  }
}

/** Does `text` hold `ip` as a whole token (10.1.1.1 is not in 10.1.1.10)? */
export function mentions(text: string, ip: string): boolean {
  const esc = ip.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^0-9A-Fa-f:.])${esc}($|[^0-9A-Fa-f:.])`).test(text);
}

/** Every set and map element of a compiled ruleset, one per line. */
const elementsText = (rs: Ruleset): string =>
  [...rs.sets.flatMap((x) => x.elements), ...rs.maps.flatMap((m) => m.elements.map(([k, v]) => `${k} : ${v}`))].join('\n');

const bare = (cidr: string): string => cidr.split('/')[0] ?? cidr;

export default definePlugin<EndpointConf>({
  name: 'endpoint',
  about: 'register the attachment in the cluster store (Endpoint) and program its network policy before returning (chained)',
  schema,
  validateConfig(config, req) {
    // checked here so a bad label or port name is code 7 before anything happens (ADD, CHECK;
    // DEL and GC never fail on what only ADD reads)
    if (req.env.command !== 'ADD' && req.env.command !== 'CHECK') return;
    labelsOf(config);
    portsOf(config);
    aliasesOf(config);
  },

  async add(req) {
    if (!req.prevResult)
      throw new CniError(
        ErrorCode.InvalidConfig,
        'endpoint must be called as a chained plugin: prevResult is missing',
        'field "prevResult"',
      );
    const prev = req.prevResult;
    return withStore(req, async (c) => {
      let ep = endpointOf(req, c.cfg.node);
      if (!ep.spec.ips.length)
        req.log.warn(`prevResult has no address on ${req.env.ifname}: registered without IPs, no policy can select its traffic`);
      await withPolicyLock(c.s, async () => {
        let rev: number;
        try {
          ep = await nameFor(c, ep);
          rev = await c.store.put(ep);
        } catch (e) {
          throw storeError(e, `registering ${refString(refOf(ep))}`);
        }
        trace('registered');
        try {
          await program(c);
        } catch (e) {
          // nothing half-done: the table is unchanged (one transaction), take the registration back
          await c.store
            .delete(refOf(ep), { expectRevision: rev })
            .catch((e2: unknown) => req.log.error(`could not remove ${refString(refOf(ep))} after a failed ADD: ${String(e2)}`));
          throw e;
        }
      });
      req.log.info(`registered ${refString(refOf(ep))} ${ep.spec.ips.join(',')}`);
      const dns = dnsOf(req.config, c.cfg.dns, c.cfg.clusterDomain, ep.metadata.namespace ?? 'default', ep.spec.gateways ?? [], prev.dns);
      return dns ? { ...prev, dns } : prev;
    });
  },

  async del(req) {
    await withStore(req, async (c) => {
      await withPolicyLock(c.s, async () => {
        const mine = await registrationsOf(c, req);
        if (!mine.length) return; // already gone (repeated DEL): nothing to do
        await unregister(c, mine);
        await program(c);
      });
    });
  },

  async check(req) {
    if (!req.prevResult) throw new CniError(ErrorCode.InvalidConfig, 'endpoint CHECK needs prevResult', 'field "prevResult"');
    await withStore(req, async (c) => {
      const mine = await registrationsOf(c, req);
      const want = endpointOf(req, c.cfg.node).spec.ips.map(bare).sort();
      if (!mine.length)
        throw new CniError(
          ErrorCode.CheckMismatch,
          `no Endpoint registered for ${req.env.containerId}/${req.env.ifname} on network ${req.config.name}`,
        );
      const have = mine[0]!.object.spec.ips.map(bare).sort();
      if (have.join() !== want.join())
        throw new CniError(
          ErrorCode.CheckMismatch,
          `Endpoint ${refString(refOf(mine[0]!.object))} has IPs ${have.join(',') || 'none'}, prevResult ${want.join(',') || 'none'}`,
        );
      // the pod's addresses that the rendered table holds must be in the kernel's table too
      const rendered = await compilePolicy(c.store, c.cfg.node, c.s);
      const expected = want.filter((ip) => mentions(elementsText(rendered.ruleset), ip));
      const r = await nftTableText('inet', c.s.table);
      if (r.text === undefined) throw new CniError(ErrorCode.CheckMismatch, `policy table inet ${c.s.table} is missing`, r.stderr);
      const missing = expected.filter((ip) => !mentions(r.text, ip));
      if (missing.length) throw new CniError(ErrorCode.CheckMismatch, `policy table inet ${c.s.table} does not hold ${missing.join(', ')}`);
    });
  },

  async gc(req) {
    await withStore(req, async (c) => {
      await withPolicyLock(c.s, async () => {
        let items: Stored<Endpoint>[];
        try {
          items = (await c.store.list<Endpoint>('Endpoint')).items;
        } catch (e) {
          throw storeError(e, 'listing endpoints');
        }
        const valid = new Set(req.validAttachments.map((a) => `${a.containerID}/${a.ifname}`));
        const stale = items.filter(
          (i) =>
            i.object.spec.node === c.cfg.node &&
            i.object.spec.network === req.config.name &&
            !valid.has(`${i.object.spec.containerId}/${i.object.spec.ifname}`),
        );
        if (!stale.length) return;
        req.log.info(`gc: removing ${stale.map((i) => refString(refOf(i.object))).join(', ')}`);
        await unregister(c, stale);
        await program(c);
      });
    });
  },

  async status(req) {
    try {
      await withStore(req, async (c) => {
        await c.store.list('Namespace');
      });
    } catch (e) {
      const err = e as { message?: string; details?: string };
      throw new CniError(ErrorCode.NotAvailable, `cluster store not reachable: ${err.message ?? String(e)}`, err.details ?? '');
    }
  },
});
