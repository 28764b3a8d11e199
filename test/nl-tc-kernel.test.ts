/**
 * bandwidth, sbr, tuning and macvlan through in-process netlink (tc qdiscs and filters, ip
 * rules, link attributes, sysctls in a netns) and through the process fallback
 * (CNI_TS_NETLINK=0: tc, ip, nsenter, sysctl) make the same kernel state, DEL undoes it on
 * both, and the netlink side starts no kernel tool. Each attachment is made twice in fresh
 * namespaces of this test (prefix "htc"), and `tc -j` / `ip -j` / sysctl outputs compared.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { runPlugin, type PluginRun } from './helpers/run.ts';
import { ifbName } from '../shared/kernel/tc.ts';

const hex = (n: number): string => randomBytes(n).toString('hex');
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

/** Tools a plugin call started, from its CNI_TS_TRACE timeline. */
const spawned = (r: PluginRun): string[] => [...r.stderr.matchAll(/\] spawned (\S+)/g)].map((m) => path.basename(m[1]));
const KERNEL_TOOLS = ['ip', 'tc', 'nsenter', 'sysctl', 'flock'];

interface Side {
  state: string;
  after: string;
  tools: string[];
}

/** A container netns whose eth0 is one end of a veth; the other end (host side, "htc…") stays on the host. */
async function pair(): Promise<{ ns: TestNetns; host: string }> {
  const ns = await makeNetns(cleanup, 'htc');
  const host = `htc${hex(4)}`;
  await sh('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', `${host}p`]);
  cleanup.add(() => deleteLink(host));
  await sh('ip', ['link', 'set', `${host}p`, 'netns', ns.path, 'name', 'eth0']);
  await sh('ip', ['link', 'set', host, 'up']);
  await inNs(ns, 'ip', ['link', 'set', 'eth0', 'up']);
  await inNs(ns, 'ip', ['addr', 'add', '10.214.3.5/24', 'dev', 'eth0']);
  await inNs(ns, 'ip', ['addr', 'add', 'fd0e:214:3::5/64', 'dev', 'eth0', 'nodad']);
  await inNs(ns, 'ip', ['route', 'add', 'default', 'via', '10.214.3.1']);
  return { ns, host };
}

async function chained(
  type: string,
  netlink: boolean,
  conf: Record<string, unknown>,
  snapshot: (ns: TestNetns, host: string, containerId: string) => Promise<string>,
): Promise<Side> {
  const { ns, host } = await pair();
  const containerId = `htc-${hex(4)}`;
  const prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: host }, { name: 'eth0', sandbox: ns.path }],
    ips: [
      { interface: 1, address: '10.214.3.5/24', gateway: '10.214.3.1' },
      { interface: 1, address: 'fd0e:214:3::5/64', gateway: 'fd0e:214:3::1' },
    ],
  };
  const config = { cniVersion: '1.0.0', name: 'htcnet', type, ...conf, prevResult };
  const env = { CNI_TS_TRACE: '1', CNI_TS_NETLINK: netlink ? '1' : '0' };
  const args = { containerId, netns: ns.path, ifname: 'eth0', env, config };
  cleanup.add(() => deleteLink(ifbName('htcnet', containerId)));
  const add = await runPlugin(type, { ...args, command: 'ADD' });
  expect(add.exitCode, add.stdout + add.stderr).toBe(0);
  const check = await runPlugin(type, { ...args, command: 'CHECK', config: { ...config, prevResult: add.json } });
  expect(check.exitCode, check.stdout + check.stderr).toBe(0);
  const norm = (s: string): string =>
    s
      .replaceAll(host, 'HOST')
      .replaceAll(ns.path, 'NETNS')
      .replaceAll(ifbName('htcnet', containerId), 'IFB')
      .replace(/"(ifindex|link_index)":\d+/g, '"$1":N');
  const state = norm(await snapshot(ns, host, containerId));
  const del = await runPlugin(type, { ...args, command: 'DEL', config: { ...config, prevResult: add.json } });
  expect(del.exitCode, del.stdout + del.stderr).toBe(0);
  const del2 = await runPlugin(type, { ...args, command: 'DEL', config: { ...config, prevResult: add.json } });
  expect(del2.exitCode, del2.stdout + del2.stderr).toBe(0);
  const after = norm(await snapshot(ns, host, containerId));
  // (bandwidth's CHECK of subnet shaping reads the HTB classes with `tc class show`: a process on both sides)
  const checked = conf.shapedSubnets || conf.unshapedSubnets ? [] : spawned(check);
  return { state, after, tools: [...spawned(add), ...checked, ...spawned(del)] };
}

