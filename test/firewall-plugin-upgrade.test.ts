/**
 * Upgrade of the firewall plugin to shared/firewall's doors: what the previous version wrote is
 * still found. nftables: the table, sets and tagged elements exactly as the previous version's
 * ADD wrote them (the text pinned here, the tag computed here from its definition) are CHECKed,
 * DELed by tag without netns or prevResult, and GCed; an element or rule that is not ours stays.
 * iptables: the previous version's (the Go reference's) filter lines are recognised by ADD (no
 * duplicate), CHECK and DEL. Everything happens inside network namespaces of this test (`fw2-…`):
 * the plugin runs in them (nsenter), so no host table or chain is read or written.
 */
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid } from './helpers/run.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

const NET = `fw2net-${uid('')}`;
const ATT = [
  { cid: 'fw2-a', ip: '203.0.113.20', ip6: '2001:db8:20::20' },
  { cid: 'fw2-b', ip: '203.0.113.21', ip6: '2001:db8:20::21' },
  { cid: 'fw2-c', ip: '203.0.113.22', ip6: '2001:db8:20::22' },
];
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
/** The previous version's element comment: `cni:<net8>:<att16> <containerID>/<ifname>`. */
const oldComment = (cid: string): string => `cni:${sha(NET).slice(0, 8)}:${sha(`${NET}\0${cid}\0eth0`).slice(0, 16)} ${cid}/eth0`;

/** The previous version's ADD transaction for one attachment on bridge fw2br0 (isolated). */
const oldNftAdd = (t: string, a: (typeof ATT)[number]): string =>
  [
    `add table inet ${t}`,
    `add set inet ${t} allowed4 { type ipv4_addr; }`,
    `add set inet ${t} allowed6 { type ipv6_addr; }`,
    `add set inet ${t} bridges { type ifname; }`,
    `add set inet ${t} same { type ifname . ifname; }`,
    `add set inet ${t} isolated { type ifname . ifname; }`,
    `add chain inet ${t} admin`,
    `add chain inet ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain inet ${t} forward`,
    `add rule inet ${t} forward jump admin`,
    `add rule inet ${t} forward iifname @bridges oifname @bridges iifname . oifname != @same counter drop`,
    `add rule inet ${t} forward iifname . oifname @isolated counter drop`,
    `add rule inet ${t} forward ip daddr @allowed4 ct state established,related counter accept`,
    `add rule inet ${t} forward ip saddr @allowed4 counter accept`,
    `add rule inet ${t} forward ip6 daddr @allowed6 ct state established,related counter accept`,
    `add rule inet ${t} forward ip6 saddr @allowed6 counter accept`,
    `add element inet ${t} allowed4 { ${a.ip} comment "${oldComment(a.cid)}" }`,
    `add element inet ${t} allowed6 { ${a.ip6} comment "${oldComment(a.cid)}" }`,
    `add element inet ${t} bridges { "fw2br0" }`,
    `add element inet ${t} same { "fw2br0" . "fw2br0" }`,
    `add element inet ${t} isolated { "fw2br0" . "fw2br0" }`,
    '',
  ].join('\n');

const prevFor = (a: (typeof ATT)[number]): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'fw2br0' }, { name: 'fw2veth' }, { name: 'eth0', sandbox: '/var/run/netns/fw2-x' }],
  ips: [
    { address: `${a.ip}/24`, interface: 2 },
    { address: `${a.ip6}/64`, interface: 2 },
  ],
});

const fw = (ns: TestNetns, command: string, cid: string | undefined, config: Record<string, unknown>) =>
  runPlugin('firewall', {
    command,
    containerId: cid,
    netns: command === 'DEL' || command === 'GC' ? '' : '/var/run/netns/fw2-x',
    ifname: cid ? 'eth0' : undefined,
    config: { cniVersion: '1.1.0', name: NET, type: 'firewall', ...config },
    hostNetns: ns.path,
  });

