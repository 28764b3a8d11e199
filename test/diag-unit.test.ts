/**
 * `cnictl diag`, the pure parts: parsing ping / tracepath / dig output, the capture summary of
 * tshark fields, argument parsing, and the diagnosis (evidence → findings): each cause alone,
 * and a symptom already explained by a cause is not reported again.
 */
import { describe, expect, it } from 'vitest';
import { Ajv } from 'ajv';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDig, parsePing, parseTracepath } from '../tools/cnictl/diag/probes.ts';
import { summarize } from '../tools/cnictl/diag/capture.ts';
import { diagnose, type Evidence } from '../tools/cnictl/diag/findings.ts';
import { parseConnectivity } from '../tools/cnictl/diag/index.ts';
import { connectivityText } from '../tools/cnictl/diag/report.ts';
import { exitCodeOf, type ConnectivityReport } from '../tools/cnictl/diag/schema.ts';
import { UsageError } from '../tools/cnictl/common.ts';
import { ROOT } from './helpers/run.ts';

const PING_OK = `PING 10.250.2.2 (10.250.2.2) 56(84) bytes of data.
64 bytes from 10.250.2.2: icmp_seq=1 ttl=63 time=0.137 ms
64 bytes from 10.250.2.2: icmp_seq=2 ttl=63 time=0.077 ms
64 bytes from 10.250.2.2: icmp_seq=3 ttl=63 time=0.069 ms

--- 10.250.2.2 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 404ms
rtt min/avg/max/mdev = 0.069/0.094/0.137/0.030 ms`;
const PING_UNREACH = `PING 10.250.3.2 (10.250.3.2) 56(84) bytes of data.
From 10.250.1.1 icmp_seq=1 Destination Net Unreachable
From 10.250.1.1 icmp_seq=2 Destination Net Unreachable

--- 10.250.3.2 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 0ms
`;
const TRACE_MTU = ` 1?: [LOCALHOST]                      pmtu 1500
 1:  10.250.1.1                                            0.076ms 
 1:  10.250.1.1                                            0.010ms 
 2:  10.250.1.1                                           18.600ms pmtu 1400
 2:  10.250.2.2                                            0.085ms reached
     Resume: pmtu 1400 hops 2 back 2 `;
const TRACE_CUT = ` 1?: [LOCALHOST]                      pmtu 1500
 1:  10.250.1.1                                            0.069ms 
 2:  no reply
 3:  no reply`;

const base = (): Evidence => ({
  source: {
    label: 'x/a',
    pod: true,
    interface: { name: 'eth0', up: true, mtu: 1500 },
    hostInterface: { name: 'veth1', up: true, mtu: 1500 },
  },
  target: {
    label: 'x/b',
    pod: true,
    interface: { name: 'eth0', up: true, mtu: 1500 },
    hostInterface: { name: 'veth2', up: true, mtu: 1500 },
    ip: '10.1.0.3',
    service: null,
  },
  input: 'x/b',
  ping: { ...parsePing('10.1.0.3', PING_OK) },
  route: {
    via: { dev: 'eth0', gateway: null, src: '10.1.0.2' },
    error: null,
    hops: [{ hop: 1, address: '10.1.0.3', name: 'x/b', rttMs: 0.1 }],
    reached: true,
    pathMtu: 1500,
  },
  port: { address: '10.1.0.3', port: 80, protocol: 'tcp', state: 'open', connectMs: 0.3, detail: null },
  dns: null,
  policy: {
    verdict: 'allow',
    flow: 'TCP/80',
    policy: null,
    rule: 'no policy isolates either side',
    side: 'ingress',
    counter: null,
    counterDelta: null,
  },
});
const lost = (e: Evidence): Evidence => ({
  ...e,
  ping: { ...e.ping!, received: 0, lossPercent: 100, rttMinMs: null, rttAvgMs: null, rttMaxMs: null },
});
const causes = (e: Evidence): string[] => diagnose(e).map((f) => `${f.severity}: ${f.cause}`);

