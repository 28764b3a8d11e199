/**
 * portmap against the real kernel: a container namespace on a test bridge, a namespace
 * playing "another host" on its own veth, traffic only between them and the host.
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Cleanup, makeNetns, randomTransferNet, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, ROOT, runPlugin, uid, type PluginRun } from './helpers/run.ts';

const NODE = process.execPath;

const SERVER = `
const net = require('net'), dgram = require('dgram');
const [port, tag, proto] = [+process.argv[1], process.argv[2], process.argv[3]];
const clean = (a) => a.replace(/^::ffff:/, '');
if (proto === 'udp') {
  let n = 0;
  for (const type of ['udp4', 'udp6']) {
    const s = dgram.createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
    s.on('message', (m, r) => s.send(tag + ' ' + clean(r.address), r.port, r.address));
    s.bind(port, () => { if (++n === 2) console.log('ready'); });
  }
} else {
  net.createServer((s) => s.end(tag + ' ' + clean(s.remoteAddress) + '\\n')).listen(port, '::', () => console.log('ready'));
}`;

const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [host, port, proto] = process.argv.slice(1);
const done = (s, c) => { process.stdout.write(String(s)); process.exit(c); };
setTimeout(() => done('timeout', 1), 4000);
if (proto === 'udp') {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m) => done(m.toString(), 0));
  s.send('x', +port, host);
} else {
  const c = net.connect(+port, host);
  let b = '';
  c.on('data', (d) => (b += d));
  c.on('end', () => done(b.trim(), 0));
  c.on('error', (e) => done(String(e), 1));
}`;

const rnd = (n: number): number => Math.floor(Math.random() * n);
const hostPort = (): number => 20000 + rnd(20000);

interface Topo {
  id: string;
  bridge: string;
  container: TestNetns;
  outside: TestNetns;
  /** bridge address (container gateway), container address, prefix */
  gw: string;
  cip: string;
  gw6: string;
  cip6: string;
  /** host address on the link to "outside", and the outside namespace's address */
  hostIP: string;
  outsideIP: string;
  hostIP6: string;
  outsideIP6: string;
  prevResult: Record<string, unknown>;
}

const setSys = (key: string, v: string): void => writeFileSync(`/proc/sys/${key.replace(/\./g, '/')}`, v);

/** Host bridge + container netns (veth, v4 + v6) + "outside" netns on its own veth. */
async function topology(cleanup: Cleanup, opts: { containerSide?: boolean } = {}): Promise<Topo> {
  const id = uid('');
  const bridge = `pmb${id}`;
  const container = await makeNetns(cleanup, 'pmc');
  const outside = await makeNetns(cleanup, 'pmo');
  const net = `10.${100 + rnd(100)}.${rnd(256)}`;
  const net6 = `fd${rnd(256).toString(16).padStart(2, '0')}:${rnd(65536).toString(16)}:${rnd(65536).toString(16)}`;
  const k = rnd(64) * 4;
  const transfer = randomTransferNet();
  const t: Topo = {
    id,
    bridge,
    container,
    outside,
    gw: `${net}.1`,
    cip: `${net}.2`,
    gw6: `${net6}::1`,
    cip6: `${net6}::2`,
    hostIP: transfer.host,
    outsideIP: transfer.outside,
    hostIP6: `2001:db8:${k.toString(16)}:${rnd(65536).toString(16)}::1`,
    outsideIP6: '',
    prevResult: {},
  };
  t.outsideIP6 = t.hostIP6.replace(/::1$/, '::2');
  cleanup.add(() => sh('ip', ['link', 'del', bridge], { allowFail: true }));
  const cmds = [
    `link add ${bridge} type bridge`,
    `link set ${bridge} up`,
    `link add pmo${id} type veth peer name eth0 netns ${outside.name}`,
    `addr add ${t.hostIP}/30 dev pmo${id}`,
    `addr add ${t.hostIP6}/64 dev pmo${id} nodad`,
    `link set pmo${id} up`,
  ];
  if (opts.containerSide !== false) {
    cmds.push(
      `addr add ${t.gw}/24 dev ${bridge}`,
      `addr add ${t.gw6}/64 dev ${bridge} nodad`,
      `link add pmh${id} type veth peer name eth0 netns ${container.name}`,
      `link set pmh${id} master ${bridge} up`,
      // What the bridge plugin's hairpinMode does: with br_netfilter, a hairpin flow is
      // DNATed while being bridged and must go back out of the port it came in on.
      `link set pmh${id} type bridge_slave hairpin on`,
    );
  }
  await sh('ip', ['-batch', '-'], { input: cmds.join('\n') + '\n' });
  // IPv4 forwarding only on our own links (the global switch stays as it is).
  setSys(`net.ipv4.conf.pmo${id}.forwarding`, '1');
  setSys(`net.ipv4.conf.${bridge}.forwarding`, '1');
  await sh('nsenter', [`--net=${outside.path}`, '--', 'ip', '-batch', '-'], {
    input:
      [`link set lo up`, `addr add ${t.outsideIP}/30 dev eth0`, `addr add ${t.outsideIP6}/64 dev eth0 nodad`, `link set eth0 up`].join(
        '\n',
      ) + '\n',
  });
  if (opts.containerSide !== false) {
    await sh('nsenter', [`--net=${container.path}`, '--', 'ip', '-batch', '-'], {
      input:
        [
          'link set lo up',
          `addr add ${t.cip}/24 dev eth0`,
          `addr add ${t.cip6}/64 dev eth0 nodad`,
          'link set eth0 up',
          `route add default via ${t.gw}`,
          `route add ::/0 via ${t.gw6}`,
        ].join('\n') + '\n',
    });
  }
  t.prevResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: bridge }, { name: `pmh${id}` }, { name: 'eth0', sandbox: container.path }],
    ips: [
      { address: `${t.cip}/24`, gateway: t.gw, interface: 2 },
      { address: `${t.cip6}/64`, gateway: t.gw6, interface: 2 },
    ],
  };
  return t;
}

