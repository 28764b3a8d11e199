/**
 * The firewall owners' nf_tables netlink path (shared/kernel/netlink/nftnl.ts, nftsock.ts)
 * against the libnftables text path (CNI_TS_NFT_NETLINK=0), through the shipped executables:
 * the same rules in the kernel (`nft -j list table`, handles aside), each path deleting what
 * the other wrote, no libnftables load on the netlink path, and a refused batch reported with
 * the kernel's errno text. Every resource carries the `hnf` prefix and is removed in afterAll.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, makeNetns, sh } from './helpers/netns.ts';
import { runPlugin, type PluginRun } from './helpers/run.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

const hex = (n: number): string => randomBytes(n).toString('hex');
type Path = 'netlink' | 'text';
const envOf = (p: Path, traceFile: string): Record<string, string> => ({
  ...(p === 'text' ? { CNI_TS_NFT_NETLINK: '0' } : {}),
  CNI_TS_TRACE: traceFile,
});

/** `nft -j list table` without handles and with the table's name replaced: what a rule is, not where. */
async function tableJson(family: string, table: string): Promise<unknown> {
  const r = await sh('nft', ['-j', 'list', 'table', family, table], { allowFail: true });
  if (r.exitCode !== 0) return `absent: ${String(r.stderr)}`;
  return normalize(String(r.stdout));
}