describe('firewall plugin on shared/firewall: what the previous version wrote is still found', () => {
  it('nftables: CHECK finds the old elements, DEL removes one by tag (no netns/prevResult), GC another; foreign state stays', async () => {
    const ns = await makeNetns(cleanup, 'fw2');
    const t = `fw2_fw_${uid('')}`;
    const nftConf = { backend: 'nftables', nftTable: t, ingressPolicy: 'isolated' };
    for (const a of ATT) await inNs(ns, 'nft', ['-f', '-'], false, oldNftAdd(t, a));
    // not ours: an untagged element and a rule in the admin chain
    await inNs(ns, 'nft', ['add', 'element', 'inet', t, 'allowed4', '{ 198.51.100.7 }']);
    await inNs(ns, 'nft', ['add', 'rule', 'inet', t, 'admin', 'ip', 'saddr', '198.51.100.8', 'counter', 'drop']);
    const list = async (): Promise<string> => (await inNs(ns, 'nft', ['list', 'table', 'inet', t])).stdout;
    for (const a of ATT) expect(await list()).toContain(oldComment(a.cid));

    for (const a of ATT) {
      const chk = await fw(ns, 'CHECK', a.cid, { ...nftConf, prevResult: prevFor(a) });
      expect(chk.exitCode, chk.stderr + chk.stdout).toBe(0);
    }
    const del = await fw(ns, 'DEL', ATT[0].cid, nftConf);
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
    const gc = await fw(ns, 'GC', undefined, { ...nftConf, 'cni.dev/valid-attachments': [{ containerID: ATT[2].cid, ifname: 'eth0' }] });
    expect(gc.exitCode, gc.stderr + gc.stdout).toBe(0);

    const after = await list();
    for (const a of ATT.slice(0, 2)) {
      expect(after).not.toContain(a.ip);
      expect(after).not.toContain(a.ip6);
      expect(after).not.toContain(oldComment(a.cid));
    }
    expect(after).toContain(`${ATT[2].ip} comment "${oldComment(ATT[2].cid)}"`);
    expect(after).toContain(ATT[2].ip6);
    expect(after).toContain('198.51.100.7');
    expect(after).toMatch(/ip saddr 198\.51\.100\.8 counter packets \d+ bytes \d+ drop/);
    const chk = await fw(ns, 'CHECK', ATT[0].cid, { ...nftConf, prevResult: prevFor(ATT[0]) });
    expect(chk.json).toMatchObject({ code: 105 });
    // ADD again for the kept attachment: no duplicate, same element
    const add = await fw(ns, 'ADD', ATT[2].cid, { ...nftConf, prevResult: prevFor(ATT[2]) });
    expect(add.exitCode, add.stderr + add.stdout).toBe(0);
    expect((await list()).split(ATT[2].ip).length - 1).toBe(1);
  });

  it("iptables: the previous version's (the reference's) lines are recognised by ADD, CHECK and DEL", async (ctx) => {
    const ns = await makeNetns(cleanup, 'fw2');
    const probe = await inNs(ns, 'iptables-save', ['-t', 'filter'], true);
    if (probe.exitCode !== 0) {
      console.log(`skipped: iptables-save does not work in a netns here: ${probe.stderr.trim()}`);
      ctx.skip();
    }
    const a4 = (ip: string): string[] => [
      `-A CNI-FORWARD -d ${ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A CNI-FORWARD -s ${ip}/32 -j ACCEPT`,
    ];
    const old = [
      '*filter',
      ':CNI-FORWARD - [0:0]',
      ':CNI-ADMIN - [0:0]',
      '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
      '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
      ...a4(ATT[0].ip),
      ...a4(ATT[1].ip),
      'COMMIT',
      '',
    ].join('\n');
    await inNs(ns, 'iptables-restore', ['--noflush', '-w', '5'], false, old);
    const save = async (): Promise<string[]> =>
      (await inNs(ns, 'iptables-save', ['-t', 'filter'])).stdout.split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':CNI'));
    const before = await save();
    const v4 = (a: (typeof ATT)[number]) => ({ ...prevFor(a), ips: [{ address: `${a.ip}/24`, interface: 2 }] });
    const ipt = { backend: 'iptables' };

    const add = await fw(ns, 'ADD', ATT[0].cid, { ...ipt, prevResult: v4(ATT[0]) });
    expect(add.exitCode, add.stderr + add.stdout).toBe(0);
    expect(await save()).toEqual(before);
    for (const a of ATT.slice(0, 2)) expect((await fw(ns, 'CHECK', a.cid, { ...ipt, prevResult: v4(a) })).exitCode).toBe(0);
    const del = await fw(ns, 'DEL', ATT[0].cid, { ...ipt, prevResult: v4(ATT[0]) });
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
    expect(await save()).toEqual(before.filter((l) => !a4(ATT[0].ip).includes(l)));
    expect((await fw(ns, 'CHECK', ATT[1].cid, { ...ipt, prevResult: v4(ATT[1]) })).exitCode).toBe(0);
  });
});
