/**
 * Validation and defaulting of cluster objects, as the Kubernetes API server does for the same
 * kinds: structure (types, required fields) and semantics (ports 1-65535, endPort only with a
 * numeric port and not below it, ipBlock CIDRs with `except` inside `cidr`, protocols,
 * policyTypes, AdminNetworkPolicy priorities and actions, the BaselineAdminNetworkPolicy
 * singleton name, label syntax), every problem named by its field path
 * (`spec.ingress[0].ports[1].endPort: ...`).
 *
 * Hand-written rather than JSON Schemas through ajv: most rules are cross-field (endPort vs
 * port, except within cidr, exactly one of several peer kinds), which schemas say poorly and
 * report worse, and the executable precompiles only plugin config schemas (conf/schemas/*).
 * Unknown fields are kept, as kubectl apply keeps them (`status` and other fields we do not act
 * on are stored as written).
 */
import { parseCIDR, parseIP, contains, network } from '../ipnet.ts';
import type {
  AdminNetworkPolicy,
  AnpPort,
  BaselineAdminNetworkPolicy,
  CniObject,
  Kind,
  NetworkPolicy,
  NetworkPolicyPort,
  Protocol,
  Service,
} from './types.ts';
import { isClusterScoped } from './types.ts';
import {
  ALGORITHM_ANNOTATION,
  HEALTH_ANNOTATION,
  WEIGHT_LABEL,
  algorithmProblem,
  parseHealthCheck,
  weightProblem,
} from '../services/compile.ts';

export const API_VERSIONS: Readonly<Record<Kind, string>> = {
  Namespace: 'v1',
  Service: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  AdminNetworkPolicy: 'policy.networking.k8s.io/v1alpha1',
  BaselineAdminNetworkPolicy: 'policy.networking.k8s.io/v1alpha1',
  Endpoint: 'cni-ts.dev/v1',
  EndpointSlice: 'cni-ts.dev/v1',
  SubnetLease: 'cni-ts.dev/v1',
  BackendHealth: 'cni-ts.dev/v1',
  DockerNetwork: 'cni-ts.dev/v1',
  DockerEndpoint: 'cni-ts.dev/v1',
  DockerPool: 'cni-ts.dev/v1',
  Node: 'v1',
};
export const KINDS = Object.keys(API_VERSIONS) as Kind[];
const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Collects problems; `at(path)` makes a field path. */
class Checker {
  readonly problems: string[] = [];
  add(path: string, msg: string): void {
    this.problems.push(`${path}: ${msg}`);
  }
  /** an object field: undefined when absent (and `required` reports it) */
  obj(v: unknown, path: string, required = false): Json | undefined {
    if (v === undefined || v === null) {
      if (required) this.add(path, 'is required');
      return undefined;
    }
    if (!isObj(v)) {
      this.add(path, `must be an object, not ${show(v)}`);
      return undefined;
    }
    return v;
  }
  arr(v: unknown, path: string, required = false): unknown[] | undefined {
    if (v === undefined || v === null) {
      if (required) this.add(path, 'is required');
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.add(path, `must be a list, not ${show(v)}`);
      return undefined;
    }
    return v;
  }
  str(v: unknown, path: string, required = false): string | undefined {
    if (v === undefined || v === null) {
      if (required) this.add(path, 'is required');
      return undefined;
    }
    if (typeof v !== 'string') {
      this.add(path, `must be a string, not ${show(v)}`);
      return undefined;
    }
    return v;
  }
  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], required = false): T | undefined {
    if (v === undefined || v === null) {
      if (required) this.add(path, `is required (one of ${allowed.join(', ')})`);
      return undefined;
    }
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      this.add(path, `${show(v)} is not one of ${allowed.join(', ')}`);
      return undefined;
    }
    return v as T;
  }
  port(v: unknown, path: string): number | undefined {
    if (!isInt(v) || v < 1 || v > 65535) {
      this.add(path, `${show(v)} is not a port number (1-65535)`);
      return undefined;
    }
    return v;
  }
  cidr(v: unknown, path: string): ReturnType<typeof parseCIDR> {
    const s = this.str(v, path, true);
    if (s === undefined) return null;
    const n = parseCIDR(s);
    if (!n) this.add(path, `${show(s)} is not a CIDR ("10.0.0.0/16", "fd00::/64")`);
    return n;
  }
}

