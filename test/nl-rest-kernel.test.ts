/**
 * The last processes of the plugin paths (issue 12, "Left") on the kernel, through the shipped
 * executables: bridge (macspoofchk) + tuning (alias) + portmap + bandwidth (IPv4 and IPv6
 * subnets together) run by cnitool inside a "host" netns the test owns, one container ADDed on
 * the netlink path and one on the process path (CNI_TS_NETLINK=0). Both ADDs succeed (the
 * mixed-family bandwidth was refused before), the kernel holds the same state for both, CHECK
 * agrees on all three paths (netlink; libnftables, CNI_TS_NFT_NETLINK=0; processes) for an
 * intact attachment and for each thing taken away (a map element, the MAC spoof rule, an HTB
 * class's rate, the alias), the netlink path runs no process and loads no libnftables, and each
 * path DELs what the other ADDed. portmap with a container subnet inside or beside 127.0.0.0/8
 * writes by netlink the table libnftables writes. Every resource carries the `nr` prefix (netns nr-…, links
 * nr…, tables nr_…, /run/cni-nr-…) and is removed in afterAll.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCnitool, type CnitoolRun } from './helpers/cnitool.ts';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { containerIdFor } from '../tools/cnitool/index.ts';
import { ifbName } from '../plugins/bandwidth/config.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

type Path = 'netlink' | 'libnft' | 'process';
const PATHS: Path[] = ['netlink', 'libnft', 'process'];
const envOf = (p: Path, traceFile?: string): Record<string, string | undefined> => ({
  CNI_TS_NETLINK: p === 'process' ? '0' : undefined,
  CNI_TS_NFT_NETLINK: p === 'libnft' ? '0' : undefined,
  CNI_TS_TRACE: traceFile,
});

interface Bed {
  id: string;
  dir: string;
  host: TestNetns;
  net: string;
  brTable: string;
  pmTable: string;
  cni(args: string[], p: Path, opts?: { trace?: string; cap?: unknown }): Promise<CnitoolRun>;
}

async function makeBed(): Promise<Bed> {
  const id = uid('nr');
  const dir = `/run/cni-nr-${id.slice(2)}`;
  mkdirSync(path.join(dir, 'net.d'), { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  const host = await makeNetns(cleanup, 'nr-h');
  await inNs(host, 'ip', ['link', 'set', 'lo', 'up']);
  const n = 1 + Math.floor(Math.random() * 250);
  const net = `${id}-net`;
  const brTable = `nr_br_${id.slice(2)}`;
  const pmTable = `nr_pm_${id.slice(2)}`;
  writeFileSync(
    path.join(dir, 'net.d', '10-nr.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: net,
      plugins: [
        {
          type: 'bridge',
          bridge: `${id}br`,
          isGateway: true,
          macspoofchk: true,
          nftTable: brTable,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: `10.213.${n}.0/24` }], [{ subnet: `fd00:213:${n.toString(16)}::/64` }]],
            dataDir: path.join(dir, 'ipam'),
          },
        },
        { type: 'tuning', alias: `web pod ${id}`, dataDir: path.join(dir, 'tuning') },
        { type: 'portmap', capabilities: { portMappings: true }, nftTable: pmTable, snat: true },
        {
          type: 'bandwidth',
          ingressRate: 80_000_000,
          ingressBurst: 800_000,
          egressRate: 40_000_000,
          egressBurst: 400_000,
          unshapedSubnets: ['10.213.0.0/16', 'fd00:213::/32'],
        },
      ],
    }),
  );
  return {
    id,
    dir,
    host,
    net,
    brTable,
    pmTable,
    cni: (args, p, opts = {}) =>
      runCnitool(args, {
        confDir: path.join(dir, 'net.d'),
        cacheDir: path.join(dir, 'cache'),
        hostNetns: host.path,
        env: { ...envOf(p, opts.trace), CAP_ARGS: opts.cap === undefined ? undefined : JSON.stringify(opts.cap) },
      }),
  };
}

const ok = (r: CnitoolRun | PluginRun, what: string): CnitoolRun | PluginRun => {
  expect(r.exitCode, `${what}: ${r.stdout} ${r.stderr}`).toBe(0);
  return r;
};
const json = async (ns: TestNetns | string, cmd: string, args: string[]): Promise<unknown> => {
  const r = await inNs(ns, cmd, args, true);
  return r.exitCode === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as unknown) : `failed: ${r.stderr.trim()}`;
};
/** What a traced call ran: `file argv -> code` lines of exec.ts, and whether libnftables was loaded. */
const processesIn = (trace: string): string[] => trace.split('\n').filter((l) => / -> -?\d+ in [\d.]+ ms$/.test(l) && !/netlink/.test(l));