/** `nft -j` output without metainfo, handles and table names. */
function normalize(text: string): unknown {
  const objs = (JSON.parse(text) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
  return objs
    .filter((o) => !o.metainfo)
    .map((o) => {
      const [k, v] = Object.entries(o)[0];
      const { handle: _h, table: _t, name, ...rest } = v;
      return { [k]: { ...rest, ...(k === 'table' ? {} : { name }) } };
    });
}

const ok = (r: PluginRun): PluginRun => {
  expect(r.exitCode, `${r.stdout} ${r.stderr}`).toBe(0);
  return r;
};

describe('nf_tables netlink vs libnftables: masquerade (bridge ipMasq)', () => {
  it('the same rules on both paths; each path DELs what the other ADDed; no libnftables on the netlink path', async () => {
    const id = hex(3);
    const n = parseInt(id.slice(0, 2), 16);
    const nets: Record<Path, { table: string; br: string; dataDir: string; traceFile: string; ns: string }> = {} as never;
    for (const p of ['netlink', 'text'] as const) {
      const ns = await makeNetns(cleanup, 'hnfns');
      const v = {
        table: `hnf_${p[0]}_${id}`,
        br: `hnf${p[0]}${id}`,
        dataDir: `/var/lib/cni/hnf-${id}-${p}`,
        traceFile: `/tmp/hnf-trace-${id}-${p}`,
        ns: ns.path,
      };
      cleanup.add(async () => {
        await deleteLink(v.br);
        await sh('nft', ['delete', 'table', 'inet', v.table], { allowFail: true });
        await sh('nft', ['delete', 'table', 'bridge', v.table], { allowFail: true });
        rmSync(v.dataDir, { recursive: true, force: true });
        rmSync(v.traceFile, { force: true });
      });
      nets[p] = v;
    }
    const conf = (p: Path): Record<string, unknown> => ({
      cniVersion: '1.0.0',
      name: `hnfnet-${id}`, // one network name: the same owner tags on both paths
      type: 'bridge',
      bridge: nets[p].br,
      isGateway: true,
      ipMasq: true,
      macspoofchk: true,
      nftTable: nets[p].table,
      ipam: {
        type: 'host-local',
        // a whole-byte and an odd prefix of each family (nft loads bytes, or masks)
        ranges: [
          [{ subnet: `10.214.${n & 0xf0}.0/20` }],
          [{ subnet: `fd00:214:${id.slice(0, 4)}::/64` }],
          [{ subnet: `10.215.${n}.0/26` }],
          [{ subnet: `fd00:215:${id.slice(0, 4)}::/121` }],
        ],
        dataDir: nets[p].dataDir,
      },
    });
    const call = (p: Path, as: Path, command: string, prev?: unknown): Promise<PluginRun> =>
      runPlugin('bridge', {
        command,
        containerId: `hnfc-${id}`,
        netns: nets[p].ns,
        ifname: 'eth0',
        config: prev ? { ...conf(p), prevResult: prev } : conf(p),
        env: envOf(as, nets[p].traceFile),
      });
    const addN = ok(await call('netlink', 'netlink', 'ADD'));
    const addT = ok(await call('text', 'text', 'ADD'));
    const jn = await tableJson('inet', nets.netlink.table);
    const jt = await tableJson('inet', nets.text.table);
    expect(JSON.stringify(jn)).toContain('masquerade');
    expect((jn as unknown[]).filter((o) => (o as { rule?: unknown }).rule)).toHaveLength(4);
    expect(jn).toEqual(jt);
    // the MAC spoof check, in the same transaction (bridge family); its port name differs per bridge
    const spoof = async (p: Path): Promise<string> =>
      JSON.stringify(await tableJson('bridge', nets[p].table))
        .replace(/"veth[0-9a-f]+"/g, '"PORT"')
        .replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/g, 'MAC');
    expect(await spoof('netlink')).toContain('"drop"');
    expect(await spoof('netlink')).toBe(await spoof('text'));
    ok(await call('netlink', 'netlink', 'CHECK', addN.json));
    ok(await call('text', 'netlink', 'CHECK', addT.json));
    // cross: the netlink path deletes the text path's rules and the other way round
    ok(await call('text', 'netlink', 'DEL', addT.json));
    ok(await call('netlink', 'text', 'DEL', addN.json));
    const empty = [
      { table: { family: 'inet' } },
      { chain: { family: 'inet', name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
    ];
    expect(await tableJson('inet', nets.netlink.table)).toEqual(empty);
    expect(await tableJson('inet', nets.text.table)).toEqual(empty);
    ok(await call('text', 'netlink', 'DEL', addT.json)); // idempotent
    const traced = (p: Path): string => (existsSync(nets[p].traceFile) ? readFileSync(nets[p].traceFile, 'utf8') : '');
    // the ADD on the netlink path: one batch, and libnftables never loaded by it
    const addTrace = traced('netlink').split('runtime started')[1] ?? '';
    expect(addTrace).toMatch(/nf_tables netlink add table inet hnf_n_\w+ \(\+8\) -> 0/);
    expect(addTrace).not.toMatch(/libnftables/);
    expect(traced('text')).toMatch(/nf_tables netlink rules of inet hnf_t_\w+ postrouting: 4 messages/);
  }, 60_000);

  it('a refused batch: code 100, the kernel errno text, nothing written', async () => {
    const id = hex(3);
    const table = `hnf_e_${id}`;
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
    // a chain `postrouting` that is not a nat base chain: `add chain … { type nat … }` is refused
    await sh('nft', ['add', 'table', 'inet', table]);
    await sh('nft', ['add', 'chain', 'inet', table, 'postrouting', '{ type filter hook postrouting priority 0; }']);
    const out: Record<Path, { code: unknown; msg: string }> = {} as never;
    for (const p of ['netlink', 'text'] as const) {
      const ns = await makeNetns(cleanup, 'hnfns');
      const br = `hnfe${p[0]}${id}`;
      const dataDir = `/var/lib/cni/hnf-e${id}-${p}`;
      cleanup.add(async () => {
        await deleteLink(br);
        rmSync(dataDir, { recursive: true, force: true });
      });
      const r = await runPlugin('bridge', {
        command: 'ADD',
        containerId: `hnfe-${id}`,
        netns: ns.path,
        ifname: 'eth0',
        env: p === 'text' ? { CNI_TS_NFT_NETLINK: '0' } : {},
        config: {
          cniVersion: '1.0.0',
          name: `hnfe-${id}-${p}`,
          type: 'bridge',
          bridge: br,
          ipMasq: true,
          nftTable: table,
          ipam: { type: 'host-local', subnet: `10.216.${parseInt(id.slice(0, 2), 16)}.0/24`, dataDir },
        },
      });
      expect(r.exitCode).not.toBe(0);
      const err = JSON.parse(r.stdout) as { code: number; msg: string };
      out[p] = { code: err.code, msg: err.msg };
    }
    expect(out.netlink.code).toBe(100);
    expect(out.netlink.code).toBe(out.text.code);
    // nft's words and the errno text on both paths
    expect(out.text.msg).toMatch(/Could not process rule: (\w[\w ]+)/);
    const errText = /Could not process rule: ([A-Za-z ]+)/.exec(out.text.msg)![1].trim();
    expect(out.netlink.msg).toContain(`Could not process rule: ${errText}`);
    const rules = String((await sh('nft', ['-j', 'list', 'chain', 'inet', table, 'postrouting'])).stdout);
    expect(rules).not.toContain('"rule"');
  }, 60_000);
});

describe('nf_tables netlink vs libnftables: portmap', () => {
  it('ADD, conflict, repeated ADD, cross-path DEL and GC: the same table on both paths', async () => {
    const id = hex(3);
    const hosts: Record<Path, string> = {} as never;
    const traces: Record<Path, string> = {} as never;
    for (const p of ['netlink', 'text'] as const) {
      hosts[p] = (await makeNetns(cleanup, 'hnfh')).path; // the table lives in this "host" and goes with it
      traces[p] = `/tmp/hnf-pmtrace-${id}-${p}`;
      cleanup.add(async () => rmSync(traces[p], { force: true }));
    }
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: '/run/netns/hnf-none' }],
      ips: [
        { address: '172.31.217.5/24', interface: 0 },
        { address: 'fd00:217::5/64', interface: 0 },
      ],
    };
    const maps = {
      c1: [
        { hostPort: 18080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 18053, containerPort: 53, protocol: 'udp' },
        { hostPort: 18443, containerPort: 443, protocol: 'tcp', hostIP: '172.31.217.1' },
        { hostPort: 18444, containerPort: 443, protocol: 'sctp', hostIP: 'fd00:217::1' },
      ],
      c2: [{ hostPort: 18081, containerPort: 8080, protocol: 'tcp' }],
      c3: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
    };
    const conf = (c: keyof typeof maps): Record<string, unknown> => ({
      cniVersion: '1.0.0',
      name: `hnfpm-${id}`,
      type: 'portmap',
      runtimeConfig: { portMappings: maps[c] },
      prevResult: prev,
    });
    const call = (host: Path, as: Path, command: string, c: keyof typeof maps): Promise<PluginRun> =>
      runPlugin('portmap', {
        command,
        containerId: `hnf-${c}`,
        netns: '/run/netns/hnf-none',
        ifname: 'eth0',
        config: conf(c),
        hostNetns: hosts[host],
        env: envOf(as, traces[host]),
      });
    const table = (host: Path): Promise<unknown> => tableIn(hosts[host]);
    const same = async (): Promise<unknown> => {
      const [a, b] = [await table('netlink'), await table('text')];
      expect(a).toEqual(b);
      return a;
    };
    for (const p of ['netlink', 'text'] as const) {
      ok(await call(p, p, 'ADD', 'c1'));
      ok(await call(p, p, 'ADD', 'c2'));
    }
    const t1 = JSON.stringify(await same());
    expect(t1).toContain('dnat');
    expect(t1).toContain('172.31.217.0');
    // the first ADD on the netlink path: one batch, no libnftables
    const first = readFileSync(traces.netlink, 'utf8').split('runtime started')[1];
    expect(first).toMatch(/nf_tables netlink add table inet cni_portmap \(\+\d+\) -> 0/);
    expect(first).not.toMatch(/libnftables/);
    // a host port held by c1: Conflict (102), the same words, nothing changed
    const conflict: Record<Path, unknown> = {} as never;
    for (const p of ['netlink', 'text'] as const) {
      const r = await call(p, p, 'ADD', 'c3');
      expect(r.exitCode).not.toBe(0);
      conflict[p] = r.json;
    }
    expect((conflict.netlink as { code: number }).code).toBe(102);
    expect(conflict.netlink).toEqual(conflict.text);
    // a repeated ADD converges
    for (const p of ['netlink', 'text'] as const) ok(await call(p, p, 'ADD', 'c1'));
    expect(JSON.stringify(await same())).toBe(t1);
    // cross: each path deletes what the other wrote
    ok(await call('netlink', 'text', 'DEL', 'c1'));
    ok(await call('text', 'netlink', 'DEL', 'c1'));
    const t2 = JSON.stringify(await same());
    expect(t2).not.toContain('18443');
    expect(t2).toContain('18081');
    ok(await call('text', 'netlink', 'DEL', 'c1')); // idempotent
    // GC with nothing valid: c2 goes on both paths
    for (const p of ['netlink', 'text'] as const) {
      const r = await runPlugin('portmap', {
        command: 'GC',
        config: { cniVersion: '1.1.0', name: `hnfpm-${id}`, type: 'portmap', 'cni.dev/valid-attachments': [] },
        hostNetns: hosts[p],
        env: envOf(p === 'netlink' ? 'text' : 'netlink', traces[p]),
      });
      ok(r);
    }
    const t3 = JSON.stringify(await same());
    expect(t3).not.toContain('pm-');
    const delTrace = readFileSync(traces.text, 'utf8');
    expect(delTrace).toMatch(/nf_tables netlink delete element inet cni_portmap/);
  }, 90_000);
});

/** `tableJson` of inet cni_portmap inside the netns at `ns`. */
async function tableIn(ns: string): Promise<unknown> {
  const r = await sh('nsenter', [`--net=${ns}`, '--', 'nft', '-j', 'list', 'table', 'inet', 'cni_portmap'], { allowFail: true });
  if (r.exitCode !== 0) return `absent: ${String(r.stderr)}`;
  return normalize(String(r.stdout));
}