// ---- names and labels (Kubernetes' own syntax) ----
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export function dnsLabelProblem(s: string): string | undefined {
  if (s.length > 63) return 'must be at most 63 characters';
  if (!DNS_LABEL.test(s)) return `${show(s)} must be lowercase letters, digits and '-', starting and ending with a letter or digit`;
  return undefined;
}
function dnsSubdomainProblem(s: string): string | undefined {
  if (s.length > 253) return 'must be at most 253 characters';
  if (!DNS_SUBDOMAIN.test(s))
    return `${show(s)} must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit`;
  return undefined;
}
/** A label key: `[prefix/]name`, prefix a DNS subdomain, name at most 63 of [A-Za-z0-9-_.]. */
export function labelKeyProblem(k: string): string | undefined {
  const slash = k.indexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined) {
    const p = prefix === '' ? 'is empty' : dnsSubdomainProblem(prefix);
    if (p) return `label key prefix ${show(prefix)} ${p.replace(/^".*?" /, '')}`;
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name))
    return `label key ${show(k)}: the name part must be 1-63 of letters, digits, '-', '_', '.', starting and ending with a letter or digit`;
  return undefined;
}
export function labelValueProblem(v: string): string | undefined {
  if (v === '') return undefined;
  if (v.length > 63 || !LABEL_NAME.test(v))
    return `label value ${show(v)} must be at most 63 of letters, digits, '-', '_', '.', starting and ending with a letter or digit`;
  return undefined;
}
/** IANA service name: what a named port may be called (<= 15, lowercase, a letter, no "--"). */
export function portNameProblem(s: string): string | undefined {
  if (s.length > 15 || !IANA_SVC_NAME.test(s) || !/[a-z]/.test(s) || s.includes('--')) {
    return `${show(s)} is not a port name (at most 15 lowercase letters, digits and '-', with a letter, no '--')`;
  }
  return undefined;
}

function checkLabels(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path);
  if (!o) return;
  for (const [k, val] of Object.entries(o)) {
    const kp = labelKeyProblem(k);
    if (kp) c.add(`${path}.${k}`, kp);
    if (typeof val !== 'string') c.add(`${path}.${k}`, `must be a string, not ${show(val)} (quote it in YAML)`);
    else {
      const vp = labelValueProblem(val);
      if (vp) c.add(`${path}.${k}`, vp);
    }
  }
}

function checkSelector(c: Checker, v: unknown, path: string, required = false): void {
  const o = c.obj(v, path, required);
  if (!o) return;
  checkLabels(c, o.matchLabels, `${path}.matchLabels`);
  (c.arr(o.matchExpressions, `${path}.matchExpressions`) ?? []).forEach((r, i) => {
    const p = `${path}.matchExpressions[${i}]`;
    const e = c.obj(r, p, true);
    if (!e) return;
    const key = c.str(e.key, `${p}.key`, true);
    if (key !== undefined) {
      const kp = labelKeyProblem(key);
      if (kp) c.add(`${p}.key`, kp);
    }
    const op = c.oneOf(e.operator, `${p}.operator`, ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const, true);
    const values = c.arr(e.values, `${p}.values`);
    values?.forEach((x, j) => {
      if (typeof x !== 'string') c.add(`${p}.values[${j}]`, `must be a string, not ${show(x)}`);
    });
    if ((op === 'In' || op === 'NotIn') && !values?.length) c.add(`${p}.values`, `must be non-empty when operator is ${op}`);
    if ((op === 'Exists' || op === 'DoesNotExist') && values?.length) c.add(`${p}.values`, `must be empty when operator is ${op}`);
  });
}

