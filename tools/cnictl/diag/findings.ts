/**
 * The diagnosis, pure: what the probes and the kernel showed (Evidence) → findings
 * `{severity, cause, evidence}` in plain words. An `error` explains why the path fails (exit 1);
 * a `warning` is worth knowing but does not stop the path. Causes are checked from the most
 * basic up (an interface that is down also takes its routes away: that is one cause, not two),
 * and a symptom already explained by a cause is not reported again.
 */
import type { DnsReport, Finding, InterfaceState, PingReport, PolicyReport, PortReport, RouteReport } from './schema.ts';

export interface EndEvidence {
  /** "x/a", "host", "10.1.2.3" */
  label: string;
  /** a pod (an Endpoint of the store) */
  pod: boolean;
  interface: InterfaceState | null;
  hostInterface: InterfaceState | null;
}

export interface BackendEvidence {
  address: string;
  port: number;
  pod: string | null;
  healthy: boolean;
  reason: string | null;
}

export interface Evidence {
  source: EndEvidence;
  target: EndEvidence & { ip: string | null; service: { ref: string; backends: BackendEvidence[] } | null };
  /** the address that was asked for (DNS name or TARGET as given) */
  input: string;
  ping: PingReport | null;
  route: RouteReport | null;
  port: PortReport | null;
  dns: DnsReport | null;
  policy: PolicyReport | null;
}

const ifName = (i: InterfaceState | null, fallback: string): string => i?.name ?? fallback;

