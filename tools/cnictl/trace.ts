/**
 * `cnictl policy trace --from NS/POD|IP --to NS/POD|IP --port 80/tcp [-4|-6] [-o json]`:
 * which policies select each side, the verdict of each side (egress of the source, ingress of
 * the destination) and the rule or default that decided it, computed by the policy evaluator
 * (shared/policy) from the objects in the store — the same semantics the nftables tables are
 * compiled from. Exit code 0 whatever the verdict (1 on errors, 2 on usage).
 */
import { parseArgs } from 'node:util';
import type { ObjectStore } from '../../shared/store/types.ts';
import type {
  AnpPeer,
  AnpPort,
  AnpRule,
  Endpoint,
  LabelSelector,
  NetworkPolicyPeer,
  NetworkPolicyPort,
} from '../../shared/objects/types.ts';
import { selectorString } from '../../shared/objects/selectors.ts';
import {
  describeDecision,
  evaluate,
  PolicyIndex,
  type Decision,
  type EvaluateResult,
  type FlowProtocol,
  type PolicyObjects,
  type RuleRef,
  type SideResult,
} from '../../shared/policy/index.ts';
import { parseAddr } from '../../shared/policy/model.ts';
import { CliError, UsageError, type Ctx } from './common.ts';
import { readPolicyObjects } from '../../shared/policysync.ts';

export const usage = `usage: cnictl policy trace --from NS/POD|IP --to NS/POD|IP|node/NODE [--port PORT[/PROTO]] [-4|-6] [-o json]
  --from, --to   an endpoint (NAMESPACE/NAME, or NAME in namespace "default"), an IP address, or
                 node/NAME (that node's first address: AdminNetworkPolicy egress "nodes" peers)
  --port         80/tcp (default protocol tcp), 53/udp, 9/sctp, or "icmp"; default 80/tcp
  -4, -6         address family for pod-to-pod flows (default: IPv4 when both have one)
  -o json        the full evaluation as JSON
  e.g. cnictl policy trace --from x/b --to x/a --port 80/tcp
`;

export interface TraceArgs {
  from: string;
  to: string;
  protocol: FlowProtocol;
  port?: number;
  family?: 4 | 6;
  json: boolean;
}