async function both(
  type: string,
  conf: Record<string, unknown>,
  snapshot: (ns: TestNetns, host: string, containerId: string) => Promise<string>,
): Promise<{ nl: Side; proc: Side }> {
  const nl = await chained(type, true, conf, snapshot);
  await cleanup.run();
  const proc = await chained(type, false, conf, snapshot);
  expect(nl.state.split('\n')).toEqual(proc.state.split('\n'));
  expect(nl.after.split('\n')).toEqual(proc.after.split('\n'));
  expect(nl.tools.filter((t) => KERNEL_TOOLS.includes(t))).toEqual([]);
  expect(proc.tools.some((t) => KERNEL_TOOLS.includes(t))).toBe(true); // the fallback really is the process path
  console.log(`${type}: processes ADD+CHECK+DEL netlink ${nl.tools.length}, fallback ${proc.tools.length} (${proc.tools.join(' ')})`);
  return { nl, proc };
}

const out = async (cmd: string, args: string[], ns?: TestNetns): Promise<string> =>
  ns ? (await inNs(ns, cmd, args, true)).stdout : (await sh(cmd, args, { allowFail: true })).stdout;

describe('in-process netlink and the process fallback make the same kernel state', () => {
  it('bandwidth: TBF at the host veth root, ingress + u32/mirred redirect to an IFB with its TBF; DEL removes them', async () => {
    const { nl } = await both(
      'bandwidth',
      { ingressRate: 20_000_000, ingressBurst: 1_000_000, egressRate: 12_000_000, egressBurst: 96_000 },
      async (_ns, host, id) => {
        const ifb = ifbName('htcnet', id);
        const filters = (await out('tc', ['-j', 'filter', 'show', 'dev', host, 'ingress'])).replace(/"index":\d+,/g, '');
        const ifbLink = (await out('ip', ['-j', '-d', 'link', 'show', 'dev', ifb]))
          .replace(/"ifindex":\d+|"address":"[^"]+"|"perm_address":"[^"]+"/g, 'X')
          .replace(/"(gso|gro|tso)_[a-z_]+":\d+,?/g, '');
        return [
          await out('tc', ['-j', 'qdisc', 'show', 'dev', host]),
          filters,
          await out('tc', ['-j', 'qdisc', 'show', 'dev', ifb]),
          ifbLink,
        ].join('\n');
      },
    );
    expect(nl.state).toMatch(/"kind":"tbf","handle":"1:","root":true.*"rate":2500000,"burst":125000,"lat":25000/);
    expect(nl.state).toMatch(/"mirred_action":"redirect","direction":"egress","to_dev":"IFB"/);
    expect(nl.state).toMatch(/"kind":"tbf","handle":"1:","root":true,"refcnt":\d+,"options":\{"rate":1500000,"burst":\d+/); // tc prints 12000 B as 11998
    expect(nl.after).not.toMatch(/tbf|ingress|IFB/);
  });

  it('bandwidth with shapedSubnets: HTB at the root, its two classes, a u32 filter per subnet; DEL removes them', async () => {
    const { nl } = await both(
      'bandwidth',
      {
        ingressRate: 20_000_000,
        ingressBurst: 1_000_000,
        egressRate: 12_000_000,
        egressBurst: 96_000,
        shapedSubnets: ['10.0.0.0/8', '192.0.2.7/32'],
      },
      async (_ns, host, id) => {
        const ifb = ifbName('htcnet', id);
        return (
          await Promise.all(
            [host, ifb].flatMap((d) => [
              out('tc', ['-j', 'qdisc', 'show', 'dev', d]),
              out('tc', ['-d', 'class', 'show', 'dev', d]),
              out('tc', ['-j', 'filter', 'show', 'dev', d]),
            ]),
          )
        ).join('\n');
      },
    );
    expect(nl.state).toMatch(/"kind":"htb","handle":"1:","root":true/);
    expect(nl.state).toMatch(/class htb 1:30 root prio 0 quantum 60000 rate 20Mbit ceil 20Mbit/);
    expect(nl.state).toMatch(/"match":\{"value":"a000000","mask":"ff000000","offmask":"","off":12\}/);
    expect(nl.after).not.toMatch(/htb/);
  });

  it('sbr: a rule per address, the routes moved into tables 100/101; DEL removes the rules', async () => {
    const { nl } = await both('sbr', {}, async (ns) =>
      [
        await out('ip', ['-4', '-j', 'rule', 'show'], ns),
        await out('ip', ['-6', '-j', 'rule', 'show'], ns),
        // every table but local (its fe80:: entry comes when the link-local address has passed DAD)
        ...(await Promise.all(
          [4, 6].map(async (f) =>
            JSON.stringify(
              (JSON.parse(await out('ip', [`-${f}`, '-j', 'route', 'show', 'table', 'all'], ns)) as Array<{ table?: string }>).filter(
                (r) => r.table !== 'local',
              ),
            ),
          ),
        )),
      ].join('\n'),
    );
    expect(nl.state).toMatch(/"priority":32765,"src":"10.214.3.5","table":"100"/);
    expect(nl.state).toMatch(/"src":"fd0e:214:3::5","table":"101"/);
    expect(nl.after).not.toMatch(/"src":"10.214.3.5"/);
  });

  it('tuning: sysctl, MTU, MAC, promisc, allmulticast, txqueuelen; DEL restores them', async () => {
    const dataDir = `/run/cni-htc-tuning-${hex(3)}`; // not under /run/cni: the test leaves no parent dir behind
    // both sides write their backup there (the first side's cleanup runs before the second): removed at the end
    const { nl } = await both(
      'tuning',
      {
        sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '2', 'net.ipv6.conf.eth0.hop_limit': '33' },
        mtu: 1400,
        mac: '02:00:0e:21:43:05',
        promisc: true,
        allmulti: true,
        txQLen: 700,
        dataDir,
      },
      async (ns) =>
        [
          (await out('ip', ['-j', 'link', 'show', 'dev', 'eth0'], ns)).replace(/"address":"(?!02:00:0e)[^"]+"/g, '"address":"ORIGINAL"'),
          await out('sysctl', ['net.ipv4.conf.eth0.rp_filter', 'net.ipv6.conf.eth0.hop_limit'], ns),
        ].join('\n'),
    ).finally(() => rmSync(dataDir, { recursive: true, force: true }));
    expect(nl.state).toMatch(/PROMISC/);
    expect(nl.state).toMatch(/"mtu":1400.*"txqlen":700.*"address":"02:00:0e:21:43:05"/);
    expect(nl.state).toMatch(/rp_filter = 2\nnet.ipv6.conf.eth0.hop_limit = 33/);
    expect(nl.after).toMatch(/"mtu":1500/);
    expect(nl.after).not.toMatch(/PROMISC|ALLMULTI|02:00:0e/);
  });

  it('macvlan (static IPAM): the link made in the container netns, addresses, routes, the notify sysctls', async () => {
    const master = `htc${hex(4)}`;
    await sh('ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', `${master}p`]);
    cleanup.add(() => deleteLink(master));
    await sh('ip', ['link', 'set', master, 'up']);
    const run = async (netlink: boolean): Promise<{ state: string; tools: string[] }> => {
      const ns = await makeNetns(cleanup, 'htc');
      const config = {
        cniVersion: '1.0.0',
        name: 'htcmv',
        type: 'macvlan',
        master,
        mode: 'bridge',
        mtu: 1400,
        ipam: { type: 'static', addresses: [{ address: '10.214.4.5/24', gateway: '10.214.4.1' }], routes: [{ dst: '0.0.0.0/0' }] },
      };
      const env = { CNI_TS_TRACE: '1', CNI_TS_NETLINK: netlink ? '1' : '0' };
      const args = { containerId: `htc-${hex(4)}`, netns: ns.path, ifname: 'eth1', env, config };
      const add = await runPlugin('macvlan', { ...args, command: 'ADD' });
      expect(add.exitCode, add.stdout + add.stderr).toBe(0);
      const state = [
        (await out('ip', ['-j', '-d', 'link', 'show', 'dev', 'eth1'], ns)).replace(
          /"ifindex":\d+|"address":"[^"]+"|"link_index":\d+/g,
          'X',
        ),
        await out('ip', ['-j', 'addr', 'show', 'dev', 'eth1'], ns).then((s) =>
          s.replace(/"ifindex":\d+|"address":"[^"]+"|"valid_life_time":\d+|"preferred_life_time":\d+|fe80::[0-9a-f:]+/g, 'X'),
        ),
        await out('ip', ['-j', 'route', 'show'], ns),
        await out('sysctl', ['net.ipv4.conf.eth1.arp_notify', 'net.ipv6.conf.eth1.ndisc_notify', 'net.ipv6.conf.eth1.accept_dad'], ns),
      ].join('\n');
      const del = await runPlugin('macvlan', { ...args, command: 'DEL' });
      expect(del.exitCode, del.stdout + del.stderr).toBe(0);
      return { state: state.replaceAll(ns.path, 'NETNS'), tools: [...spawned(add), ...spawned(del)] };
    };
    const nl = await run(true);
    const proc = await run(false);
    expect(nl.state.split('\n')).toEqual(proc.state.split('\n'));
    expect(nl.state).toMatch(/arp_notify = 1/);
    expect(nl.tools.filter((t) => KERNEL_TOOLS.includes(t))).toEqual([]);
    expect(proc.tools).toEqual(expect.arrayContaining(['ip']));
  });
});