describe('parsers', () => {
  it('ping: counts, loss, rtt; ICMP errors once each', () => {
    expect(parsePing('10.250.2.2', PING_OK)).toEqual({
      target: '10.250.2.2',
      sent: 3,
      received: 3,
      lossPercent: 0,
      rttMinMs: 0.069,
      rttAvgMs: 0.094,
      rttMaxMs: 0.137,
      errors: [],
    });
    expect(parsePing('10.250.3.2', PING_UNREACH)).toMatchObject({
      sent: 2,
      received: 0,
      lossPercent: 100,
      rttAvgMs: null,
      errors: ['From 10.250.1.1 Destination Net Unreachable'],
    });
    expect(parsePing('x', 'ping: connect: Network is unreachable')).toMatchObject({ sent: 0, received: 0, lossPercent: 100 });
  });

  it('tracepath: last line per hop, reached, path MTU from Resume or the last pmtu seen', () => {
    expect(parseTracepath(TRACE_MTU)).toEqual({
      hops: [
        { hop: 1, address: '10.250.1.1', name: null, rttMs: 0.01 },
        { hop: 2, address: '10.250.2.2', name: null, rttMs: 0.085 },
      ],
      reached: true,
      pathMtu: 1400,
    });
    expect(parseTracepath(TRACE_CUT)).toEqual({
      hops: [
        { hop: 1, address: '10.250.1.1', name: null, rttMs: 0.069 },
        { hop: 2, address: null, name: null, rttMs: null },
        { hop: 3, address: null, name: null, rttMs: null },
      ],
      reached: false,
      pathMtu: 1500,
    });
  });

  it('tracepath: an ICMP unreachable hop is named so', () => {
    expect(
      parseTracepath(
        ' 1?: [LOCALHOST]                      pmtu 1500\n 1:  10.251.0.1                                          3071.024ms !H\n     Resume: pmtu 1500 ',
      ),
    ).toEqual({
      hops: [{ hop: 1, address: '10.251.0.1', name: 'host unreachable (!H)', rttMs: 3071.024 }],
      reached: false,
      pathMtu: 1500,
    });
  });

  it('dig: rcode, answers, server, time; no server → TIMEOUT', () => {
    const out = `;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; ANSWER SECTION:
web.x.svc.cluster.local. 300	IN	A	10.96.7.10

;; Query time: 3 msec
;; SERVER: 10.1.0.1#53(10.1.0.1) (UDP)`;
    expect(parseDig('web.x.svc.cluster.local', '10.1.0.1', out)).toEqual({
      name: 'web.x.svc.cluster.local',
      server: '10.1.0.1',
      rcode: 'NOERROR',
      answers: ['A 10.96.7.10'],
      ms: 3,
    });
    expect(parseDig('a', '10.1.0.1', ';; communications error to 10.1.0.1#53: timed out\n;; no servers could be reached')).toMatchObject({
      rcode: 'TIMEOUT',
      answers: [],
      ms: null,
    });
    expect(parseDig('nosuch', '10.1.0.1', ';; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 2\n;; Query time: 0 msec').rcode).toBe(
      'NXDOMAIN',
    );
  });
});

