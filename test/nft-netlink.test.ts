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
  const objs = (JSON.parse(String(r.stdout)) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
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
    expect(addTrace).toMatch(/nf_tables netlink add table inet hnf_n_\w+ \(\+5\) -> 0/);
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
