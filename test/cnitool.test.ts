/**
 * cnitool end to end: the built executable runs real plugins (the Go reference ones from
 * /usr/lib/cni, and ours from dist/bin once they are real) inside a host netns the test owns.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgePlugin, makeTestbed, oursMissing, type Testbed } from './helpers/cnitool.ts';
import { Cleanup, inNs, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN } from './helpers/run.ts';
import { containerIdFor } from '../tools/cnitool/index.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const refMissing = ['bridge', 'host-local', 'portmap'].some((p) => !existsSync(path.join(REF_BIN, p)))
  ? `reference plugins not installed in ${REF_BIN}`
  : '';

async function addrs(ns: TestNetns, dev = 'eth0'): Promise<string[]> {
  const r = await inNs(ns, 'ip', ['-json', 'addr', 'show', 'dev', dev], true);
  if (r.exitCode !== 0) return [];
  const links = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number }> }>;
  return links[0].addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

/** IPs host-local has reserved for network `net` (files named after the address). */
function reserved(tb: Testbed, net: string): string[] {
  try {
    return readdirSync(path.join(tb.dataDir, net)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  } catch {
    return [];
  }
}

const cacheFiles = (tb: Testbed): string[] =>
  existsSync(path.join(tb.cacheDir, 'results')) ? readdirSync(path.join(tb.cacheDir, 'results')) : [];

/** A fake-free recorder plugin: a real executable that records its stdin and environment. */
function installRecorder(tb: Testbed): {
  dir: string;
  calls: (verb: string) => Array<Record<string, unknown>>;
  fail: (on: boolean) => void;
} {
  const dir = path.join(tb.dir, 'bin');
  mkdirSync(dir, { recursive: true });
  const exe = path.join(dir, 'recorder');
  writeFileSync(
    exe,
    `#!/bin/sh
d="$(dirname "$0")/rec"; mkdir -p "$d"; n="$d/$CNI_COMMAND.$(date +%s%N)"
cat > "$n.json"
if [ -e "$(dirname "$0")/fail" ]; then echo '{"cniVersion":"1.1.0","code":50,"msg":"recorder is not available","details":"test switch"}'; exit 1; fi
if [ "$CNI_COMMAND" = ADD ]; then jq -c '.prevResult // {cniVersion: .cniVersion}' "$n.json"; fi
exit 0
`,
  );
  chmodSync(exe, 0o755);
  return {
    dir,
    calls: (verb) => {
      const d = path.join(dir, 'rec');
      if (!existsSync(d)) return [];
      return readdirSync(d)
        .filter((f) => f.startsWith(`${verb}.`))
        .sort()
        .map((f) => JSON.parse(readFileSync(path.join(d, f), 'utf8')) as Record<string, unknown>);
    },
    fail: (on) => (on ? writeFileSync(path.join(dir, 'fail'), '') : rmSync(path.join(dir, 'fail'), { force: true })),
  };
}

describe.skipIf(refMissing)('cnitool with the reference plugins', () => {
  it('loads a .conf, adds, caches in libcni format, and deletes', async () => {
    if (refMissing) console.log(`skipped: ${refMissing}`);
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const net = `${tb.id}-single`;
    tb.writeConf('10-single.conf', { cniVersion: '0.4.0', name: net, ...bridgePlugin(tb) });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr).toBe(0);
    const ips = (add.json?.ips as Array<{ address: string }>).map((i) => i.address);
    expect(ips).toHaveLength(1);
    expect(await addrs(c)).toEqual(ips);
    expect(reserved(tb, net)).toEqual([ips[0].split('/')[0]]);
    const cid = containerIdFor(c.path);
    expect(cacheFiles(tb)).toEqual([`${net}-${cid}-eth0`]);
    const cached = JSON.parse(readFileSync(path.join(tb.cacheDir, 'results', `${net}-${cid}-eth0`), 'utf8')) as Record<string, unknown>;
    expect(cached).toMatchObject({
      kind: 'cniCacheV1',
      containerId: cid,
      ifName: 'eth0',
      networkName: net,
      netns: c.path,
      result: { cniVersion: '0.4.0' },
    });
    expect(JSON.parse(Buffer.from(cached.config as string, 'base64').toString())).toMatchObject({
      name: net,
      plugins: [{ type: 'bridge' }],
    });
    const del = await tb.cnitool(['del', net, c.path]);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await addrs(c)).toEqual([]);
    expect(reserved(tb, net)).toEqual([]);
    expect(cacheFiles(tb)).toEqual([]);
  });

  it('runs a .conflist chain: human output, CHECK with the cached prevResult, DEL in reverse', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const net = `${tb.id}-list`;
    tb.writeConf('20-list.conflist', {
      cniVersion: '1.0.0',
      name: net,
      plugins: [bridgePlugin(tb, { ipMasq: true }), { type: 'portmap', capabilities: { portMappings: true } }],
    });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--ifname', 'net1', '--args', 'IgnoreUnknown=1;K8S_POD_NAME=p']);
    expect(add.exitCode, add.stderr).toBe(0);
    expect(add.stdout).toMatch(new RegExp(`network "${net}" \\(cniVersion 1\\.0\\.0\\)`));
    expect(add.stdout).toMatch(/ips:\n\s+ADDRESS\s+GATEWAY\s+INTERFACE\n\s+10\.\d+\.\d+\.\d+\/24\s+10\.\d+\.\d+\.1\s+net1 \(#2\)/);
    expect(await addrs(c, 'net1')).toHaveLength(1);
    const check = await tb.cnitool(['check', net, c.path, '--ifname', 'net1']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/CHECK passed/);
    // the bridge's CHECK compares the cached prevResult with the kernel: break the kernel side
    await inNs(c, 'ip', ['addr', 'flush', 'dev', 'net1']);
    const broken = await tb.cnitool(['check', net, c.path, '--ifname', 'net1']);
    expect(broken.exitCode).toBe(1);
    expect(broken.stderr).toMatch(/plugin type="bridge" name=".*" failed \(check\)/);
    expect(broken.stderr).toMatch(/CNI error code \d+/);
    const del = await tb.cnitool(['del', net, c.path, '--ifname', 'net1']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(reserved(tb, net)).toEqual([]);
    expect(cacheFiles(tb)).toEqual([]);
    // DEL again: no cache, nothing left, still succeeds
    expect((await tb.cnitool(['del', net, c.path, '--ifname', 'net1'])).exitCode).toBe(0);
  });

  it('passes portMappings to portmap only when it declares the capability', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const caps = JSON.stringify({
      portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
      bandwidth: { ingressRate: 1000, ingressBurst: 1000 },
    });
    const nat = async (): Promise<string> => (await inNs(tb.host, 'iptables', ['-w', '-t', 'nat', '-S'], true)).stdout;
    const declared = `${tb.id}-pm`;
    tb.writeConf('10-pm.conflist', {
      cniVersion: '1.0.0',
      name: declared,
      plugins: [bridgePlugin(tb), { type: 'portmap', capabilities: { portMappings: true } }],
    });
    const undeclared = `${tb.id}-nopm`;
    tb.writeConf('20-nopm.conflist', {
      cniVersion: '1.0.0',
      name: undeclared,
      plugins: [
        bridgePlugin(tb, {
          bridge: `${tb.bridge}b`,
          ipam: {
            type: 'host-local',
            subnet: tb.subnet.replace(/^10\.(\d+)\./, (_m, a) => `10.${(Number(a) + 1) % 250}.`),
            dataDir: tb.dataDir,
          },
        }),
        { type: 'portmap' },
      ],
    });
    const c1 = await tb.container();
    const c2 = await tb.container();
    // capability args via CAP_ARGS, as the reference cnitool reads them
    const a1 = await tb.cnitool(['add', declared, c1.path], { CAP_ARGS: caps });
    expect(a1.exitCode, a1.stderr).toBe(0);
    expect(await nat()).toMatch(/--dport 18080 .*-j (CNI-DN-|DNAT)/);
    const a2 = await tb.cnitool(['add', undeclared, c2.path, '--capability-args', caps.replace('18080', '18081')]);
    expect(a2.exitCode, a2.stderr).toBe(0);
    expect(await nat()).not.toMatch(/18081/);
    // the cache keeps the capability args, as libcni does
    const cached = JSON.parse(readFileSync(path.join(tb.cacheDir, 'results', `${declared}-${containerIdFor(c1.path)}-eth0`), 'utf8')) as {
      capabilityArgs: unknown;
    };
    expect(cached.capabilityArgs).toEqual(JSON.parse(caps));
    expect((await tb.cnitool(['del', declared, c1.path], { CAP_ARGS: caps })).exitCode).toBe(0);
    expect(await nat()).not.toMatch(/18080/);
    expect((await tb.cnitool(['del', undeclared, c2.path])).exitCode).toBe(0);
  });

  it('rolls back a failed ADD (DEL of the chain in reverse) and reports the error', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const net = `${tb.id}-fail`;
    tb.writeConf('10-fail.conflist', {
      cniVersion: '1.0.0',
      name: net,
      plugins: [bridgePlugin(tb), { type: 'portmap', capabilities: { portMappings: true } }],
    });
    const c = await tb.container();
    const bad = JSON.stringify({ portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] });
    const add = await tb.cnitool(['add', net, c.path, '--capability-args', bad]);
    expect(add.exitCode).toBe(1);
    expect(add.stderr).toMatch(/cnitool: add ".*" failed\n\s+plugin type="portmap" name=".*" failed \(add\): .*Invalid host port/);
    expect(add.stderr).toMatch(/CNI error code \d+/);
    expect(reserved(tb, net)).toEqual([]);
    expect(await addrs(c)).toEqual([]);
    expect(cacheFiles(tb)).toEqual([]);
    // --json prints the error in the spec's shape
    const j = await tb.cnitool(['add', net, c.path, '--capability-args', bad, '--json']);
    expect(j.exitCode).toBe(1);
    expect(j.json).toMatchObject({ cniVersion: '1.0.0', code: expect.any(Number), msg: expect.stringMatching(/portmap/) });
    // --no-rollback leaves the bridge's work in place
    const keep = await tb.cnitool(['add', net, c.path, '--capability-args', bad, '--no-rollback']);
    expect(keep.exitCode).toBe(1);
    expect(reserved(tb, net)).toHaveLength(1);
    expect((await tb.cnitool(['del', net, c.path])).exitCode).toBe(0);
    expect(reserved(tb, net)).toEqual([]);
  });

  it('honours disableCheck and needs a cached result for CHECK', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const on = `${tb.id}-chk`;
    const off = `${tb.id}-nochk`;
    tb.writeConf('10-chk.conflist', { cniVersion: '1.0.0', name: on, plugins: [bridgePlugin(tb)] });
    tb.writeConf('20-nochk.conflist', { cniVersion: '1.0.0', name: off, disableCheck: true, plugins: [bridgePlugin(tb)] });
    const c = await tb.container();
    const none = await tb.cnitool(['check', on, c.path]);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toMatch(/no cached result/);
    expect(none.stderr).toMatch(/CNI error code 3 \(unknown container\)/);
    const skipped = await tb.cnitool(['check', off, c.path, '--json']);
    expect(skipped.exitCode).toBe(0);
    expect(skipped.json).toEqual({ check: 'disabled' });
    const old = `${tb.id}-old`;
    tb.writeConf('30-old.conflist', { cniVersion: '0.3.1', name: old, plugins: [bridgePlugin(tb)] });
    const v = await tb.cnitool(['check', old, c.path]);
    expect(v.exitCode).toBe(1);
    expect(v.stderr).toMatch(/does not support the CHECK command/);
  });

  it('gc DELs cached attachments that are not valid (libcni GCNetworkList)', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: REF_BIN });
    const net = `${tb.id}-gc`;
    tb.writeConf('10-gc.conflist', { cniVersion: '1.0.0', name: net, plugins: [bridgePlugin(tb)] });
    const [c1, c2, c3] = [await tb.container(), await tb.container(), await tb.container()];
    for (const c of [c1, c2, c3]) expect((await tb.cnitool(['add', net, c.path])).exitCode).toBe(0);
    expect(reserved(tb, net)).toHaveLength(3);
    // no --valid: every cached attachment is valid, nothing is deleted
    const keepAll = await tb.cnitool(['gc', net]);
    expect(keepAll.exitCode, keepAll.stderr).toBe(0);
    expect(keepAll.stdout).toMatch(/stale attachments deleted: \(none\)/);
    expect(keepAll.stdout).toMatch(/plugin GC needs cniVersion 1\.1\.0/);
    expect(reserved(tb, net)).toHaveLength(3);
    // the netns argument names the attachment that is gone
    const one = await tb.cnitool(['gc', net, c3.path, '--json']);
    expect(one.exitCode, one.stderr).toBe(0);
    expect(one.json?.deleted).toEqual([{ containerID: containerIdFor(c3.path), ifname: 'eth0' }]);
    expect(await addrs(c3)).toEqual([]);
    expect(reserved(tb, net)).toHaveLength(2);
    // --valid lists what stays
    const valid = await tb.cnitool(['gc', net, '--valid', containerIdFor(c1.path)]);
    expect(valid.exitCode, valid.stderr).toBe(0);
    expect(await addrs(c1)).toHaveLength(1);
    expect(await addrs(c2)).toEqual([]);
    expect(reserved(tb, net)).toHaveLength(1);
    expect(cacheFiles(tb)).toEqual([`${net}-${containerIdFor(c1.path)}-eth0`]);
    // --valid '' : nothing is valid (the reference cnitool's gc)
    expect((await tb.cnitool(['gc', net, '--valid', ''])).exitCode).toBe(0);
    expect(reserved(tb, net)).toEqual([]);
    expect(cacheFiles(tb)).toEqual([]);
  });
});