function checkMetadata(c: Checker, kind: Kind, v: unknown): void {
  const m = c.obj(v, 'metadata', true);
  if (!m) return;
  const name = c.str(m.name, 'metadata.name', true);
  if (name !== undefined) {
    const p = kind === 'Namespace' ? dnsLabelProblem(name) : dnsSubdomainProblem(name);
    if (p) c.add('metadata.name', p);
  }
  const ns = c.str(m.namespace, 'metadata.namespace');
  if (ns && !isClusterScoped(kind)) {
    const p = dnsLabelProblem(ns);
    if (p) c.add('metadata.namespace', p);
  }
  checkLabels(c, m.labels, 'metadata.labels');
  const ann = c.obj(m.annotations, 'metadata.annotations');
  for (const [k, val] of Object.entries(ann ?? {}))
    if (typeof val !== 'string') c.add(`metadata.annotations.${k}`, `must be a string, not ${show(val)}`);
}

// ---- NetworkPolicy ----
function checkNpPort(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  c.oneOf(o.protocol, `${path}.protocol`, PROTOCOLS);
  let numeric: number | undefined;
  if (typeof o.port === 'string') {
    // Kubernetes accepts a numeric string as an IntOrString only from YAML ints; "80" is a name
    const p = portNameProblem(o.port);
    if (p) c.add(`${path}.port`, p);
  } else if (o.port !== undefined && o.port !== null) numeric = c.port(o.port, `${path}.port`);
  if (o.endPort !== undefined && o.endPort !== null) {
    if (typeof o.port === 'string') c.add(`${path}.endPort`, 'is only allowed with a numeric port, not a named one');
    else if (o.port === undefined || o.port === null) c.add(`${path}.endPort`, 'needs port (the start of the range)');
    else if (!isInt(o.endPort) || o.endPort < 1 || o.endPort > 65535)
      c.add(`${path}.endPort`, `${show(o.endPort)} is not a port number (1-65535)`);
    else if (numeric !== undefined && o.endPort < numeric) c.add(`${path}.endPort`, `${o.endPort} is below port ${numeric}`);
  }
}

function checkIpBlock(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  const cidr = c.cidr(o.cidr, `${path}.cidr`);
  (c.arr(o.except, `${path}.except`) ?? []).forEach((x, i) => {
    const e = c.cidr(x, `${path}.except[${i}]`);
    if (!e || !cidr) return;
    if (e.family !== cidr.family) c.add(`${path}.except[${i}]`, `${show(x)} is not the same IP family as cidr ${show(o.cidr)}`);
    else if (e.prefix <= cidr.prefix || !contains(network(cidr), network(e)))
      c.add(`${path}.except[${i}]`, `${show(x)} must be a strict subset of cidr ${show(o.cidr)}`);
  });
}

function checkNpPeer(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  const has = (k: string): boolean => o[k] !== undefined && o[k] !== null;
  if (!has('podSelector') && !has('namespaceSelector') && !has('ipBlock')) {
    c.add(path, 'must set podSelector, namespaceSelector or ipBlock');
    return;
  }
  if (has('ipBlock') && (has('podSelector') || has('namespaceSelector')))
    c.add(path, 'ipBlock cannot be combined with podSelector or namespaceSelector');
  if (has('podSelector')) checkSelector(c, o.podSelector, `${path}.podSelector`);
  if (has('namespaceSelector')) checkSelector(c, o.namespaceSelector, `${path}.namespaceSelector`);
  if (has('ipBlock')) checkIpBlock(c, o.ipBlock, `${path}.ipBlock`);
}

