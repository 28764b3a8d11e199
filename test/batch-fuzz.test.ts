/**
 * Property tests over every batch builder (issue 10 item 1): whatever a value holds (random
 * bytes, blanks, line breaks, quotes, `#`, `;`, unicode), either the builder refuses it with a
 * CniError (code 7 or 100-range) or the script it emits means exactly what the builder wrote:
 *  - `ip -batch` / `bridge -batch`: the script, read by a model of iproute2's batch reader
 *    (getcmdline + makeargs), gives back the very argv lists the builder made;
 *  - `nft -f`: the value entered as one plain word or one quoted string, i.e. the script with
 *    the value is the script with a harmless placeholder, the placeholder replaced.
 * Bounded: a few thousand cases per builder, no kernel tool is run.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
import { batchScript, nft, nftExpr, nftString, restoreLine, tokenProblem } from '../shared/kernel/batch.ts';
import * as exec from '../shared/kernel/exec.ts';
import { bridgeBatch, ipBatch } from '../shared/kernel/ip.ts';
import { ifaceConfigCommands, routeCommand } from '../shared/kernel/link.ts';
import { vethAddCommand } from '../shared/kernel/veth.ts';
import { bridgeCommands, portVlanCommands } from '../plugins/bridge/bridge.ts';
import { macspoofScript } from '../plugins/bridge/macspoof.ts';
import { deleteRulesScript, masqueradeBaseScript, masqueradeRulesScript } from '../shared/firewall/masquerade-nft.ts';
import { ruleLines } from '../shared/firewall/masquerade-iptables.ts';
import { addRestore } from '../plugins/portmap/iptables.ts';
import { settingsOf as overlaySettings } from '../shared/overlay/config.ts';
import { masqScript, planPeers, planVtep, type HostState } from '../shared/overlay/host.ts';
import { addScript, removeLines } from '../plugins/portmap/nft.ts';
import type { Settings as PortmapSettings, FamilyPlan } from '../plugins/portmap/config.ts';

const RUNS = 3000;

/** Strings that try hard to break a line-oriented parser, mixed with ordinary ones. */
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 24 }),
  fc.string({
    unit: fc.constantFrom(
      ' ',
      '\t',
      '\n',
      '\r',
      '\v',
      '\f',
      '\u00a0',
      '\u2028',
      '#',
      ';',
      '"',
      "'",
      '\\',
      '{',
      '}',
      '$',
      '`',
      '\0',
      'a',
      '1',
      '.',
      ':',
      '/',
      '-',
      'é',
      '😀',
    ),
    maxLength: 16,
  }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.constantFrom(
    'eth0',
    '10.0.0.1',
    '10.0.0.0/24',
    'fe80::1',
    '02:00:00:00:00:01',
    'x self permanent\nfdb append 00:00:00:00:00:00 dev v dst 1.2.3.4',
    'a;flush ruleset',
    '"q"',
    'a # b',
    '',
    'lo\\',
    'ok',
  ),
);

/** What iproute2's batch reader makes of a script: getcmdline (cut at '#', join "\\\n") + makeargs. */
function iprouteBatch(script: string): string[][] {
  const out: string[][] = [];
  const lines = script.split(/(?<=\n)/);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    const hash = line.indexOf('#');
    if (hash >= 0) line = line.slice(0, hash);
    while (line.endsWith('\\\n') && i + 1 < lines.length) line = line.slice(0, -2) + lines[++i];
    const nul = line.indexOf('\0');
    if (nul >= 0) line = line.slice(0, nul);
    const argv: string[] = [];
    let cp = 0;
    const ws = ' \t\r\n';
    while (cp < line.length) {
      while (cp < line.length && ws.includes(line[cp])) cp++;
      if (cp >= line.length) break;
      if (line[cp] === '"' || line[cp] === "'") {
        const q = line[cp++];
        const end = line.indexOf(q, cp);
        if (end < 0) throw new Error('Unterminated quoted string');
        argv.push(line.slice(cp, end));
        cp = end + 1;
      } else {
        let end = cp;
        while (end < line.length && !ws.includes(line[end])) end++;
        argv.push(line.slice(cp, end));
        cp = end + 1;
      }
    }
    if (argv.length) out.push(argv);
  }
  return out;
}

function refusedProperly(e: unknown): boolean {
  return e instanceof CniError && (e.code === 7 || (e.code >= 100 && e.code < 200));
}