/** A TCP or UDP server in `ns` that answers "<tag> <peer address>". */
async function server(cleanup: Cleanup, ns: TestNetns, port: number, tag: string, proto: 'tcp' | 'udp' = 'tcp'): Promise<void> {
  const p: ResultPromise = execa('nsenter', [`--net=${ns.path}`, '--', NODE, '-e', SERVER, String(port), tag, proto], { reject: false });
  cleanup.add(async () => {
    p.kill();
    await p;
  });
  await new Promise<void>((resolve, reject) => {
    p.stdout?.on('data', (d: Buffer) => {
      if (String(d).includes('ready')) resolve();
    });
    void p.then((r) => reject(new Error(`server exited: ${String(r.stderr)}`)));
  });
}

/** Connect from `ns` (or the host) and return what the server said, or the error text. */
async function client(ns: TestNetns | undefined, host: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): Promise<string> {
  const argv = [NODE, '-e', CLIENT, host, String(port), proto];
  const r = ns
    ? await sh('nsenter', [`--net=${ns.path}`, '--', ...argv], { allowFail: true })
    : await sh(argv[0], argv.slice(1), { allowFail: true });
  return r.stdout.trim();
}

interface PM {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIP?: string;
}

function conf(net: string, extra: Record<string, unknown>, mappings: PM[], prevResult?: Record<string, unknown>): Record<string, unknown> {
  const c: Record<string, unknown> = {
    cniVersion: '1.0.0',
    name: net,
    type: 'portmap',
    ...extra,
    runtimeConfig: { portMappings: mappings },
  };
  if (prevResult) c.prevResult = prevResult;
  return c;
}

const pm = (
  command: string,
  t: Topo | undefined,
  containerId: string,
  config: Record<string, unknown>,
  netns?: string,
): Promise<PluginRun> => runPlugin('portmap', { command, containerId, netns: netns ?? t?.container.path ?? '', ifname: 'eth0', config });

async function nftTable(table: string): Promise<string> {
  const r = await sh('nft', ['list', 'table', 'inet', table], { allowFail: true });
  return r.exitCode === 0 ? r.stdout : '';
}

function dropTable(cleanup: Cleanup, table: string): void {
  cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
}

/**
 * A PATH directory whose kernel tools log each start, then exec the real tool: counts the
 * processes a verb spawns.
 */
