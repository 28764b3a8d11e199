/**
 * The shapes of `cnictl diag ... -o json` (the JSON Schema of them is docs/diagnostics.schema.json;
 * test/diag*.test.ts validate real output against it). Values that could not be measured are
 * null, sections that were not run are absent.
 */

export type Severity = 'error' | 'warning';

/** One finding of the diagnosis: what is wrong, in plain words, and what shows it. */
export interface Finding {
  severity: Severity;
  cause: string;
  evidence: string[];
}

export interface PingReport {
  target: string;
  sent: number;
  received: number;
  lossPercent: number;
  rttMinMs: number | null;
  rttAvgMs: number | null;
  rttMaxMs: number | null;
  /** ICMP errors ping printed ("From 10.1.2.1 icmp_seq=1 Destination Net Unreachable") */
  errors: string[];
}

export interface Hop {
  hop: number;
  /** null: no reply at this hop */
  address: string | null;
  /** the endpoint, gateway or node this address is, when known */
  name: string | null;
  rttMs: number | null;
}

export interface RouteReport {
  /** the route the source's kernel picks (`ip route get`), or why there is none */
  via: { dev: string | null; gateway: string | null; src: string | null } | null;
  error: string | null;
  hops: Hop[];
  reached: boolean;
  /** path MTU found with DF probes (tracepath), null when unknown */
  pathMtu: number | null;
}

export type PortState = 'open' | 'refused' | 'filtered';

export interface PortReport {
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  state: PortState;
  /** TCP: time to the completed handshake (or to the reset); UDP: to the answer */
  connectMs: number | null;
  detail: string | null;
}

export interface DnsReport {
  name: string;
  server: string;
  /** NOERROR, NXDOMAIN, SERVFAIL, ..., or TIMEOUT when no answer came */
  rcode: string;
  answers: string[];
  ms: number | null;
}

export interface PolicyReport {
  verdict: 'allow' | 'deny';
  /** protocol and port the verdict is for ("TCP/80", "ICMP") */
  flow: string;
  /** the policy that decides it ("NetworkPolicy x/deny-web"), null when no policy does */
  policy: string | null;
  /** the rule or default that decides it, in words */
  rule: string | null;
  /** ingress or egress: the side that decided */
  side: 'ingress' | 'egress' | null;
  /** the named nft counter of that rule or default, when there is one */
  counter: string | null;
  /** packets it counted during the test (null: no counter or table not readable) */
  counterDelta: number | null;
}

export interface CaptureSide {
  interface: string;
  /** whose host-side interface it is ("x/a") */
  of: string;
  packets: number;
  protocols: Record<string, number>;
  handshakesCompleted: number;
  synWithoutAnswer: number;
  resets: number;
  retransmissions: number;
  icmpErrors: Array<{ type: number; code: number; text: string; count: number }>;
  topTalkers: Array<{ src: string; dst: string; packets: number }>;
}

export interface CaptureReport {
  seconds: number;
  /** the pcap kept with -w */
  file: string | null;
  interfaces: CaptureSide[];
  error: string | null;
}

export interface InterfaceState {
  name: string;
  up: boolean;
  mtu: number | null;
}

export interface EndReport {
  /** "x/a", "host", an address or a name as given */
  label: string;
  pod: string | null;
  ip: string | null;
  netns: string | null;
  interface: InterfaceState | null;
  hostInterface: InterfaceState | null;
}

export interface ConnectivityReport {
  kind: 'connectivity';
  source: EndReport;
  target: EndReport & { input: string; service: string | null };
  ping: PingReport | null;
  route: RouteReport | null;
  port: PortReport | null;
  dns: DnsReport | null;
  policy: PolicyReport | null;
  capture: CaptureReport | null;
  diagnosis: Finding[];
}

export interface ServiceBackendReport {
  address: string;
  targetPort: number;
  pod: string | null;
  healthy: boolean;
  reason: string | null;
  ping: PingReport | null;
  portTest: PortReport | null;
}

export interface ServiceReport {
  kind: 'service';
  service: { namespace: string; name: string; vip: string | null; ports: string[] };
  source: EndReport;
  dns: DnsReport | null;
  vip: PortReport[];
  backends: ServiceBackendReport[];
  diagnosis: Finding[];
}

export interface EndpointReport {
  kind: 'endpoint';
  endpoint: {
    namespace: string;
    name: string;
    node: string;
    network: string;
    containerId: string;
    ips: string[];
    sandbox: string | null;
    hostInterface: string | null;
  };
  interfaces: Array<{ name: string; up: boolean; mtu: number | null; addresses: string[]; mac: string | null }>;
  routes: Array<{ dst: string; gateway: string | null; dev: string | null; mtu: number | null }>;
  hostInterface: InterfaceState | null;
  check: { result: 'ok' | 'failed' | 'skipped'; detail: string | null };
  policy: Array<{ direction: 'ingress' | 'egress'; policy: string; rules: string[] }>;
  counters: Array<{ name: string; rule: string; packets: number; bytes: number }>;
  connections: Array<{ protocol: string; state: string | null; src: string; dst: string; sport: number; dport: number }>;
  diagnosis: Finding[];
}

export type DiagReport = ConnectivityReport | ServiceReport | EndpointReport;

/** Exit code of a report: 1 when a finding explains a failure (an error), else 0. */
export const exitCodeOf = (diagnosis: Finding[]): number => (diagnosis.some((f) => f.severity === 'error') ? 1 : 0);