describe('capture summary (tshark fields)', () => {
  const row = (
    f: Partial<Record<'src' | 'dst' | 'proto' | 'stream' | 'syn' | 'ack' | 'rst' | 'retrans' | 'itype' | 'icode', string>>,
  ): string =>
    [
      f.src ?? '',
      f.dst ?? '',
      '',
      '',
      f.proto ?? '',
      f.stream ?? '',
      f.syn ?? '',
      f.ack ?? '',
      f.rst ?? '',
      f.retrans ?? '',
      f.itype ?? '',
      f.icode ?? '',
    ].join('\t');
  it('handshakes, unanswered SYNs, resets, retransmissions, ICMP errors, top talkers', () => {
    const a = '10.0.0.2';
    const b = '10.0.0.3';
    const lines = [
      // stream 0: a full handshake
      row({ src: a, dst: b, proto: 'TCP', stream: '0', syn: '1', ack: '0', rst: '0' }),
      row({ src: b, dst: a, proto: 'TCP', stream: '0', syn: '1', ack: '1', rst: '0' }),
      row({ src: a, dst: b, proto: 'TCP', stream: '0', syn: '0', ack: '1', rst: '0' }),
      // stream 1: a SYN and its retransmission, never answered
      row({ src: a, dst: b, proto: 'TCP', stream: '1', syn: '1', ack: '0', rst: '0' }),
      row({ src: a, dst: b, proto: 'TCP', stream: '1', syn: '1', ack: '0', rst: '0', retrans: '1' }),
      // stream 2: refused
      row({ src: a, dst: b, proto: 'TCP', stream: '2', syn: '1', ack: '0', rst: '0' }),
      row({ src: b, dst: a, proto: 'TCP', stream: '2', syn: '0', ack: '1', rst: '1' }),
      row({ src: '10.0.0.1', dst: a, proto: 'ICMP', itype: '3', icode: '4' }),
      row({ src: a, dst: b, proto: 'ICMP', itype: '8', icode: '0' }),
      '',
    ].join('\n');
    const s = summarize('veth1', 'x/a', lines);
    expect(s).toMatchObject({
      interface: 'veth1',
      of: 'x/a',
      packets: 9,
      protocols: { TCP: 7, ICMP: 2 },
      handshakesCompleted: 1,
      synWithoutAnswer: 1,
      resets: 1,
      retransmissions: 1,
    });
    expect(s.icmpErrors).toEqual([{ type: 3, code: 4, text: 'fragmentation needed', count: 1 }]);
    expect(s.topTalkers[0]).toEqual({ src: a, dst: b, packets: 6 });
    expect(summarize('v', 'x', '').packets).toBe(0);
  });
});

describe('arguments', () => {
  it('connectivity: defaults and bounds; usage errors', () => {
    expect(parseConnectivity(['x/b', '--from', 'x/a', '--port', '53/udp'])).toMatchObject({
      target: 'x/b',
      from: 'x/a',
      fromHost: false,
      port: { port: 53, protocol: 'udp' },
      count: 3,
      json: false,
    });
    expect(parseConnectivity(['10.0.0.1', '-o', 'json', '--capture', '3', '-w', 'f.pcap'])).toMatchObject({
      fromHost: true,
      capture: 3,
      write: 'f.pcap',
      json: true,
    });
    for (const bad of [
      [],
      ['a', 'b'],
      ['x', '--port', '0'],
      ['x', '--port', '80/sctp'],
      ['x', '--count', '99'],
      ['x', '-w', 'f'],
      ['x', '--from', 'x/a', '--from-host'],
      ['x', '-o', 'yaml'],
    ])
      expect(() => parseConnectivity(bad)).toThrow(UsageError);
  });
});