function checkNetworkPolicy(c: Checker, doc: Json): void {
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  checkSelector(c, spec.podSelector, 'spec.podSelector', true);
  const types = c.arr(spec.policyTypes, 'spec.policyTypes');
  const seen = new Set<string>();
  types?.forEach((t, i) => {
    const v = c.oneOf(t, `spec.policyTypes[${i}]`, ['Ingress', 'Egress'] as const);
    if (v && seen.has(v)) c.add(`spec.policyTypes[${i}]`, `${v} is listed twice`);
    if (v) seen.add(v);
  });
  for (const [dir, peers] of [
    ['ingress', 'from'],
    ['egress', 'to'],
  ] as const) {
    (c.arr(spec[dir], `spec.${dir}`) ?? []).forEach((r, i) => {
      const p = `spec.${dir}[${i}]`;
      const rule = c.obj(r, p, true);
      if (!rule) return;
      (c.arr(rule[peers], `${p}.${peers}`) ?? []).forEach((x, j) => checkNpPeer(c, x, `${p}.${peers}[${j}]`));
      (c.arr(rule.ports, `${p}.ports`) ?? []).forEach((x, j) => checkNpPort(c, x, `${p}.ports[${j}]`));
    });
  }
}

// ---- AdminNetworkPolicy / BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) ----
function checkExactlyOne(c: Checker, o: Json, path: string, keys: readonly string[]): string | undefined {
  const set = keys.filter((k) => o[k] !== undefined && o[k] !== null);
  if (set.length !== 1) {
    c.add(path, `must set exactly one of ${keys.join(', ')}${set.length ? ` (has ${set.join(', ')})` : ''}`);
    return undefined;
  }
  return set[0];
}

function checkAnpPods(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  checkSelector(c, o.namespaceSelector, `${path}.namespaceSelector`, true);
  checkSelector(c, o.podSelector, `${path}.podSelector`, true);
}

function checkAnpSubjectOrPeer(c: Checker, v: unknown, path: string, keys: readonly string[]): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  const k = checkExactlyOne(c, o, path, keys);
  if (k === 'namespaces') checkSelector(c, o.namespaces, `${path}.namespaces`, true);
  else if (k === 'pods') checkAnpPods(c, o.pods, `${path}.pods`);
  else if (k === 'networks') {
    const nets = c.arr(o.networks, `${path}.networks`, true);
    if (nets && (nets.length < 1 || nets.length > 25)) c.add(`${path}.networks`, 'must list 1 to 25 CIDRs');
    nets?.forEach((x, i) => c.cidr(x, `${path}.networks[${i}]`));
  } else if (k === 'nodes') checkSelector(c, o.nodes, `${path}.nodes`, true);
}

function checkAnpPort(c: Checker, v: unknown, path: string): void {
  const o = c.obj(v, path, true);
  if (!o) return;
  const k = checkExactlyOne(c, o, path, ['portNumber', 'namedPort', 'portRange']);
  if (k === 'portNumber') {
    const pn = c.obj(o.portNumber, `${path}.portNumber`, true);
    if (pn) {
      c.oneOf(pn.protocol, `${path}.portNumber.protocol`, PROTOCOLS);
      c.port(pn.port, `${path}.portNumber.port`);
    }
  } else if (k === 'namedPort') {
    const n = c.str(o.namedPort, `${path}.namedPort`, true);
    const p = n === undefined ? undefined : portNameProblem(n);
    if (p) c.add(`${path}.namedPort`, p);
  } else if (k === 'portRange') {
    const pr = c.obj(o.portRange, `${path}.portRange`, true);
    if (pr) {
      c.oneOf(pr.protocol, `${path}.portRange.protocol`, PROTOCOLS);
      const s = c.port(pr.start, `${path}.portRange.start`);
      const e = c.port(pr.end, `${path}.portRange.end`);
      if (s !== undefined && e !== undefined && e < s) c.add(`${path}.portRange.end`, `${e} is below start ${s}`);
    }
  }
}