export function parseTraceArgs(args: string[]): TraceArgs {
  const [sub, ...rest] = args;
  if (sub !== 'trace') throw new UsageError(sub ? `unknown policy subcommand ${JSON.stringify(sub)}` : 'policy needs a subcommand: trace');
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      port: { type: 'string', short: 'p' },
      output: { type: 'string', short: 'o' },
      ipv4: { type: 'boolean', short: '4' },
      ipv6: { type: 'boolean', short: '6' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError(`unexpected ${JSON.stringify(positionals[0])}`);
  if (!values.from || !values.to) throw new UsageError('--from and --to are required');
  if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
  if (values.ipv4 && values.ipv6) throw new UsageError('-4 and -6 exclude each other');
  const { protocol, port } = parsePort(values.port ?? '80/tcp');
  return {
    from: values.from,
    to: values.to,
    protocol,
    port,
    family: values.ipv4 ? 4 : values.ipv6 ? 6 : undefined,
    json: values.output === 'json',
  };
}

export function parsePort(s: string): { protocol: FlowProtocol; port?: number } {
  if (s.toLowerCase() === 'icmp') return { protocol: 'ICMP' };
  const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(s);
  if (!m || Number(m[1]) > 65535) throw new UsageError(`--port ${s}: expected PORT[/tcp|udp|sctp] or icmp`);
  return { port: Number(m[1]), protocol: (m[2] ?? 'tcp').toUpperCase() as FlowProtocol };
}

/** Every object policy depends on, read at once (the same read the plugin and the agent make). */
export const readObjects = (store: ObjectStore): Promise<PolicyObjects> => readPolicyObjects(store);

/** `NS/NAME`, `NAME` (namespace default) or an IP -> what evaluate() takes. */
export function resolveEnd(idx: PolicyIndex, arg: string, what: string, family?: 4 | 6): Endpoint | string {
  if (parseAddr(arg)) return arg;
  if (arg.startsWith('node/')) {
    // a node (ANP egress `nodes` peers): its first address (of the family asked for)
    const name = arg.slice('node/'.length);
    const node = (idx.objects.nodes ?? []).find((n) => n.metadata.name === name);
    if (!node) throw new CliError(`${what} ${arg}: no node ${name} (cnictl get nodes)`);
    const ips = (node.status?.addresses ?? []).map((a) => parseAddr(a.address)).filter((ip) => ip && (!family || ip.family === family));
    if (!ips[0]) throw new CliError(`${what} ${arg}: node ${name} has no ${family ? `IPv${family} ` : ''}address`);
    return ips[0].text;
  }
  const slash = arg.indexOf('/');
  const [ns, name] = slash >= 0 ? [arg.slice(0, slash), arg.slice(slash + 1)] : ['default', arg];
  const pod = idx.podByName(ns, name);
  if (!pod) throw new CliError(`${what} ${arg}: no endpoint ${ns}/${name} and not an IP address (cnictl get endpoints -n ${ns})`);
  return pod.ep;
}

export function trace(objects: PolicyObjects, a: TraceArgs): EvaluateResult {
  const idx = new PolicyIndex(objects);
  return evaluate(idx, {
    src: resolveEnd(idx, a.from, '--from', a.family),
    dst: resolveEnd(idx, a.to, '--to', a.family),
    protocol: a.protocol,
    port: a.port,
    family: a.family,
  });
}

/** The rule a reference points at, in one line: "from [pod=b in ns ns=y] ports [serve-80-tcp, UDP/81]". */
export function ruleSummary(objects: PolicyObjects, r: RuleRef): string | undefined {
  const sel = (s: LabelSelector | undefined): string => (s === undefined ? '' : selectorString(s) === '<none>' ? 'all' : selectorString(s));
  const npPeer = (p: NetworkPolicyPeer): string => {
    if (p.ipBlock) return `${p.ipBlock.cidr}${p.ipBlock.except?.length ? ` except ${p.ipBlock.except.join(', ')}` : ''}`;
    if (p.namespaceSelector) return `pods ${sel(p.podSelector ?? {})} in namespaces ${sel(p.namespaceSelector)}`;
    return `pods ${sel(p.podSelector)} of the policy's namespace`;
  };
  const npPort = (p: NetworkPolicyPort): string => `${p.protocol ?? 'TCP'}/${p.port ?? 'any'}${p.endPort ? `-${p.endPort}` : ''}`;
  const anpPeer = (p: AnpPeer): string[] => [
    ...(p.namespaces ? [`namespaces ${sel(p.namespaces)}`] : []),
    ...(p.pods ? [`pods ${sel(p.pods.podSelector)} in namespaces ${sel(p.pods.namespaceSelector)}`] : []),
    ...(p.networks ?? []),
    ...(p.nodes ? [`nodes ${sel(p.nodes)}`] : []),
  ];
  const anpPort = (p: AnpPort): string =>
    'portNumber' in p
      ? `${p.portNumber.protocol}/${p.portNumber.port}`
      : 'namedPort' in p
        ? p.namedPort
        : `${p.portRange.protocol ?? 'TCP'}/${p.portRange.start}-${p.portRange.end}`;
  const word = r.direction === 'ingress' ? 'from' : 'to';
  if (r.kind === 'NetworkPolicy') {
    const np = objects.policies.find((p) => (p.metadata.namespace ?? 'default') === r.namespace && p.metadata.name === r.name);
    const rule = np?.spec[r.direction]?.[r.rule] as
      { from?: NetworkPolicyPeer[]; to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] } | undefined;
    if (!rule) return undefined;
    const peers = rule.from ?? rule.to;
    return `${word} ${peers?.length ? peers.map(npPeer).join('; ') : 'anywhere'}, ports ${rule.ports?.length ? rule.ports.map(npPort).join(', ') : 'all'}`;
  }
  const admin = r.kind === 'AdminNetworkPolicy' ? objects.anps.find((a) => a.metadata.name === r.name) : (objects.banp ?? undefined);
  const rule = (admin?.spec[r.direction] as AnpRule<string>[] | undefined)?.[r.rule];
  if (!rule) return undefined;
  const peers = (r.direction === 'ingress' ? rule.from : rule.to) ?? [];
  return `${rule.action} ${word} ${peers.flatMap(anpPeer).join('; ') || 'nothing'}, ports ${rule.ports?.length ? rule.ports.map(anpPort).join(', ') : 'all'}`;
}