describe('diagnosis: evidence → findings', () => {
  it('a working path: no finding, exit code 0', () => {
    expect(diagnose(base())).toEqual([]);
    expect(exitCodeOf([])).toBe(0);
  });

  it('a container interface down: that cause alone (not the lost pings, not the port)', () => {
    const e = lost(base());
    e.target.interface!.up = false;
    e.port = { ...e.port!, state: 'filtered', connectMs: null };
    expect(causes(e)).toEqual(['error: eth0 of x/b is down']);
    expect(exitCodeOf(diagnose(e))).toBe(1);
  });

  it('the host side of a veth down', () => {
    const e = lost(base());
    e.source.hostInterface!.up = false;
    expect(causes(e)).toEqual(['error: host side veth1 of x/a is down']);
  });

  it('no route (and not again as "unreachable" or "does not answer")', () => {
    const e = lost(base());
    e.route = { via: null, error: 'Network is unreachable', hops: [], reached: false, pathMtu: null };
    e.port = null;
    expect(causes(e)).toEqual(['error: no route to 10.1.0.3 in x/a']);
  });

  it('ICMP net unreachable from a router', () => {
    const e = lost(base());
    e.ping!.errors = ['From 10.1.0.1 Destination Net Unreachable'];
    e.port = null;
    expect(causes(e)).toEqual(['error: 10.1.0.3 is unreachable from x/a']);
  });

  it('a policy drop names the policy and the counter', () => {
    const e = lost(base());
    e.port = { ...e.port!, state: 'filtered', connectMs: null };
    e.policy = {
      verdict: 'deny',
      flow: 'TCP/80',
      policy: 'NetworkPolicy x/deny-web',
      rule: 'isolated by it; no rule allows x/a on TCP/80',
      side: 'ingress',
      counter: 'default_deny_in',
      counterDelta: 2,
    };
    const f = diagnose(e);
    expect(f.map((x) => x.cause)).toEqual([
      'dropped by NetworkPolicy x/deny-web (ingress of x/b; isolated by it; no rule allows x/a on TCP/80)',
    ]);
    expect(f[0]!.evidence).toContain('counter default_deny_in moved by 2 packets during the test');
  });

  it('an egress policy drop is on the source side', () => {
    const e = base();
    e.policy = {
      verdict: 'deny',
      flow: 'ICMP',
      policy: 'NetworkPolicy x/no-out',
      rule: 'isolated by it; no rule allows x/a to x/b on ICMP',
      side: 'egress',
      counter: 'default_deny_eg',
      counterDelta: 0,
    };
    expect(causes(e)[0]).toBe(
      'error: dropped by NetworkPolicy x/no-out (egress of x/a; isolated by it; no rule allows x/a to x/b on ICMP)',
    );
  });

  it('services: no healthy backend explains a refused VIP; some unhealthy is a warning', () => {
    const e = base();
    e.ping = null;
    e.target = {
      ...e.target,
      label: 'svc x/web',
      pod: false,
      interface: null,
      hostInterface: null,
      ip: '10.96.0.5',
      service: { ref: 'x/web', backends: [{ address: '10.1.0.4', port: 80, pod: 'x/c', healthy: false, reason: 'connect ECONNREFUSED' }] },
    };
    e.port = { address: '10.96.0.5', port: 80, protocol: 'tcp', state: 'refused', connectMs: 0.2, detail: null };
    expect(causes(e)).toEqual(['error: no healthy backend behind svc x/web (1 failing health check)']);
    e.target.service!.backends.push({ address: '10.1.0.5', port: 80, pod: 'x/d', healthy: true, reason: null });
    e.port.state = 'open';
    expect(causes(e)).toEqual(['warning: 1 of 2 backends of svc x/web unhealthy (out of rotation)']);
    expect(exitCodeOf(diagnose(e))).toBe(0);
    e.target.service!.backends = [];
    e.port.state = 'refused';
    expect(causes(e)).toEqual(['error: no backend behind svc x/web']);
  });

  it('a policy drop behind a service names the backend it was judged at', () => {
    const e = base();
    e.ping = null;
    e.target = {
      ...e.target,
      label: 'svc x/web',
      pod: false,
      interface: null,
      hostInterface: null,
      ip: '10.96.0.5',
      service: { ref: 'x/web', backends: [{ address: '10.1.0.4', port: 80, pod: 'x/c', healthy: true, reason: null }] },
    };
    e.port = { address: '10.96.0.5', port: 80, protocol: 'tcp', state: 'filtered', connectMs: null, detail: null };
    e.policy = {
      verdict: 'deny',
      flow: 'TCP/80',
      policy: 'NetworkPolicy x/deny',
      rule: 'isolated by it; no rule allows x/a on TCP/80',
      side: 'ingress',
      counter: null,
      counterDelta: null,
    };
    expect(causes(e)).toEqual([
      'error: dropped by NetworkPolicy x/deny (ingress of x/c (backend of svc x/web); isolated by it; no rule allows x/a on TCP/80)',
    ]);
  });

  it('path MTU below the source interface MTU', () => {
    const e = base();
    e.route!.pathMtu = 1400;
    expect(causes(e)).toEqual(["error: path MTU 1400 but x/a's eth0 MTU 1500"]);
  });

  it('DNS: NXDOMAIN, a timeout, an answer without address', () => {
    const e = base();
    e.target.ip = null;
    e.dns = { name: 'web.x.svc.cluster.local', server: '10.1.0.1', rcode: 'NXDOMAIN', answers: [], ms: 1 };
    expect(causes(e)).toEqual(['error: NXDOMAIN for web.x.svc.cluster.local']);
    e.dns.rcode = 'TIMEOUT';
    expect(causes(e)).toEqual(['error: no answer from the DNS server 10.1.0.1 for web.x.svc.cluster.local']);
    e.dns.rcode = 'NOERROR';
    expect(causes(e)).toEqual(['error: no address for web.x.svc.cluster.local']);
  });

  it('the port: refused (the host answers ping), filtered without a cause, UDP silence is a warning', () => {
    const e = base();
    e.port = { ...e.port!, state: 'refused' };
    expect(causes(e)).toEqual(['error: nothing listens on TCP/80 of x/b']);
    e.port = { ...e.port, state: 'filtered', connectMs: null };
    expect(causes(e)).toEqual(['error: TCP/80 of x/b does not answer (filtered); no cause found']);
    e.port = { ...e.port, protocol: 'udp', port: 53 };
    expect(causes(e)).toEqual(['warning: UDP/53 of x/b did not answer (UDP: open or filtered)']);
  });

  it('ping alone: lost with the port open is a warning; lost without anything else is an error', () => {
    const e = lost(base());
    expect(causes(e)).toEqual(['warning: x/b does not answer ping but TCP/80 is open (ICMP filtered?)']);
    e.port = null;
    expect(causes(e)).toEqual(['error: x/b does not answer; no cause found']);
    const p = base();
    p.ping = { ...p.ping!, received: 2, lossPercent: 33 };
    expect(causes(p)).toEqual(['warning: 33% packet loss to x/b']);
  });
});