function checkAnpRules(c: Checker, spec: Json, actions: readonly string[]): void {
  for (const [dir, peers, peerKeys] of [
    ['ingress', 'from', ['namespaces', 'pods']],
    ['egress', 'to', ['namespaces', 'pods', 'networks', 'nodes']],
  ] as const) {
    const rules = c.arr(spec[dir], `spec.${dir}`) ?? [];
    if (rules.length > 100) c.add(`spec.${dir}`, 'must have at most 100 rules');
    rules.forEach((r, i) => {
      const p = `spec.${dir}[${i}]`;
      const rule = c.obj(r, p, true);
      if (!rule) return;
      const name = c.str(rule.name, `${p}.name`);
      if (name !== undefined && name.length > 100) c.add(`${p}.name`, 'must be at most 100 characters');
      c.oneOf(rule.action, `${p}.action`, actions, true);
      const list = c.arr(rule[peers], `${p}.${peers}`, true);
      if (list && list.length === 0) c.add(`${p}.${peers}`, 'must list at least one peer');
      list?.forEach((x, j) => checkAnpSubjectOrPeer(c, x, `${p}.${peers}[${j}]`, peerKeys));
      (c.arr(rule.ports, `${p}.ports`) ?? []).forEach((x, j) => checkAnpPort(c, x, `${p}.ports[${j}]`));
    });
  }
}

function checkAdminNetworkPolicy(c: Checker, doc: Json): void {
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  if (!isInt(spec.priority) || spec.priority < 0 || spec.priority > 1000)
    c.add('spec.priority', `${show(spec.priority)} must be an integer from 0 to 1000`);
  checkAnpSubjectOrPeer(c, spec.subject, 'spec.subject', ['namespaces', 'pods']);
  checkAnpRules(c, spec, ['Allow', 'Deny', 'Pass']);
}

function checkBaselineAdminNetworkPolicy(c: Checker, doc: Json): void {
  const name = isObj(doc.metadata) ? doc.metadata.name : undefined;
  if (typeof name === 'string' && name !== 'default')
    c.add('metadata.name', `must be "default" (there is one BaselineAdminNetworkPolicy), not ${show(name)}`);
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  checkAnpSubjectOrPeer(c, spec.subject, 'spec.subject', ['namespaces', 'pods']);
  checkAnpRules(c, spec, ['Allow', 'Deny']);
}

// ---- Service ----
function checkService(c: Checker, doc: Json): void {
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  checkLabels(c, spec.selector, 'spec.selector');
  const ports = c.arr(spec.ports, 'spec.ports') ?? [];
  const names = new Set<string>();
  ports.forEach((x, i) => {
    const p = `spec.ports[${i}]`;
    const o = c.obj(x, p, true);
    if (!o) return;
    const name = c.str(o.name, `${p}.name`);
    if (name !== undefined) {
      const dp = dnsLabelProblem(name);
      if (dp) c.add(`${p}.name`, dp);
      if (names.has(name)) c.add(`${p}.name`, `${show(name)} is used by another port`);
      names.add(name);
    } else if (ports.length > 1) c.add(`${p}.name`, 'is required when a Service has more than one port');
    c.oneOf(o.protocol, `${p}.protocol`, PROTOCOLS);
    if (o.port === undefined) c.add(`${p}.port`, 'is required');
    else c.port(o.port, `${p}.port`);
    if (typeof o.targetPort === 'string') {
      const np = portNameProblem(o.targetPort);
      if (np) c.add(`${p}.targetPort`, np);
    } else if (o.targetPort !== undefined) c.port(o.targetPort, `${p}.targetPort`);
  });
  const ip = c.str(spec.clusterIP, 'spec.clusterIP');
  if (ip && ip !== 'None' && !parseCIDR(`${ip}/${ip.includes(':') ? 128 : 32}`))
    c.add('spec.clusterIP', `${show(ip)} is not an IP address or "None"`);
  (c.arr(spec.clusterIPs, 'spec.clusterIPs') ?? []).forEach((x, i) => {
    const s = c.str(x, `spec.clusterIPs[${i}]`, true);
    if (s && s !== 'None' && !parseCIDR(`${s}/${s.includes(':') ? 128 : 32}`))
      c.add(`spec.clusterIPs[${i}]`, `${show(s)} is not an IP address`);
  });
  checkServiceBalancing(c, doc, ports);
  c.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const);
  const cfg = c.obj(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  const cip = cfg ? c.obj(cfg.clientIP, 'spec.sessionAffinityConfig.clientIP') : undefined;
  if (cip && cip.timeoutSeconds !== undefined && (!isInt(cip.timeoutSeconds) || cip.timeoutSeconds < 1 || cip.timeoutSeconds > 86400)) {
    c.add('spec.sessionAffinityConfig.clientIP.timeoutSeconds', `${show(cip.timeoutSeconds)} must be 1 to 86400`);
  }
}

