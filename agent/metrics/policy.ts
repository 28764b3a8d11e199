/**
 * Policy verdict counters: the policy table (shared/policy/nft.ts) has one named nft counter
 * per policy rule plus the isolated pods' default denies; one `nft -j list counters` per scrape
 * (cached 1 s) reads them all:
 *   cni_ts_policy_rule_packets_total{kind,namespace,policy,direction,rule,verdict,counter}
 *   cni_ts_policy_rule_bytes_total{...}
 * verdict: "allow" for NetworkPolicy rules, "deny" for the default deny; AdminNetworkPolicy /
 * BaselineAdminNetworkPolicy rules carry their action in the object (the counter name does not
 * say it): "rule" there. Counters restart when the reconciler replaces the table whole.
 */
import { readNftCounters } from '../../shared/kernel/nft.ts';
import type { NftCounter } from '../../shared/kernel/stats.ts';
import { parseCounterName } from '../../shared/policy/model.ts';
import { collector, type CollectedValue, type Registry } from './registry.ts';

export function policyLabels(counter: string): Record<string, string> {
  const m = parseCounterName(counter);
  if (!m) return { kind: '', namespace: '', policy: '', direction: '', rule: '', verdict: '', counter };
  if ('default' in m) return { kind: 'default', namespace: '', policy: '', direction: m.direction, rule: '', verdict: 'deny', counter };
  return {
    kind: m.kind,
    namespace: m.kind === 'NetworkPolicy' ? (m.namespace ?? '') : '',
    policy: m.name,
    direction: m.direction,
    rule: String(m.rule),
    verdict: m.kind === 'NetworkPolicy' ? 'allow' : 'rule',
    counter,
  };
}

export function registerPolicyFamilies(registry: Registry, table: () => string | undefined, maxAgeMs = 5000): void {
  let cache: { at: number; p: Promise<NftCounter[]> } | undefined;
  const read = (): Promise<NftCounter[]> => {
    const t = table();
    if (!t) return Promise.resolve([]);
    if (!cache || Date.now() - cache.at > maxAgeMs) cache = { at: Date.now(), p: readNftCounters(t).catch(() => []) };
    return cache.p;
  };
  const fam = (name: string, help: string, v: (c: NftCounter) => number): void =>
    collector(registry, name, 'counter', help, async () =>
      (await read()).map((c): CollectedValue => ({ labels: policyLabels(c.name), value: v(c) })),
    );
  fam(
    'cni_ts_policy_rule_packets_total',
    "Packets matched by each policy rule's counter in the policy table (and the default denies).",
    (c) => c.packets,
  );
  fam(
    'cni_ts_policy_rule_bytes_total',
    "Bytes matched by each policy rule's counter in the policy table (and the default denies).",
    (c) => c.bytes,
  );
}