const ours = await oursMissing(['bridge', 'host-local', 'portmap']);
if (ours) console.log(`cnitool with our plugins skipped: ${ours}`);

describe.skipIf(ours)('cnitool with our plugins (dist/bin)', () => {
  it('adds, checks and deletes bridge + host-local + portmap', async () => {
    const tb = await makeTestbed(cleanup, { cniPath: BIN });
    const net = `${tb.id}-ours`;
    tb.writeConf('10-ours.conflist', {
      cniVersion: '1.1.0',
      name: net,
      plugins: [bridgePlugin(tb, { ipMasq: true }), { type: 'portmap', capabilities: { portMappings: true } }],
    });
    const c = await tb.container();
    const caps = JSON.stringify({ portMappings: [{ hostPort: 18090, containerPort: 80, protocol: 'tcp' }] });
    const add = await tb.cnitool(['add', net, c.path, '--json', '--capability-args', caps]);
    expect(add.exitCode, add.stderr + add.stdout).toBe(0);
    const ips = (add.json?.ips as Array<{ address: string }>).map((i) => i.address);
    expect(await addrs(c)).toEqual(ips);
    const check = await tb.cnitool(['check', net, c.path]);
    expect(check.exitCode, check.stderr).toBe(0);
    const status = await tb.cnitool(['status', net]);
    expect(status.exitCode, status.stderr).toBe(0);
    // gc: a second attachment that is not valid any more is DELed from the cache, then every
    // plugin runs GC (1.1.0) with the valid list
    const c2 = await tb.container();
    expect((await tb.cnitool(['add', net, c2.path])).exitCode).toBe(0);
    const gc = await tb.cnitool(['gc', net, '--valid', containerIdFor(c.path), '--json']);
    expect(gc.exitCode, gc.stderr + gc.stdout).toBe(0);
    expect(gc.json).toMatchObject({
      deleted: [{ containerID: containerIdFor(c2.path), ifname: 'eth0' }],
      collected: ['bridge', 'portmap'],
    });
    expect(await addrs(c2)).toEqual([]);
    expect(await addrs(c)).toEqual(ips);
    expect(reserved(tb, net)).toEqual([ips[0].split('/')[0]]);
    const ruleset = async (): Promise<string> => (await inNs(tb.host, 'nft', ['list', 'ruleset'])).stdout;
    expect(await ruleset()).toContain(`saddr ${ips[0].split('/')[0]} `);
    expect(await ruleset()).toMatch(/\b18090\b/);
    const del = await tb.cnitool(['del', net, c.path]);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await addrs(c)).toEqual([]);
    expect(cacheFiles(tb)).toEqual([]);
    // every plugin released: host-local's reservation, bridge's masquerade, portmap's mapping
    expect(reserved(tb, net)).toEqual([]);
    expect(await ruleset()).not.toContain(`saddr ${ips[0].split('/')[0]} `);
    expect(await ruleset()).not.toMatch(/\b18090\b/);
  });
});