/** Load balancing (docs/services.md): the algorithm and health-check annotations, port conflicts. */
function checkServiceBalancing(c: Checker, doc: Json, ports: unknown[]): void {
  const ann = isObj(doc.metadata) && isObj(doc.metadata.annotations) ? doc.metadata.annotations : {};
  const algo = ann[ALGORITHM_ANNOTATION];
  if (algo !== undefined) {
    const p = typeof algo === 'string' ? algorithmProblem(algo) : 'must be a string';
    if (p) c.add(`metadata.annotations.${ALGORITHM_ANNOTATION}`, p);
  }
  const hc = ann[HEALTH_ANNOTATION];
  if (hc !== undefined) {
    const h = typeof hc === 'string' ? parseHealthCheck(hc) : 'must be a string holding JSON';
    if (typeof h === 'string') c.add(`metadata.annotations.${HEALTH_ANNOTATION}`, h);
  }
  const seen = new Map<string, number>();
  ports.forEach((x, i) => {
    if (!isObj(x) || !isInt(x.port)) return;
    const k = `${x.port}/${typeof x.protocol === 'string' ? x.protocol : 'TCP'}`;
    const j = seen.get(k);
    if (j !== undefined) c.add(`spec.ports[${i}]`, `${k} is also spec.ports[${j}] (port conflict)`);
    else seen.set(k, i);
  });
}

// ---- cni-ts.dev/v1 kinds ----
function checkEndpoint(c: Checker, doc: Json): void {
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  for (const k of ['node', 'network', 'containerId', 'ifname']) c.str(spec[k], `spec.${k}`, true);
  const weight = isObj(doc.metadata) && isObj(doc.metadata.labels) ? doc.metadata.labels[WEIGHT_LABEL] : undefined;
  const wp = typeof weight === 'string' ? weightProblem(weight) : undefined;
  if (wp) c.add(`metadata.labels.${WEIGHT_LABEL}`, wp);
  (c.arr(spec.ips, 'spec.ips', true) ?? []).forEach((x, i) => c.cidr(x, `spec.ips[${i}]`));
  c.str(spec.hostInterface, 'spec.hostInterface');
  c.str(spec.mac, 'spec.mac');
  c.str(spec.sandbox, 'spec.sandbox');
  (c.arr(spec.gateways, 'spec.gateways') ?? []).forEach((x, i) => c.str(x, `spec.gateways[${i}]`, true));
  (c.arr(spec.aliases, 'spec.aliases') ?? []).forEach((x, i) => c.str(x, `spec.aliases[${i}]`, true));
  (c.arr(spec.ports, 'spec.ports') ?? []).forEach((x, i) => {
    const p = `spec.ports[${i}]`;
    const o = c.obj(x, p, true);
    if (!o) return;
    c.port(o.containerPort, `${p}.containerPort`);
    c.oneOf(o.protocol, `${p}.protocol`, PROTOCOLS);
    const n = c.str(o.name, `${p}.name`);
    const np = n === undefined ? undefined : portNameProblem(n);
    if (np) c.add(`${p}.name`, np);
  });
}

