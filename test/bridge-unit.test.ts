/** bridge: the pure parts (config, plan, command builders, firewall scripts), no kernel. */
import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
import { resolveSettings, trunkRanges, type BridgeConf } from '../plugins/bridge/config.ts';
import { planAdd, pickDns } from '../plugins/bridge/plan.ts';
import { bridgeCommands, portVlanCommands } from '../plugins/bridge/bridge.ts';
import { macspoofScript } from '../plugins/bridge/macspoof.ts';
import { hostVethName, vethAddCommand } from '../shared/kernel/veth.ts';
import { ifaceConfigCommands, randomMac, routeCommand } from '../shared/kernel/link.ts';
import { entriesFor, ownerComment, ownerTag, tagOfComment } from '../shared/firewall/masquerade.ts';
import { masqueradeRulesScript } from '../shared/firewall/masquerade-nft.ts';
import { commentOf, parseNat, ruleLines } from '../shared/firewall/masquerade-iptables.ts';
import type { LinkInfo } from '../shared/kernel/ip.ts';
import { prepareValidators, validate } from '../shared/cni/validate.ts';
import schema from '../conf/schemas/bridge.schema.json' with { type: 'json' };
import { readdirSync, readFileSync } from 'node:fs';
import { ROOT } from './helpers/run.ts';

const base: BridgeConf = { name: 'n', type: 'bridge', ipam: { type: 'host-local' } };
const env = (args: Record<string, string> = {}): { args: Map<string, string> } => ({ args: new Map(Object.entries(args)) });
const code = (fn: () => unknown): number | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as CniError).code;
  }
  return undefined;
};

describe('bridge config', () => {
  it('defaults as the reference; isDefaultGateway implies isGateway', () => {
    const s = resolveSettings(base, env());
    expect(s).toMatchObject({
      bridge: 'cni0',
      isGateway: false,
      ipMasq: false,
      masqBackend: 'nftables',
      enableDad: false,
      preserveDefaultVlan: true,
      nftTable: 'cni_bridge',
      layer3: true,
    });
    expect(resolveSettings({ ...base, isDefaultGateway: true }, env()).isGateway).toBe(true);
    expect(resolveSettings({ ...base, ipam: undefined }, env()).layer3).toBe(false);
  });
  it('MAC: runtimeConfig, then args.cni, then CNI_ARGS; bad ones are code 7 naming the source', () => {
    expect(resolveSettings(base, env({ MAC: '02:00:00:00:00:03' })).mac).toBe('02:00:00:00:00:03');
    expect(resolveSettings({ ...base, args: { cni: { mac: '02:00:00:00:00:02' } } }, env({ MAC: '02:00:00:00:00:03' })).mac).toBe(
      '02:00:00:00:00:02',
    );
    expect(
      resolveSettings({ ...base, runtimeConfig: { mac: '02:00:00:00:00:0A' }, args: { cni: { mac: '02:00:00:00:00:02' } } }, env()).mac,
    ).toBe('02:00:00:00:00:0a');
    expect(code(() => resolveSettings(base, env({ MAC: 'nope' })))).toBe(7);
    expect(code(() => resolveSettings({ ...base, runtimeConfig: { mac: '01:00:5e:00:00:01' } }, env()))).toBe(7);
  });
  it('vlanTrunk entries become ranges; contradictory ones are code 7', () => {
    expect(trunkRanges([{ id: 5 }, { minID: 10, maxID: 20 }])).toEqual([
      [5, 5],
      [10, 20],
    ]);
    expect(code(() => trunkRanges([{ minID: 20, maxID: 10 }]))).toBe(7);
    expect(code(() => trunkRanges([{ id: 1, minID: 1 }]))).toBe(7);
    expect(portVlanCommands('v', 100, [[10, 20]], false)).toEqual([
      ['vlan', 'del', 'dev', 'v', 'vid', '1'],
      ['vlan', 'add', 'dev', 'v', 'vid', '100', 'pvid', 'untagged'],
      ['vlan', 'add', 'dev', 'v', 'vid', '10-20'],
    ]);
  });
});

