/**
 * bandwidth on the kernel: bridge + host-local + bandwidth run by the built cnitool inside a
 * "host" netns the test owns (the veths, the IFB and the qdiscs live and die there); iperf3
 * between two containers of that host; interop with the reference plugins.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgePlugin, makeTestbed, type Testbed } from './helpers/cnitool.ts';
import { Cleanup, inNs, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN } from './helpers/run.ts';
import { ifbName } from '../plugins/bandwidth/config.ts';
import { containerIdFor } from '../tools/cnitool/index.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const refMissing = ['bridge', 'host-local', 'bandwidth'].some((p) => !existsSync(path.join(REF_BIN, p)))
  ? `reference plugins not installed in ${REF_BIN}`
  : '';

interface Iface {
  name: string;
  mac?: string;
  sandbox?: string;
}
interface Qdisc {
  kind: string;
  handle: string;
  root?: boolean;
  options?: { rate?: number; burst?: number; default?: string };
}

const RATE = 20_000_000; // bits/s
const BURST = 400_000; // bits (50 kB)

/** A directory whose plugins come from `from` (ours or the reference) by name. */
function mixedPath(tb: Testbed, from: Record<string, string>): string {
  const dir = path.join(tb.dir, 'mixed');
  mkdirSync(dir, { recursive: true });
  for (const [name, d] of Object.entries(from)) symlinkSync(path.join(d, name), path.join(dir, name));
  return dir;
}

async function tcJson<T>(tb: Testbed, args: string[]): Promise<T[]> {
  const r = await inNs(tb.host, 'tc', ['-json', ...args], true);
  return r.exitCode === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as T[]) : [];
}

const hostVeth = (tb: Testbed, result: Record<string, unknown>): string =>
  (result.interfaces as Iface[]).find((i) => !i.sandbox && i.name !== tb.bridge && !i.name.startsWith('bwp'))!.name;

function setup(tb: Testbed, net: string, bw: Record<string, unknown>, cniPath?: string): void {
  tb.writeConf('10-bw.conflist', {
    cniVersion: '1.0.0',
    name: net,
    plugins: [bridgePlugin(tb), { type: 'bandwidth', capabilities: { bandwidth: true }, ...bw }],
  });
  if (cniPath) tb.cniPath = cniPath;
}

