/**
 * bridge CHECK (docs/bridge.md: "CHECK compares the container's interface, MAC, addresses and
 * routes, the bridge, the host veth and firewall rules"): drift in the masquerade rule and in
 * the container's MAC must fail with 105. Our bridge + host-local, ipMasq on (nftables, in a
 * per-test table), a container namespace the test owns; no traffic is sent.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid, type PluginRun } from './helpers/run.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

interface Attached {
  ns: TestNetns;
  id: string;
  ip: string;
  table: string;
  config: Record<string, unknown>;
  result: Record<string, unknown>;
  check: () => Promise<PluginRun>;
}

async function attach(extra: Record<string, unknown> = {}): Promise<Attached> {
  const id = uid('ht');
  const table = `${id}_br`;
  const dataDir = `/run/cnits-${id}-ipam`;
  const br = `${id}b`;
  const subnet = `10.${200 + (randomBytes(1)[0] % 50)}.${randomBytes(1)[0]}`;
  cleanup.add(async () => {
    await deleteLink(br);
    await sh('nft', ['delete', 'table', 'inet', table], { allowFail: true });
    rmSync(dataDir, { recursive: true, force: true });
  });
  const config = {
    cniVersion: '1.1.0',
    name: `${id}-net`,
    type: 'bridge',
    bridge: br,
    isGateway: true,
    ipMasq: true,
    nftTable: table,
    ipam: { type: 'host-local', ranges: [[{ subnet: `${subnet}.0/24` }]], dataDir },
    ...extra,
  };
  const ns = await makeNetns(cleanup, 'htns');
  const run = (command: string, cfg: Record<string, unknown>): Promise<PluginRun> =>
    runPlugin('bridge', { command, containerId: id, netns: ns.path, ifname: 'eth0', config: cfg });
  const add = await run('ADD', config);
  expect(add.exitCode, add.stdout + add.stderr).toBe(0);
  cleanup.add(() => run('DEL', config));
  const ip = (add.json?.ips as Array<{ address: string }>)[0].address.split('/')[0];
  return { ns, id, ip, table, config, result: add.json!, check: () => run('CHECK', { ...config, prevResult: add.json }) };
}

/** Handles of the rules of `table`'s postrouting chain that match source `ip`. */
async function masqueradeHandles(table: string, ip: string): Promise<string[]> {
  const out = (await sh('nft', ['-a', 'list', 'chain', 'inet', table, 'postrouting'])).stdout;
  return out
    .split('\n')
    .filter((l) => l.includes(`saddr ${ip} `) && l.includes('masquerade'))
    .map((l) => /# handle (\d+)/.exec(l)?.[1] ?? '')
    .filter(Boolean);
}

function expectDrift(r: PluginRun, what: RegExp): void {
  expect(r.exitCode, r.stdout).toBe(1);
  expect(r.json?.code, r.stdout).toBe(105);
  expect(String(r.json?.msg)).toMatch(what);
}

describe('bridge CHECK detects drift', () => {
  it('a deleted masquerade rule: 105 naming the masquerade rule and the address', async () => {
    const a = await attach();
    expect((await a.check()).exitCode).toBe(0);
    const handles = await masqueradeHandles(a.table, a.ip);
    expect(handles).toHaveLength(1);
    await sh('nft', ['delete', 'rule', 'inet', a.table, 'postrouting', 'handle', handles[0]]);
    const r = await a.check();
    expectDrift(r, /masquerade/);
    expect(String(r.json?.msg)).toContain(a.ip);
  });

  it('a flushed masquerade chain: 105', async () => {
    const a = await attach();
    await sh('nft', ['flush', 'chain', 'inet', a.table, 'postrouting']);
    expectDrift(await a.check(), /masquerade/);
  });

  it('with ipMasq off there is no rule to miss: CHECK passes', async () => {
    const a = await attach({ ipMasq: false });
    expect(await masqueradeHandles(a.table, a.ip).catch(() => [])).toEqual([]);
    const r = await a.check();
    expect(r.exitCode, r.stdout).toBe(0);
  });

  it("the container interface's MAC changed: 105 naming the MAC; restored, CHECK passes again", async () => {
    const a = await attach();
    const mac = (a.result.interfaces as Array<{ name: string; mac: string; sandbox?: string }>).find(
      (i) => i.name === 'eth0' && i.sandbox,
    )!.mac;
    const other = mac.toLowerCase() === '02:00:00:00:00:01' ? '02:00:00:00:00:02' : '02:00:00:00:00:01';
    await inNs(a.ns, 'ip', ['link', 'set', 'dev', 'eth0', 'address', other]);
    const r = await a.check();
    expectDrift(r, /MAC/);
    expect(String(r.json?.msg).toLowerCase()).toContain(other);
    await inNs(a.ns, 'ip', ['link', 'set', 'dev', 'eth0', 'address', mac]);
    const ok = await a.check();
    expect(ok.exitCode, ok.stdout).toBe(0);
  });
});
