/** `cnictl policy trace`: argument parsing, resolution of the ends, the report (text and JSON). */
import { describe, expect, it } from 'vitest';
import { anp, np, objects, podIPs } from './policy-unit-model.ts';
import { formatTrace, parsePort, parseTraceArgs, ruleSummary, run, trace } from '../tools/cnictl/trace.ts';
import type { Ctx } from '../tools/cnictl/common.ts';
import type { CniObject, Kind } from '../shared/objects/types.ts';
import type { ObjectStore } from '../shared/store/types.ts';
import type { PolicyObjects } from '../shared/policy/index.ts';

const o = objects({
  policies: [
    np('x', 'deny-in', { podSelector: {} }),
    np('x', 'a-from-b', {
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ port: 'serve-80-tcp' }] }],
    }),
  ],
  anps: [
    anp('deny-z', {
      priority: 3,
      subject: { namespaces: {} },
      ingress: [{ name: 'no-z', action: 'Deny', from: [{ namespaces: { matchLabels: { ns: 'z' } } }] }],
    }),
  ],
});

/** A read-only store over fixed objects (list is all trace uses). */
function storeOf(p: PolicyObjects): ObjectStore {
  const all: CniObject[] = [...p.endpoints, ...p.namespaces, ...p.policies, ...p.anps, ...(p.banp ? [p.banp] : [])];
  const unused = (): never => {
    throw new Error('not used');
  };
  return {
    get: unused,
    put: unused,
    delete: unused,
    watch: unused,
    close: async () => undefined,
    list: async <T extends CniObject>(kind: Kind) => ({
      items: all.filter((x) => x.kind === kind).map((object, i) => ({ object: object as T, revision: i + 1 })),
      revision: all.length,
    }),
  };
}

function ctxOf(p: PolicyObjects): Ctx & { output: string } {
  const c = {
    output: '',
    configPath: '/nonexistent',
    config: () => {
      throw new Error('not used');
    },
    store: async () => storeOf(p),
    out: (s: string) => void (c.output += s),
    err: () => undefined,
    stdin: () => '',
  };
  return c as unknown as Ctx & { output: string };
}

