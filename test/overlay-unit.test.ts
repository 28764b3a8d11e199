/** Pure parts of the overlay plugin: config, MAC derivation, VTEP and peer planning. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import schema from '../conf/schemas/overlay.schema.json' with { type: 'json' };
import { prepareValidators, validate } from '../shared/cni/validate.ts';
import { bridgeConfig } from '../plugins/overlay/attach.ts';
import { overlayConfigOf } from '../shared/overlay/config.ts';
import { settingsOf, type OverlayConf } from '../shared/overlay/config.ts';
import {
  masqComment,
  masqInPlace,
  masqScript,
  mtuOf,
  overlayMasqOwner,
  planPeers,
  planVtep,
  underlayOf,
  type HostState,
} from '../shared/overlay/host.ts';
import { vtepMacFor } from '../shared/overlay/lease.ts';
import { ownerTag } from '../shared/firewall/owner.ts';
import type { Request } from '../shared/cni/plugin.ts';
import type { Lease } from '../shared/overlay/store.ts';

const conf: OverlayConf = { name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/var/lib/x' };
const s = settingsOf(conf);
const mine: Lease = { subnet: '10.244.1.0/24', publicIP: '192.0.2.1', vtepMAC: vtepMacFor('192.0.2.1', 1) };
const peer2: Lease = { subnet: '10.244.2.0/24', publicIP: '192.0.2.2', vtepMAC: vtepMacFor('192.0.2.2', 1) };
const peer3: Lease = { subnet: '10.244.3.0/24', publicIP: '192.0.2.3', vtepMAC: vtepMacFor('192.0.2.3', 1) };

const underlayLink = {
  ifindex: 2,
  ifname: 'eth0',
  flags: ['UP'],
  mtu: 1500,
  addr_info: [{ family: 'inet' as const, local: '192.0.2.1', prefixlen: 24, scope: 'global' }],
};
const empty: HostState = { links: [underlayLink], routes: [{ dst: 'default', gateway: '192.0.2.254', dev: 'eth0' }], neigh: [], fdb: [] };

describe('overlay config', () => {
  it('applies defaults', () => {
    expect(s).toMatchObject({ subnetLen: 24, vni: 1, port: 4789, bridge: 'ovl0', vxlan: 'ovl.1', ipMasq: true, encryption: 'none' });
    expect(settingsOf({ ...conf, stateDir: undefined }).stateDir).toBe('/var/lib/cni/overlay/n');
  });
  it('rejects a subnetLen not longer than the network, naming the field', () => {
    expect(() => settingsOf({ ...conf, subnetLen: 16 })).toThrow(/subnetLen/);
    expect(() => settingsOf({ ...conf, network: 'fd00::/48' })).toThrow(/network/);
  });
  it.each(['overlay.conflist', 'overlay-file.conflist'])('example %s is valid', async (f) => {
    await prepareValidators([[schema, 'overlay']]);
    const doc = JSON.parse(readFileSync(path.join(__dirname, '..', 'conf', 'examples', f), 'utf8')) as Record<string, unknown>;
    const c = validate<OverlayConf>(schema, overlayConfigOf(doc), 'overlay');
    expect(() => settingsOf(c)).not.toThrow();
  });
  it('rejects an etcd store without endpoints and an unknown encryption with code 7', async () => {
    await prepareValidators([[schema, 'overlay']]);
    expect(() => validate(schema, { ...conf, store: { type: 'etcd' } }, 'overlay')).toThrow(/store/);
    expect(() => validate(schema, { ...conf, encryption: 'rot13' }, 'overlay')).toThrow(/encryption/);
  });
  it('takes the overlay plugin out of a conflist', () => {
    const c = overlayConfigOf({
      cniVersion: '1.1.0',
      name: 'net',
      plugins: [{ type: 'overlay', network: '10.1.0.0/16' }, { type: 'portmap' }],
    });
    expect(c).toMatchObject({ name: 'net', type: 'overlay', network: '10.1.0.0/16' });
  });
});

describe('VTEP', () => {
  it('derives a stable, locally administered unicast MAC per underlay address', () => {
    const m = vtepMacFor('192.0.2.1', 1);
    expect(m).toBe(vtepMacFor('192.0.2.1', 1));
    expect(m).not.toBe(vtepMacFor('192.0.2.2', 1));
    expect(parseInt(m.slice(0, 2), 16) & 0x03).toBe(0x02);
  });
  it('takes the underlay from the default route and subtracts 50 (IPv4) or 70 (IPv6)', () => {
    const u = underlayOf(s, empty);
    expect(u).toEqual({ dev: 'eth0', ip: '192.0.2.1', family: 4, mtu: 1500 });
    expect(mtuOf(s, u)).toBe(1450);
    expect(mtuOf(s, { ...u, family: 6 })).toBe(1430);
    expect(mtuOf(settingsOf({ ...conf, mtu: 1400 }), u)).toBe(1400);
  });
  it('creates a missing device in one batch, and leaves a right one alone', () => {
    const u = underlayOf(s, empty);
    const p = planVtep(s, u, mine, empty);
    expect(p.recreated).toBe(true);
    expect(p.cmds[0]).toEqual([
      'link',
      'add',
      'ovl.1',
      'type',
      'vxlan',
      'id',
      '1',
      'local',
      '192.0.2.1',
      'dev',
      'eth0',
      'dstport',
      '4789',
      'nolearning',
    ]);
    expect(p.cmds).toContainEqual(['addr', 'add', '10.244.1.0/32', 'dev', 'ovl.1']);
    const vx = {
      ifindex: 3,
      ifname: 'ovl.1',
      flags: ['UP'],
      mtu: 1450,
      address: mine.vtepMAC,
      linkinfo: { info_kind: 'vxlan', info_data: { id: 1, local: '192.0.2.1', link: 'eth0', port: 4789, learning: false } },
      addr_info: [{ family: 'inet' as const, local: '10.244.1.0', prefixlen: 32 }],
    };
    expect(planVtep(s, u, mine, { ...empty, links: [underlayLink, vx] })).toEqual({ cmds: [], recreated: false });
    const wrongVni = { ...vx, linkinfo: { info_kind: 'vxlan', info_data: { ...vx.linkinfo.info_data, id: 7 } } };
    expect(planVtep(s, u, mine, { ...empty, links: [underlayLink, wrongVni] }).cmds[0]).toEqual(['link', 'del', 'ovl.1']);
  });
});

describe('peers', () => {
  it('adds route, permanent neighbour and FDB entry per peer, never for itself', () => {
    const p = planPeers(s, mine, [mine, peer2, peer3], empty, true);
    expect(p.ip).toContainEqual(['route', 'replace', '10.244.2.0/24', 'via', '10.244.2.0', 'dev', 'ovl.1', 'onlink']);
    expect(p.ip).toContainEqual(['neigh', 'replace', '10.244.3.0', 'lladdr', peer3.vtepMAC, 'dev', 'ovl.1', 'nud', 'permanent']);
    expect(p.fdb).toContainEqual(['fdb', 'replace', peer2.vtepMAC, 'dev', 'ovl.1', 'dst', '192.0.2.2', 'self', 'permanent']);
    expect(p.ip.some((c) => c.includes('10.244.1.0/24'))).toBe(false);
    expect(p.added).toHaveLength(2);
  });
  it('writes nothing when the kernel already matches, and removes a departed peer', () => {
    const st: HostState = {
      ...empty,
      routes: [
        ...empty.routes,
        { dst: '10.244.2.0/24', gateway: '10.244.2.0', dev: 'ovl.1', flags: ['onlink'] },
        { dst: '10.244.3.0/24', gateway: '10.244.3.0', dev: 'ovl.1', flags: ['onlink'] },
      ],
      neigh: [
        { dst: '10.244.2.0', lladdr: peer2.vtepMAC, state: ['PERMANENT'] },
        { dst: '10.244.3.0', lladdr: peer3.vtepMAC, state: ['PERMANENT'] },
      ],
      fdb: [
        { mac: peer2.vtepMAC, dst: '192.0.2.2' },
        { mac: peer3.vtepMAC, dst: '192.0.2.3' },
      ],
    };
    expect(planPeers(s, mine, [mine, peer2, peer3], st, false)).toEqual({ ip: [], fdb: [], added: [], removed: [], skipped: [] });
    const gone = planPeers(s, mine, [mine, peer2], st, false);
    expect(gone.ip).toEqual([
      ['route', 'del', '10.244.3.0/24', 'dev', 'ovl.1'],
      ['neigh', 'del', '10.244.3.0', 'dev', 'ovl.1'],
    ]);
    expect(gone.fdb).toEqual([['fdb', 'del', peer3.vtepMAC, 'dev', 'ovl.1', 'dst', '192.0.2.3', 'self']]);
    expect(gone.removed).toEqual(['10.244.3.0/24']);
  });
  it('follows a peer whose underlay address moved', () => {
    const st: HostState = { ...empty, fdb: [{ mac: peer2.vtepMAC, dst: '192.0.2.99' }] };
    const p = planPeers(s, mine, [mine, peer2], st, false);
    expect(p.fdb).toContainEqual(['fdb', 'replace', peer2.vtepMAC, 'dev', 'ovl.1', 'dst', '192.0.2.2', 'self', 'permanent']);
  });
});

describe('pod attachment', () => {
  it('derives the bridge + host-local config from the lease', () => {
    const req = { version: '1.1.0', raw: { 'cni.dev/valid-attachments': [] }, config: conf } as unknown as Request<OverlayConf>;
    expect(bridgeConfig(req, s, '10.244.1.0/24', 1450)).toEqual({
      cniVersion: '1.1.0',
      name: 'n',
      type: 'bridge',
      bridge: 'ovl0',
      isGateway: true,
      mtu: 1450,
      ipMasq: false,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.244.1.0/24' }]],
        routes: [{ dst: '10.244.0.0/16' }, { dst: '0.0.0.0/0' }],
        dataDir: '/var/lib/x/ipam',
      },
      'cni.dev/valid-attachments': [],
    });
  });
});

describe('overlay masquerade table', () => {
  it('is rewritten only when it is not what this lease and cluster need (counters survive a reconcile)', () => {
    // the firewall owner tag first (shared/firewall/owner.ts), then the words of earlier releases
    const comment = `${ownerTag(overlayMasqOwner(s))} cni-ts overlay n 10.244.1.0/24 10.244.0.0/16`;
    expect(masqComment(s, mine)).toBe(comment);
    expect(masqScript(s, mine)).toContain(`comment "${comment}"`);
    expect(masqInPlace(s, mine, { ...empty, masq: [comment] })).toBe(true);
    expect(masqInPlace(s, mine, { ...empty })).toBe(false); // table missing
    expect(masqInPlace(s, mine, { ...empty, masq: [] })).toBe(false);
    expect(masqInPlace(s, mine, { ...empty, masq: [comment, comment] })).toBe(false);
    expect(masqInPlace(s, peer2, { ...empty, masq: [comment] })).toBe(false); // another subnet
    expect(masqInPlace(s, mine, { ...empty, masq: ['cni-ts overlay n'] })).toBe(false); // made by an earlier release
    // the previous release's rule (no tag): not in place, so the reconcile's `flush table` replaces it
    expect(masqInPlace(s, mine, { ...empty, masq: ['cni-ts overlay n 10.244.1.0/24 10.244.0.0/16'] })).toBe(false);
    expect(masqScript(s, mine)).toContain('flush table ip');
    const off = settingsOf({ ...conf, ipMasq: false });
    expect(masqInPlace(off, mine, { ...empty })).toBe(true);
    expect(masqInPlace(off, mine, { ...empty, masq: [comment] })).toBe(false);
  });
});