export function diagnose(e: Evidence): Finding[] {
  const out: Finding[] = [];
  const err = (cause: string, evidence: string[]): void => void out.push({ severity: 'error', cause, evidence });
  const warn = (cause: string, evidence: string[]): void => void out.push({ severity: 'warning', cause, evidence });
  const tgt = e.target.label;

  // 1. names
  if (e.dns && e.dns.rcode !== 'NOERROR') {
    if (e.dns.rcode === 'NXDOMAIN')
      err(`NXDOMAIN for ${e.dns.name}`, [
        `the cluster DNS server ${e.dns.server} answered NXDOMAIN${e.dns.ms !== null ? ` in ${e.dns.ms} ms` : ''}: no such name`,
      ]);
    else if (e.dns.rcode === 'TIMEOUT')
      err(`no answer from the DNS server ${e.dns.server} for ${e.dns.name}`, ['dig got no reply (timeout or unreachable server)']);
    else err(`${e.dns.rcode} for ${e.dns.name}`, [`the cluster DNS server ${e.dns.server} answered ${e.dns.rcode}`]);
    return out; // nothing to reach
  }
  if (e.dns && !e.target.ip) {
    err(`no address for ${e.dns.name}`, [`the cluster DNS server ${e.dns.server} answered NOERROR without an address record`]);
    return out;
  }

  // 2. interfaces
  let linkDown = false;
  const ends: Array<[EndEvidence, string]> = [
    [e.source, 'source'],
    [e.target, 'target'],
  ];
  for (const [end] of ends) {
    if (end.interface && !end.interface.up) {
      linkDown = true;
      err(`${ifName(end.interface, 'eth0')} of ${end.label} is down`, [
        `ip link in ${end.label}'s network namespace: ${end.interface.name} is not UP`,
      ]);
    }
    if (end.hostInterface && !end.hostInterface.up) {
      linkDown = true;
      err(`host side ${end.hostInterface.name} of ${end.label} is down`, [
        `ip link on the node: ${end.hostInterface.name} (the host end of ${end.label}'s veth) is not UP`,
      ]);
    }
  }

  // 3. routing from the source
  const noRoute = e.route?.error ? e.route.error : null;
  if (noRoute && !linkDown)
    err(`no route to ${e.target.ip ?? e.input} in ${e.source.label}`, [
      `ip route get ${e.target.ip ?? e.input} in ${e.source.label}: ${noRoute}`,
    ]);
  const unreachable = (e.ping?.errors ?? []).filter((x) => /Unreachable/i.test(x) && !/Port Unreachable/i.test(x));
  if (!noRoute && !linkDown && unreachable.length && e.ping && e.ping.received === 0)
    err(
      `${e.target.ip ?? e.input} is unreachable from ${e.source.label}`,
      unreachable.map((x) => `ping: ${x}`),
    );

  // 4. services: backends
  const svc = e.target.service;
  if (svc) {
    const bad = svc.backends.filter((b) => !b.healthy);
    const evidence = bad.map(
      (b) => `backend ${b.address}:${b.port}${b.pod ? ` (${b.pod})` : ''}: unhealthy${b.reason ? `: ${b.reason}` : ''}`,
    );
    if (!svc.backends.length) {
      err(`no backend behind svc ${svc.ref}`, ['its selector matches no endpoint and no EndpointSlice names one']);
    } else if (bad.length === svc.backends.length) {
      err(`no healthy backend behind svc ${svc.ref} (${bad.length} failing health check${bad.length > 1 ? 's' : ''})`, evidence);
    } else if (bad.length) warn(`${bad.length} of ${svc.backends.length} backends of svc ${svc.ref} unhealthy (out of rotation)`, evidence);
  }

  // 5. policy
  const p = e.policy;
  if (p && p.verdict === 'deny') {
    const counter = p.counter
      ? `counter ${p.counter} ${p.counterDelta === null ? 'not readable' : p.counterDelta > 0 ? `moved by ${p.counterDelta} packet${p.counterDelta > 1 ? 's' : ''} during the test` : 'did not move during the test'}`
      : null;
    // a service is judged at the backend its VIP is translated to (the first one)
    const backend = svc?.backends[0]?.pod;
    const judged = backend ? `${backend} (backend of svc ${svc!.ref})` : tgt;
    err(
      `dropped by ${p.policy ?? 'network policy'} (${p.side ?? 'ingress'} of ${p.side === 'egress' ? e.source.label : judged}; ${p.rule ?? 'no rule allows it'})`,
      [`policy trace ${e.source.label} -> ${tgt} ${p.flow}: DENY`, ...(counter ? [counter] : [])],
    );
  }

  // 6. path MTU
  const mtu = e.source.interface?.mtu ?? null;
  if (e.route?.pathMtu && mtu && e.route.pathMtu < mtu && !linkDown) {
    err(`path MTU ${e.route.pathMtu} but ${e.source.label}'s ${ifName(e.source.interface, 'eth0')} MTU ${mtu}`, [
      `tracepath (DF probes) to ${e.target.ip ?? e.input}: pmtu ${e.route.pathMtu}`,
      `packets between ${e.route.pathMtu} and ${mtu} bytes are dropped (or fragmented) on the way: TCP without working PMTU discovery stalls on large transfers`,
    ]);
  }

  const explained = out.some((f) => f.severity === 'error');

  // 7. the port
  if (e.port && e.port.state !== 'open' && !explained) {
    const what = `${e.port.protocol.toUpperCase()}/${e.port.port} of ${tgt}`;
    if (e.port.state === 'refused')
      err(`nothing listens on ${what}`, [
        `${e.port.protocol === 'tcp' ? 'connection refused (TCP reset)' : 'ICMP port unreachable'} from ${e.port.address}${e.port.connectMs !== null ? ` after ${e.port.connectMs} ms` : ''}`,
        ...(e.ping && e.ping.received > 0 ? [`ping: ${e.ping.received}/${e.ping.sent} answered: the host is there`] : []),
      ]);
    else if (e.port.protocol === 'tcp')
      err(`${what} does not answer (filtered); no cause found`, [
        `no SYN-ACK and no reset within the time bound`,
        ...(e.ping ? [`ping: ${e.ping.received}/${e.ping.sent} answered`] : []),
      ]);
    else warn(`${what} did not answer (UDP: open or filtered)`, [e.port.detail ?? 'no answer']);
  }

  // 8. ping alone
  const portOk = e.port?.state === 'open';
  if (e.ping && e.ping.sent > 0 && e.ping.received === 0 && !explained && !out.length) {
    if (portOk)
      warn(`${tgt} does not answer ping but ${e.port!.protocol.toUpperCase()}/${e.port!.port} is open (ICMP filtered?)`, [
        `ping: 0/${e.ping.sent} answered`,
      ]);
    else
      err(`${tgt} does not answer; no cause found`, [
        `ping: 0/${e.ping.sent} answered`,
        ...(e.route ? [`tracepath: ${e.route.reached ? 'reached' : 'not reached'} after ${e.route.hops.length} hop(s)`] : []),
      ]);
  } else if (e.ping && e.ping.received > 0 && e.ping.received < e.ping.sent && !explained) {
    warn(`${e.ping.lossPercent}% packet loss to ${tgt}`, [`ping: ${e.ping.received}/${e.ping.sent} answered`]);
  }
  return out;
}