describe('cnictl policy trace', () => {
  it('parses its arguments', () => {
    expect(parseTraceArgs(['trace', '--from', 'x/b', '--to', 'x/a', '--port', '80/tcp'])).toEqual({
      from: 'x/b',
      to: 'x/a',
      protocol: 'TCP',
      port: 80,
      family: undefined,
      json: false,
    });
    expect(parseTraceArgs(['trace', '--from', 'x/b', '--to', '10.0.0.1', '-p', '53/udp', '-6', '-o', 'json'])).toMatchObject({
      protocol: 'UDP',
      port: 53,
      family: 6,
      json: true,
    });
    expect(parsePort('icmp')).toEqual({ protocol: 'ICMP' });
    expect(parsePort('443')).toEqual({ protocol: 'TCP', port: 443 });
    expect(() => parsePort('80/http')).toThrow(/--port/);
    expect(() => parsePort('70000')).toThrow(/--port/);
    expect(() => parseTraceArgs(['trace', '--from', 'x/b'])).toThrow(/--from and --to/);
    expect(() => parseTraceArgs(['explain'])).toThrow(/unknown policy subcommand/);
    expect(() => parseTraceArgs([])).toThrow(/needs a subcommand/);
  });

  it('reports the deciding rule, what selects each side, and the verdict', async () => {
    const ctx = ctxOf(o);
    expect(await run(ctx, ['trace', '--from', 'x/b', '--to', 'x/a', '--port', '80/tcp'])).toBe(0);
    expect(ctx.output).toBe(
      [
        `flow: x/b (${podIPs(1).v4}) -> x/a (${podIPs(0).v4}) TCP/80 IPv4`,
        `egress of x/b (${podIPs(1).v4}, node n1): ALLOW, default allow (not isolated)`,
        '  selected by: nothing',
        '  isolated by NetworkPolicy: no',
        `ingress of x/a (${podIPs(0).v4}, node n1): ALLOW, NetworkPolicy x/a-from-b ingress rule 0: Allow`,
        "  rule: from pods pod=b of the policy's namespace, ports TCP/serve-80-tcp",
        '  selected by: AdminNetworkPolicy deny-z (priority 3), NetworkPolicy x/a-from-b, NetworkPolicy x/deny-in',
        '  isolated by NetworkPolicy: yes',
        'verdict: ALLOW (ingress: NetworkPolicy x/a-from-b ingress rule 0: Allow)',
        '',
      ].join('\n'),
    );
  });

  it('denials name the default or the admin rule', () => {
    const args = (from: string, to: string, port = '80/tcp') => parseTraceArgs(['trace', '--from', from, '--to', to, '--port', port]);
    const r1 = trace(o, args('y/a', 'x/a'));
    expect(r1.verdict).toBe('deny');
    expect(formatTrace(r1, args('y/a', 'x/a'), o)).toContain('verdict: DENY (ingress: default deny (isolated, no rule allows))');
    const r2 = trace(o, args('z/c', 'y/a'));
    expect(r2.decidedBy).toMatchObject({ kind: 'AdminNetworkPolicy', name: 'deny-z', ruleName: 'no-z', action: 'Deny', side: 'ingress' });
    expect(formatTrace(r2, args('z/c', 'y/a'), o)).toContain('AdminNetworkPolicy deny-z (priority 3)');
    expect(formatTrace(r2, args('z/c', 'y/a'), o)).toContain('  rule: Deny from namespaces ns=z, ports all');
    // the named port does not cover 81
    expect(trace(o, args('x/b', 'x/a', '81/tcp')).verdict).toBe('deny');
    // an address: a pod's is that pod, another is outside
    expect(trace(o, args(podIPs(1).v4, 'x/a')).src.pod).toBe('x/b');
    expect(trace(o, args('x/a', '192.0.2.7')).ingress.decidedBy).toEqual({ default: 'not-a-pod' });
  });

  it('summarizes rules of every shape', () => {
    const p = objects({
      policies: [
        np('y', 'mix', {
          podSelector: {},
          policyTypes: ['Egress'],
          egress: [
            {
              to: [
                { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
                {
                  namespaceSelector: { matchLabels: { ns: 'z' } },
                  podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'b'] }] },
                },
              ],
              ports: [
                { protocol: 'UDP', port: 53 },
                { port: 8000, endPort: 8080 },
              ],
            },
            {},
          ],
        }),
      ],
      anps: [
        anp('nets', {
          priority: 1,
          subject: { namespaces: {} },
          egress: [
            {
              action: 'Allow',
              to: [{ networks: ['192.0.2.0/24'] }, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { pod: 'c' } } } }],
              ports: [{ portRange: { start: 1, end: 9 } }, { namedPort: 'dns' }, { portNumber: { protocol: 'SCTP', port: 7 } }],
            },
          ],
        }),
      ],
    });
    expect(ruleSummary(p, { kind: 'NetworkPolicy', namespace: 'y', name: 'mix', direction: 'egress', rule: 0 })).toBe(
      'to 10.0.0.0/8 except 10.1.0.0/16; pods pod in (a,b) in namespaces ns=z, ports UDP/53, TCP/8000-8080',
    );
    expect(ruleSummary(p, { kind: 'NetworkPolicy', namespace: 'y', name: 'mix', direction: 'egress', rule: 1 })).toBe(
      'to anywhere, ports all',
    );
    expect(ruleSummary(p, { kind: 'AdminNetworkPolicy', name: 'nets', direction: 'egress', rule: 0 })).toBe(
      'Allow to 192.0.2.0/24; pods pod=c in namespaces all, ports TCP/1-9, dns, SCTP/7',
    );
    expect(ruleSummary(p, { kind: 'AdminNetworkPolicy', name: 'gone', direction: 'egress', rule: 0 })).toBeUndefined();
  });

  it('-o json is the whole evaluation; unknown endpoints are errors', async () => {
    const ctx = ctxOf(o);
    await run(ctx, ['trace', '--from', 'x/c', '--to', 'x/a', '-o', 'json', '-6']);
    const r = JSON.parse(ctx.output);
    expect(r).toMatchObject({ verdict: 'deny', family: 6, src: { pod: 'x/c', ip: podIPs(2).v6 }, ingress: { isolated: true } });
    await expect(run(ctxOf(o), ['trace', '--from', 'x/nope', '--to', 'x/a'])).rejects.toThrow(/no endpoint x\/nope/);
  });
});
