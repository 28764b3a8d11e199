/**
 * podman 4 (CNI backend) on a network of bridge + host-local + endpoint (declaring the
 * `aliases` capability), with the built `cni-ts agent` running and serving DNS on the
 * network's gateway: one container resolves another by its name and by its `--network-alias`.
 * Everything private (podman conf/storage/plugin dir, agent config, file store, policy table,
 * socket under one temp tree); the agent forwards nothing (no upstreams).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { askAgent, type DnsRecordsReport } from '../shared/agentapi.ts';
import { Cleanup, sh } from './helpers/netns.ts';
import { startNodeAgent, type AgentProcess } from './helpers/policy-matrix.ts';
import { uid } from './helpers/run.ts';
import { cleanupNetwork, eventually, randomSubnet } from './helpers/runtime/common.ts';
import { bridgeConflist, type TestNetwork } from './helpers/runtime/conflist.ts';
import { makePodman, podmanMissing, type Podman } from './helpers/runtime/podman.ts';
import { planPlugins } from './helpers/runtime/plugins.ts';

const plan = await planPlugins(['bridge', 'host-local', 'endpoint', 'loopback']);
const skip = (await podmanMissing()) || plan.skip;
if (skip) console.log(`dns-podman: skipped: ${skip}`);

describe('podman run on a bridge + host-local + endpoint network, the agent serving DNS', () => {
  const cleanup = new Cleanup();
  const tag = uid(process.env.TEST_PREFIX ?? 'hw');
  let pm: Podman;
  let net: TestNetwork;
  let agent: AgentProcess;
  let socket: string;
  const names = { web: `${tag}-web` };

  beforeAll(async () => {
    if (skip) return;
    pm = await makePodman(cleanup, tag, plan);
    const sub = randomSubnet();
    net = {
      name: `cnits-${tag}`,
      bridge: `cn${tag}`,
      subnet: sub.subnet,
      gateway: sub.gateway,
      dataDir: path.join(pm.dir, 'ipam'),
      logFile: path.join(pm.dir, 'cni.log'),
    };
    cleanupNetwork(cleanup, net, sub.prefix, 'dns-podman');
    const storeDir = path.join(pm.dir, 'store');
    mkdirSync(storeDir, { recursive: true });
    socket = path.join(pm.dir, 'agent.sock');
    const agentConfig = path.join(pm.dir, 'agent.json');
    const table = `${tag}_policy`;
    const servicesTable = `${tag}_services`;
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', servicesTable], { allowFail: true }));
    writeFileSync(
      agentConfig,
      JSON.stringify({
        store: { type: 'file', path: storeDir },
        node: `${tag}-node`,
        socket,
        policy: { table, lockFile: path.join(pm.dir, 'policy.lock') },
        services: { table: servicesTable, healthChecks: false },
        dns: { upstreams: [] },
      }),
    );
    const conflist = bridgeConflist(net);
    (conflist.plugins as unknown[]).push({
      type: 'endpoint',
      agentConfig,
      capabilities: { aliases: true },
      logFile: net.logFile,
      logLevel: 'debug',
    });
    pm.writeNetwork(conflist);
    // the agent in this (the host's) netns, where podman's bridge and its gateway are
    agent = startNodeAgent('/proc/self/ns/net', agentConfig, ['--resync', '1', '--no-http']);
    cleanup.add(() => agent.stop());
  }, 120_000);

  afterAll(() => cleanup.run(), 120_000);

  const records = async (): Promise<DnsRecordsReport> => {
    const r = await askAgent(socket, { type: 'dns-records' });
    if (!r.ok || r.type !== 'dns-records') throw new Error(`agent: ${JSON.stringify(r)}\n${agent.log()}`);
    return r.dns;
  };

  it.skipIf(skip)(
    'a container resolves another by name and by --network-alias (nslookup NAME <gateway>, and through the resolv.conf podman writes)',
    async () => {
      const id = await pm.ok([
        'run',
        '-d',
        '--network',
        net.name,
        '--name',
        names.web,
        '--network-alias',
        'www',
        ...pm.image,
        'sleep',
        '3600',
      ]);
      cleanup.add(() => pm.run(['rm', '-f', '-t', '0', id]));
      const ip = await pm.containerIp(id, net.name);
      expect(ip).not.toBe('');
      // the agent has seen the Endpoint and listens on the gateway
      expect(
        await eventually(
          async () => (await records().catch(() => undefined))?.listeners.some((l) => l.address === net.gateway) ?? false,
          50,
          200,
        ),
        agent.log(),
      ).toBe(true);
      const recs = (await records()).records.filter((r) => r.network === net.name && r.type === 'A').map((r) => `${r.name} ${r.data}`);
      expect(recs).toContain(`${names.web}. ${ip}`);
      expect(recs).toContain(`www. ${ip}`);
      const lookup = async (name: string): Promise<string> => {
        const r = await pm.run(['run', '--rm', '--network', net.name, ...pm.image, 'nslookup', name, net.gateway]);
        return `${r.stdout}\n${r.stderr}`;
      };
      const byName = await lookup(names.web);
      expect(byName).toMatch(new RegExp(`Address:\\s*${ip.replace(/\./g, '\\.')}`));
      expect(await lookup('www')).toMatch(new RegExp(`Address:\\s*${ip.replace(/\./g, '\\.')}`));
      expect(await lookup(`www.dns.podman`)).toMatch(new RegExp(`Address:\\s*${ip.replace(/\./g, '\\.')}`));
      // podman 4 writes the result's dns into the container's resolv.conf: our gateway first
      // (the host's resolvers after it), the search list; it drops `options ndots:5`
      const rc = await pm.ok(['run', '--rm', '--network', net.name, ...pm.image, 'cat', '/etc/resolv.conf']);
      expect(rc.split('\n').find((l) => l.startsWith('nameserver'))).toBe(`nameserver ${net.gateway}`);
      expect(rc).toContain('search default.svc.cluster.local svc.cluster.local cluster.local dns.podman');
      // so the resolver finds the names with no server given
      const viaConf = await pm.run(['run', '--rm', '--network', net.name, ...pm.image, 'nslookup', 'www']);
      expect(`${viaConf.stdout}\n${viaConf.stderr}`).toMatch(new RegExp(`Address:\\s*${ip.replace(/\./g, '\\.')}`));
    },
  );
});