describe('bridge plan', () => {
  const s = (c: Partial<BridgeConf>) => resolveSettings({ ...base, ...c }, env());
  it('gateway from IPAM or the first address; default routes per family; container index 2', () => {
    const p = planAdd(
      { ips: [{ address: '10.1.2.5/24' }, { address: 'fd00:1::5/64', gateway: 'fd00:1::fe' }] },
      s({ isDefaultGateway: true }),
    );
    expect(p.ips).toEqual([
      { address: '10.1.2.5/24', gateway: '10.1.2.1', interface: 2 },
      { address: 'fd00:1::5/64', gateway: 'fd00:1::fe', interface: 2 },
    ]);
    expect(p.routes).toEqual([
      { dst: '0.0.0.0/0', gw: '10.1.2.1' },
      { dst: '::/0', gw: 'fd00:1::fe' },
    ]);
    expect(p.bridgeGateways).toEqual(['10.1.2.1/24', 'fd00:1::fe/64']);
    expect(p.containerAddrs.every((a) => a.nodad)).toBe(true);
  });
  it('IPAM routes without gw go via the family gateway; a conflicting IPAM default route is code 7', () => {
    const p = planAdd(
      { ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }], routes: [{ dst: '10.9.0.0/16' }, { dst: '0.0.0.0/0' }] },
      s({ isDefaultGateway: true }),
    );
    expect(p.routes).toEqual([{ dst: '10.9.0.0/16' }, { dst: '0.0.0.0/0' }]);
    expect(p.containerRoutes.map((r) => r.gw)).toEqual(['10.1.2.1', '10.1.2.1']);
    expect(
      code(() =>
        planAdd(
          { ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.254' }] },
          s({ isDefaultGateway: true }),
        ),
      ),
    ).toBe(7);
  });
  it('without isGateway nothing goes on the bridge', () => {
    expect(planAdd({ ips: [{ address: '10.1.2.5/24' }] }, s({})).bridgeGateways).toEqual([]);
  });
  it('config dns wins over IPAM dns when it sets anything', () => {
    expect(pickDns({ nameservers: ['1.1.1.1'] }, { nameservers: ['2.2.2.2'] })).toEqual({ nameservers: ['1.1.1.1'] });
    expect(pickDns({}, { nameservers: ['2.2.2.2'] })).toEqual({ nameservers: ['2.2.2.2'] });
  });
});

describe('bridge device commands', () => {
  const spec = { name: 'br0', promisc: false, gateways: ['10.1.2.1/24'], forceAddress: false, vlanFiltering: false };
  it('creates with a pinned MAC and MTU, brings it up, adds the gateway idempotently', () => {
    expect(bridgeCommands({ ...spec, mtu: 1400 }, undefined, '02:aa:bb:cc:dd:ee', true)).toEqual([
      ['link', 'add', 'name', 'br0', 'address', '02:aa:bb:cc:dd:ee', 'mtu', '1400', 'type', 'bridge'],
      ['link', 'set', 'dev', 'br0', 'up'],
      ['addr', 'replace', '10.1.2.1/24', 'dev', 'br0'],
    ]);
  });
  const link = (addrs: string[], flags = ['UP']): LinkInfo =>
    ({
      ifindex: 3,
      ifname: 'br0',
      flags,
      mtu: 1500,
      address: '02:11:11:11:11:11',
      addr_info: addrs.map((a) => ({
        family: a.includes(':') ? 'inet6' : 'inet',
        local: a.split('/')[0],
        prefixlen: Number(a.split('/')[1]),
      })),
    }) as LinkInfo;
  it('adopts: pins an unpinned MAC, nothing to do when all is in place', () => {
    expect(bridgeCommands(spec, link(['10.1.2.1/24']), 'x', false)).toEqual([
      ['link', 'set', 'dev', 'br0', 'address', '02:11:11:11:11:11'],
    ]);
    expect(bridgeCommands(spec, link(['10.1.2.1/24']), 'x', true)).toEqual([]);
  });
  it('another address of the subnet: Conflict, or replaced with forceAddress', () => {
    expect(code(() => bridgeCommands(spec, link(['10.1.2.9/24']), 'x', true))).toBe(102);
    expect(bridgeCommands({ ...spec, forceAddress: true }, link(['10.1.2.9/24']), 'x', true)).toEqual([
      ['addr', 'del', '10.1.2.9/24', 'dev', 'br0'],
      ['addr', 'replace', '10.1.2.1/24', 'dev', 'br0'],
    ]);
    expect(bridgeCommands({ ...spec, gateways: ['fd00::1/64'] }, link(['10.1.2.9/24']), 'x', true)).toEqual([
      ['addr', 'replace', 'fd00::1/64', 'dev', 'br0', 'nodad'],
    ]);
  });
});