/** The builder's commands, through the one routine, read back identically, or refused. */
function ipProperty(build: (v: string) => string[][]): (v: string) => void {
  return (v) => {
    let cmds: string[][];
    try {
      cmds = build(v);
    } catch (e) {
      expect(refusedProperly(e), String(e)).toBe(true);
      return;
    }
    let script: string;
    try {
      script = batchScript(cmds);
    } catch (e) {
      expect(refusedProperly(e), String(e)).toBe(true);
      expect(cmds.flat().some((a) => tokenProblem(a) !== undefined)).toBe(true);
      return;
    }
    expect(iprouteBatch(script)).toEqual(cmds);
  };
}

/**
 * A harmless stand-in for `v`, of the same shape where the builder's output depends on it
 * (an address family follows from ":"; an empty optional value means "not set").
 */
const placeholderFor = (v: string): string => (v === '' ? '' : v.includes(':') ? 'PLACE:HOLDER0' : 'PLACEHOLDER0');

/** The value went in as one plain word or inside one quoted string, or the builder refused it. */
function nftProperty(build: (v: string) => string): (v: string) => void {
  return (v) => {
    let script: string;
    try {
      script = build(v);
    } catch (e) {
      expect(refusedProperly(e), String(e)).toBe(true);
      return;
    }
    const P = placeholderFor(v);
    if (P === '') return;
    const reference = build(P);
    expect(script).toBe(reference.split(P).join(v));
    // nothing the nft lexer would read as a new statement, comment, block, quote or escape
    expect(/[\n;#{}"\\$`]|[^ -~]/.test(v)).toBe(false);
    expect(script.split('\n').length).toBe(reference.split('\n').length);
  };
}

describe('ip -batch / bridge -batch builders', () => {
  it('batchScript: any argv is read back exactly, or refused', () => {
    fc.assert(
      fc.property(fc.array(fc.array(hostile, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }), (cmds) =>
        ipProperty(() => cmds)(''),
      ),
      { numRuns: RUNS },
    );
  });
  it('refuses exactly what is not one plain printable ASCII word', () => {
    fc.assert(
      fc.property(hostile, (v) => {
        const ok = v !== '' && /^[!-~]+$/.test(v) && !/["'#;\\{}$`]/.test(v);
        expect(tokenProblem(v) === undefined).toBe(ok);
      }),
      { numRuns: RUNS },
    );
  });
  const cases: Array<[string, (v: string) => string[][]]> = [
    ['veth pair: host name', (v) => [vethAddCommand({ hostName: v, peerName: 'eth0', peerNetns: '/run/netns/x' })]],
    ['veth pair: peer name', (v) => [vethAddCommand({ hostName: 'veth1', peerName: v, peerNetns: '/run/netns/x' })]],
    ['veth pair: netns path', (v) => [vethAddCommand({ hostName: 'veth1', peerName: 'eth0', peerNetns: v, hostMac: '02:00:00:00:00:01' })]],
    ['interface config: name and address', (v) => ifaceConfigCommands(v, { addresses: [{ cidr: '10.0.0.2/24' }, { cidr: v }], up: true })],
    ['route: destination and gateway', (v) => [routeCommand('eth0', { dst: v, gw: v })]],
    [
      'bridge device: name',
      (v) =>
        bridgeCommands(
          { name: v, promisc: false, gateways: [], forceAddress: false, vlanFiltering: false },
          undefined,
          '02:00:00:00:00:01',
          true,
        ),
    ],
    ['bridge vlan (bridge -batch): port', (v) => portVlanCommands(v, 10, [[20, 30]], false)],
  ];
  for (const [name, build] of cases) {
    it(name, () => fc.assert(fc.property(hostile, ipProperty(build)), { numRuns: RUNS }));
  }

  it('overlay peers (ip -batch routes and neighbours, bridge -batch fdb): lease publicIP and vtepMAC', () => {
    const s = overlaySettings({ name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/var/lib/x' });
    const mine = { subnet: '10.244.1.0/24', publicIP: '192.0.2.1', vtepMAC: '02:00:00:00:00:01' };
    const st: HostState = { links: [], routes: [], neigh: [], fdb: [] };
    fc.assert(
      fc.property(hostile, hostile, (ip, mac) => {
        const plan = planPeers(s, mine, [mine, { subnet: '10.244.2.0/24', publicIP: ip, vtepMAC: mac }], st, true);
        ipProperty(() => plan.fdb)('');
        ipProperty(() => plan.ip)('');
      }),
      { numRuns: RUNS },
    );
  });

  it('overlay VTEP (ip -batch): lease vtepMAC', () => {
    const s = overlaySettings({ name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/var/lib/x' });
    const st: HostState = { links: [], routes: [], neigh: [], fdb: [] };
    const u = { dev: 'eth0', ip: '192.0.2.1', family: 4 as const, mtu: 1500 };
    fc.assert(
      fc.property(
        hostile,
        ipProperty((mac) => planVtep(s, u, { subnet: '10.244.1.0/24', publicIP: '192.0.2.1', vtepMAC: mac }, st).cmds),
      ),
      { numRuns: RUNS },
    );
  });
});

describe('the sinks', () => {
  it('ipBatch and bridgeBatch refuse an unplain value before starting any process', async () => {
    // only values the routine must refuse: nothing is ever run on the host by this test
    await fc.assert(
      fc.asyncProperty(
        hostile.filter((v) => tokenProblem(v) !== undefined),
        async (v) => {
          const before = exec.spawnCount;
          for (const sink of [ipBatch, bridgeBatch]) {
            const e = await sink([
              ['link', 'set', 'dev', 'hcnone0', 'alias', 'ok'],
              ['link', 'set', 'dev', v, 'up'],
            ]).catch((x: unknown) => x);
            expect(refusedProperly(e), String(e)).toBe(true);
          }
          expect(exec.spawnCount).toBe(before);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('nft -f builders', () => {
  const owner = (containerId: string, ifname: string) => ({ network: 'net', containerId, ifname });
  const cases: Array<[string, (v: string) => string]> = [
    ['masquerade base: table', (v) => masqueradeBaseScript(v)],
    ['masquerade rule: table', (v) => masqueradeRulesScript(v, owner('c', 'eth0'), [{ ip: '10.0.0.2', subnet: '10.0.0.0/24' }])],
    ['masquerade rule: address', (v) => masqueradeRulesScript('t', owner('c', 'eth0'), [{ ip: v, subnet: '10.0.0.0/24' }])],
    ['masquerade rule: subnet', (v) => masqueradeRulesScript('t', owner('c', 'eth0'), [{ ip: '10.0.0.2', subnet: v }])],
    [
      'rule deletion: what nft -j listed',
      (v) =>
        deleteRulesScript([
          { family: 'inet', table: v, chain: 'postrouting', handle: 4 },
          { family: 'inet', table: 't', chain: v, handle: 5 },
        ]),
    ],
    ['macspoofchk: port and MAC', (v) => macspoofScript('t', owner('c', 'eth0'), v, v)],
    [
      'overlay masquerade: leased subnet',
      (v) =>
        masqScript(overlaySettings({ name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/x' }), {
          subnet: v,
          publicIP: '192.0.2.1',
          vtepMAC: '02:00:00:00:00:01',
        }),
    ],
  ];
  for (const [name, build] of cases) {
    it(name, () => fc.assert(fc.property(hostile, nftProperty(build)), { numRuns: RUNS }));
  }

  it('masquerade rule: owner (container ID, ifname) in the comment', () => {
    const base = masqueradeRulesScript('t', owner('c', 'eth0'), [{ ip: '10.0.0.2', subnet: '10.0.0.0/24' }]);
    fc.assert(
      fc.property(hostile, hostile, (id, ifname) => {
        const out = masqueradeRulesScript('t', owner(id, ifname), [{ ip: '10.0.0.2', subnet: '10.0.0.0/24' }]);
        const comment = /comment "([^"]*)"\n$/.exec(out)?.[1];
        expect(comment).toMatch(/^cni:[0-9a-f]{8}:[0-9a-f]{16} [A-Za-z0-9_.:/-]*$/);
        expect(out.split('\n').length).toBe(base.split('\n').length);
      }),
      { numRuns: RUNS },
    );
  });

  const pm = { nftTable: 'cni_portmap', snat: true, masqAll: false, mark: 0x2000 } as unknown as PortmapSettings;
  const plan = (v: string, field: 'hostIP' | 'ip' | 'subnet' | 'protocol'): FamilyPlan[] => [
    {
      container: { family: 4, ip: field === 'ip' ? v : '10.0.0.2', subnet: field === 'subnet' ? v : '10.0.0.0/24' },
      mappings: [
        { hostPort: 8080, containerPort: 80, protocol: field === 'protocol' ? v : 'tcp', ...(field === 'hostIP' ? { hostIP: v } : {}) },
      ],
      conditions: [],
    } as unknown as FamilyPlan,
  ];
  for (const field of ['hostIP', 'ip', 'subnet', 'protocol'] as const) {
    it(`portmap: mapping ${field}`, () =>
      fc.assert(
        fc.property(
          hostile,
          nftProperty((v) => addScript(pm, 'tag1', 'c eth0', plan(v, field), undefined)),
        ),
        { numRuns: RUNS },
      ));
  }
  it('portmap: table, attachment comment, removal of listed elements', () => {
    fc.assert(
      fc.property(
        hostile,
        nftProperty((v) => addScript({ ...pm, nftTable: v }, 'tag1', 'c eth0', plan('10.0.0.2', 'ip'), undefined)),
      ),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(
        hostile,
        nftProperty((v) =>
          removeLines('t', { chain: 'pm-x', chainExists: true, elements: [{ map: 'hostport4', key: `tcp . ${v}`, target: 'pm-x' }] }).join(
            '\n',
          ),
        ),
      ),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(hostile, (v) => {
        try {
          const out = addScript(pm, 'tag1', v, plan('10.0.0.2', 'ip'), undefined);
          expect(/["\\]|[^ -~]/.test(v)).toBe(false);
          expect(out.split('\n').length).toBe(addScript(pm, 'tag1', 'x', plan('10.0.0.2', 'ip'), undefined).split('\n').length);
        } catch (e) {
          expect(refusedProperly(e)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('nft quoted strings and config-written expressions keep to one statement', () => {
    fc.assert(
      fc.property(hostile, (v) => {
        try {
          const t = nftString(v).text;
          expect(t.slice(1, -1)).toBe(v);
          expect(/["\\\n]/.test(v)).toBe(false);
        } catch (e) {
          expect(refusedProperly(e)).toBe(true);
        }
        try {
          const line = nft`add rule inet t c ${nftExpr(v)} accept`.text;
          expect(line.includes('\n') || /[;#{}]/.test(v)).toBe(false);
        } catch (e) {
          expect(refusedProperly(e)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

/** What iptables-restore makes of one rule line: words split on blanks, "double quotes" group (no escapes: refused). */
function restoreArgs(line: string): string[] {
  if (/[\n\r]/.test(line)) throw new Error('more than one line');
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]);
  return out;
}

describe('iptables-restore builders', () => {
  it('restoreLine: any argv is read back exactly, or refused', () => {
    fc.assert(
      fc.property(fc.array(hostile, { minLength: 1, maxLength: 6 }), (tokens) => {
        let line: string;
        try {
          line = restoreLine(tokens);
        } catch (e) {
          expect(refusedProperly(e), String(e)).toBe(true);
          return;
        }
        expect(restoreArgs(line)).toEqual(tokens);
      }),
      { numRuns: RUNS },
    );
  });
  it('masquerade rules: chain, address, subnet, owner', () => {
    fc.assert(
      fc.property(hostile, (v) => {
        for (const build of [
          () => ruleLines(v, { network: 'n', containerId: 'c', ifname: 'eth0' }, [{ ip: '10.0.0.2', subnet: '10.0.0.0/24' }]),
          () => ruleLines('CH', { network: 'n', containerId: 'c', ifname: 'eth0' }, [{ ip: v, subnet: v }]),
          () => ruleLines('CH', { network: 'n', containerId: v, ifname: v }, [{ ip: '10.0.0.2', subnet: '10.0.0.0/24' }]),
        ]) {
          try {
            for (const l of build()) expect(restoreArgs(l).length).toBeGreaterThan(8);
          } catch (e) {
            expect(refusedProperly(e), String(e)).toBe(true);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
  it('portmap rules: container address, subnet, host IP, protocol, comment, conditions', () => {
    const s = { iptablesPrefix: 'CNI', snat: true, masqAll: false, mark: 0x2000 } as unknown as PortmapSettings;
    const saved = { chains: new Set<string>(), rules: [] };
    fc.assert(
      fc.property(hostile, (v) => {
        const plans: FamilyPlan[] = [
          {
            container: { family: 4, ip: v, subnet: '10.0.0.0/24' },
            mappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
            conditions: [],
          },
          {
            container: { family: 4, ip: '10.0.0.2', subnet: v },
            mappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: v }],
            conditions: [v],
          },
        ] as unknown as FamilyPlan[];
        for (const [p, comment] of [
          [plans[0], 'c eth0'],
          [plans[1], 'c eth0'],
          [plans[0], v],
        ] as const) {
          try {
            const script = addRestore(s, 'abcd1234-0123456789abcdef', comment, p, saved as never);
            const lines = script.split('\n');
            expect(lines[0]).toBe('*nat');
            expect(lines.filter((l) => l === 'COMMIT')).toHaveLength(1);
            for (const l of lines.filter((x) => x.startsWith('-'))) restoreArgs(l);
          } catch (e) {
            expect(refusedProperly(e), String(e)).toBe(true);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});
