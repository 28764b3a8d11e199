/**
 * nft through libnftables in-process (shared/kernel/netlink/libnft.ts) against the `nft`
 * process (CNI_TS_NETLINK=0): the shipped executables on both paths give the same nft tables,
 * the same results and the same errors; a script for another netns lands there and nowhere
 * else. Every resource carries the `lf` prefix and is removed in afterAll.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, makeNetns, sh } from './helpers/netns.ts';
import { ROOT, runPlugin, type PluginRun } from './helpers/run.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

const hex = (n: number): string => randomBytes(n).toString('hex');
const BUN = path.join(ROOT, 'node_modules/@oven/bun-linux-x64-baseline/bin/bun');

type Mode = 'lib' | 'proc';
const envOf = (mode: Mode, traceFile: string): Record<string, string> => ({
  CNI_TS_NETLINK: mode === 'proc' ? '0' : '1',
  // libnftables, not the raw nf_tables netlink batches that are the default since session 4
  CNI_TS_NFT_NETLINK: '0',
  CNI_TS_TRACE: traceFile,
});

const nftText = async (family: string, table: string, ns?: string): Promise<string> => {
  const args = ['list', 'table', family, table];
  const r = ns
    ? await sh('nsenter', [`--net=${ns}`, '--', 'nft', ...args], { allowFail: true })
    : await sh('nft', args, { allowFail: true });
  return r.exitCode === 0 ? String(r.stdout) : `absent: ${String(r.stderr)}`;
};

/** One bridge (ipMasq) + portmap ADD / CHECK / DEL with fixed names, on the given path. */
async function chain(mode: Mode, id: string): Promise<{ tables: string[]; results: unknown[]; traced: string }> {
  const ns = await makeNetns(cleanup, 'lfns');
  const traceFile = `/tmp/lf-trace-${id}-${mode}`;
  cleanup.add(async () => rmSync(traceFile, { force: true }));
  const dataDir = `/var/lib/cni/lf-${id}-${mode}`; // host-local remembers its last address: one store per path
  const [br, masqTable, pmTable] = [`lfb${id}`, `lf_m_${id}`, `lf_p_${id}`];
  cleanup.add(async () => {
    await deleteLink(br);
    await sh('nft', ['delete', 'table', 'inet', masqTable], { allowFail: true });
    await sh('nft', ['delete', 'table', 'inet', pmTable], { allowFail: true });
    rmSync(dataDir, { recursive: true, force: true });
  });
  const bridgeConf = {
    cniVersion: '1.0.0',
    name: `lfnet-${id}`,
    type: 'bridge',
    bridge: br,
    isGateway: true,
    ipMasq: true,
    nftTable: masqTable,
    ipam: { type: 'host-local', ranges: [[{ subnet: `10.213.${parseInt(id.slice(0, 2), 16)}.0/24` }]], dataDir },
  };
  const pmConf = (prevResult: unknown): Record<string, unknown> => ({
    cniVersion: '1.0.0',
    name: `lfnet-${id}`,
    type: 'portmap',
    nftTable: pmTable,
    runtimeConfig: { portMappings: [{ hostPort: 20000 + parseInt(id.slice(0, 3), 16), containerPort: 80, protocol: 'tcp' }] },
    prevResult,
  });
  const env = envOf(mode, traceFile);
  const call = (plugin: string, command: string, config: unknown): Promise<PluginRun> =>
    runPlugin(plugin, { command, containerId: `lfc-${id}`, netns: ns.path, ifname: 'eth0', config, env });
  const ok = (r: PluginRun): PluginRun => {
    expect(r.exitCode, `${r.stdout} ${r.stderr}`).toBe(0);
    return r;
  };
  // the MAC is random; everything else is fixed by the names above
  const norm = (r: PluginRun): unknown =>
    JSON.parse(r.stdout.replace(/"mac":\s*"[0-9a-f:]+"/g, '"mac":"M"').replaceAll(ns.path, 'NS') || 'null');
  const tables = async (): Promise<string> => `${await nftText('inet', masqTable)}\n${await nftText('inet', pmTable)}`;
  const added = ok(await call('bridge', 'ADD', bridgeConf));
  const prev = added.json;
  const pm = ok(await call('portmap', 'ADD', pmConf(prev)));
  const t1 = await tables();
  ok(await call('bridge', 'CHECK', { ...bridgeConf, prevResult: prev }));
  ok(await call('portmap', 'CHECK', pmConf(prev)));
  ok(await call('portmap', 'DEL', pmConf(prev)));
  const t2 = await tables();
  ok(await call('bridge', 'DEL', { ...bridgeConf, prevResult: prev }));
  const t3 = await tables();
  const traced = existsSync(traceFile) ? readFileSync(traceFile, 'utf8') : '';
  return { tables: [t1, t2, t3], results: [norm(added), norm(pm)], traced };
}

