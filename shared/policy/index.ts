/**
 * Network policy, pure: objects in, desired nftables state and verdicts out. No kernel calls,
 * no store I/O (the endpoint plugin and the agent apply what this returns; see docs/policy.md).
 *
 * Stable API:
 *   policyTableScript(objects, node, opts)  -> one `nft -f` script (atomic whole-table replace);
 *                                              opts: {table?, allowFromNode? (alias allowHostToPods), allowToNode?,
 *                                              keepCounters? (renderResync), existing?}
 *   compileNode(objects, node, opts)        -> Ruleset (plain data: counters, sets, maps, chains)
 *   renderNft(ruleset, table?)              -> the whole-table script of a Ruleset (delete + define)
 *   renderResync(ruleset, table?, existing?) -> the same, keeping counter values (flush + define);
 *                                              existing = existingFromNftJson(`nft -j -t list table inet T`)
 *   renderUpdate(prev, next, table?)        -> one transaction changing only what differs (counters kept)
 *   renderSetUpdates(prev, next, table?)    -> the same when only elements differ, else null
 *   renderDelete(table?)                    -> script removing the table (absent or not)
 *   POLICY_TABLE ("cni_ts_policy"), POLICY_TABLE_FAMILY ("inet")
 *   evaluate(objects, flow)                 -> the Kubernetes verdict of one flow, and why
 *   parseCounterName(name, ruleset.counterInfo?) -> the policy rule a named counter counts
 */
import { compileNode, type CompileOptions, type Ruleset } from './compile.ts';
import { renderNft, renderResync, POLICY_TABLE, type ExistingNames } from './nft.ts';
import type { PolicyIndex, PolicyObjects } from './model.ts';

export interface TableOptions extends CompileOptions {
  /** nft table name (inet family); default POLICY_TABLE */
  table?: string;
  /** redefine in place, keeping the counters' values (renderResync) instead of delete + define */
  keepCounters?: boolean;
  /** with keepCounters: what the table holds now, so objects no longer desired are removed */
  existing?: ExistingNames;
  /** alias of allowFromNode */
  allowHostToPods?: boolean;
}

const compileOpts = (o: TableOptions): CompileOptions => ({
  allowFromNode: o.allowFromNode ?? o.allowHostToPods,
  allowToNode: o.allowToNode,
});

/** The whole policy table of `node` as one atomic `nft -f` script. */
export function policyTableScript(objects: PolicyObjects | PolicyIndex, node: string, opts: TableOptions = {}): string {
  return render(compileNode(objects, node, compileOpts(opts)), opts);
}

const render = (rs: Ruleset, o: TableOptions): string =>
  o.keepCounters ? renderResync(rs, o.table ?? POLICY_TABLE, o.existing) : renderNft(rs, o.table ?? POLICY_TABLE);

/** The same, with the Ruleset it came from (keep it to render element-only updates next time). */
export function policyTable(
  objects: PolicyObjects | PolicyIndex,
  node: string,
  opts: TableOptions = {},
): { script: string; ruleset: Ruleset } {
  const ruleset = compileNode(objects, node, compileOpts(opts));
  return { script: render(ruleset, opts), ruleset };
}

export {
  compileNode,
  portMatch,
  PolicyCompiler,
  type CompileOptions,
  type NftChain,
  type NftMap,
  type NftSet,
  type Ruleset,
} from './compile.ts';
export {
  POLICY_TABLE,
  POLICY_TABLE_FAMILY,
  existingFromNftJson,
  renderDelete,
  renderNft,
  renderResync,
  renderSetUpdates,
  renderTable,
  renderUpdate,
  type ExistingNames,
} from './nft.ts';
export {
  describeDecision,
  evaluate,
  evaluateSide,
  type Decision,
  type DefaultReason,
  type EvaluateResult,
  type Flow,
  type FlowEnd,
  type SideResult,
} from './evaluate.ts';
export {
  DEFAULT_DENY_COUNTER,
  PolicyIndex,
  counterName,
  parseCounterName,
  policyTypesOf,
  type CounterMeaning,
  type Direction,
  type FlowProtocol,
  type PolicyObjects,
  type RuleRef,
} from './model.ts';
