/**
 * portmap's UDP conntrack flush (docs/portmap.md: "after publishing, conntrack entries for the
 * UDP host ports are deleted, so flows that started before the mapping existed do not stay
 * stuck on the host"). Everything lives in namespaces this test creates: a "host" namespace
 * (where portmap runs, as a runtime on that host would run it), a container and an "outside"
 * namespace on veths to it. A real UDP flow from a fixed source port starts before the mapping
 * exists; after ADD the same flow must reach the container.
 */
import { execa, type ResultPromise } from 'execa';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid } from './helpers/run.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const NODE = process.execPath;
const SERVER = `
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => s.send('pong ' + m, r.port, r.address));
s.bind(+process.argv[1], () => console.log('ready'));`;
/** One datagram from a fixed source port; prints the reply or "timeout". */
const CLIENT = `
const [host, port, sport] = process.argv.slice(1);
const s = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
const done = (t) => { process.stdout.write(t); s.close(); process.exit(0); };
setTimeout(() => done('timeout'), 1500);
s.on('message', (m) => done(m.toString()));
s.on('error', (e) => done('error ' + e.message));
s.bind(+sport, () => s.send('ping', +port, host));`;

interface Topo {
  host: TestNetns;
  ctr: TestNetns;
  outside: TestNetns;
  hostIP: string;
  outsideIP: string;
  cip: string;
  gw: string;
}

async function topology(): Promise<Topo> {
  const id = uid('ht');
  const [host, ctr, outside] = [await makeNetns(cleanup, 'htpmh'), await makeNetns(cleanup, 'htpmc'), await makeNetns(cleanup, 'htpmo')];
  const n = randomBytes(1)[0];
  const t: Topo = { host, ctr, outside, gw: `10.77.${n}.1`, cip: `10.77.${n}.2`, hostIP: `198.18.${n}.1`, outsideIP: `198.18.${n}.2` };
  await sh('ip', ['-n', host.name, '-batch', '-'], {
    input:
      [
        'link set lo up',
        `link add c${id} type veth peer name eth0 netns ${ctr.name}`,
        `addr add ${t.gw}/24 dev c${id}`,
        `link set c${id} up`,
        `link add o${id} type veth peer name eth0 netns ${outside.name}`,
        `addr add ${t.hostIP}/24 dev o${id}`,
        `link set o${id} up`,
      ].join('\n') + '\n',
  });
  await inNs(host, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  for (const [ns, addr, gw] of [
    [ctr, t.cip, t.gw],
    [outside, t.outsideIP, t.hostIP],
  ] as const) {
    await sh('ip', ['-n', ns.name, '-batch', '-'], {
      input: ['link set lo up', `addr add ${addr}/24 dev eth0`, 'link set eth0 up', `route add default via ${gw}`].join('\n') + '\n',
    });
  }
  // The host tracks connections before any mapping exists, as every real host does: a table
  // of our own with a ct expression switches conntrack on in this namespace.
  await inNs(
    host,
    'nft',
    ['-f', '-'],
    false,
    `add table inet ${id}_ct\nadd chain inet ${id}_ct pre { type filter hook prerouting priority -300; }\nadd rule inet ${id}_ct pre ct state new counter\n`,
  );
  return t;
}

async function startServer(ns: TestNetns, port: number): Promise<void> {
  const p: ResultPromise = execa('nsenter', [`--net=${ns.path}`, '--', NODE, '-e', SERVER, String(port)], { reject: false, buffer: false });
  cleanup.add(async () => {
    p.kill('SIGKILL');
    await p;
  });
  await new Promise<void>((resolve, reject) => {
    p.stdout?.once('data', () => resolve());
    void p.then(() => reject(new Error('UDP server exited')));
  });
}

const send = async (t: Topo, port: number, sport: number): Promise<string> =>
  (await inNs(t.outside, NODE, ['-e', CLIENT, t.hostIP, String(port), String(sport)])).stdout;

/** UDP conntrack entries in the host namespace whose original destination port is `port`. */
async function entries(t: Topo, port: number): Promise<string[]> {
  const r = await inNs(t.host, 'conntrack', ['-L', '-p', 'udp', '--orig-port-dst', String(port)], true);
  return r.stdout.split('\n').filter((l) => l.startsWith('udp'));
}

describe('portmap flushes stale UDP conntrack entries', () => {
  it('a UDP flow that started before the mapping reaches the container after ADD (its stale entry was deleted)', async () => {
    const t = await topology();
    const hostPort = 20000 + (randomBytes(2).readUInt16BE(0) % 20000);
    const sport = 40000 + (randomBytes(2).readUInt16BE(0) % 20000);
    await startServer(t.ctr, 80);
    // Before the mapping: the datagram ends on the host (nothing listens), and conntrack keeps
    // an entry for the flow with no NAT in it.
    expect(await send(t, hostPort, sport)).toBe('timeout');
    const before = await entries(t, hostPort);
    expect(before.length, 'the early flow left a conntrack entry').toBeGreaterThan(0);
    expect(before.join('\n')).toContain(`sport=${sport} dport=${hostPort}`);
    expect(before.join('\n')).not.toContain(`src=${t.cip}`);

    const table = `${uid('ht')}_pm`;
    cleanup.add(() => inNs(t.host, 'nft', ['delete', 'table', 'inet', table], true));
    const config = {
      cniVersion: '1.1.0',
      name: 'htpmct',
      type: 'portmap',
      nftTable: table,
      runtimeConfig: { portMappings: [{ hostPort, containerPort: 80, protocol: 'udp' }] },
      prevResult: {
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', sandbox: t.ctr.path }],
        ips: [{ address: `${t.cip}/24`, gateway: t.gw, interface: 0 }],
      },
    };
    const add = await runPlugin('portmap', {
      command: 'ADD',
      containerId: 'htpmct',
      netns: t.ctr.path,
      ifname: 'eth0',
      config,
      hostNetns: t.host.path,
    });
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    cleanup.add(() =>
      runPlugin('portmap', { command: 'DEL', containerId: 'htpmct', netns: t.ctr.path, ifname: 'eth0', config, hostNetns: t.host.path }),
    );

    // The stale, un-NATed entry is gone ...
    expect((await entries(t, hostPort)).filter((l) => !l.includes(`src=${t.cip}`))).toEqual([]);
    // ... so the same flow (same source port) is now DNATed to the container and answered.
    expect(await send(t, hostPort, sport)).toBe(`pong ping`);
    const after = await entries(t, hostPort);
    expect(after.join('\n')).toContain(`src=${t.cip} dst=${t.outsideIP} sport=80 dport=${sport}`);
  });
});