describe('cnitool protocol details (recorder plugin)', () => {
  it('GC sends both attachment keys to every plugin and honours disableGC', async () => {
    const tb = await makeTestbed(cleanup);
    const rec = installRecorder(tb);
    tb.cniPath = rec.dir;
    const net = `${tb.id}-rgc`;
    tb.writeConf('10-rgc.conflist', {
      cniVersion: '1.1.0',
      name: net,
      plugins: [{ type: 'recorder', capabilities: { portMappings: true } }, { type: 'recorder' }],
    });
    const c = await tb.container();
    const add = await tb.cnitool([
      'add',
      net,
      c.path,
      '--capability-args',
      '{"portMappings":[{"hostPort":1,"containerPort":2,"protocol":"tcp"}]}',
      '--json',
    ]);
    expect(add.exitCode, add.stderr).toBe(0);
    const adds = rec.calls('ADD');
    expect(adds).toHaveLength(2);
    expect(adds[0]).toMatchObject({ name: net, cniVersion: '1.1.0', runtimeConfig: { portMappings: [{ hostPort: 1 }] } });
    expect(adds[0].prevResult).toBeUndefined();
    expect(adds[1].runtimeConfig).toBeUndefined();
    expect(adds[1].prevResult).toEqual({ cniVersion: '1.1.0' });
    const gc = await tb.cnitool(['gc', net, '--valid', 'other/eth1']);
    expect(gc.exitCode, gc.stderr).toBe(0);
    // the cached attachment was not valid: DELed first (prevResult from the cache), then GC
    expect(rec.calls('DEL')).toHaveLength(2);
    expect(rec.calls('DEL')[0].prevResult).toEqual({ cniVersion: '1.1.0' });
    const gcs = rec.calls('GC');
    expect(gcs).toHaveLength(2);
    for (const g of gcs) {
      expect(g['cni.dev/valid-attachments']).toEqual([{ containerID: 'other', ifname: 'eth1' }]);
      expect(g['cni.dev/attachments']).toEqual([{ containerID: 'other', ifname: 'eth1' }]);
    }
    tb.writeConf('10-rgc.conflist', { cniVersion: '1.1.0', name: net, disableGC: true, plugins: [{ type: 'recorder' }] });
    const off = await tb.cnitool(['gc', net]);
    expect(off.exitCode).toBe(0);
    expect(off.stdout).toMatch(/gc skipped \(disableGC is set\)/);
    expect(rec.calls('GC')).toHaveLength(2);
  });

  it('reads a cache record written by libcni (Go) and a legacy bare result', async () => {
    const tb = await makeTestbed(cleanup);
    const rec = installRecorder(tb);
    tb.cniPath = rec.dir;
    const net = `${tb.id}-go`;
    const listText = JSON.stringify({ cniVersion: '1.0.0', name: net, plugins: [{ type: 'recorder' }] });
    tb.writeConf('10-go.conflist', listText);
    mkdirSync(path.join(tb.cacheDir, 'results'), { recursive: true });
    // exactly what libcni's cacheAdd marshals (struct field order, []byte as base64)
    const goResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: '/run/netns/gone' }],
      ips: [{ interface: 0, address: '10.9.9.9/24' }],
      dns: {},
    };
    writeFileSync(
      path.join(tb.cacheDir, 'results', `${net}-podmanid-eth0`),
      `{"kind":"cniCacheV1","containerId":"podmanid","config":"${Buffer.from(listText).toString('base64')}","ifName":"eth0","networkName":"${net}","netns":"/run/netns/gone","cniArgs":[["IgnoreUnknown","1"]],"capabilityArgs":{"portMappings":[]},"result":${JSON.stringify(goResult)}}`,
    );
    const del = await tb.cnitool(['del', net, '--container-id', 'podmanid']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(rec.calls('DEL')[0].prevResult).toEqual(goResult);
    expect(cacheFiles(tb)).toEqual([]);
    // pre-cniCacheV1 files hold the bare result; CHECK converts it to the list's version
    writeFileSync(
      path.join(tb.cacheDir, 'results', `${net}-old-eth0`),
      JSON.stringify({ cniVersion: '0.4.0', ips: [{ version: '4', address: '10.9.9.8/24' }], dns: {} }),
    );
    const check = await tb.cnitool(['check', net, '/run/netns/unused', '--container-id', 'old']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(rec.calls('CHECK')[0].prevResult).toEqual({ cniVersion: '1.0.0', ips: [{ address: '10.9.9.8/24' }], dns: {} });
  });

  it('STATUS asks every plugin and reports the one that is not ready', async () => {
    const tb = await makeTestbed(cleanup);
    const rec = installRecorder(tb);
    tb.cniPath = `${rec.dir}:${BIN}`;
    const net = `${tb.id}-st`;
    tb.writeConf('10-st.conflist', { cniVersion: '1.1.0', name: net, plugins: [{ type: 'recorder' }, { type: 'recorder' }] });
    const ok = await tb.cnitool(['status', net]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/: ready/);
    expect(rec.calls('STATUS')).toHaveLength(2);
    rec.fail(true);
    const bad = await tb.cnitool(['status', net, '--json']);
    expect(bad.exitCode).toBe(1);
    expect(bad.json?.plugins).toEqual([
      { type: 'recorder', ok: false, error: { cniVersion: '1.1.0', code: 50, msg: 'recorder is not available', details: 'test switch' } },
      { type: 'recorder', ok: false, error: { cniVersion: '1.1.0', code: 50, msg: 'recorder is not available', details: 'test switch' } },
    ]);
    const text = await tb.cnitool(['status', net]);
    expect(text.stdout).toMatch(/NOT ready\n\s+PLUGIN\s+STATUS\n\s+recorder\s+code 50 \(plugin not available\)/);
  });

  it('reports usage errors and unknown networks readably', async () => {
    const tb = await makeTestbed(cleanup);
    const u = await tb.cnitool(['add']);
    expect(u.exitCode).toBe(2);
    expect(u.stderr).toMatch(/network name is required/);
    const n = await tb.cnitool(['del', 'nosuchnet', '/run/netns/none', '--json']);
    expect(n.exitCode).toBe(1);
    expect(n.json).toMatchObject({ code: 7, msg: expect.stringMatching(/no net configurations found/) });
    const h = await execa(path.join(BIN, 'cnitool'), ['--help']);
    expect(h.stdout).toMatch(/usage: cnitool <command>/);
  });
});
