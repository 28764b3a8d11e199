/**
 * Human output of `cnictl diag`: the diagnosis first, then one short section per probe. Pure
 * (report in, text out); `-o json` prints the report as it is (schema.ts).
 */
import type {
  CaptureReport,
  ConnectivityReport,
  DnsReport,
  EndpointReport,
  EndReport,
  Finding,
  PingReport,
  PolicyReport,
  PortReport,
  RouteReport,
  ServiceReport,
} from './schema.ts';

const ms = (v: number | null): string => (v === null ? '-' : `${v} ms`);

export function diagnosisText(d: Finding[]): string[] {
  if (!d.length) return ['diagnosis: the path works (no finding)'];
  const out = ['diagnosis:'];
  for (const f of d) {
    out.push(`  ${f.severity.toUpperCase()}: ${f.cause}`);
    for (const e of f.evidence) out.push(`    - ${e}`);
  }
  return out;
}

const endText = (e: EndReport): string => {
  const parts = [
    e.ip,
    e.interface ? `${e.interface.name} ${e.interface.up ? 'up' : 'DOWN'} mtu ${e.interface.mtu ?? '?'}` : null,
    e.hostInterface ? `host side ${e.hostInterface.name} ${e.hostInterface.up ? 'up' : 'DOWN'}` : null,
  ].filter(Boolean);
  return `${e.label}${parts.length ? ` (${parts.join(', ')})` : ''}`;
};

export function pingText(p: PingReport): string[] {
  return [
    `ping ${p.target}: ${p.sent} sent, ${p.received} received, ${p.lossPercent}% loss${p.rttAvgMs !== null ? `, rtt min/avg/max ${p.rttMinMs}/${p.rttAvgMs}/${p.rttMaxMs} ms` : ''}`,
    ...p.errors.map((e) => `  ${e}`),
  ];
}

export function routeText(r: RouteReport): string[] {
  const out = [
    `route: ${r.error ? `none (${r.error})` : `dev ${r.via?.dev ?? '?'}${r.via?.gateway ? ` via ${r.via.gateway}` : ''}${r.via?.src ? ` src ${r.via.src}` : ''}`}; ${r.reached ? 'target reached' : 'target not reached'}; path MTU ${r.pathMtu ?? 'unknown'}`,
  ];
  for (const h of r.hops)
    out.push(
      `  ${String(h.hop).padStart(2)}  ${h.address ?? '* (no reply)'}${h.name ? ` (${h.name})` : ''}${h.rttMs !== null ? `  ${h.rttMs} ms` : ''}`,
    );
  return out;
}

export const portText = (p: PortReport): string[] => [
  `port ${p.address} ${p.protocol.toUpperCase()}/${p.port}: ${p.state}${p.connectMs !== null ? ` in ${p.connectMs} ms` : ''}${p.detail ? ` (${p.detail})` : ''}`,
];

export const dnsText = (d: DnsReport): string[] => [
  `dns ${d.name} @${d.server}: ${d.rcode}${d.answers.length ? ` ${d.answers.join(', ')}` : ''} in ${ms(d.ms)}`,
];

export function policyText(p: PolicyReport): string[] {
  return [
    `policy ${p.flow}: ${p.verdict.toUpperCase()}${p.policy ? ` by ${p.policy}` : ''}${p.side ? ` (${p.side})` : ''}`,
    ...(p.rule ? [`  ${p.rule}`] : []),
    ...(p.counter
      ? [`  counter ${p.counter}: ${p.counterDelta === null ? 'not readable' : `+${p.counterDelta} packets during the test`}`]
      : []),
  ];
}

export function captureText(c: CaptureReport): string[] {
  const out = [`capture (${c.seconds} s${c.file ? `, kept in ${c.file}` : ''})${c.error ? `: ${c.error}` : ''}`];
  for (const s of c.interfaces) {
    out.push(
      `  ${s.interface} (${s.of}): ${s.packets} packets ${
        Object.entries(s.protocols)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || ''
      }`.trimEnd(),
    );
    out.push(
      `    TCP: ${s.handshakesCompleted} handshakes completed, ${s.synWithoutAnswer} SYNs without answer, ${s.resets} resets, ${s.retransmissions} retransmissions`,
    );
    if (s.icmpErrors.length) out.push(`    ICMP errors: ${s.icmpErrors.map((i) => `${i.text} x${i.count}`).join(', ')}`);
    if (s.topTalkers.length) out.push(`    top talkers: ${s.topTalkers.map((t) => `${t.src} -> ${t.dst} ${t.packets}`).join(', ')}`);
  }
  return out;
}