describe('the last processes, on the kernel: bridge macspoof + tuning alias + portmap + bandwidth (v4 and v6 subnets)', () => {
  it('ADD on both paths gives the same kernel state; CHECK agrees on three paths; each path DELs the other’s', async () => {
    const bed = await makeBed();
    const add: Record<'netlink' | 'process', { c: TestNetns; res: Record<string, unknown>; port: number }> = {} as never;
    for (const [i, p] of (['netlink', 'process'] as const).entries()) {
      const c = await makeNetns(cleanup, 'nr-c');
      const port = 18080 + i;
      const r = ok(
        await bed.cni(['add', bed.net, c.path, '--json'], p, {
          cap: { portMappings: [{ hostPort: port, containerPort: 80, protocol: 'tcp' }] },
        }),
        `ADD ${p}`,
      );
      add[p] = { c, res: r.json!, port };
    }
    const host = (p: 'netlink' | 'process'): { veth: string; ifb: string } => {
      const ifs = add[p].res.interfaces as Array<{ name: string; sandbox?: string }>;
      return { veth: ifs.find((i) => !i.sandbox && i.name.startsWith('veth'))!.name, ifb: ifbName(bed.net, containerIdFor(add[p].c.path)) };
    };

    // the same kernel state from both paths: tc on the host veth and the IFB, the alias, the nft rules
    const tcState = async (p: 'netlink' | 'process'): Promise<string> => {
      const { veth, ifb } = host(p);
      const out: unknown[] = [];
      for (const dev of [veth, ifb]) {
        for (const what of [['qdisc'], ['filter'], ['filter', 'show', 'dev', dev, 'ingress']] as const) {
          const args = what.length > 1 ? ['-json', ...what] : ['-json', what[0], 'show', 'dev', dev];
          out.push(await json(bed.host, 'tc', args));
        }
        out.push((await inNs(bed.host, 'tc', ['class', 'show', 'dev', dev])).stdout); // tc has no JSON for HTB classes
      }
      // handles and the mirred action's index are numbered by the kernel
      return JSON.stringify(out)
        .replaceAll(veth, 'VETH')
        .replaceAll(ifb, 'IFB')
        .replace(/"(fh|handle|index)":("[0-9a-f:]+"|\d+)/g, '"$1":"N"');
    };
    const tcN = await tcState('netlink');
    expect(tcN).toContain('"protocol":"ipv6","pref":15');
    expect(tcN).toContain('"protocol":"ip","pref":16');
    expect(tcN).toBe(await tcState('process'));
    const alias = async (p: 'netlink' | 'process'): Promise<unknown> =>
      ((await json(add[p].c, 'ip', ['-json', '-d', 'link', 'show', 'eth0'])) as Array<{ ifalias?: string }>)[0].ifalias;
    expect(await alias('netlink')).toBe(`web pod ${bed.id}`);
    expect(await alias('process')).toBe(`web pod ${bed.id}`);
    const nftRules = async (family: string, table: string): Promise<string[]> =>
      (
        (await json(bed.host, 'nft', ['-j', 'list', 'table', family, table])) as {
          nftables: Array<Record<string, { chain?: string; expr?: unknown }>>;
        }
      ).nftables
        .filter((o) => o.rule)
        .map((o) => JSON.stringify(o.rule.expr));
    const pmRules = await nftRules('inet', bed.pmTable);
    for (const p of ['netlink', 'process'] as const)
      expect(pmRules.filter((r) => new RegExp(`"dport"\\}+,"right":${add[p].port}`).test(r))).toHaveLength(2); // v4 and v6 dnat
    const spoof = (await nftRules('bridge', bed.brTable)).map((r) =>
      r.replace(/"veth[0-9a-f]+"/, '"PORT"').replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/, 'MAC'),
    );
    expect(spoof).toHaveLength(2);
    expect(spoof[0]).toBe(spoof[1]);

    // CHECK: every path passes for both attachments; the netlink path runs no process and loads no libnftables
    const check = async (p: Path, which: 'netlink' | 'process', trace?: string): Promise<CnitoolRun> =>
      bed.cni(['check', bed.net, add[which].c.path], p, {
        trace,
        cap: { portMappings: [{ hostPort: add[which].port, containerPort: 80, protocol: 'tcp' }] },
      });
    const traceFile = path.join(bed.dir, 'check.trace');
    for (const p of PATHS) for (const which of ['netlink', 'process'] as const) ok(await check(p, which), `CHECK ${which} on ${p}`);
    ok(await check('netlink', 'netlink', traceFile), 'traced CHECK');
    const traced = readFileSync(traceFile, 'utf8');
    expect(processesIn(traced)).toEqual([]);
    expect(traced).not.toMatch(/libnftables/);
    expect(traced).toMatch(/nf_tables netlink rules of bridge nr_br_\w+ macspoof/);
    expect(traced).toMatch(/nf_tables netlink rules of inet nr_pm_\w+ pm-/);

    /** CHECK of the netlink attachment on every path: the same failure (code and message) on each. */
    const failsAlike = async (pattern: RegExp): Promise<void> => {
      const outs = await Promise.all(PATHS.map((p) => check(p, 'netlink')));
      const msgs = outs.map((r) => `${r.exitCode} ${r.stdout}${r.stderr}`);
      for (const [i, r] of outs.entries()) expect(r.exitCode, `${PATHS[i]}: ${msgs[i]}`).not.toBe(0);
      expect(msgs[0]).toMatch(pattern);
      expect(msgs[1]).toBe(msgs[0]);
      expect(msgs[2]).toBe(msgs[0]);
    };
    const { veth, ifb } = host('netlink');
    const chainOfPort = (await json(bed.host, 'nft', ['-j', 'list', 'map', 'inet', bed.pmTable, 'hostport4'])) as {
      nftables: Array<{ map?: { elem?: Array<[unknown, { goto?: { target: string } }]> } }>;
    };
    const target = chainOfPort.nftables
      .find((o) => o.map)!
      .map!.elem!.find((e) => JSON.stringify(e[0]).includes(String(add.netlink.port)))![1].goto!.target;
    // a map element gone
    await inNs(bed.host, 'nft', ['delete', 'element', 'inet', bed.pmTable, 'hostport4', `{ tcp . ${add.netlink.port} }`]);
    await failsAlike(/host ports no longer dispatched to this container: tcp\/18080/);
    await inNs(bed.host, 'nft', ['add', 'element', 'inet', bed.pmTable, 'hostport4', `{ tcp . ${add.netlink.port} : goto ${target} }`]);
    for (const p of PATHS) ok(await check(p, 'netlink'), `CHECK after restoring the element on ${p}`);
    // the HTB shaped class's rate changed
    await inNs(bed.host, 'tc', ['class', 'change', 'dev', ifb, 'parent', '1:', 'classid', '1:30', 'htb', 'rate', '1mbit']);
    await failsAlike(/htb class 1:30 rate 125000 B\/s, expected 5000000/);
    await inNs(bed.host, 'tc', [
      'class',
      'change',
      'dev',
      ifb,
      'parent',
      '1:',
      'classid',
      '1:30',
      'htb',
      'rate',
      '40000000bit',
      'burst',
      '50000',
      'quantum',
      '60000',
    ]);
    for (const p of PATHS) ok(await check(p, 'netlink'), `CHECK after restoring the class on ${p}`);
    // the alias changed inside the container
    await inNs(add.netlink.c, 'ip', ['link', 'set', 'dev', 'eth0', 'alias', 'other']);
    await failsAlike(/alias of eth0 is "other"/);
    await inNs(add.netlink.c, 'ip', ['link', 'set', 'dev', 'eth0', 'alias', `web pod ${bed.id}`]);
    // the MAC spoof rule of the port gone
    const listed = (await json(bed.host, 'nft', ['-j', '-a', 'list', 'chain', 'bridge', bed.brTable, 'macspoof'])) as {
      nftables: Array<{ rule?: { handle: number; expr: unknown[] } }>;
    };
    const mine = listed.nftables.find((o) => o.rule && JSON.stringify(o.rule.expr).includes(`"${veth}"`))!.rule!.handle;
    await inNs(bed.host, 'nft', ['delete', 'rule', 'bridge', bed.brTable, 'macspoof', 'handle', String(mine)]);
    await failsAlike(/macspoofchk rule for \S+ is missing/);

    // each path DELs what the other ADDed; the alias is restored (none), nothing of either attachment is left
    for (const [p, which] of [
      ['process', 'netlink'],
      ['netlink', 'process'],
    ] as const) {
      ok(
        await bed.cni(['del', bed.net, add[which].c.path], p, {
          cap: { portMappings: [{ hostPort: add[which].port, containerPort: 80, protocol: 'tcp' }] },
        }),
        `DEL ${which} on ${p}`,
      );
      expect((await inNs(bed.host, 'ip', ['link', 'show', host(which).ifb], true)).exitCode).not.toBe(0);
    }
    const left = JSON.stringify(await json(bed.host, 'nft', ['-j', 'list', 'table', 'inet', bed.pmTable]));
    expect(left).not.toMatch(/"pm-/);
    expect(await nftRules('bridge', bed.brTable)).toEqual([]);
    expect(existsSync(path.join(bed.dir, 'tuning'))).toBe(true);
  }, 120_000);
});

