/**
 * podman 4 (CNI backend) drives our bridge + host-local + portmap as a real runtime does:
 * private containers.conf / storage / network dir / plugin dir, a busybox image imported from
 * busybox-static, containers that ping each other, a published port reached from the host's
 * loopback and from an "outside" namespace, a static --ip, and lifecycles that release
 * everything. Plugin choice per name: see test/helpers/runtime/plugins.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Cleanup } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import {
  bridgePorts,
  cachedResults,
  cleanupNetwork,
  expectScopedMasquerade,
  firewallLinesMentioning,
  masqueradeLinesOf,
  httpBody,
  logLines,
  makeOutside,
  randomHostPort,
  randomSubnet,
  reservations,
} from './helpers/runtime/common.ts';
import { bridgeConflist, type TestNetwork } from './helpers/runtime/conflist.ts';
import { makePodman, podmanMissing, type Podman } from './helpers/runtime/podman.ts';
import { describePlan, planPlugins } from './helpers/runtime/plugins.ts';

const plan = await planPlugins(['bridge', 'host-local', 'portmap', 'loopback']);
const skip = (await podmanMissing()) || plan.skip;
if (skip) console.log(`runtime-podman: skipped: ${skip}`);
else console.log(`runtime-podman: plugins ${describePlan(plan)}`);

describe('podman (CNI backend) drives the plugins', () => {
  const cleanup = new Cleanup();
  const tag = uid('');
  let pm: Podman;
  let net: TestNetwork;
  let sub: ReturnType<typeof randomSubnet>;
  const containers: string[] = [];

  beforeAll(async () => {
    if (skip) return;
    pm = await makePodman(cleanup, tag, plan);
    sub = randomSubnet();
    net = {
      name: `cnits-pm-${tag}`,
      bridge: `cnpm${tag}`,
      subnet: sub.subnet,
      gateway: sub.gateway,
      dataDir: path.join(pm.dir, 'ipam'),
      logFile: path.join(pm.dir, 'cni.log'),
      portmap: true,
      // masquerade on: "no firewall line is left" then covers it; the tests' traffic stays between
      // pods (same subnet: not masqueraded) and test namespaces, so it never reaches eth0
      ipMasq: true,
    };
    cleanupNetwork(cleanup, net, sub.prefix, 'runtime-podman');
    pm.writeNetwork(bridgeConflist(net));
  }, 120_000);

  afterAll(async () => {
    await cleanup.run();
  }, 120_000);

  /** Everything one container had is gone: reservation, veth, firewall lines, libcni cache. */
  async function expectReleased(ids: string[], hostPort?: number, ips: string[] = []): Promise<void> {
    expect(reservations(net.dataDir, net.name)).toEqual([]);
    expect(await bridgePorts(net.bridge)).toEqual([]);
    expect(await firewallLinesMentioning([...ids, ...(hostPort ? [hostPort] : [])])).toEqual([]);
    for (const ip of ips) expect(await masqueradeLinesOf(ip), `masquerade of ${ip} is gone`).toEqual([]);
    expect(cachedResults(net.name)).toEqual([]);
  }

  afterEach(async () => {
    if (pm && containers.length) await pm.run(['rm', '-f', '-t', '0', ...containers.splice(0)]);
  });

  async function runDetached(args: string[]): Promise<string> {
    const id = await pm.ok(['run', '-d', '--network', net.name, ...args]);
    containers.push(id);
    return id;
  }

  it.skipIf(skip)(
    'two containers started at once get addresses from host-local and ping each other',
    async () => {
      const [a, b] = await Promise.all([runDetached([...pm.image, 'sleep', '3600']), runDetached([...pm.image, 'sleep', '3600'])]);
      const ipA = await pm.containerIp(a, net.name);
      const ipB = await pm.containerIp(b, net.name);
      expect(ipA.startsWith(`${sub.prefix}.`)).toBe(true);
      expect(ipB.startsWith(`${sub.prefix}.`)).toBe(true);
      expect(ipA).not.toBe(ipB);
      for (const ip of [ipA, ipB]) await expectScopedMasquerade(ip, net.subnet, plan.impl.bridge === 'ours');
      expect(reservations(net.dataDir, net.name).sort()).toEqual([ipA, ipB].sort());
      expect((await bridgePorts(net.bridge)).length).toBe(2);
      // inside a container: its address on eth0, and the other container answers
      const addr = await pm.ok(['exec', a, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr).toContain(`${ipA}/24`);
      const ping = await pm.run(['exec', a, 'ping', '-c', '2', '-W', '2', ipB]);
      expect(ping.stdout, ping.stderr).toMatch(/2 packets received/);
      await pm.ok(['rm', '-f', '-t', '0', a, b]);
      await expectReleased([a, b], undefined, [ipA, ipB]);
    },
    120_000,
  );

  it.skipIf(skip)(
    '-p HOSTPORT:80 reaches busybox httpd from 127.0.0.1 and from an outside namespace',
    async () => {
      const hostPort = randomHostPort();
      const id = await runDetached(['-p', `${hostPort}:80`, ...pm.image, 'httpd', '-f', '-p', '80', '-h', '/www']);
      const { ns: outside, transfer: t } = await makeOutside(cleanup, 'cnpo', `cnpv${tag}`);
      const body = (netnsPath: string | undefined, addr: string): Promise<string> => httpBody(netnsPath, addr, hostPort);
      expect((await firewallLinesMentioning([hostPort])).length).toBeGreaterThan(0);
      expect(await body(undefined, '127.0.0.1')).toBe('cni-ts');
      expect(await body(outside.path, t.host)).toBe('cni-ts');

      await pm.ok(['rm', '-f', '-t', '0', id]);
      await expectReleased([id], hostPort);
    },
    120_000,
  );

  it.skipIf(skip)(
    '--ip hands that exact address to host-local',
    async () => {
      const want = `${sub.prefix}.77`;
      const id = await runDetached(['--ip', want, ...pm.image, 'sleep', '3600']);
      expect(await pm.containerIp(id, net.name)).toBe(want);
      await expectScopedMasquerade(want, net.subnet, plan.impl.bridge === 'ours');
      expect(reservations(net.dataDir, net.name)).toEqual([want]);
      const addr = await pm.ok(['exec', id, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr).toContain(`${want}/24`);
      await pm.ok(['rm', '-f', '-t', '0', id]);
      await expectReleased([id], undefined, [want]);
    },
    120_000,
  );

  it.skipIf(skip)(
    'stop then rm, and podman network rm -f, release everything',
    async () => {
      const a = await runDetached([...pm.image, 'sleep', '3600']);
      const b = await runDetached([...pm.image, 'sleep', '3600']);
      const ips = [await pm.containerIp(a, net.name), await pm.containerIp(b, net.name)];
      await pm.ok(['stop', '-t', '0', a]);
      // stop already tore the network down (DEL); rm must not need it again
      expect(reservations(net.dataDir, net.name).length).toBe(1);
      await pm.ok(['rm', a]);
      // network rm -f removes the running container b (DEL) and the conflist
      await pm.ok(['network', 'rm', '-f', net.name]);
      expect(existsSync(path.join(pm.netDir, `${net.name}.conflist`))).toBe(false);
      expect((await pm.run(['container', 'exists', b])).exitCode).not.toBe(0);
      await expectReleased([a, b], undefined, ips);
      if (plan.impl.bridge === 'ours') {
        const log = logLines(net.logFile ?? '');
        expect(log.some((l) => /\bDEL\b/.test(l))).toBe(true);
      }
    },
    120_000,
  );
});