describe('report', () => {
  it('human text puts the diagnosis first; JSON matches the schema', () => {
    const e = base();
    const r: ConnectivityReport = {
      kind: 'connectivity',
      source: {
        label: 'x/a',
        pod: 'x/a',
        ip: '10.1.0.2',
        netns: '/run/netns/a',
        interface: e.source.interface,
        hostInterface: e.source.hostInterface,
      },
      target: {
        label: 'x/b',
        pod: 'x/b',
        ip: '10.1.0.3',
        netns: '/run/netns/b',
        interface: e.target.interface,
        hostInterface: e.target.hostInterface,
        input: 'x/b',
        service: null,
      },
      ping: e.ping,
      route: e.route,
      port: e.port,
      dns: null,
      policy: e.policy,
      capture: null,
      diagnosis: [{ severity: 'error', cause: 'eth0 of x/b is down', evidence: ['ip link'] }],
    };
    expect(connectivityText(r).split('\n').slice(0, 3)).toEqual(['diagnosis:', '  ERROR: eth0 of x/b is down', '    - ip link']);
    const schema = JSON.parse(readFileSync(path.join(ROOT, 'docs', 'diagnostics.schema.json'), 'utf8')) as Record<string, unknown>;
    const validate = new Ajv({ strict: false }).compile(schema);
    expect(validate(r)).toBe(true);
    expect(validate({ ...r, diagnosis: [{ severity: 'fatal', cause: 'x', evidence: [] }] })).toBe(false);
  });
});