describe('bandwidth (kernel)', () => {
  it('ADD: TBF at the host veth root, IFB with a TBF, the veth ingress redirected to it; CHECK; DEL leaves nothing', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, { ingressRate: RATE, ingressBurst: BURST, egressRate: RATE / 2, egressBurst: BURST / 2 });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr).toBe(0);
    const veth = hostVeth(tb, add.json!);
    const ifb = (add.json!.interfaces as Iface[]).at(-1)!;
    expect(ifb.name).toMatch(/^bwp[0-9a-f]{12}$/);
    expect(ifb.mac).toMatch(/^[0-9a-f:]{17}$/);
    expect(ifb.name).toBe(ifbName(net, containerIdFor(c.path)));

    const onVeth = await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', veth]);
    expect(onVeth.find((q) => q.root)).toMatchObject({ kind: 'tbf', handle: '1:', options: { rate: RATE / 8, burst: BURST / 8 } });
    expect(onVeth.some((q) => q.kind === 'ingress' && q.handle === 'ffff:')).toBe(true);
    const onIfb = await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', ifb.name]);
    expect(onIfb.find((q) => q.root)).toMatchObject({ kind: 'tbf', handle: '1:', options: { rate: RATE / 16, burst: BURST / 16 } });
    const filters = await tcJson<{ options?: { actions?: Array<{ kind: string; to_dev?: string }> } }>(tb, [
      'filter',
      'show',
      'dev',
      veth,
      'ingress',
    ]);
    expect(filters.flatMap((f) => f.options?.actions ?? []).some((a) => a.kind === 'mirred' && a.to_dev === ifb.name)).toBe(true);

    expect((await tb.cnitool(['check', net, c.path])).exitCode).toBe(0);
    await inNs(tb.host, 'tc', ['qdisc', 'del', 'dev', ifb.name, 'root']);
    const broken = await tb.cnitool(['check', net, c.path]);
    expect(broken.exitCode).not.toBe(0);
    expect(broken.stderr + broken.stdout).toMatch(/105|no tbf qdisc/);

    // bandwidth's DEL alone (the veth stays, as when the interface plugin's DEL has not run yet): its qdiscs go.
    const bwDel = await execa('nsenter', [`--net=${tb.host.path}`, '--', path.join(BIN, 'bandwidth')], {
      input: JSON.stringify({
        cniVersion: '1.0.0',
        name: net,
        type: 'bandwidth',
        ingressRate: RATE,
        ingressBurst: BURST,
        egressRate: RATE / 2,
        egressBurst: BURST / 2,
        prevResult: add.json,
      }),
      env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: containerIdFor(c.path), CNI_NETNS: c.path, CNI_IFNAME: 'eth0', CNI_PATH: BIN },
      reject: false,
      extendEnv: false,
    });
    expect(bwDel.exitCode, String(bwDel.stdout)).toBe(0);
    expect((await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', veth])).filter((q) => q.kind === 'tbf' || q.kind === 'ingress')).toEqual([]);
    expect((await inNs(tb.host, 'ip', ['link', 'show', 'dev', ifb.name], true)).exitCode).not.toBe(0);
    const del = await tb.cnitool(['del', net, c.path]);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', ifb.name])).toEqual([]);
    expect((await tb.cnitool(['del', net, c.path])).exitCode).toBe(0);
  });

  it('DEL without CNI_NETNS (the netns gone) and repeated: the IFB goes, exit 0', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, { egressRate: RATE, egressBurst: BURST });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr).toBe(0);
    const ifb = (add.json!.interfaces as Iface[]).at(-1)!.name;
    expect(ifb).toBe(ifbName(net, containerIdFor(c.path)));
    await execa('ip', ['netns', 'del', c.name]);
    // The plugin alone, as a runtime calls it once the netns is gone: no CNI_NETNS, no prevResult.
    const del = () =>
      execa('nsenter', [`--net=${tb.host.path}`, '--', path.join(BIN, 'bandwidth')], {
        input: JSON.stringify({ cniVersion: '1.0.0', name: net, type: 'bandwidth', egressRate: RATE, egressBurst: BURST }),
        env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: containerIdFor(c.path), CNI_IFNAME: 'eth0', CNI_PATH: BIN },
        reject: false,
        extendEnv: false,
      });
    const r = await del();
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect((await inNs(tb.host, 'ip', ['link', 'show', 'dev', ifb], true)).exitCode).not.toBe(0);
    expect((await del()).exitCode).toBe(0);
  });

  it('STATUS and GC: exit 0 with nothing to do (the IFB goes with DEL)', async () => {
    const config = { cniVersion: '1.1.0', name: 'hnstatus', type: 'bandwidth', ingressRate: RATE, ingressBurst: BURST };
    for (const command of ['STATUS', 'GC']) {
      const r = await execa(path.join(BIN, 'bandwidth'), [], {
        input: JSON.stringify(config),
        env: { CNI_COMMAND: command, CNI_PATH: BIN },
        reject: false,
        extendEnv: false,
      });
      expect(r.exitCode, `${command}: ${String(r.stdout)}`).toBe(0);
    }
  });

  it('schema: a non-integer or negative value is code 7 naming the field, in the config and in the capability', async () => {
    const base = { cniVersion: '1.0.0', name: 'hnschema', type: 'bandwidth', prevResult: { cniVersion: '1.0.0', interfaces: [] } };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ingressRate: 'x' }, 'ingressRate'],
      [{ egressBurst: -8 }, 'egressBurst'],
      [{ runtimeConfig: { bandwidth: { egressRate: 1.5 } } }, 'runtimeConfig.bandwidth.egressRate'],
    ];
    for (const [extra, field] of cases) {
      const r = await execa(path.join(BIN, 'bandwidth'), [], {
        input: JSON.stringify({ ...base, ...extra }),
        env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'hnschema', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: BIN },
        reject: false,
        extendEnv: false,
      });
      expect(JSON.parse(String(r.stdout))).toMatchObject({ code: 7, details: `field "${field}"` });
    }
  });

  it('a rate without a burst: code 7 naming the field, nothing made', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, {});
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--capability-args', JSON.stringify({ bandwidth: { ingressRate: RATE } })]);
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr + add.stdout).toMatch(/runtimeConfig\.bandwidth\.ingressBurst/);
    const ifbs = await inNs(tb.host, 'ip', ['-json', 'link', 'show', 'type', 'ifb']);
    expect(JSON.parse(ifbs.stdout || '[]')).toEqual([]);
  });

  it('unshapedSubnets: HTB with the shaped class as default and a u32 filter per subnet', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, { ingressRate: RATE, ingressBurst: BURST, egressRate: RATE, egressBurst: BURST, unshapedSubnets: ['10.250.0.0/16'] });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr).toBe(0);
    const veth = hostVeth(tb, add.json!);
    const ifb = (add.json!.interfaces as Iface[]).at(-1)!.name;
    for (const [dev, dir] of [
      [veth, 'src'],
      [ifb, 'dst'],
    ]) {
      expect((await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', dev])).find((q) => q.root)).toMatchObject({
        kind: 'htb',
        options: { default: '0x30' },
      });
      const classes = (await inNs(tb.host, 'tc', ['class', 'show', 'dev', dev])).stdout;
      expect(classes).toMatch(/class htb 1:30 .*rate 20Mbit/);
      expect(classes).toMatch(/class htb 1:1 .*rate 100Gbit/);
      const f = await inNs(tb.host, 'tc', ['filter', 'show', 'dev', dev]);
      // u32 prints the key as value/mask at the offset of the source (12) or destination (16) address.
      expect(f.stdout).toMatch(new RegExp(`match 0afa0000/ffff0000 at ${dir === 'src' ? 12 : 16}`));
      expect(f.stdout).toMatch(/flowid 1:1 /);
    }
    expect((await tb.cnitool(['check', net, c.path])).exitCode).toBe(0);
    expect((await tb.cnitool(['del', net, c.path])).exitCode).toBe(0);
  });
});