describe('nft through libnftables vs the nft process', () => {
  it('bridge ipMasq + portmap ADD/CHECK/DEL: the same tables and results on both paths', async () => {
    const id = hex(3);
    const lib = await chain('lib', id);
    const proc = await chain('proc', id);
    // the library path did the nft work in-process; the fallback started nft
    expect(lib.traced).toMatch(/libnftables .* -> 0/);
    expect(lib.traced).not.toMatch(/\] (nsenter \S+ )?nft /);
    // processes the chain still starts (trace lines of exec.ts `run`), for the record
    const procs = (t: string): string[] =>
      t.split('\n').filter((l) => / -> \d+ in [\d.]+ ms$/.test(l) && !/\] (libnftables|netlink) /.test(l));
    console.log(
      `processes, bridge ipMasq + portmap ADD/CHECK/DEL/DEL: libnftables ${procs(lib.traced).length}, fallback ${procs(proc.traced).length}`,
    );
    console.log(procs(lib.traced).join('\n'));
    expect(proc.traced).not.toMatch(/libnftables/);
    expect(proc.traced).toMatch(/\] nft -f/);
    expect(lib.tables[0]).toContain('masquerade');
    expect(lib.tables[0]).toContain('dnat');
    expect(lib.tables).toEqual(proc.tables);
    expect(lib.results).toEqual(proc.results);
  }, 60_000);

  it('a bad nft script: the same CNI error code and message on both paths', async () => {
    const id = hex(3);
    const out: Record<Mode, { code: unknown; msg: unknown; details: unknown }> = {} as never;
    for (const mode of ['lib', 'proc'] as const) {
      const ns = await makeNetns(cleanup, 'lfns');
      const table = `lf_e_${id}`;
      cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
      const traceFile = `/tmp/lf-trace-e${id}-${mode}`;
      cleanup.add(async () => rmSync(traceFile, { force: true }));
      const r = await runPlugin('portmap', {
        command: 'ADD',
        containerId: `lfe-${id}`,
        netns: ns.path,
        ifname: 'eth0',
        env: envOf(mode, traceFile),
        config: {
          cniVersion: '1.0.0',
          name: `lfnet-${id}`,
          type: 'portmap',
          nftTable: table,
          conditionsV4: ['ip frobnicate 1'],
          runtimeConfig: { portMappings: [{ hostPort: 20001, containerPort: 80, protocol: 'tcp' }] },
          prevResult: {
            cniVersion: '1.0.0',
            interfaces: [{ name: 'eth0', sandbox: ns.path }],
            ips: [{ address: '10.213.0.2/24', interface: 0 }],
          },
        },
      });
      expect(r.exitCode, r.stdout).not.toBe(0);
      const j = r.json as { code: unknown; msg: unknown; details: unknown };
      out[mode] = { code: j.code, msg: j.msg, details: j.details };
    }
    expect(out.lib.code).toBe(100);
    expect(String(out.lib.msg)).toMatch(/\/dev\/stdin:\d+:\d+-\d+: Error: /);
    expect(out.lib).toEqual(out.proc);
  }, 60_000);

  it('a script for another netns lands there, and the host is untouched', async () => {
    const ns = await makeNetns(cleanup, 'lfns');
    const table = `lf_n_${hex(3)}`;
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
    const script = `/tmp/lf-netns-${hex(3)}.ts`;
    cleanup.add(async () => rmSync(script, { force: true }));
    writeFileSync(
      script,
      `import { nftApply, nftListRaw, nftRun } from '${ROOT}/shared/kernel/nft.ts';
import { libnft } from '${ROOT}/shared/kernel/netlink/libnft.ts';
await nftApply('add table inet ${table}\\nadd chain inet ${table} c\\n', '${ns.path}');
const there = await nftRun(['-j', 'list', 'table', 'inet', '${table}'], { netns: '${ns.path}' });
const bad = await nftRun(['-f', '-'], { input: 'add tabel inet x\\n', netns: '${ns.path}', allowFail: true });
const self = readlinkSync('/proc/thread-self/ns/net');
const threads = readdirSync('/proc/self/task').map((t) => readlinkSync('/proc/self/task/' + t + '/ns/net'));
console.log(JSON.stringify({ lib: !!libnft(), here: await nftListRaw('inet', '${table}'), there: there.stdout, bad, self, threads }));
`.replace(/^/, "import { readdirSync, readlinkSync } from 'node:fs';\n"),
    );
    const r = await execa(BUN, [script], { reject: false, env: { CNI_TS_NETLINK: '1' } });
    expect(r.exitCode, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout) as {
      lib: boolean;
      here?: string;
      there: string;
      bad: { exitCode: number; stderr: string };
      self: string;
      threads: string[];
    };
    expect(o.lib).toBe(true);
    expect(o.here).toBeUndefined(); // not in the host netns
    expect(await nftText('inet', table)).toMatch(/^absent/);
    expect(o.there).toContain(`"name": "${table}"`);
    expect(await nftText('inet', table, ns.path)).toContain('chain c');
    expect(o.bad.exitCode).toBe(1);
    expect(o.bad.stderr).toMatch(/^\/dev\/stdin:1:11-14: Error: syntax error/);
    // the thread came home, and no thread of the process was left in the container's netns
    expect(new Set(o.threads)).toEqual(new Set([o.self]));
  }, 60_000);
});