describe('portmap with a container subnet touching 127.0.0.0/8 (netlink since session 5)', () => {
  it('the same table from netlink and libnftables (inside and beside 127/8); CHECK and DEL on the other path', async () => {
    const hosts: Record<'netlink' | 'libnft', TestNetns> = {
      netlink: await makeNetns(cleanup, 'nr-h'),
      libnft: await makeNetns(cleanup, 'nr-h'),
    };
    const dir = `/run/cni-nr-${uid('')}`;
    mkdirSync(dir, { recursive: true });
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    const subnets = { in: '127.1.0.5/16', by: '126.0.0.5/8' } as const;
    const call = (host: 'netlink' | 'libnft', as: Path, command: string, c: keyof typeof subnets, trace?: string): Promise<PluginRun> =>
      runPlugin('portmap', {
        command,
        containerId: `nr-${c}`,
        netns: '/run/netns/nr-none',
        ifname: 'eth0',
        hostNetns: hosts[host].path,
        env: envOf(as, trace),
        config: {
          cniVersion: '1.0.0',
          name: 'nr-pm127',
          type: 'portmap',
          nftTable: 'nr_pm127',
          runtimeConfig: { portMappings: [{ hostPort: c === 'in' ? 18090 : 18091, containerPort: 80, protocol: 'tcp' }] },
          prevResult: {
            cniVersion: '1.0.0',
            interfaces: [{ name: 'eth0', sandbox: '/run/netns/nr-none' }],
            ips: [{ address: subnets[c], interface: 0 }],
          },
        },
      });
    const table = async (h: 'netlink' | 'libnft'): Promise<string> =>
      JSON.stringify(await json(hosts[h], 'nft', ['-j', 'list', 'table', 'inet', 'nr_pm127'])).replace(/"handle":\d+,?/g, '');
    const trace = path.join(dir, 'add.trace');
    for (const c of ['in', 'by'] as const) {
      ok(await call('netlink', 'netlink', 'ADD', c, trace), `ADD ${c} netlink`);
      ok(await call('libnft', 'libnft', 'ADD', c), `ADD ${c} libnft`);
    }
    const t = await table('netlink');
    expect(t).toContain('"prefix":{"addr":"127.0.0.0","len":8}'); // inside: merged into 127/8
    expect(t).toContain('"prefix":{"addr":"126.0.0.0","len":7}'); // beside: merged into 126/7
    expect(t).toBe(await table('libnft'));
    const traced = readFileSync(trace, 'utf8');
    expect(traced).toMatch(/nf_tables netlink add table inet nr_pm127 \(\+\d+\) -> 0/);
    expect(traced).not.toMatch(/libnftables/);
    for (const c of ['in', 'by'] as const) {
      ok(await call('netlink', 'libnft', 'CHECK', c), `CHECK ${c}`);
      ok(await call('libnft', 'netlink', 'CHECK', c), `CHECK ${c}`);
      ok(await call('netlink', 'libnft', 'DEL', c), `DEL ${c}`);
      ok(await call('libnft', 'netlink', 'DEL', c), `DEL ${c}`);
    }
    expect(await table('netlink')).not.toMatch(/pm-/);
    expect(await table('netlink')).toBe(await table('libnft'));
  }, 60_000);
});
