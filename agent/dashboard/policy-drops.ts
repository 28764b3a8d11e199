/**
 * Policy drops for the dashboard (`GET /api/v1/policy-drops`): the policy table's named
 * counters whose rules drop — each isolated direction's default deny, and Deny rules of
 * AdminNetworkPolicies / BaselineAdminNetworkPolicies — with the packets and bytes they counted.
 *
 * Which counters drop comes from the ruleset the last writer of the table recorded
 * (shared/policysync.ts `recordedRuleset`: every rule's text ends in `counter name N <verdict>`);
 * what each counts from `parseCounterName` (shared/policy); the values from one
 * `nft -j list counters table inet T`. The metrics do not export these yet (issue 16 lists
 * policy verdict counters); this reads the same kernel counters they would.
 */
import { statSync } from 'node:fs';
import { nftCounters } from '../../shared/kernel/nft.ts';
import { parseCounterName, type CounterMeaning } from '../../shared/policy/model.ts';
import type { Ruleset } from '../../shared/policy/compile.ts';
import { recordedRuleset, type PolicySettings } from '../../shared/policysync.ts';

export interface PolicyDrop {
  counter: string;
  /** the policy the rule belongs to; absent for a default deny */
  kind?: string;
  namespace?: string;
  name?: string;
  direction: 'ingress' | 'egress';
  /** index of the rule in spec.ingress / spec.egress */
  rule?: number;
  ruleName?: string;
  /** true: the default deny of an isolated pod (no NetworkPolicy rule allowed it) */
  isolated: boolean;
  packets: number;
  bytes: number;
}

export interface PolicyDropsReport {
  table: string;
  at: string;
  drops: PolicyDrop[];
}

/** The counters of `rs` whose rules end in drop or reject, with what each counts. */
export function dropCounters(rs: Pick<Ruleset, 'chains' | 'counterInfo'>): Map<string, CounterMeaning | undefined> {
  const out = new Map<string, CounterMeaning | undefined>();
  for (const c of rs.chains) {
    for (const r of c.rules) {
      const m = /\bcounter name "?([A-Za-z0-9_]+)"? (?:drop|reject)\b/.exec(r);
      if (m) out.set(m[1]!, parseCounterName(m[1]!, rs.counterInfo));
    }
  }
  return out;
}

/** The report from a drop-counter map and the counters' values (pure). */
export function policyDrops(
  table: string,
  at: Date,
  drops: Map<string, CounterMeaning | undefined>,
  values: Map<string, { packets: number; bytes: number }>,
): PolicyDropsReport {
  const out: PolicyDrop[] = [];
  for (const [counter, meaning] of drops) {
    const v = values.get(counter) ?? { packets: 0, bytes: 0 };
    if (!meaning) out.push({ counter, direction: counter.includes('_eg') ? 'egress' : 'ingress', isolated: false, ...v });
    else if ('default' in meaning) out.push({ counter, direction: meaning.direction, isolated: true, ...v });
    else
      out.push({
        counter,
        kind: meaning.kind,
        namespace: meaning.namespace,
        name: meaning.name,
        direction: meaning.direction,
        rule: meaning.rule,
        ruleName: meaning.ruleName,
        isolated: false,
        ...v,
      });
  }
  out.sort((a, b) => b.packets - a.packets || a.counter.localeCompare(b.counter));
  return { table, at: at.toISOString(), drops: out };
}

/** Reads the policy table's drop counters (cached drop-counter map while the recorded ruleset is unchanged). */
export class PolicyDropsReader {
  private cache: { mtimeMs: number; drops: Map<string, CounterMeaning | undefined> } | undefined;

  constructor(private readonly settings: PolicySettings) {}

  private dropMap(): Map<string, CounterMeaning | undefined> {
    let mtimeMs = -1;
    try {
      mtimeMs = statSync(this.settings.stateFile).mtimeMs;
    } catch {
      // no recorded ruleset: nothing written yet
    }
    if (this.cache?.mtimeMs === mtimeMs) return this.cache.drops;
    const rs = mtimeMs < 0 ? undefined : recordedRuleset(this.settings);
    const drops = rs ? dropCounters(rs) : new Map<string, CounterMeaning | undefined>();
    this.cache = { mtimeMs, drops };
    return drops;
  }

  async read(): Promise<PolicyDropsReport> {
    const drops = this.dropMap();
    if (!drops.size) return policyDrops(this.settings.table, new Date(), drops, new Map());
    return policyDrops(this.settings.table, new Date(), drops, await nftCounters('inet', this.settings.table));
  }
}
