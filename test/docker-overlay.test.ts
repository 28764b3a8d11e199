/**
 * A Docker overlay network across two hosts, served by cni-ts: a fabric netns (the underlay
 * bridge, etcd) and two host netns joined to it by veth; in each host a private dockerd
 * (Debian's docker.io: its own data-root, exec-root, API socket, no iptables, no default bridge;
 * entered with nsenter) and a `cni-ts agent` with a `docker` section and `overlay.config` (the
 * overlay plugin's conflist: its reconciler keeps the peers, the Docker driver attaches through
 * the same overlay). Both agents share the etcd store (leases and cluster objects). The plugin
 * socket directory /run/docker/plugins is one for the whole machine, so each host's agent serves
 * the driver under its own name (`cni-ts-dko…a`, `…b`). One container per host on
 * `docker network create -d <driver> --ipam-driver <driver> --subnet <cluster> -o type=overlay`:
 * they ping and fetch across hosts and resolve each other by name through the agents' DNS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, killProcessesNaming, runPlugin, uid } from './helpers/run.ts';
import { attachOverlayPod, makeEtcd, makeHost, type Etcd, type Fabric, type Host } from './overlay-topology.ts';

const DOCKERD = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
const why = !DOCKERD
  ? 'dockerd is not installed (Debian package docker.io)'
  : !BUSYBOX
    ? 'busybox is not installed (busybox-static)'
    : !existsSync('/usr/bin/etcd')
      ? '/usr/bin/etcd is not installed (Debian etcd-server)'
      : '';
if (why) console.warn(`docker-overlay.test.ts skipped: ${why}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, withinMs = 20_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(everyMs);
  }
}

interface DockerHost {
  host: Host;
  driver: string;
  dir: string;
  pluginSock: string;
  dockerSock: string;
  config: string;
  agent?: ResultPromise;
  agentLog: string;
  dockerd?: ResultPromise;
}

describe.skipIf(Boolean(why))('a Docker overlay network across two hosts (cni-ts CNM driver, etcd store)', () => {
  const cleanup = new Cleanup();
  const id = `dko${uid('').slice(-5)}`.toLowerCase().replace(/[^a-z0-9]/g, '');
  const dir = `/tmp/${id}-dockerovl`;
  const etcdPrefix = `/${id}`;
  const octet = 100 + Math.floor(Math.random() * 50);
  const CLUSTER = `10.${octet}.0.0/16`;
  const OVERLAY = `${id}ovl`;
  let fab: Fabric;
  let etcd: Etcd;
  const hosts: DockerHost[] = [];

  /** The overlay plugin of a host, as its agent (overlay.config) and a CNI runtime there use it. */
  const overlayPlugin = (host: Host): Record<string, unknown> => ({
    type: 'overlay',
    network: CLUSTER,
    stateDir: host.stateDir,
    bridge: `${id}br`,
    vxlanInterface: `${id}vx`,
    nftTable: `${id}_ovl`,
    // no masquerade: nothing of this test leaves the cluster network
    ipMasq: false,
    leaseTTL: 120,
    resyncInterval: 1,
    store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: `${etcdPrefix}/overlay` },
  });

  const docker = async (
    h: DockerHost,
    args: string[],
    allowFail = false,
  ): Promise<{ stdout: string; stderr: string; exitCode: number }> => {
    const r = await execa('docker', ['-H', `unix://${h.dockerSock}`, ...args], { reject: false, timeout: 120_000 });
    const out = { stdout: String(r.stdout).trim(), stderr: String(r.stderr).trim(), exitCode: r.exitCode ?? -1 };
    if (out.exitCode !== 0 && !allowFail)
      throw new Error(`docker ${args.join(' ')} on ${h.host.name}: ${out.stderr}\nagent log:\n${h.agentLog.slice(-3000)}`);
    return out;
  };
  const exec = (h: DockerHost, c: string, args: string[]) => docker(h, ['exec', c, ...args], true);
  const ipOf = async (h: DockerHost, c: string): Promise<string> =>
    (await docker(h, ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}}{{end}}', c])).stdout;
  const cnictl = async (h: DockerHost, args: string[], input?: string): Promise<string> => {
    const r = await inNs(h.host.ns, path.join(BIN, 'cnictl'), ['--config', h.config, ...args], true, input);
    if (r.exitCode !== 0) throw new Error(`cnictl ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return r.stdout;
  };
  const hostLinks = async (h: DockerHost): Promise<string[]> =>
    JSON.parse((await inNs(h.host.ns, 'ip', ['-j', 'link', 'show'])).stdout).map((l: { ifname: string }) => l.ifname);
  /** host-local's reservations in the overlay's store on a host (stateDir/ipam/<network>) */
  const reservations = (h: DockerHost): string[] => {
    const d = path.join(h.host.stateDir, 'ipam', OVERLAY);
    return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  };
  /** Kill every process whose command line names our directory (dockerd, containerd, shims), by PID. */
  const killOurs = (sig: NodeJS.Signals): number[] => killProcessesNaming(dir, sig);

  const startAgent = async (h: DockerHost): Promise<void> => {
    const p = execa('nsenter', [`--net=${h.host.ns.path}`, '--', path.join(BIN, 'cni-ts'), 'agent', '--config', h.config, '--no-http'], {
      reject: false,
      all: true,
      env: { CNI_LOG_LEVEL: 'debug', ...(process.env.CNI_TS_NETLINK ? { CNI_TS_NETLINK: process.env.CNI_TS_NETLINK } : {}) },
    });
    p.all?.on('data', (d: Buffer) => (h.agentLog += String(d)));
    h.agent = p;
    await until(
      async () => existsSync(h.pluginSock) && h.agentLog.includes('agent started'),
      (v) => v,
      30_000,
      100,
    );
    if (!existsSync(h.pluginSock)) throw new Error(`agent on ${h.host.name} did not serve ${h.pluginSock}:\n${h.agentLog}`);
  };
  const stopAgent = async (h: DockerHost): Promise<void> => {
    const a = h.agent;
    if (!a) return;
    h.agent = undefined;
    a.kill('SIGTERM');
    const done = await Promise.race([a.then(() => true), sleep(10_000).then(() => false)]);
    if (!done) a.kill('SIGKILL');
    await a;
  };

  async function setUpHost(n: number, image: string): Promise<DockerHost> {
    const host = await makeHost(cleanup, fab, n, `${id}h`);
    const hdir = path.join(dir, `${host.name}-docker`);
    mkdirSync(path.join(hdir, 'store'), { recursive: true });
    const driver = `cni-ts-${id}${String.fromCharCode(96 + n)}`;
    const h: DockerHost = {
      host,
      driver,
      dir: hdir,
      pluginSock: `/run/docker/plugins/${driver}.sock`,
      dockerSock: path.join(hdir, 'docker.sock'),
      config: path.join(hdir, 'agent.json'),
      agentLog: '',
    };
    const overlayConflist = path.join(hdir, 'overlay.conflist');
    writeFileSync(
      overlayConflist,
      JSON.stringify({
        cniVersion: '1.1.0',
        name: OVERLAY,
        plugins: [overlayPlugin(host)],
      }),
    );
    writeFileSync(
      h.config,
      JSON.stringify({
        store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: etcdPrefix },
        node: host.name,
        logLevel: 'debug',
        socket: path.join(hdir, 'agent.sock'),
        policy: { table: `${id}_pol`, lockFile: path.join(hdir, 'policy.lock'), resyncSeconds: 2 },
        services: { table: `${id}_svc` },
        dns: { upstreams: ['127.0.0.1:9'], rateLimit: false },
        overlay: { config: overlayConflist },
        docker: {
          socket: h.pluginSock,
          dockerHost: `unix://${h.dockerSock}`,
          cacheDir: path.join(hdir, 'cache'),
          ipamDataDir: path.join(hdir, 'ipam'),
          ifPrefix: id,
        },
      }),
    );
    hosts.push(h);
    cleanup.add(async () => {
      await stopAgent(h);
      rmSync(h.pluginSock, { force: true });
    });
    await startAgent(h);

    cleanup.add(async () => {
      if (h.dockerd) {
        const all = (await docker(h, ['ps', '-aq'], true)).stdout.split('\n').filter(Boolean);
        if (all.length) await docker(h, ['rm', '-f', ...all], true).catch(() => undefined);
        h.dockerd.kill('SIGTERM');
        await Promise.race([h.dockerd, sleep(15_000)]);
      }
    });
    h.dockerd = execa(
      'nsenter',
      [
        `--net=${host.ns.path}`,
        '--',
        DOCKERD!,
        '--data-root',
        path.join(hdir, 'data'),
        '--exec-root',
        path.join(hdir, 'exec'),
        '--host',
        `unix://${h.dockerSock}`,
        '--pidfile',
        path.join(hdir, 'dockerd.pid'),
        '--iptables=false',
        '--ip6tables=false',
        '--bridge=none',
      ],
      { reject: false, all: true },
    );
    let dockerdLog = '';
    h.dockerd.all?.on('data', (d: Buffer) => (dockerdLog += String(d)));
    const up = await until(
      () => docker(h, ['info', '-f', '{{.ServerVersion}}'], true),
      (r) => r.exitCode === 0,
      90_000,
      500,
    );
    if (up.exitCode !== 0) throw new Error(`dockerd on ${host.name} did not come up: ${dockerdLog.slice(-2000)}`);
    await docker(h, ['import', image, `${id}:1`]);
    return h;
  }

  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    for (const d of ['/run/docker', '/run/docker/plugins']) {
      if (!existsSync(d))
        cleanup.add(async () => {
          try {
            rmdirSync(d);
          } catch {
            // not empty (someone else's), or gone
          }
        });
    }
    cleanup.add(async () => {
      killOurs('SIGTERM');
      await sleep(1000);
      killOurs('SIGKILL');
      for (const line of readFileSync('/proc/mounts', 'utf8').split('\n').reverse()) {
        const mnt = line.split(' ')[1];
        if (mnt?.startsWith(dir)) await sh('umount', ['-l', mnt], { allowFail: true });
      }
      rmSync(dir, { recursive: true, force: true });
    });
    // the fabric: underlay bridge and etcd
    const fns: TestNetns = await makeNetns(cleanup, `${id}f`);
    const base = `192.168.${200 + Math.floor(Math.random() * 50)}`;
    await inNs(
      fns,
      'ip',
      ['-batch', '-'],
      false,
      `link add ubr0 type bridge\naddr add ${base}.254/24 dev ubr0\nlink set ubr0 up\nlink set lo up\n`,
    );
    fab = { ns: fns, base, gateway: `${base}.254`, dir };
    etcd = makeEtcd(cleanup, dir, fns, fab.gateway, 24110, 24111);
    await etcd.start();

    // the image: busybox-static and its applets, an httpd document root
    const root = path.join(dir, 'rootfs');
    mkdirSync(path.join(root, 'bin'), { recursive: true });
    for (const d of ['etc', 'tmp', 'www']) mkdirSync(path.join(root, d), { recursive: true });
    copyFileSync(BUSYBOX!, path.join(root, 'bin', 'busybox'));
    for (const a of ['sh', 'ping', 'nslookup', 'httpd', 'wget', 'ip', 'sleep', 'cat', 'timeout'])
      symlinkSync('busybox', path.join(root, 'bin', a));
    writeFileSync(path.join(root, 'www', 'index.html'), `hello-${id}\n`);
    const image = path.join(dir, 'image.tar');
    await sh('tar', ['-C', root, '-cf', image, '.']);
    await setUpHost(1, image);
    await setUpHost(2, image);
  }, 300_000);

  afterAll(async () => {
    const ms = (h: DockerHost, re: RegExp): number[] => [...h.agentLog.matchAll(re)].map((m) => Number(m[1]));
    for (const h of hosts)
      console.log(
        `docker overlay figures (${h.host.name}): CreateNetwork ms ${ms(h, /CreateNetwork ok in (\d+) ms/g).join(', ')}; ` +
          `RequestAddress ms ${ms(h, /RequestAddress ok in (\d+) ms/g).join(', ')}; ` +
          `CreateEndpoint (CNI ADD overlay+endpoint) ms ${ms(h, /CreateEndpoint ok in (\d+) ms/g).join(', ')}; ` +
          `Join ms ${ms(h, /Join ok in (\d+) ms/g).join(', ')}; DeleteEndpoint ms ${ms(h, /DeleteEndpoint ok in (\d+) ms/g).join(', ')}`,
      );
    await cleanup.run();
    expect(killOurs('SIGKILL')).toEqual([]);
  }, 180_000);

  const create = (h: DockerHost, extra: string[], name = `${id}net`) =>
    docker(h, ['network', 'create', '-d', h.driver, ...extra, '-o', 'type=overlay', '-o', `namespace=${id}`, name], true);

  it('refuses a type=overlay network it cannot serve, saying why', async () => {
    const h = hosts[0]!;
    const noIpam = await create(h, ['--subnet', CLUSTER], `${id}bad`);
    expect(noIpam.exitCode).not.toBe(0);
    expect(noIpam.stderr).toMatch(/type=overlay needs --ipam-driver/);
    const wrong = await create(h, ['--ipam-driver', h.driver, '--subnet', `10.${octet}.7.0/24`], `${id}bad`);
    expect(wrong.stderr).toMatch(new RegExp(`--subnet must be the overlay's cluster network 10\\.${octet}\\.0\\.0/16`));
    const bridgeOpt = await create(h, ['--ipam-driver', h.driver, '--subnet', CLUSTER, '-o', 'bridge=x0'], `${id}bad`);
    expect(bridgeOpt.stderr).toMatch(/option bridge: not for a type=overlay network/);
    expect(JSON.parse(await cnictl(h, ['get', 'dockerpools', '-o', 'json'])).items ?? []).toEqual([]);
  });

  it('containers on two hosts ping, fetch and resolve each other by name', async () => {
    const [a, b] = [hosts[0]!, hosts[1]!];
    for (const h of hosts) {
      const r = await create(h, ['--ipam-driver', h.driver, '--subnet', CLUSTER]);
      if (r.exitCode !== 0) throw new Error(`network create on ${h.host.name}: ${r.stderr}\n${h.agentLog.slice(-3000)}`);
    }
    await cnictl(a, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: id } }));
    await docker(a, [
      'run',
      '-d',
      '--name',
      `${id}c1`,
      '--label',
      'app=web',
      '--network',
      `${id}net`,
      `${id}:1`,
      'httpd',
      '-f',
      '-p',
      '80',
      '-h',
      '/www',
    ]);
    await docker(b, [
      'run',
      '-d',
      '--name',
      `${id}c2`,
      '--label',
      'app=client',
      '--network',
      `${id}net`,
      '--network-alias',
      'cli',
      `${id}:1`,
      'sleep',
      '600',
    ]);
    const [ip1, ip2] = [await ipOf(a, `${id}c1`), await ipOf(b, `${id}c2`)];
    // each host's own /24 of the cluster network, the on-link prefix in the container
    expect(ip1).toMatch(new RegExp(`^10\\.${octet}\\.\\d+\\.\\d+/24$`));
    expect(ip2).toMatch(new RegExp(`^10\\.${octet}\\.\\d+\\.\\d+/24$`));
    const subnetOf = (c: string): string => c.split('.').slice(0, 3).join('.');
    expect(subnetOf(ip1)).not.toBe(subnetOf(ip2));
    const [addr1, addr2] = [ip1.split('/')[0]!, ip2.split('/')[0]!];
    // the container's default route is its host's subnet gateway on the overlay bridge
    const route1 = (await exec(a, `${id}c1`, ['ip', 'route'])).stdout;
    expect(route1).toContain(`default via ${subnetOf(ip1)}.1`);
    // the interface Docker moved keeps the overlay's MTU (underlay 1500 - 50)
    expect((await exec(a, `${id}c1`, ['ip', 'link', 'show', 'dev', 'eth0'])).stdout).toMatch(/mtu 1450/);
    // across hosts: peers converge through each agent's overlay reconciler
    const pinged = await until(
      () => exec(b, `${id}c2`, ['ping', '-c', '1', '-W', '1', addr1]),
      (r) => r.exitCode === 0,
      30_000,
      500,
    );
    expect(pinged.exitCode).toBe(0);
    expect((await exec(a, `${id}c1`, ['ping', '-c', '2', '-W', '2', addr2])).exitCode).toBe(0);
    expect((await exec(b, `${id}c2`, ['timeout', '5', 'wget', '-q', '-O-', `http://${addr1}/`])).stdout).toBe(`hello-${id}`);
    // names: each agent's DNS on its host's gateway serves the containers of both hosts (Endpoint objects in etcd)
    const ask = (h: DockerHost, from: string, name: string, server: string) =>
      until(
        () => exec(h, from, ['nslookup', name, server]),
        (r) => r.exitCode === 0 && r.stdout.includes(`Address: 10.${octet}.`),
        20_000,
        500,
      );
    expect((await ask(b, `${id}c2`, `${id}c1`, `${subnetOf(ip2)}.1`)).stdout).toContain(addr1);
    expect((await ask(a, `${id}c1`, `${id}c2`, `${subnetOf(ip1)}.1`)).stdout).toContain(addr2);
    expect((await ask(a, `${id}c1`, 'cli', `${subnetOf(ip1)}.1`)).stdout).toContain(addr2);
    // both registered like CNI attachments of the overlay network, with their container labels
    const eps = JSON.parse(await cnictl(a, ['get', 'endpoints', '-n', id, '-o', 'json'])).items as Array<{
      metadata: { labels?: Record<string, string> };
      spec: { network: string; ips: string[]; node?: string };
    }>;
    expect(eps.map((e) => e.spec.network)).toEqual([OVERLAY, OVERLAY]);
    expect(eps.map((e) => e.metadata.labels?.app).sort()).toEqual(['client', 'web']);
    // the addresses are held once, in the overlay's own host-local store, under the endpoints' IDs
    expect(reservations(a)).toEqual([addr1]);
    expect(reservations(b)).toEqual([addr2]);
  }, 240_000);

  it("a NetworkPolicy applied on host 2 drops host 2's container at host 1's, by label", async () => {
    const [a, b] = [hosts[0]!, hosts[1]!];
    const url = `http://${(await ipOf(a, `${id}c1`)).split('/')[0]}/`;
    const fetch = async (): Promise<string> => (await exec(b, `${id}c2`, ['timeout', '3', 'wget', '-q', '-O-', url])).stdout;
    expect(await fetch()).toBe(`hello-${id}`);
    const policy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'web-from-allowed', namespace: id },
      spec: {
        podSelector: { matchLabels: { app: 'web' } },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'allowed' } } }] }],
      },
    };
    await cnictl(b, ['apply', '-f', '-'], JSON.stringify(policy));
    expect(await until(fetch, (body) => body === '', 20_000, 500)).toBe('');
    await cnictl(b, ['delete', 'networkpolicy', 'web-from-allowed', '-n', id]);
    expect(await until(fetch, (body) => body !== '', 20_000, 500)).toBe(`hello-${id}`);
  }, 90_000);

  it('a CNI pod of the same overlay on host 2 shares its subnet and store with the Docker container there, and reaches host 1', async () => {
    const [a, b] = [hosts[0]!, hosts[1]!];
    const pod = await attachOverlayPod(cleanup, b.host, {
      nsPrefix: `${id}p`,
      containerId: `${id}-cnipod`,
      key: `${id}/cnipod`,
      network: OVERLAY,
      overlayConf: { cniVersion: '1.1.0', name: OVERLAY, ...overlayPlugin(b.host) },
      agentConfig: b.config,
      labels: { app: 'cni' },
    });
    const addr2 = (await ipOf(b, `${id}c2`)).split('/')[0]!;
    const addr1 = (await ipOf(a, `${id}c1`)).split('/')[0]!;
    // one host-local store: the pod got the next address of the same subnet, never the container's
    expect(pod.ip).not.toBe(addr2);
    expect(pod.ip.split('.').slice(0, 3)).toEqual(addr2.split('.').slice(0, 3));
    expect(reservations(b).sort()).toEqual([addr2, pod.ip].sort());
    // the Docker container on host 1 and the CNI pod on host 2, both ways
    const fromPod = await until(
      () => inNs(pod.ns, 'ping', ['-c', '1', '-W', '1', addr1], true),
      (r) => r.exitCode === 0,
      20_000,
      500,
    );
    expect(fromPod.exitCode).toBe(0);
    expect((await exec(a, `${id}c1`, ['ping', '-c', '1', '-W', '2', pod.ip])).exitCode).toBe(0);
    expect((await exec(b, `${id}c2`, ['ping', '-c', '1', '-W', '2', pod.ip])).exitCode).toBe(0);
    for (const cmd of ['endpoint', 'overlay'] as const) {
      const r = await runPlugin(cmd, {
        command: 'DEL',
        containerId: `${id}-cnipod`,
        netns: pod.ns.path,
        ifname: 'eth0',
        hostNetns: b.host.ns.path,
        args: `K8S_POD_NAMESPACE=${id};K8S_POD_NAME=cnipod`,
        config:
          cmd === 'endpoint'
            ? { cniVersion: '1.1.0', name: OVERLAY, type: 'endpoint', agentConfig: b.config }
            : { cniVersion: '1.1.0', name: OVERLAY, ...overlayPlugin(b.host) },
      });
      expect(r.exitCode, `${cmd} DEL: ${r.stdout} ${r.stderr}`).toBe(0);
    }
    expect(reservations(b)).toEqual([addr2]);
  }, 120_000);

  it('container removal and docker network rm leave no veth, reservation or object; the overlay stays', async () => {
    for (const [h, c] of [
      [hosts[0]!, `${id}c1`],
      [hosts[1]!, `${id}c2`],
    ] as const) {
      await docker(h, ['rm', '-f', c]);
      await docker(h, ['network', 'rm', `${id}net`]);
      const links = await hostLinks(h);
      expect(links.filter((l) => l.startsWith('veth') || (l.startsWith(id) && ![`${id}br`, `${id}vx`].includes(l)))).toEqual([]);
      // the overlay's bridge and VTEP belong to the overlay (its reconciler), not to the Docker network
      expect(links).toEqual(expect.arrayContaining([`${id}br`, `${id}vx`]));
      expect(reservations(h)).toEqual([]);
    }
    const a = hosts[0]!;
    for (const kind of ['dockerendpoints', 'dockernetworks', 'dockerpools'])
      expect(JSON.parse(await cnictl(a, ['get', kind, '-o', 'json'])).items ?? []).toEqual([]);
    expect(JSON.parse(await cnictl(a, ['get', 'endpoints', '-A', '-o', 'json'])).items ?? []).toEqual([]);
  }, 120_000);
});