/** iperf3 from `client` to `server` (reverse: server sends), received bits/s. */
async function iperf(client: TestNetns, serverIp: string, reverse: boolean): Promise<number> {
  let j: { end?: { sum_received?: { bits_per_second: number } }; error?: string } = {};
  let out = '';
  for (let i = 0; i < 30; i++) {
    const r = await inNs(client, 'iperf3', ['-c', serverIp, '-t', '3', '-O', '1', '-J', ...(reverse ? ['-R'] : [])], true);
    out = r.stdout;
    try {
      j = JSON.parse(out) as typeof j;
    } catch {
      j = {};
    }
    if (r.exitCode === 0 && j.end?.sum_received) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  expect(j.end?.sum_received, out.slice(0, 400)).toBeDefined();
  return j.end!.sum_received!.bits_per_second;
}

describe('bandwidth (measured)', () => {
  it('iperf3 to and from a limited container: within 10 % of the limit each way', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, {});
    const [a, b] = [await tb.container(), await tb.container()];
    // A bucket of 1 Mbit (50 ms at the rate): with a smaller one TCP loses packets at the TBF and runs below the rate.
    const caps = JSON.stringify({ bandwidth: { ingressRate: RATE, ingressBurst: 1_000_000, egressRate: RATE, egressBurst: 1_000_000 } });
    const addA = await tb.cnitool(['add', net, a.path, '--json', '--capability-args', caps]);
    expect(addA.exitCode, addA.stderr).toBe(0);
    expect((addA.json!.interfaces as Iface[]).at(-1)!.name).toMatch(/^bwp/);
    const addB = await tb.cnitool(['add', net, b.path, '--json']);
    expect(addB.exitCode, addB.stderr).toBe(0);
    expect((addB.json!.interfaces as Iface[]).some((i) => i.name.startsWith('bwp'))).toBe(false);
    const ipA = (addA.json!.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const server: ResultPromise = execa('nsenter', [`--net=${a.path}`, '--', 'iperf3', '-s', '-B', ipA], { reject: false });
    cleanup.add(async () => server.kill());
    const toA = await iperf(b, ipA, false);
    const fromA = await iperf(b, ipA, true);
    console.log(
      `bandwidth limit ${RATE / 1e6} Mbit/s: to the container ${(toA / 1e6).toFixed(2)}, from it ${(fromA / 1e6).toFixed(2)} Mbit/s`,
    );
    expect(Math.abs(toA - RATE) / RATE).toBeLessThan(0.1);
    expect(Math.abs(fromA - RATE) / RATE).toBeLessThan(0.1);
    server.kill();
    await server;
  });
});