describe('veth and link commands', () => {
  it('host veth names are deterministic, distinct per ifname, at most 15 characters', () => {
    const a = hostVethName('c1', 'eth0');
    expect(a).toMatch(/^veth[0-9a-f]{8}$/);
    expect(hostVethName('c1', 'eth0')).toBe(a);
    expect(hostVethName('c1', 'eth1')).not.toBe(a);
  });
  it('creates the peer inside the netns path in one command', () => {
    expect(
      vethAddCommand({
        hostName: 'vethx',
        peerName: 'eth0',
        peerNetns: '/proc/1/ns/net',
        mtu: 1400,
        hostMac: '02:00:00:00:00:01',
        peerMac: '02:00:00:00:00:02',
      }),
    ).toEqual([
      'link',
      'add',
      'name',
      'vethx',
      'mtu',
      '1400',
      'address',
      '02:00:00:00:00:01',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'mtu',
      '1400',
      'address',
      '02:00:00:00:00:02',
      'netns',
      '/proc/1/ns/net',
    ]);
  });
  it('addresses, then up, then routes with the 1.1.0 fields', () => {
    expect(
      ifaceConfigCommands('eth0', {
        addresses: [
          { cidr: '10.0.0.2/24', nodad: true },
          { cidr: 'fd00::2/64', nodad: true },
        ],
        up: true,
        routes: [{ dst: '::/0', gw: 'fd00::1', metric: 5, mtu: 1400 }],
      }),
    ).toEqual([
      ['addr', 'add', '10.0.0.2/24', 'dev', 'eth0'],
      ['addr', 'add', 'fd00::2/64', 'dev', 'eth0', 'nodad'],
      ['link', 'set', 'dev', 'eth0', 'up'],
      ['route', 'add', '::/0', 'via', 'fd00::1', 'dev', 'eth0', 'metric', '5', 'mtu', '1400'],
    ]);
    expect(routeCommand('eth0', { dst: '10.9.0.0/16', table: 100, scope: 253 })).toEqual([
      'route',
      'add',
      '10.9.0.0/16',
      'dev',
      'eth0',
      'table',
      '100',
      'scope',
      '253',
    ]);
  });
  it('random MACs are locally administered unicast', () => {
    for (let i = 0; i < 50; i++) expect(parseInt(randomMac().slice(0, 2), 16) & 3).toBe(2);
  });
});

describe('masquerade rules', () => {
  const owner = { network: 'net1', containerId: 'abc', ifname: 'eth0' };
  it('tags: per network and attachment, recovered from comments', () => {
    const c = ownerComment(owner);
    expect(c.startsWith(ownerTag(owner))).toBe(true);
    expect(c.length).toBeLessThanOrEqual(120);
    expect(tagOfComment(c)).toBe(ownerTag(owner));
    expect(tagOfComment('someone else')).toBeUndefined();
    expect(ownerTag({ ...owner, network: 'net2' }).slice(0, 12)).not.toBe(ownerTag(owner).slice(0, 12));
  });
  it('nft: masquerade only to outside the subnet and not multicast, per family', () => {
    const script = masqueradeRulesScript('t', owner, entriesFor(['10.1.2.5/24', 'fd00:1::5/64']));
    expect(script).toContain('ip saddr 10.1.2.5 ip daddr != 10.1.2.0/24 ip daddr != 224.0.0.0/4 counter masquerade comment "cni:');
    expect(script).toContain('ip6 saddr fd00:1::5 ip6 daddr != fd00:1::/64 ip6 daddr != ff00::/8 counter masquerade');
    expect(macspoofScript('t', owner, 'vethx', '02:00:00:00:00:01')).toContain(
      'iifname "vethx" ether saddr != 02:00:00:00:00:01 counter drop',
    );
  });
  it('iptables: RETURN for the subnet then MASQUERADE; saved lines parse back', () => {
    const lines = ruleLines('CH', owner, entriesFor(['10.1.2.5/24']));
    expect(lines[0]).toMatch(
      /^-A CH -s 10\.1\.2\.5\/32 -d 10\.1\.2\.0\/24 -m comment --comment "cni:[0-9a-f]{8}:[0-9a-f]{16} abc\/eth0" -j RETURN$/,
    );
    expect(lines[1]).toContain('! -d 224.0.0.0/4');
    expect(tagOfComment(commentOf(lines[1]))).toBe(ownerTag(owner));
    const st = parseNat(
      `*nat\n:POSTROUTING ACCEPT [0:0]\n:CH - [0:0]\n-A POSTROUTING -m comment --comment "x" -j CH\n${lines.join('\n')}\nCOMMIT\n`,
      'CH',
    );
    expect(st).toEqual({ hasChain: true, hasJump: true, rules: lines });
  });
});

describe('bridge schema and examples', () => {
  it('the example conflists validate; a wrong type names the field (code 7)', async () => {
    await prepareValidators([[schema, 'bridge']]);
    const files = readdirSync(`${ROOT}/conf/examples`).filter((f) => /^bridge.*\.conflist$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const f of files) {
      const list = JSON.parse(readFileSync(`${ROOT}/conf/examples/${f}`, 'utf8')) as {
        name: string;
        cniVersion: string;
        plugins: Array<Record<string, unknown>>;
      };
      const br = list.plugins.find((p) => p.type === 'bridge')!;
      expect(() => validate(schema, { cniVersion: list.cniVersion, name: list.name, ...br }, 'bridge')).not.toThrow();
    }
    try {
      validate(schema, { name: 'n', type: 'bridge', ipMasqBackend: 'ipfw' }, 'bridge');
      expect.unreachable();
    } catch (e) {
      expect((e as CniError).code).toBe(7);
      expect((e as CniError).message).toContain('ipMasqBackend');
    }
  });
});
