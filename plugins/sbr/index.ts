/**
 * sbr (chained): source-based routing for the container interface. Drop-in for the Go
 * reference `sbr`: per address of the interface a rule `from A/32 lookup T` (T the first table
 * from 100 up no rule uses), the interface's main-table routes moved into T with a default
 * route via the gateway (`gateways` overrides it), or, with `table`, only the rules; DEL
 * removes the rules whose source is an address of the interface. Same lock as the reference
 * (flock on the netns file), same pass-through result.
 */
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { withFlock } from '../../shared/flock.ts';
import { canonicalIP } from '../../shared/ipnet.ts';
import { getLink, ipBatch, ipBatchByFamily, mainRoutesOf, rules as ruleList } from '../../shared/kernel/ip.ts';
import { linkAddresses } from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import schema from '../../conf/schemas/sbr.schema.json' with { type: 'json' };
import {
  interfaceIps,
  planRoutes,
  planRulesOnly,
  ruleTables,
  rulesToDelete,
  staticGateways,
  type MainRoute,
  type RuleInfo,
  type SbrConf,
} from './config.ts';

/** The rules of both families (in-process under Bun: shared/kernel/netlink/rule.ts). */
async function readRules(netns: string): Promise<RuleInfo[]> {
  const [v4, v6] = await Promise.all([ruleList(4, netns), ruleList(6, netns)]);
  return [...v4, ...v6];
}

async function readMainRoutes(dev: string, netns: string): Promise<MainRoute[]> {
  const [v4, v6] = await Promise.all(
    ([4, 6] as const).map(async (f) =>
      (await mainRoutesOf(f, dev, netns)).map((r) => ({ ...(r as Omit<MainRoute, 'family'>), family: f })),
    ),
  );
  return [...v4, ...v6];
}

/** The reference locks the netns file (flock) around its changes; so do we, so the two interleave safely. */
const locked = <T>(netns: string, body: () => Promise<T>): Promise<T> => withFlock(netns, body);

async function add(req: Request<SbrConf>): Promise<Result> {
  const { netns, ifname } = req.env;
  const prev = req.prevResult;
  if (!prev) throw invalidConfig('prevResult', 'This plugin must be called as chained plugin');
  requireNetns(netns);
  const ips = interfaceIps(ifname, prev);
  const gws = staticGateways(req.config.gateways);
  await locked(netns, async () => {
    if (req.config.table !== undefined) {
      await ipBatchByFamily(planRulesOnly(ips, req.config.table), netns);
      return;
    }
    const [rules, link, routes] = await Promise.all([
      readRules(netns),
      getLink(ifname, netns),
      readMainRoutes(ifname, netns).catch(() => []),
    ]);
    if (!link) throw new CniError(ErrorCode.InvalidEnvironment, `Cannot find network interface ${ifname}`, `in ${netns}`);
    const plan = planRoutes(ips, ifname, routes, ruleTables(rules), gws, req.config.addSourceHints === true);
    try {
      await ipBatchByFamily(plan.rules, netns);
      await ipBatch(plan.commands, netns);
    } catch (e) {
      // undo the rules this call added (the reference leaves them): a retried ADD starts clean
      const mine = await readRules(netns).catch(() => []);
      const added = mine.filter((r) => plan.tables.includes(Number(r.table)));
      await ipBatchByFamily(
        rulesToDelete(
          added,
          ips.map((i) => i.address.split('/')[0]),
        ),
        netns,
      ).catch(() => undefined);
      throw e;
    }
    try {
      await ipBatch(plan.deletions, netns);
    } catch (e) {
      if (!req.config.addSourceHints) throw e;
      req.log.warn(`deleting main-table routes of ${ifname}: ${String(e)}`);
    }
  });
  return structuredClone(prev);
}

async function del(req: Request<SbrConf>): Promise<void> {
  const { netns, ifname } = req.env;
  // No netns (gone, or never given): its rules went with it.
  if (!netnsExists(netns)) return;
  await locked(netns, async () => {
    const [rules, link] = await Promise.all([readRules(netns), getLink(ifname, netns)]);
    if (!link) return;
    const cmds = rulesToDelete(
      rules,
      linkAddresses(link, true).map((a) => a.split('/')[0]),
      req.config.table,
    );
    await ipBatchByFamily(cmds, netns);
  });
}

/** The reference's CHECK does nothing; ours checks that each address of the interface has its rule. */
async function check(req: Request<SbrConf>): Promise<void> {
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const ips = interfaceIps(ifname, req.prevResult!);
  const rules = await readRules(netns);
  for (const ipc of ips) {
    const ip = canonicalIP(ipc.address.split('/')[0]);
    const found = rules.some(
      (r) =>
        r.src && r.src !== 'all' && canonicalIP(r.src) === ip && (req.config.table === undefined || r.table === String(req.config.table)),
    );
    if (!found) throw new CniError(ErrorCode.CheckMismatch, `no source rule for ${ipc.address} in ${netns}`);
  }
}

export default definePlugin<SbrConf>({
  name: 'sbr',
  about: 'chained: source-based routing, a routing table and a `from` rule per address of the container interface',
  schema,
  validateConfig(config, req) {
    if (req.env.command === 'ADD') staticGateways(config.gateways);
  },
  add,
  del,
  check,
  async gc() {},
  async status() {},
});