function spawnLog(cleanup: Cleanup): { env: Record<string, string>; read: () => string[] } {
  const dir = `/tmp/cni-ts-test-${uid('pmspawn')}`;
  mkdirSync(dir, { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  for (const tool of ['nft', 'ip', 'conntrack', 'iptables', 'iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore']) {
    writeFileSync(`${dir}/${tool}`, `#!/bin/sh\necho "${tool} $*" >> ${dir}/log\nexec /usr/sbin/${tool} "$@"\n`);
    chmodSync(`${dir}/${tool}`, 0o755);
  }
  // nft commands run in-process through libnftables (docs/netlink.md) show in the trace as `nft* <first line>`
  const inProcess = (): string[] => {
    const t = existsSync(`${dir}/trace`) ? readFileSync(`${dir}/trace`, 'utf8') : '';
    rmSync(`${dir}/trace`, { force: true });
    // and nf_tables netlink (shared/kernel/netlink/nftsock.ts): a transaction `nft~ <what>`, a dump `nft~read <what>`
    return [
      ...t.matchAll(
        /\] (?:libnftables (.*) -> \d+ in |nf_tables netlink (.*) -> \d+ in |nf_tables netlink (.*): (?:\d+ messages|errno \d+) in )/g,
      ),
    ].map((m) => (m[1] !== undefined ? `nft* ${m[1]}` : m[2] !== undefined ? `nft~ ${m[2]}` : `nft~read ${m[3]}`));
  };
  return {
    env: { PATH: `${dir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, CNI_TS_TRACE: `${dir}/trace` },
    read: () => {
      const l = existsSync(`${dir}/log`) ? readFileSync(`${dir}/log`, 'utf8').trim().split('\n').filter(Boolean) : [];
      rmSync(`${dir}/log`, { force: true });
      return [...l, ...inProcess()];
    },
  };
}

const ok = (r: PluginRun): void => {
  expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
};

describe('portmap, nftables backend', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  it('publishes a TCP port to another host, to the host (127.0.0.1 and its own address) and hairpin', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'hi');
    const cid = `c${t.id}`;
    const c = conf(`pmnet-${t.id}`, { nftTable: table }, [{ hostPort: hp, containerPort: 80, protocol: 'tcp' }], t.prevResult);
    const add = await pm('ADD', t, cid, c);
    ok(add);
    // The result is prevResult, unchanged.
    expect((add.json?.ips as Array<{ address: string }>).map((i) => i.address)).toEqual([`${t.cip}/24`, `${t.cip6}/64`]);
    const rules = await nftTable(table);
    expect(rules).toContain('type nat hook prerouting priority dstnat');
    expect(rules).toMatch(/type nat hook output priority (dstnat|-100)/);
    expect(rules).toContain('type nat hook postrouting priority srcnat');
    expect(rules).toContain(`dnat ip to ${t.cip}:80`);

    // Another host: the source address is kept.
    expect(await client(t.outside, t.hostIP, hp)).toBe(`hi ${t.outsideIP}`);
    // The host through loopback: route_localnet + masquerade to the bridge address.
    expect((await sh('cat', [`/proc/sys/net/ipv4/conf/${t.bridge}/route_localnet`])).stdout.trim()).toBe('1');
    expect(await client(undefined, '127.0.0.1', hp)).toBe(`hi ${t.gw}`);
    // The host through its own address on the test link.
    expect(await client(undefined, t.hostIP, hp)).toBe(`hi ${t.hostIP}`);
    // Hairpin: the container reaches its own published port through the host address.
    expect(await client(t.container, t.hostIP, hp)).toBe(`hi ${t.gw}`);

    ok(await pm('CHECK', t, cid, c));
    ok(await pm('DEL', t, cid, c));
    expect(await nftTable(table)).not.toContain('pm-');
    expect(await client(t.outside, t.hostIP, hp)).not.toBe(`hi ${t.outsideIP}`);
  });

  it("upgrade: the legacy base chains of an earlier version are cleaned by DEL, leaving other owners' rules", async () => {
    const t = await topology(cleanup);
    const table = `hm_${t.id}`;
    dropTable(cleanup, table);
    const T = `inet ${table}`;
    // What an earlier portmap left (base chains prerouting/output/postrouting), plus a
    // masquerade rule of another owner (the bridge plugin) in the shared postrouting chain;
    // its source is a documentation address no test traffic uses.
    await sh('nft', ['-f', '-'], {
      input:
        [
          `add table ${T}`,
          `add chain ${T} hostports`,
          `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
          `add chain ${T} output { type nat hook output priority -100; policy accept; }`,
          `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
          `add rule ${T} prerouting fib daddr type local jump hostports`,
          `add rule ${T} output fib daddr type local jump hostports`,
          `add rule ${T} postrouting meta mark & 0x2000 == 0x2000 masquerade comment "cni-ts portmap: loopback and hairpin"`,
          `add rule ${T} postrouting ip saddr 192.0.2.77 ip daddr != 192.0.2.0/24 masquerade comment "cni:other:x"`,
        ].join('\n') + '\n',
    });
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'hi');
    const cid = `c${t.id}`;
    const c = conf(`pmnet-${t.id}`, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], t.prevResult);
    ok(await pm('ADD', t, cid, c));
    expect(await nftTable(table)).toContain('cni:other:x');
    // the legacy dispatch and the new one side by side: the mapping works once
    expect(await client(t.outside, t.hostIP, hp)).toBe(`hi ${t.outsideIP}`);
    expect(await client(undefined, '127.0.0.1', hp)).toBe(`hi ${t.gw}`);
    ok(await pm('DEL', t, cid, c));
    const after = await nftTable(table);
    expect(after).not.toMatch(/chain (prerouting|output) /);
    const legacyPost = (await sh('nft', ['list', 'chain', 'inet', table, 'postrouting'])).stdout;
    expect(legacyPost).not.toContain('loopback and hairpin');
    expect(legacyPost).toContain('cni:other:x');
    expect(after).toContain('chain portmap-prerouting');
  });

  it('publishes UDP, and a port bound to one host address only', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const [hpU, hpT] = [hostPort(), hostPort()];
    await server(cleanup, t.container, 5353, 'udp', 'udp');
    await server(cleanup, t.container, 81, 'bound');
    const cid = `c${t.id}`;
    const c = conf(
      `pmnet-${t.id}`,
      { nftTable: table },
      [
        { hostPort: hpU, containerPort: 5353, protocol: 'udp' },
        { hostPort: hpT, containerPort: 81, protocol: 'TCP', hostIP: t.hostIP },
      ],
      t.prevResult,
    );
    ok(await pm('ADD', t, cid, c));
    expect(await client(t.outside, t.hostIP, hpU, 'udp')).toBe(`udp ${t.outsideIP}`);
    expect(await client(t.outside, t.hostIP, hpT)).toBe(`bound ${t.outsideIP}`);
    // bound to hostIP: 127.0.0.1 is not published
    expect(await client(undefined, '127.0.0.1', hpT)).not.toContain('bound');
    ok(await pm('CHECK', t, cid, c));
    ok(await pm('DEL', t, cid, c));
  });

  it('publishes an IPv6 port (host; another host and hairpin when IPv6 forwarding is on)', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'v6');
    const cid = `c${t.id}`;
    const c = conf(
      `pmnet-${t.id}`,
      { nftTable: table },
      [
        { hostPort: hp, containerPort: 80 },
        { hostPort: hp + 1, containerPort: 80, hostIP: t.gw6 },
      ],
      t.prevResult,
    );
    ok(await pm('ADD', t, cid, c));
    expect(await nftTable(table)).toContain(`dnat ip6 to [${t.cip6}]:80`);
    expect(await client(undefined, t.gw6, hp)).toBe(`v6 ${t.gw6}`);
    // bound to one IPv6 host address
    expect(await client(undefined, t.gw6, hp + 1)).toBe(`v6 ${t.gw6}`);
    expect(await client(undefined, t.hostIP6, hp + 1)).not.toContain('v6');
    ok(await pm('CHECK', t, cid, c));
    // Another host and hairpin over IPv6 are forwarded traffic: IPv6 has no per-interface
    // forwarding switch, and the tests do not turn on the host-wide one.
    if (readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim() === '1') {
      expect(await client(t.outside, t.hostIP6, hp)).toBe(`v6 ${t.outsideIP6}`);
      expect(await client(t.container, t.gw6, hp)).toBe(`v6 ${t.gw6}`);
    } else {
      console.log('skipped: IPv6 from another host and IPv6 hairpin need net.ipv6.conf.all.forwarding=1, which this test does not change');
    }
    ok(await pm('DEL', t, cid, c));
  });

  it('conditionsV4 (nft match expressions) limit who is forwarded', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'cond');
    const cid = `c${t.id}`;
    const c = conf(
      `pmnet-${t.id}`,
      { nftTable: table, conditionsV4: [`ip saddr != ${t.outsideIP}`] },
      [{ hostPort: hp, containerPort: 80 }],
      t.prevResult,
    );
    ok(await pm('ADD', t, cid, c));
    expect(await client(t.outside, t.hostIP, hp)).not.toContain('cond');
    expect(await client(undefined, t.hostIP, hp)).toBe(`cond ${t.hostIP}`);
    ok(await pm('DEL', t, cid, c));
  });

  it('refuses a host port another attachment holds (code 102), changing nothing', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const hp = hostPort();
    const net = `pmnet-${t.id}`;
    ok(await pm('ADD', t, `a${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], t.prevResult)));
    const before = await nftTable(table);
    const r = await pm(
      'ADD',
      t,
      `b${t.id}`,
      conf(
        net,
        { nftTable: table },
        [
          { hostPort: hp + 1, containerPort: 81 },
          { hostPort: hp, containerPort: 80 },
        ],
        t.prevResult,
      ),
    );
    expect(r.exitCode).toBe(1);
    expect(r.json?.code).toBe(102);
    expect(String(r.json?.msg)).toContain(`tcp/${hp}`);
    expect(String(r.json?.msg)).toContain(`a${t.id}`);
    expect(await nftTable(table)).toBe(before);
    // A repeated ADD of the holder itself is fine (idempotent).
    ok(await pm('ADD', t, `a${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], t.prevResult)));
    // Same port, other protocol: no conflict.
    ok(
      await pm('ADD', t, `b${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80, protocol: 'udp' }], t.prevResult)),
    );
  });

  it('concurrent ADDs: distinct ports all succeed, the same port is won by exactly one (102 for the others)', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const net = `pmnet-${t.id}`;
    const hp = hostPort();
    const distinct = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        pm('ADD', t, `d${i}${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp + 10 + i, containerPort: 80 }], t.prevResult)),
      ),
    );
    distinct.forEach(ok);
    const same = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        pm('ADD', t, `s${i}${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], t.prevResult)),
      ),
    );
    expect(same.filter((r) => r.exitCode === 0).length).toBe(1);
    expect(same.filter((r) => r.json?.code === 102).length).toBe(3);
    const text = await nftTable(table);
    expect(text.match(/chain pm-/g)?.length).toBe(9);
  });

  it('DEL is idempotent, works without prevResult and with an empty CNI_NETNS; DEL without mappings does nothing', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const net = `pmnet-${t.id}`;
    const cid = `c${t.id}`;
    const maps = [{ hostPort: hostPort(), containerPort: 80 }];
    ok(await pm('ADD', t, cid, conf(net, { nftTable: table }, maps, t.prevResult)));
    ok(await pm('DEL', t, cid, conf(net, { nftTable: table }, [])));
    expect(await nftTable(table)).toContain('pm-');
    ok(await pm('DEL', undefined, cid, conf(net, { nftTable: table }, maps), ''));
    expect(await nftTable(table)).not.toContain('pm-');
    ok(await pm('DEL', undefined, cid, conf(net, { nftTable: table }, maps), ''));
    ok(await pm('DEL', t, cid, conf(net, { nftTable: table }, maps, t.prevResult)));
    // A table that does not exist at all
    ok(await pm('DEL', undefined, cid, conf(net, { nftTable: `pmnone_${t.id}` }, maps), ''));
  });

  it('CHECK fails when a rule was deleted; ADD without prevResult is refused', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const cid = `c${t.id}`;
    const c = conf(`pmnet-${t.id}`, { nftTable: table }, [{ hostPort: hostPort(), containerPort: 80 }], t.prevResult);
    ok(await pm('ADD', t, cid, c));
    ok(await pm('CHECK', t, cid, c));
    const chain = /chain (pm-[0-9a-f-]+)/.exec(await nftTable(table))?.[1];
    expect(chain).toBeTruthy();
    await sh('nft', ['flush', 'chain', 'inet', table, chain!]);
    const r = await pm('CHECK', t, cid, c);
    expect(r.exitCode).toBe(1);
    expect(r.json?.code).toBe(105);
    // ADD repairs it
    ok(await pm('ADD', t, cid, c));
    ok(await pm('CHECK', t, cid, c));

    const noPrev = await pm(
      'ADD',
      t,
      `x${t.id}`,
      conf(`pmnet-${t.id}`, { nftTable: table }, [{ hostPort: hostPort(), containerPort: 80 }]),
    );
    expect(noPrev.exitCode).toBe(1);
    expect(noPrev.json?.code).toBe(7);
    expect(String(noPrev.json?.msg)).toContain('chained');
  });

  it('GC removes attachments missing from cni.dev/valid-attachments, only of its own network', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const net = `pmnet-${t.id}`;
    const other = `pmother-${t.id}`;
    const hp = hostPort();
    ok(await pm('ADD', t, `a${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], t.prevResult)));
    ok(await pm('ADD', t, `b${t.id}`, conf(net, { nftTable: table }, [{ hostPort: hp + 1, containerPort: 80 }], t.prevResult)));
    ok(await pm('ADD', t, `o${t.id}`, conf(other, { nftTable: table }, [{ hostPort: hp + 2, containerPort: 80 }], t.prevResult)));
    expect((await nftTable(table)).match(/chain pm-/g)?.length).toBe(3);
    const gc = await runPlugin('portmap', {
      command: 'GC',
      config: {
        cniVersion: '1.1.0',
        name: net,
        type: 'portmap',
        nftTable: table,
        'cni.dev/valid-attachments': [{ containerID: `a${t.id}`, ifname: 'eth0' }],
      },
    });
    ok(gc);
    const after = await nftTable(table);
    expect(after.match(/chain pm-/g)?.length).toBe(2);
    expect(after).toContain(`tcp . ${hp} : goto`);
    expect(after).not.toContain(`tcp . ${hp + 1} : goto`);
    expect(after).toContain(`tcp . ${hp + 2} : goto`);
    const st = await runPlugin('portmap', {
      command: 'STATUS',
      config: { cniVersion: '1.1.0', name: net, type: 'portmap', nftTable: table },
    });
    ok(st);
  });

  it('50 published ports cost one nft transaction; DEL without mappings starts no process (time printed, not asserted)', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const base = 20000 + rnd(20000);
    const maps = Array.from({ length: 50 }, (_, i) => ({ hostPort: base + i, containerPort: 1000 + i }));
    const cid = `c${t.id}`;
    const c = conf(`pmnet-${t.id}`, { nftTable: table }, maps, t.prevResult);
    const spawns = spawnLog(cleanup);
    const run = (command: string, config: Record<string, unknown>, netns = t.container.path): Promise<PluginRun> =>
      runPlugin('portmap', { command, containerId: cid, netns, ifname: 'eth0', config, env: spawns.env });
    const t0 = performance.now();
    ok(await run('ADD', c));
    const t1 = performance.now();
    const addSpawns = spawns.read();
    const nftOps = (ls: string[]): string[] => ls.filter((l) => /^nft[*~]? /.test(l));
    // one transaction: `nft -f -`, one script through libnftables (it starts with the table's
    // `add table`), or one nf_tables netlink batch
    expect(nftOps(addSpawns)).toHaveLength(1);
    expect(nftOps(addSpawns)[0]).toMatch(/^nft -f -$|^nft\* |^nft~ /);
    expect((await nftTable(table)).match(/dnat ip6? to/g)?.length).toBe(100);
    ok(await run('CHECK', c));
    const checkSpawns = spawns.read();
    ok(await run('DEL', conf(`pmnet-${t.id}`, { nftTable: table }, []), ''));
    expect(spawns.read()).toEqual([]);
    const t1b = performance.now();
    ok(await run('DEL', c));
    const t2 = performance.now();
    const delSpawns = spawns.read();
    // one read and one write; by netlink the read is a few dumps (chains, the four maps' elements)
    const netlinkDel = delSpawns.some((l) => l.startsWith('nft~'));
    expect(nftOps(delSpawns).length).toBe(netlinkDel ? 1 : 2);
    if (netlinkDel) expect(delSpawns.filter((l) => l.startsWith('nft~read')).length).toBeGreaterThan(0);
    console.log(
      `portmap nftables spawns: ADD ${JSON.stringify(addSpawns)}, CHECK ${JSON.stringify(checkSpawns)}, DEL ${JSON.stringify(delSpawns)}`,
    );
    const one = conf(`pmnet-${t.id}`, { nftTable: table }, maps.slice(0, 1), t.prevResult);
    const t3 = performance.now();
    ok(await pm('ADD', t, cid, one));
    const t4 = performance.now();
    console.log(
      `portmap nftables: ADD of 50 ports (v4+v6, 100 dnat rules) ${(t1 - t0).toFixed(0)} ms, DEL ${(t2 - t1b).toFixed(0)} ms; ADD of 1 port ${(t4 - t3).toFixed(0)} ms`,
    );
    ok(await pm('DEL', t, cid, one));
  });

  it('rejects invalid configs with code 7 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ markMasqBit: 40 }, 'markMasqBit'],
      [{ markMasqBit: 3, externalSetMarkChain: 'KUBE-MARK-MASQ', backend: 'iptables' }, 'externalSetMarkChain'],
      [{ backend: 'nftables', conditionsV4: ['-s', '1.2.3.4'] }, 'conditionsV4[0]'],
      [{ conditionsV4: ['ip saddr 1.2.3.4; flush ruleset'] }, 'conditionsV4[0]'],
      [{ nftTable: 'bad table' }, 'nftTable'],
      [{ backend: 'pf' }, 'backend'],
    ];
    for (const [extra, field] of cases) {
      const r = await runPlugin('portmap', {
        command: 'ADD',
        containerId: 'x',
        netns: '/proc/self/ns/net',
        ifname: 'eth0',
        config: conf('pmbad', extra, [{ hostPort: 1, containerPort: 1 }], { cniVersion: '1.0.0', ips: [] }),
      });
      expect(r.json?.code, JSON.stringify(extra)).toBe(7);
      expect(String(r.json?.msg)).toContain(field);
    }
    const r = await runPlugin('portmap', {
      command: 'ADD',
      containerId: 'x',
      netns: '/proc/self/ns/net',
      ifname: 'eth0',
      config: conf('pmbad', {}, [{ hostPort: 70000, containerPort: 1 }], { cniVersion: '1.0.0', ips: [] }),
    });
    expect(r.json?.code).toBe(7);
    expect(String(r.json?.msg)).toContain('hostPort');
  });
});

/** Remove the iptables chains of a test prefix (the shared ones the plugin leaves, like the reference). */
async function dropIptablesPrefix(prefix: string): Promise<void> {
  for (const [save, restore] of [
    ['iptables-save', 'iptables-restore'],
    ['ip6tables-save', 'ip6tables-restore'],
  ]) {
    const s = await sh(save, ['-t', 'nat'], { allowFail: true });
    if (s.exitCode !== 0) continue;
    const lines = s.stdout.split('\n');
    const del = lines.filter((l) => l.startsWith('-A ') && l.includes(`${prefix}-`)).map((l) => `-D ${l.slice(3)}`);
    const chains = lines.filter((l) => l.startsWith(`:${prefix}-`)).map((l) => l.slice(1).split(' ')[0]);
    if (!del.length && !chains.length) continue;
    const script = ['*nat', ...del, ...chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
    await sh(restore, ['--noflush', '-w', '10'], { input: script, allowFail: true });
  }
  // The plugin's lock directory for the iptables backend (empty once its lock is released).
  await sh('rmdir', ['/run/cni-ts/portmap'], { allowFail: true });
}

async function iptablesHas(prefix: string): Promise<string> {
  const a = await sh('iptables-save', ['-t', 'nat'], { allowFail: true });
  const b = await sh('ip6tables-save', ['-t', 'nat'], { allowFail: true });
  return (a.stdout + b.stdout)
    .split('\n')
    .filter((l) => l.includes(prefix))
    .join('\n');
}

describe('portmap, iptables backend', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  it('publishes TCP (outside, localhost, hairpin) and IPv6; CHECK, conflict, GC and DEL remove the chains', async () => {
    const t = await topology(cleanup);
    const prefix = `PT${t.id}`;
    cleanup.add(() => dropIptablesPrefix(prefix));
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'ipt');
    const net = `pmnet-${t.id}`;
    const cid = `c${t.id}`;
    const c = conf(net, { backend: 'iptables', iptablesChainPrefix: prefix }, [{ hostPort: hp, containerPort: 80 }], t.prevResult);
    ok(await pm('ADD', t, cid, c));
    const rules = await iptablesHas(prefix);
    expect(rules).toContain(`--to-destination ${t.cip}:80`);
    expect(rules).toContain(`--to-destination [${t.cip6}]:80`);
    expect(await client(t.outside, t.hostIP, hp)).toBe(`ipt ${t.outsideIP}`);
    expect(await client(undefined, '127.0.0.1', hp)).toBe(`ipt ${t.gw}`);
    expect(await client(undefined, t.hostIP, hp)).toBe(`ipt ${t.hostIP}`);
    expect(await client(t.container, t.hostIP, hp)).toBe(`ipt ${t.gw}`);
    expect(await client(undefined, t.gw6, hp)).toBe(`ipt ${t.gw6}`);
    ok(await pm('CHECK', t, cid, c));
    ok(await pm('ADD', t, cid, c)); // repeated ADD converges

    const clash = await pm(
      'ADD',
      t,
      `b${t.id}`,
      conf(net, { backend: 'iptables', iptablesChainPrefix: prefix }, [{ hostPort: hp, containerPort: 80 }], t.prevResult),
    );
    expect(clash.json?.code).toBe(102);

    ok(
      await pm(
        'ADD',
        t,
        `g${t.id}`,
        conf(net, { backend: 'iptables', iptablesChainPrefix: prefix }, [{ hostPort: hp + 1, containerPort: 80 }], t.prevResult),
      ),
    );
    ok(
      await runPlugin('portmap', {
        command: 'GC',
        config: {
          cniVersion: '1.1.0',
          name: net,
          type: 'portmap',
          backend: 'iptables',
          iptablesChainPrefix: prefix,
          'cni.dev/valid-attachments': [{ containerID: cid, ifname: 'eth0' }],
        },
      }),
    );
    const afterGc = await iptablesHas(prefix);
    expect(afterGc).toContain(`--dports ${hp} `);
    expect(afterGc).not.toContain(`--dports ${hp + 1} `);

    // Delete the DNAT rule by hand: CHECK notices.
    const dnLine = (await sh('iptables-save', ['-t', 'nat'])).stdout
      .split('\n')
      .find((l) => l.startsWith(`-A ${prefix}-DN-`) && l.includes('-j DNAT'))!;
    await sh('iptables-restore', ['--noflush', '-w', '10'], { input: `*nat\n-D ${dnLine.slice(3)}\nCOMMIT\n`, allowFail: true });
    const bad = await pm('CHECK', t, cid, c);
    expect(bad.json?.code).toBe(105);

    ok(await pm('DEL', t, cid, c));
    ok(
      await pm(
        'DEL',
        undefined,
        cid,
        conf(net, { backend: 'iptables', iptablesChainPrefix: prefix }, [{ hostPort: hp, containerPort: 80 }]),
        '',
      ),
    );
    expect(await iptablesHas(`${prefix}-DN-`)).toBe('');
  });

  it('conditionsV4 (iptables matches) select the iptables backend and limit who is forwarded', async () => {
    const t = await topology(cleanup);
    const prefix = `PT${t.id}`;
    cleanup.add(() => dropIptablesPrefix(prefix));
    const hp = hostPort();
    await server(cleanup, t.container, 80, 'iptc');
    const cid = `c${t.id}`;
    const c = conf(
      `pmnet-${t.id}`,
      { iptablesChainPrefix: prefix, conditionsV4: ['!', '-s', `${t.outsideIP}/32`] },
      [{ hostPort: hp, containerPort: 80 }],
      t.prevResult,
    );
    const spawns = spawnLog(cleanup);
    ok(
      await runPlugin('portmap', { command: 'ADD', containerId: cid, netns: t.container.path, ifname: 'eth0', config: c, env: spawns.env }),
    );
    const started = spawns.read().map((l) => l.split(' ')[0]);
    console.log(`portmap iptables ADD (IPv4+IPv6) started: ${started.join(', ')}`);
    expect(started.filter((x) => x.endsWith('-restore')).sort()).toEqual(['ip6tables-restore', 'iptables-restore']);
    expect(await iptablesHas(prefix)).toContain(`! -s ${t.outsideIP}/32`);
    expect(await client(t.outside, t.hostIP, hp)).not.toContain('iptc');
    expect(await client(undefined, t.hostIP, hp)).toBe(`iptc ${t.hostIP}`);
    ok(await pm('DEL', t, cid, c));
    expect(await iptablesHas(`${prefix}-DN-`)).toBe('');
  });
});

describe('portmap with the reference plugins', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());

  it('50-port ADD/DEL: ours (nftables, iptables) and the reference (iptables), times printed', async () => {
    const t = await topology(cleanup);
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const prefix = `PT${t.id}`;
    cleanup.add(() => dropIptablesPrefix(prefix));
    const base = 20000 + rnd(20000);
    const maps = Array.from({ length: 50 }, (_, i) => ({ hostPort: base + i, containerPort: 1000 + i, protocol: 'tcp' }));
    const times: string[] = [];
    const measure = async (label: string, bin: string, config: Record<string, unknown>): Promise<void> => {
      const args = { containerId: `m${t.id}`, netns: t.container.path, ifname: 'eth0', config, binDir: bin, path: bin };
      const t0 = performance.now();
      const add = await runPlugin('portmap', { command: 'ADD', ...args });
      const t1 = performance.now();
      const del = await runPlugin('portmap', { command: 'DEL', ...args });
      const t2 = performance.now();
      ok(add);
      ok(del);
      times.push(`${label}: ADD ${(t1 - t0).toFixed(0)} ms, DEL ${(t2 - t1).toFixed(0)} ms`);
    };
    await measure('cni-ts nftables', BIN, conf(`pmnet-${t.id}`, { nftTable: table }, maps, t.prevResult));
    await measure('cni-ts iptables', BIN, conf(`pmnet-${t.id}`, { backend: 'iptables', iptablesChainPrefix: prefix }, maps, t.prevResult));
    await measure('reference (iptables)', REF_BIN, conf(`pmnet-${t.id}`, {}, maps, t.prevResult));
    console.log(`portmap, 50 ports on IPv4+IPv6 — ${times.join('; ')}`);
  });

  it('chains after the reference bridge + host-local, and coexists with the reference portmap', async () => {
    const t = await topology(cleanup, { containerSide: false });
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const net = `pmref-${t.id}`;
    const cid = `r${t.id}`;
    const { brAdd, subnet } = await attachBridge(cleanup, t, net, cid, '1.0.0', REF_BIN);
    const prev = brAdd.json!;
    const cip = (prev.ips as Array<{ address: string }>)[0].address.split('/')[0];
    await server(cleanup, t.container, 80, 'ours');
    await server(cleanup, t.container, 8080, 'theirs');

    const [hpOurs, hpTheirs] = [hostPort(), hostPort()];
    const ours = conf(net, { nftTable: table }, [{ hostPort: hpOurs, containerPort: 80 }], prev);
    // (the reference 1.1 wants an explicit protocol)
    const theirs = conf(net, {}, [{ hostPort: hpTheirs, containerPort: 8080, protocol: 'tcp' }], prev);
    ok(await pm('ADD', t, cid, ours));
    cleanup.add(() =>
      runPlugin('portmap', {
        command: 'DEL',
        containerId: cid,
        netns: t.container.path,
        ifname: 'eth0',
        config: theirs,
        binDir: REF_BIN,
        path: REF_BIN,
      }),
    );
    ok(
      await runPlugin('portmap', {
        command: 'ADD',
        containerId: cid,
        netns: t.container.path,
        ifname: 'eth0',
        config: theirs,
        binDir: REF_BIN,
        path: REF_BIN,
      }),
    );

    expect(await client(t.outside, t.hostIP, hpOurs)).toBe(`ours ${t.outsideIP}`);
    expect(await client(t.outside, t.hostIP, hpTheirs)).toBe(`theirs ${t.outsideIP}`);
    expect(await client(undefined, '127.0.0.1', hpOurs)).toBe(`ours ${subnet}.1`);
    expect(await client(t.container, t.hostIP, hpOurs)).toBe(`ours ${subnet}.1`);
    expect(cip).toMatch(new RegExp(`^${subnet.replace(/\./g, '\\.')}\\.`));

    ok(
      await runPlugin('portmap', {
        command: 'DEL',
        containerId: cid,
        netns: t.container.path,
        ifname: 'eth0',
        config: theirs,
        binDir: REF_BIN,
        path: REF_BIN,
      }),
    );
    // Ours is untouched by the reference's DEL
    expect(await client(t.outside, t.hostIP, hpOurs)).toBe(`ours ${t.outsideIP}`);
    ok(await pm('CHECK', t, cid, ours));
    ok(await pm('DEL', t, cid, ours));
    expect(await nftTable(table)).not.toContain('pm-');
  });
});

const ourBridge = existsSync(`${ROOT}/plugins/bridge/index.ts`);

/**
 * bridge (from `bin`: ours or the reference, with host-local from the same place) + host-local
 * for container `cid` of topology `t`. Not a gateway (that would switch on host-wide
 * forwarding): the bridge gets the gateway address and forwarding from the test.
 */
async function attachBridge(
  cleanup: Cleanup,
  t: Topo,
  net: string,
  cid: string,
  cniVersion: string,
  bin: string,
): Promise<{ brAdd: PluginRun; subnet: string }> {
  const dataDir = `/run/cni-ts-test/pm-${t.id}`;
  cleanup.add(async () => {
    await sh('rm', ['-rf', dataDir]);
    await sh('rmdir', ['/run/cni-ts-test'], { allowFail: true });
  });
  const subnet = `10.${100 + rnd(100)}.${rnd(256)}`;
  const bridgeConf = {
    cniVersion,
    name: net,
    type: 'bridge',
    bridge: t.bridge,
    isGateway: false,
    hairpinMode: true,
    ipam: {
      type: 'host-local',
      dataDir,
      ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]],
      routes: [{ dst: '0.0.0.0/0', gw: `${subnet}.1` }],
    },
  };
  const run = { containerId: cid, netns: t.container.path, ifname: 'eth0', config: bridgeConf, binDir: bin, path: bin };
  const brAdd = await runPlugin('bridge', { command: 'ADD', ...run });
  ok(brAdd);
  cleanup.add(() => runPlugin('bridge', { command: 'DEL', ...run }));
  await sh('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', t.bridge]);
  setSys(`net.ipv4.conf.${t.bridge}.forwarding`, '1');
  return { brAdd, subnet };
}

describe('portmap chained after our bridge + host-local', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());

  it.skipIf(!ourBridge)('bridge (hairpinMode) then portmap: another host, localhost and hairpin reach the container', async () => {
    const t = await topology(cleanup, { containerSide: false });
    const table = `pmt_${t.id}`;
    dropTable(cleanup, table);
    const net = `pmours-${t.id}`;
    const cid = `o${t.id}`;
    const { brAdd, subnet } = await attachBridge(cleanup, t, net, cid, '1.1.0', BIN);
    await server(cleanup, t.container, 80, 'br');
    const hp = hostPort();
    const c = { ...conf(net, { nftTable: table }, [{ hostPort: hp, containerPort: 80 }], brAdd.json), cniVersion: '1.1.0' };
    const add = await pm('ADD', t, cid, c);
    ok(add);
    expect(add.json?.ips).toEqual(brAdd.json?.ips);
    expect(await client(t.outside, t.hostIP, hp)).toBe(`br ${t.outsideIP}`);
    expect(await client(undefined, '127.0.0.1', hp)).toBe(`br ${subnet}.1`);
    expect(await client(t.container, t.hostIP, hp)).toBe(`br ${subnet}.1`);
    ok(await pm('CHECK', t, cid, c));
    ok(await pm('DEL', t, cid, c));
    expect(await nftTable(table)).not.toContain('pm-');
  });
});