const refText = (r: RuleRef): string =>
  `${r.kind === 'NetworkPolicy' ? `NetworkPolicy ${r.namespace}/${r.name}` : `${r.kind} ${r.name}`} ${r.direction} rule ${r.rule}${r.ruleName ? ` (${r.ruleName})` : ''}`;

function sideText(s: SideResult, end: { pod?: string; ip?: string }, node: string | undefined, objects: PolicyObjects): string {
  const where = [end.ip, node ? `node ${node}` : undefined].filter(Boolean).join(', ');
  const host = !s.pod && end.ip ? new PolicyIndex(objects).nodeByIP(end.ip)?.metadata.name : undefined;
  const who = s.pod ? `${s.pod}${where ? ` (${where})` : ''}` : `${end.ip ?? '?'}${host ? ` (node ${host})` : ''}`;
  const lines = [
    `${s.direction === 'egress' ? 'egress of' : 'ingress of'} ${who}: ${s.verdict.toUpperCase()}, ${describeDecision(s.decidedBy)}`,
  ];
  const summary = 'kind' in s.decidedBy ? ruleSummary(objects, s.decidedBy) : undefined;
  if (summary) lines.push(`  rule: ${summary}`);
  if (s.pod) {
    const sel = s.selectedBy;
    const parts = [
      ...sel.adminNetworkPolicies.map((a) => `AdminNetworkPolicy ${a.name} (priority ${a.priority})`),
      ...sel.networkPolicies.map((n) => `NetworkPolicy ${n.namespace}/${n.name}`),
      ...(sel.baselineAdminNetworkPolicy ? [`BaselineAdminNetworkPolicy ${sel.baselineAdminNetworkPolicy}`] : []),
    ];
    lines.push(`  selected by: ${parts.length ? parts.join(', ') : 'nothing'}`);
    lines.push(`  isolated by NetworkPolicy: ${s.isolated ? 'yes' : 'no'}`);
    if (s.passedBy) lines.push(`  passed to NetworkPolicy by: ${refText(s.passedBy)}`);
    if (s.allowedBy && s.allowedBy.length > 1) lines.push(`  also allowed by: ${s.allowedBy.slice(1).map(refText).join(', ')}`);
  }
  return lines.join('\n');
}

export function formatTrace(r: EvaluateResult, a: TraceArgs, objects: PolicyObjects): string {
  const nodeOf = (pod?: string): string | undefined => {
    if (!pod) return undefined;
    const [ns, name] = pod.split('/');
    return objects.endpoints.find((e) => (e.metadata.namespace ?? 'default') === ns && e.metadata.name === name)?.spec.node;
  };
  const end = (e: { pod?: string; ip?: string }): string => (e.pod ? `${e.pod}${e.ip ? ` (${e.ip})` : ''}` : (e.ip ?? '?'));
  const flow = `${end(r.src)} -> ${end(r.dst)} ${a.protocol}${a.port !== undefined ? `/${a.port}` : ''} IPv${r.family}`;
  const d = r.decidedBy as Decision & { side?: string };
  return [
    `flow: ${flow}`,
    sideText(r.egress, r.src, nodeOf(r.src.pod), objects),
    sideText(r.ingress, r.dst, nodeOf(r.dst.pod), objects),
    `verdict: ${r.verdict.toUpperCase()}${d.side ? ` (${d.side}: ${describeDecision(d)})` : ` (${describeDecision(d)})`}`,
    '',
  ].join('\n');
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const a = parseTraceArgs(args);
  const objects = await readObjects(await ctx.store());
  const r = trace(objects, a);
  ctx.out(a.json ? `${JSON.stringify(r, null, 2)}\n` : formatTrace(r, a, objects));
  return 0;
}