function checkEndpointSlice(c: Checker, doc: Json): void {
  const svc = isObj(doc.metadata) && isObj(doc.metadata.labels) ? doc.metadata.labels['kubernetes.io/service-name'] : undefined;
  if (typeof svc !== 'string' || !svc)
    c.add('metadata.labels.kubernetes.io/service-name', 'is required (the Service this slice belongs to)');
  (c.arr(doc.endpoints, 'endpoints', true) ?? []).forEach((x, i) => {
    const o = c.obj(x, `endpoints[${i}]`, true);
    (c.arr(o?.addresses, `endpoints[${i}].addresses`, true) ?? []).forEach((a, j) => {
      const s = c.str(a, `endpoints[${i}].addresses[${j}]`, true);
      if (s && !parseCIDR(`${s}/${s.includes(':') ? 128 : 32}`))
        c.add(`endpoints[${i}].addresses[${j}]`, `${show(s)} is not an IP address`);
    });
  });
  (c.arr(doc.ports, 'ports') ?? []).forEach((x, i) => {
    const o = c.obj(x, `ports[${i}]`, true);
    if (!o) return;
    c.port(o.port, `ports[${i}].port`);
    c.oneOf(o.protocol, `ports[${i}].protocol`, PROTOCOLS);
  });
}

function checkSubnetLease(c: Checker, doc: Json): void {
  const spec = c.obj(doc.spec, 'spec', true);
  if (!spec) return;
  c.str(spec.network, 'spec.network', true);
  c.cidr(spec.subnet, 'spec.subnet');
  c.str(spec.publicIP, 'spec.publicIP', true);
  c.str(spec.vtepMAC, 'spec.vtepMAC', true);
  const exp = c.str(spec.expires, 'spec.expires', true);
  if (exp !== undefined && Number.isNaN(Date.parse(exp))) c.add('spec.expires', `${show(exp)} is not a timestamp`);
}

const BY_KIND: Record<Kind, (c: Checker, doc: Json) => void> = {
  Namespace: () => undefined,
  NetworkPolicy: checkNetworkPolicy,
  AdminNetworkPolicy: checkAdminNetworkPolicy,
  BaselineAdminNetworkPolicy: checkBaselineAdminNetworkPolicy,
  Service: checkService,
  Endpoint: checkEndpoint,
  EndpointSlice: checkEndpointSlice,
  SubnetLease: checkSubnetLease,
  BackendHealth: () => undefined,
  DockerNetwork: () => undefined,
  DockerEndpoint: () => undefined,
  DockerPool: () => undefined,
  Node: checkNode,
};

function checkNode(c: Checker, doc: Json): void {
  const st = c.obj(doc.status, 'status');
  if (!st) return;
  (c.arr(st.addresses, 'status.addresses') ?? []).forEach((a, i) => {
    const o = c.obj(a, `status.addresses[${i}]`, true);
    if (!o) return;
    c.str(o.type, `status.addresses[${i}].type`, true);
    const addr = c.str(o.address, `status.addresses[${i}].address`, true);
    if (addr !== undefined && (o.type === 'InternalIP' || o.type === 'ExternalIP') && !parseIP(addr))
      c.add(`status.addresses[${i}].address`, `${show(addr)} is not an IP address`);
  });
}

/**
 * Every problem of one document, each `field.path: what is wrong`; empty when valid.
 * Checks apiVersion/kind first (an unknown kind has no further checks).
 */
export function validateObject(doc: unknown): string[] {
  const c = new Checker();
  const o = c.obj(doc, '(document)', true);
  if (!o) return c.problems;
  const kind = c.str(o.kind, 'kind', true);
  if (kind === undefined) return c.problems;
  if (!(kind in API_VERSIONS)) {
    c.add('kind', `${show(kind)} is not a kind cni-ts stores (${KINDS.join(', ')})`);
    return c.problems;
  }
  const k = kind as Kind;
  const api = c.str(o.apiVersion, 'apiVersion', true);
  if (api !== undefined && api !== API_VERSIONS[k]) c.add('apiVersion', `${show(api)} is not the apiVersion of ${k} (${API_VERSIONS[k]})`);
  checkMetadata(c, k, o.metadata);
  BY_KIND[k](c, o);
  return c.problems;
}