export function connectivityText(r: ConnectivityReport): string {
  const lines = [
    ...diagnosisText(r.diagnosis),
    '',
    `from ${endText(r.source)} to ${endText(r.target)}${r.target.input !== r.target.label ? ` [${r.target.input}]` : ''}`,
  ];
  if (r.dns) lines.push(...dnsText(r.dns));
  if (r.ping) lines.push(...pingText(r.ping));
  if (r.route) lines.push(...routeText(r.route));
  if (r.port) lines.push(...portText(r.port));
  if (r.policy) lines.push(...policyText(r.policy));
  if (r.capture) lines.push(...captureText(r.capture));
  return `${lines.join('\n')}\n`;
}

export function serviceText(r: ServiceReport): string {
  const lines = [
    ...diagnosisText(r.diagnosis),
    '',
    `service ${r.service.namespace}/${r.service.name}: VIP ${r.service.vip ?? '<none>'} ports ${r.service.ports.join(', ') || '<none>'}, from ${endText(r.source)}`,
  ];
  if (r.dns) lines.push(...dnsText(r.dns));
  for (const v of r.vip) lines.push(...portText(v).map((l) => `VIP ${l}`));
  lines.push(`backends: ${r.backends.length}`);
  for (const b of r.backends) {
    lines.push(
      `  ${b.address}:${b.targetPort}${b.pod ? ` (${b.pod})` : ''}: ${b.healthy ? 'healthy' : `UNHEALTHY${b.reason ? ` (${b.reason})` : ''}`}`,
    );
    if (b.ping) lines.push(...pingText(b.ping).map((l) => `    ${l}`));
    if (b.portTest) lines.push(...portText(b.portTest).map((l) => `    ${l}`));
  }
  return `${lines.join('\n')}\n`;
}

export function endpointText(r: EndpointReport): string {
  const e = r.endpoint;
  const lines = [
    ...diagnosisText(r.diagnosis),
    '',
    `endpoint ${e.namespace}/${e.name} on ${e.node} (network ${e.network}, container ${e.containerId}) ${e.ips.join(', ')}`,
    `  netns ${e.sandbox ?? '<unknown>'}, host side ${r.hostInterface ? `${r.hostInterface.name} ${r.hostInterface.up ? 'up' : 'DOWN'} mtu ${r.hostInterface.mtu ?? '?'}` : '<none>'}`,
  ];
  lines.push(`CNI CHECK: ${r.check.result}${r.check.detail ? ` (${r.check.detail})` : ''}`);
  lines.push('interfaces:');
  for (const i of r.interfaces)
    lines.push(`  ${i.name} ${i.up ? 'up' : 'DOWN'} mtu ${i.mtu ?? '?'} ${i.mac ?? ''} ${i.addresses.join(' ')}`.trimEnd());
  lines.push('routes:');
  for (const x of r.routes)
    lines.push(`  ${x.dst}${x.gateway ? ` via ${x.gateway}` : ''}${x.dev ? ` dev ${x.dev}` : ''}${x.mtu ? ` mtu ${x.mtu}` : ''}`);
  lines.push(`policies: ${r.policy.length ? '' : 'none select it'}`.trimEnd());
  for (const p of r.policy) {
    lines.push(`  ${p.direction}: ${p.policy}`);
    for (const x of p.rules) lines.push(`    ${x}`);
  }
  if (r.counters.length) {
    lines.push('counters:');
    for (const c of r.counters) lines.push(`  ${c.name}: ${c.packets} packets, ${c.bytes} bytes (${c.rule})`);
  }
  lines.push(`connections: ${r.connections.length}`);
  for (const c of r.connections.slice(0, 20))
    lines.push(`  ${[c.protocol, c.state, `${c.src}:${c.sport} -> ${c.dst}:${c.dport}`].filter(Boolean).join(' ')}`);
  if (r.connections.length > 20) lines.push(`  ... ${r.connections.length - 20} more (-o json: all)`);
  return `${lines.join('\n')}\n`;
}
