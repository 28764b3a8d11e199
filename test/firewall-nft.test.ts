/**
 * firewall's nftables backend (`backend: "nftables"`) against the real kernel: the plugin runs
 * inside a "host" netns of this test (nsenter), so its table is that namespace's. Table content
 * after ADD, CHECK finding a removed element, DEL twice and without netns/prevResult, GC,
 * ingressPolicy by traffic between bridges, and why the default stays iptables (an nft accept
 * does not open another table's drop policy).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { addrElements, addScript } from '../plugins/firewall/nft.ts';

const PREFIX = 'fn';
const TABLE = 'fn_firewall';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

const prevResult = (bridge: string, ips: string[]): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: bridge }, { name: 'fnveth' }, { name: 'eth0', sandbox: '/var/run/netns/fn-x' }],
  ips: ips.map((address) => ({ address, interface: 2 })),
});

const conf = (name: string, extra: Record<string, unknown> = {}, prev: Record<string, unknown> | null = null): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  name,
  type: 'firewall',
  backend: 'nftables',
  nftTable: TABLE,
  ...extra,
  ...(prev ? { prevResult: prev } : {}),
});

function call(command: string, host: TestNetns, config: Record<string, unknown>, containerId = 'fnc1', netns?: string): Promise<PluginRun> {
  return runPlugin('firewall', {
    command,
    containerId,
    ...(netns === undefined ? { netns: '/var/run/netns/fn-x' } : netns ? { netns } : {}),
    ifname: 'eth0',
    config,
    hostNetns: host.path,
  });
}

const table = async (host: TestNetns): Promise<string> => (await inNs(host, 'nft', ['list', 'table', 'inet', TABLE], true)).stdout;

describe('firewall nft: script (pure)', () => {
  it('ADD is one script: table, sets, admin chain, forward chain, tagged elements, bridge elements', () => {
    const s = addScript('t', { network: 'n', containerId: 'c', ifname: 'eth0' }, ['10.0.0.5', 'fd00::5'], 'br0', true);
    expect(s).toMatch(/^add table inet t\n/);
    expect(s).toMatch(/add chain inet t admin\n/);
    expect(s).toMatch(/add chain inet t forward \{ type filter hook forward priority filter; policy accept; \}\n/);
    expect(s).toMatch(/add element inet t allowed4 \{ 10\.0\.0\.5 comment "cni:[0-9a-f]{8}:[0-9a-f]{16} c\/eth0" \}/);
    expect(s).toMatch(/add element inet t allowed6 \{ fd00::5 comment /);
    expect(s).toMatch(/add element inet t isolated \{ br0 \. br0 \}/);
    expect(s).not.toMatch(/flush chain inet t admin/);
    expect(addScript('t', { network: 'n', containerId: 'c', ifname: 'eth0' }, ['10.0.0.5'])).not.toMatch(
      /add element inet t (bridges|same|isolated)/,
    );
    expect(() => addScript('t;x', { network: 'n', containerId: 'c', ifname: 'eth0' }, [])).toThrow();
    expect(
      addrElements([
        { set: { name: 'allowed4', elem: [{ elem: { val: '10.0.0.5', comment: 'cni:0123abcd:0123456789abcdef c/eth0' } }, '10.0.0.6'] } },
        { set: { name: 'bridges', elem: ['br0'] } },
      ]),
    ).toEqual([
      { set: 'allowed4', ip: '10.0.0.5', tag: 'cni:0123abcd:0123456789abcdef' },
      { set: 'allowed4', ip: '10.0.0.6' },
    ]);
  });
});

describe('firewall nft: kernel', () => {
  it('ADD writes the table; CHECK; a removed element is found; admin rules kept; DEL twice, without netns; GC', async () => {
    const host = await makeNetns(cleanup, PREFIX);
    const name = uid(PREFIX);
    const c1 = conf(name, { ingressPolicy: 'isolated' }, prevResult('fnbr0', ['10.82.1.5/24', 'fd82:0::5/64']));
    const add = await call('ADD', host, c1);
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json).toMatchObject({ ips: [{ address: '10.82.1.5/24' }, { address: 'fd82:0::5/64' }] });
    const t = await table(host);
    expect(t).toMatch(
      /set allowed4 \{\n\s+type ipv4_addr\n\s+elements = \{ 10\.82\.1\.5 comment "cni:[0-9a-f]{8}:[0-9a-f]{16} fnc1\/eth0" \}/,
    );
    expect(t).toMatch(/set allowed6 \{\n\s+type ipv6_addr\n\s+elements = \{ fd82::5 comment /);
    expect(t).toMatch(/set bridges \{\n\s+type ifname\n\s+elements = \{ "fnbr0" \}/);
    expect(t).toMatch(/set isolated \{\n\s+type ifname \. ifname\n\s+elements = \{ "fnbr0" \. "fnbr0" \}/);
    expect(t).toMatch(
      /chain forward \{\n\s+type filter hook forward priority filter; policy accept;\n\s+jump admin\n\s+iifname @bridges oifname @bridges iifname \. oifname != @same counter packets \d+ bytes \d+ drop\n\s+iifname \. oifname @isolated counter .* drop\n\s+ip daddr @allowed4 ct state established,related counter .* accept\n\s+ip saddr @allowed4 counter .* accept\n\s+ip6 daddr @allowed6 ct state established,related counter .* accept\n\s+ip6 saddr @allowed6 counter .* accept\n/,
    );
    // an admin rule of the user's, and a second attachment
    await inNs(host, 'nft', ['add', 'rule', 'inet', TABLE, 'admin', 'ip', 'saddr', '10.82.9.9', 'drop']);
    const c2 = conf(name, {}, prevResult('fnbr0', ['10.82.1.6/24']));
    expect((await call('ADD', host, c2, 'fnc2')).exitCode).toBe(0);
    expect((await call('ADD', host, c1)).exitCode).toBe(0); // ADD again: idempotent
    expect((await table(host)).match(/10\.82\.1\.5 comment/g)).toHaveLength(1);
    expect(await table(host)).toMatch(/chain admin \{\n\s+ip saddr 10\.82\.9\.9 drop/);
    expect((await call('CHECK', host, c1)).exitCode).toBe(0);
    // CHECK finds an element removed behind our back
    await inNs(host, 'nft', ['delete', 'element', 'inet', TABLE, 'allowed6', '{', 'fd82::5', '}']);
    const chk = await call('CHECK', host, c1);
    expect(chk.json).toMatchObject({ code: 105 });
    expect(String(chk.json?.msg)).toMatch(/fd82::5 in set allowed6/);
    expect((await call('CHECK', host, c2, 'fnc2')).exitCode).toBe(0);
    // DEL: by owner tag, without netns or prevResult; twice; the other attachment and admin stay
    const d = await call('DEL', host, conf(name), 'fnc1', '');
    expect(d.exitCode, d.stdout + d.stderr).toBe(0);
    expect((await call('DEL', host, c1)).exitCode).toBe(0);
    const after = await table(host);
    expect(after).not.toMatch(/10\.82\.1\.5/);
    expect(after).toMatch(/10\.82\.1\.6 comment/);
    expect(after).toMatch(/ip saddr 10\.82\.9\.9 drop/);
    expect((await call('CHECK', host, c1)).json).toMatchObject({ code: 105 });
    // GC: fnc2 not valid -> its element goes; another network's element stays
    const other = conf(uid(PREFIX), {}, prevResult('fnbr1', ['10.82.2.7/24']));
    expect((await call('ADD', host, other, 'fnc3')).exitCode).toBe(0);
    const gc = await call(
      'GC',
      host,
      { ...conf(name), cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'fnc1', ifname: 'eth0' }] },
      'fnc1',
      '',
    );
    expect(gc.exitCode, gc.stdout + gc.stderr).toBe(0);
    const g = await table(host);
    expect(g).not.toMatch(/10\.82\.1\.6/);
    expect(g).toMatch(/10\.82\.2\.7 comment/);
    // DEL with no table at all is success
    const empty = await makeNetns(cleanup, PREFIX);
    expect((await call('DEL', empty, c1)).exitCode).toBe(0);
    // STATUS (1.1.0); a table name nft would not take is refused by the schema (7)
    expect((await call('STATUS', host, { ...conf(name), cniVersion: '1.1.0' }, 'fnc1', '')).exitCode).toBe(0);
    expect((await call('ADD', host, conf(name, { nftTable: 'bad;name' }, prevResult('fnbr0', ['10.82.1.5/24'])))).json).toMatchObject({
      code: 7,
    });
    // firewalld still 101
    expect((await call('ADD', host, conf(name, { backend: 'firewalld' }, prevResult('fnbr0', ['10.82.1.5/24'])))).json).toMatchObject({
      code: 101,
    });
  });

  /** host netns with bridges fna (10.83.1.0/24: c1, c2) and fnb (10.83.2.0/24: c3), routed. */
  async function topology(): Promise<{ host: TestNetns; ping: (from: TestNetns, to: string) => Promise<boolean>; c: TestNetns[] }> {
    const host = await makeNetns(cleanup, PREFIX);
    await inNs(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    for (const [br, n] of [
      ['fna', 1],
      ['fnb', 2],
    ] as const) {
      await inNs(host, 'ip', ['link', 'add', br, 'type', 'bridge']);
      await inNs(host, 'ip', ['addr', 'add', `10.83.${n}.1/24`, 'dev', br]);
      await inNs(host, 'ip', ['link', 'set', br, 'up']);
    }
    const c: TestNetns[] = [];
    for (const [i, br, addr] of [
      [1, 'fna', '10.83.1.2'],
      [2, 'fna', '10.83.1.3'],
      [3, 'fnb', '10.83.2.2'],
    ] as const) {
      const ns = await makeNetns(cleanup, PREFIX);
      c.push(ns);
      await inNs(host, 'ip', ['link', 'add', `fnv${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.path]);
      await inNs(host, 'ip', ['link', 'set', `fnv${i}`, 'master', br, 'up']);
      await inNs(ns, 'ip', ['addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await inNs(ns, 'ip', ['link', 'set', 'eth0', 'up']);
      await inNs(ns, 'ip', ['route', 'add', 'default', 'via', addr.replace(/\.\d+$/, '.1')]);
    }
    const ping = async (from: TestNetns, to: string): Promise<boolean> =>
      (await inNs(from, 'ping', ['-c1', '-W1', to], true)).exitCode === 0;
    return { host, ping, c };
  }

  it('ingressPolicy same-bridge: traffic between two policed bridges dropped, within a bridge not', async () => {
    const { host, ping, c } = await topology();
    expect(await ping(c[0], '10.83.2.2')).toBe(true);
    const name = uid(PREFIX);
    expect((await call('ADD', host, conf(name, { ingressPolicy: 'same-bridge' }, prevResult('fna', ['10.83.1.2/24'])))).exitCode).toBe(0);
    // only fna policed: fnb is not, so fna -> fnb still flows (as the reference: STAGE-2 drops -o <policed bridge>)
    expect(await ping(c[0], '10.83.2.2')).toBe(true);
    expect(
      (await call('ADD', host, conf(name, { ingressPolicy: 'same-bridge' }, prevResult('fnb', ['10.83.2.2/24'])), 'fnc3')).exitCode,
    ).toBe(0);
    expect(await ping(c[0], '10.83.2.2')).toBe(false);
    expect(await ping(c[2], '10.83.1.2')).toBe(false);
    expect(await ping(c[0], '10.83.1.3')).toBe(true); // same bridge
    expect(await ping(c[0], '10.83.1.1')).toBe(true); // the gateway (input, not forward)
  });

  it('why iptables stays the default: with the host FORWARD policy DROP (iptables), nft ADD cannot open it; iptables ADD does, DEL closes', async () => {
    const { host, ping, c } = await topology();
    await inNs(host, 'iptables', ['-P', 'FORWARD', 'DROP']);
    expect(await ping(c[0], '10.83.2.2')).toBe(false);
    const name = uid(PREFIX);
    const prevs = [prevResult('fna', ['10.83.1.2/24']), prevResult('fnb', ['10.83.2.2/24'])];
    for (const [i, p] of prevs.entries()) expect((await call('ADD', host, conf(name, {}, p), `fnc${i}`)).exitCode).toBe(0);
    expect(await table(host)).toMatch(/10\.83\.1\.2 comment/);
    expect(await ping(c[0], '10.83.2.2')).toBe(false); // an nft accept is final only in its own table
    for (const [i, p] of prevs.entries()) expect((await call('ADD', host, conf(name, { backend: '' }, p), `fnc${i}`)).exitCode).toBe(0);
    expect(await ping(c[0], '10.83.2.2')).toBe(true);
    for (const [i, p] of prevs.entries())
      expect((await call('DEL', host, conf(name, { backend: 'iptables' }, p), `fnc${i}`)).exitCode).toBe(0);
    expect(await ping(c[0], '10.83.2.2')).toBe(false);
  });

  it('with an nft-only host (no foreign drop), the nft backend works with its own drop: admin-chain rules apply before the accepts', async () => {
    const { host, ping, c } = await topology();
    const name = uid(PREFIX);
    expect((await call('ADD', host, conf(name, {}, prevResult('fna', ['10.83.1.2/24'])))).exitCode).toBe(0);
    expect(await ping(c[0], '10.83.2.2')).toBe(true);
    await inNs(host, 'nft', ['add', 'rule', 'inet', TABLE, 'admin', 'ip', 'saddr', '10.83.1.2', 'ip', 'daddr', '10.83.2.2', 'drop']);
    expect(await ping(c[0], '10.83.2.2')).toBe(false);
    expect((await call('DEL', host, conf(name))).exitCode).toBe(0);
    expect(await table(host)).toMatch(/chain admin \{\n\s+ip saddr 10\.83\.1\.2 ip daddr 10\.83\.2\.2 drop/);
  });
});