describe('bandwidth subnets (measured)', () => {
  /** A limited to 20 Mbit/s each way with `subnets` naming B's address: rates B->A and A->B. */
  async function measure(key: 'unshapedSubnets' | 'shapedSubnets'): Promise<[number, number]> {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = `${tb.id}-bw`;
    setup(tb, net, {});
    const [a, b] = [await tb.container(), await tb.container()];
    const addB = await tb.cnitool(['add', net, b.path, '--json']);
    expect(addB.exitCode, addB.stderr).toBe(0);
    const ipB = (addB.json!.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const caps = JSON.stringify({
      bandwidth: { ingressRate: RATE, ingressBurst: 1_000_000, egressRate: RATE, egressBurst: 1_000_000, [key]: [`${ipB}/32`] },
    });
    const addA = await tb.cnitool(['add', net, a.path, '--json', '--capability-args', caps]);
    expect(addA.exitCode, addA.stderr).toBe(0);
    const ipA = (addA.json!.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const server: ResultPromise = execa('nsenter', [`--net=${a.path}`, '--', 'iperf3', '-s', '-B', ipA], { reject: false });
    cleanup.add(async () => server.kill());
    const rates: [number, number] = [await iperf(b, ipA, false), await iperf(b, ipA, true)];
    console.log(`${key} [B]: to A ${(rates[0] / 1e6).toFixed(2)}, from A ${(rates[1] / 1e6).toFixed(2)} Mbit/s (limit ${RATE / 1e6})`);
    server.kill();
    await server;
    return rates;
  }

  it('unshapedSubnets holding the peer: its traffic passes unlimited both ways', async () => {
    for (const r of await measure('unshapedSubnets')) expect(r).toBeGreaterThan(2 * RATE);
  });

  it('shapedSubnets holding the peer: its traffic is limited both ways (within 10 %)', async () => {
    for (const r of await measure('shapedSubnets')) expect(Math.abs(r - RATE) / RATE).toBeLessThan(0.1);
  });
});

describe.skipIf(refMissing)('bandwidth interop with the reference plugins', () => {
  const bw = { ingressRate: RATE, ingressBurst: BURST, egressRate: RATE, egressBurst: BURST };
  /** ADD with `cniPath`; the result without MACs, the qdiscs of the veth and the IFB. */
  async function run(from: Record<string, string>) {
    const tb = await makeTestbed(cleanup, { prefix: 'hn' });
    const net = 'hnbwnet';
    setup(tb, net, bw, mixedPath(tb, from));
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr).toBe(0);
    const veth = hostVeth(tb, add.json!);
    const ifb = (add.json!.interfaces as Iface[]).at(-1)!.name;
    const shape = (qs: Qdisc[]) =>
      qs
        .filter((q) => q.kind !== 'pfifo_fast' && q.kind !== 'noqueue')
        .map((q) => ({ kind: q.kind, handle: q.handle, options: q.kind === 'tbf' ? q.options : undefined }));
    const qdiscs = {
      veth: shape(await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', veth])),
      ifb: shape(await tcJson<Qdisc>(tb, ['qdisc', 'show', 'dev', ifb])),
    };
    const check = await tb.cnitool(['check', net, c.path]);
    const iface = (i: Iface) => ({
      name: i.name === veth ? 'VETH' : i.name === tb.bridge ? 'BR' : i.name.startsWith('bwp') ? i.name.slice(0, 3) : i.name,
      sandbox: i.sandbox ? 'NS' : undefined,
      hasMac: Boolean(i.mac),
    });
    const result = { interfaces: (add.json!.interfaces as Iface[]).map(iface), ips: (add.json!.ips as unknown[]).length };
    const del = await tb.cnitool(['del', net, c.path]);
    const left = await inNs(tb.host, 'ip', ['-json', 'link', 'show', 'type', 'ifb']);
    return {
      result,
      qdiscs,
      check: check.exitCode,
      del: del.exitCode,
      left: JSON.parse(left.stdout || '[]') as unknown[],
      ifbLen: ifb.length,
    };
  }

  it('ours after the reference bridge, the reference after ours: same result shape, same qdiscs, CHECK and DEL work', async () => {
    const ours = await run({ bridge: REF_BIN, 'host-local': REF_BIN, bandwidth: BIN });
    const ref = await run({ bridge: BIN, 'host-local': BIN, bandwidth: REF_BIN });
    const both = await run({ bridge: REF_BIN, 'host-local': REF_BIN, bandwidth: REF_BIN });
    expect(ours.qdiscs).toEqual(both.qdiscs);
    expect(ref.qdiscs).toEqual(both.qdiscs);
    expect(ours.result).toEqual(both.result);
    for (const r of [ours, ref, both]) {
      expect(r.check).toBe(0);
      expect(r.del).toBe(0);
      expect(r.left).toEqual([]);
      expect(r.ifbLen).toBe(15);
    }
  });
});