/** A document's name for messages: `NetworkPolicy x/deny-all`, or what is known of it. */
export function describeDocument(doc: unknown): string {
  if (!isObj(doc)) return '(not an object)';
  const kind = typeof doc.kind === 'string' ? doc.kind : '(no kind)';
  const m = isObj(doc.metadata) ? doc.metadata : {};
  const name = typeof m.name === 'string' ? m.name : '(no name)';
  const ns = typeof m.namespace === 'string' && kind in API_VERSIONS && !isClusterScoped(kind as Kind) ? `${m.namespace}/` : '';
  return `${kind} ${ns}${name}`;
}

export class ObjectValidationError extends Error {
  constructor(
    readonly document: string,
    readonly problems: string[],
  ) {
    super(`${document}: ${problems.join('; ')}`);
    this.name = 'ObjectValidationError';
  }
}

/** Validate and return the document typed; throws ObjectValidationError listing the problems. */
export function assertValidObject(doc: unknown, label = describeDocument(doc)): CniObject {
  const problems = validateObject(doc);
  if (problems.length) throw new ObjectValidationError(label, problems);
  return doc as CniObject;
}

// ---- defaulting (what the API server fills in) ----

/** policyTypes as Kubernetes defaults them: Ingress always, Egress when egress rules exist. */
export function effectivePolicyTypes(np: NetworkPolicy): ('Ingress' | 'Egress')[] {
  if (np.spec.policyTypes?.length) return np.spec.policyTypes;
  return np.spec.egress?.length ? ['Ingress', 'Egress'] : ['Ingress'];
}

const withProtocol = (p: NetworkPolicyPort): NetworkPolicyPort => ({ ...p, protocol: p.protocol ?? 'TCP' });

/** A NetworkPolicy with policyTypes and port protocols (TCP) filled in; the input is not changed. */
export function defaultNetworkPolicy(np: NetworkPolicy): NetworkPolicy {
  const spec = { ...np.spec, podSelector: np.spec.podSelector ?? {}, policyTypes: effectivePolicyTypes(np) };
  if (np.spec.ingress) spec.ingress = np.spec.ingress.map((r) => (r.ports ? { ...r, ports: r.ports.map(withProtocol) } : r));
  if (np.spec.egress) spec.egress = np.spec.egress.map((r) => (r.ports ? { ...r, ports: r.ports.map(withProtocol) } : r));
  return { ...np, spec };
}

/** A Service with port protocols (TCP), targetPort (= port) and sessionAffinity (None) filled in. */
export function defaultService(svc: Service): Service {
  const spec = { ...svc.spec, sessionAffinity: svc.spec.sessionAffinity ?? 'None' };
  if (svc.spec.ports) spec.ports = svc.spec.ports.map((p) => ({ ...p, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port }));
  return { ...svc, spec };
}

/** AdminNetworkPolicy / Baseline port ranges get protocol TCP when it is left out. */
export function defaultAdminPolicy<T extends AdminNetworkPolicy | BaselineAdminNetworkPolicy>(p: T): T {
  const fix = <R extends { ports?: AnpPort[] }>(r: R): R =>
    r.ports
      ? {
          ...r,
          ports: r.ports.map((x) => ('portRange' in x ? { portRange: { ...x.portRange, protocol: x.portRange.protocol ?? 'TCP' } } : x)),
        }
      : r;
  const spec = { ...p.spec } as T['spec'];
  if (p.spec.ingress) (spec as { ingress?: unknown[] }).ingress = p.spec.ingress.map(fix);
  if (p.spec.egress) (spec as { egress?: unknown[] }).egress = p.spec.egress.map(fix);
  return { ...p, spec };
}

/** Fill in what the API server would for any kind (others are returned as they are). */
export function withDefaults(o: CniObject): CniObject {
  switch (o.kind) {
    case 'NetworkPolicy':
      return defaultNetworkPolicy(o);
    case 'Service':
      return defaultService(o);
    case 'AdminNetworkPolicy':
    case 'BaselineAdminNetworkPolicy':
      return defaultAdminPolicy(o);
    default:
      return o;
  }
}
