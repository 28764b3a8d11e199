/**
 * ptp against the real kernel and against the Go reference: every "host" is a test netns
 * (the plugin runs inside it through nsenter), every container another; traffic only between them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { planPtp } from '../plugins/ptp/plan.ts';

const PREFIX = 'hr';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

interface Setup {
  host: TestNetns;
  conf: Record<string, unknown>;
  dataDir: string;
  v4: string;
  v6: string;
}

const octet = (): number => 1 + (randomBytes(1)[0] % 250);

async function setup(extra: Record<string, unknown> = {}, dual = false): Promise<Setup> {
  const host = await makeNetns(cleanup, PREFIX);
  // no DAD in the routing "host" (see DEVELOPING: forwarded IPv6 waits for DAD otherwise)
  await inNs(host, 'sysctl', ['-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  const dataDir = `/tmp/${uid(PREFIX)}`;
  cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
  const v4 = `10.${octet()}.${octet()}.`;
  const v6 = `fd${randomBytes(1).toString('hex')}:${(0x1000 + (randomBytes(2).readUInt16BE(0) % 0xe000)).toString(16)}::`;
  const ranges: unknown[] = [[{ subnet: `${v4}0/24` }]];
  if (dual) ranges.push([{ subnet: `${v6}/64` }]);
  const routes: unknown[] = [{ dst: '0.0.0.0/0' }];
  if (dual) routes.push({ dst: '::/0' });
  const conf = {
    cniVersion: '1.0.0',
    name: uid(PREFIX),
    type: 'ptp',
    mtu: 1400,
    nftTable: uid(PREFIX),
    ipam: { type: 'host-local', ranges, routes, dataDir },
    ...extra,
  };
  return { host, conf, dataDir, v4, v6 };
}

async function call(
  s: Setup,
  command: string,
  ns: TestNetns | undefined,
  id: string,
  opts: { prevResult?: unknown; ref?: boolean; conf?: Record<string, unknown> } = {},
): Promise<PluginRun> {
  const config = { ...(opts.conf ?? s.conf), ...(opts.prevResult ? { prevResult: opts.prevResult } : {}) };
  return runPlugin('ptp', {
    command,
    containerId: id,
    netns: ns?.path ?? '',
    ifname: 'eth0',
    config,
    hostNetns: s.host.path,
    ...(opts.ref ? { binDir: REF_BIN, path: REF_BIN } : {}),
  });
}

const ok = (r: PluginRun): Record<string, unknown> => {
  expect(r.stderr + r.stdout, `exit ${r.exitCode}`).not.toMatch(/"code"/);
  expect(r.exitCode).toBe(0);
  return r.json!;
};

/** A container netns attached through `ref ? reference : ours`; its DEL is registered. */
async function attach(s: Setup, ref = false): Promise<{ ns: TestNetns; id: string; res: Record<string, unknown> }> {
  const ns = await makeNetns(cleanup, PREFIX);
  const id = uid(PREFIX);
  const res = ok(await call(s, 'ADD', ns, id, { ref }));
  cleanup.add(() => call(s, 'DEL', ns, id, { prevResult: res, ref }));
  return { ns, id, res };
}

/** Routes and addresses as text, with interface names and MACs normalised. */
async function kernelView(s: Setup, ns: TestNetns, hostVeth: string): Promise<{ cont: string; host: string }> {
  const norm = (t: string): string =>
    t
      .replaceAll(hostVeth, 'HOSTVETH')
      .replace(/ proto kernel| metric \d+| pref medium| linkdown/g, '')
      .trim();
  const cont = [
    (await inNs(ns, 'ip', ['-4', 'route'])).stdout,
    (await inNs(ns, 'ip', ['-6', 'route'])).stdout
      .split('\n')
      .filter((l) => !l.startsWith('fe80') && !l.startsWith('multicast'))
      .join('\n'),
    (await inNs(ns, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'])).stdout
      .replace(/^\d+: /gm, '')
      .replace(/\\.*$/gm, '')
      .replace(/ noprefixroute/g, '')
      .replace(/ brd \S+/g, ''),
    (await inNs(ns, 'ip', ['-o', 'link', 'show', 'dev', 'eth0'])).stdout.match(/mtu \d+/)?.[0] ?? '',
  ].join('\n');
  const host = [
    (await inNs(s.host, 'ip', ['-4', 'route'])).stdout,
    (await inNs(s.host, 'ip', ['-6', 'route'])).stdout
      .split('\n')
      .filter((l) => !l.startsWith('fe80') && !l.startsWith('multicast'))
      .join('\n'),
    (await inNs(s.host, 'ip', ['-o', 'addr', 'show', 'dev', hostVeth, 'scope', 'global'])).stdout
      .replace(/^\d+: /gm, '')
      .replace(/\\.*$/gm, ''),
    (await inNs(s.host, 'ip', ['-o', 'link', 'show', 'dev', hostVeth])).stdout.match(/mtu \d+/)?.[0] ?? '',
    (await inNs(s.host, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout,
  ].join('\n');
  return { cont: norm(cont), host: norm(host) };
}

const hostVethOf = (res: Record<string, unknown>): string => (res.interfaces as Array<{ name: string }>)[0].name;
const shape = (res: Record<string, unknown>): unknown =>
  JSON.parse(
    JSON.stringify(res)
      .replace(/"mac":"[0-9a-f:]+"/g, '"mac":"M"')
      .replaceAll(hostVethOf(res), 'HOSTVETH')
      .replace(/"sandbox":"[^"]+"/g, '"sandbox":"NS"'),
  );

describe('ptp: plan (pure)', () => {
  it('puts the gateway /32 on the host, routes the subnet via the gateway, refuses a result without gateway', () => {
    const p = planPtp({
      ips: [
        { address: '10.9.8.7/24', gateway: '10.9.8.1' },
        { address: 'fd00::5/64', gateway: 'fd00::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }],
    });
    expect(p.ips.map((i) => i.interface)).toEqual([1, 1]);
    expect(p.hostAddrs.map((a) => a.cidr)).toEqual(['10.9.8.1/32', 'fd00::1/128']);
    expect(p.hostRoutes.map((r) => [r.dst, r.scope])).toEqual([
      ['10.9.8.7/32', 254],
      ['fd00::5/128', 254],
    ]);
    expect(p.containerRoutes.slice(0, 2)).toEqual([
      { dst: '10.9.8.1/32', scope: 253, src: '10.9.8.7' },
      { dst: '10.9.8.0/24', gw: '10.9.8.1', src: '10.9.8.7' },
    ]);
    expect(p.containerRoutes.at(-1)).toMatchObject({ dst: '0.0.0.0/0', gw: '10.9.8.1' });
    expect(p.containerAddrs[0]).toMatchObject({ cidr: '10.9.8.7/24', noprefixroute: true });
    expect(() => planPtp({ ips: [{ address: '10.9.8.7/24' }] })).toThrow(/without a gateway/);
    expect(() => planPtp({ ips: [] })).toThrow(/missing IP config/);
  });
});

describe('ptp: kernel', () => {
  it('ADD connects two containers and the host; same result shape and kernel state as the reference; DEL removes everything', async () => {
    const s = await setup();
    const a = await attach(s);
    const b = await attach(s);
    const bIp = (b.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const aIp = (a.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    expect((await inNs(a.ns, 'ping', ['-c1', '-W2', bIp], true)).exitCode).toBe(0);
    expect((await inNs(s.host, 'ping', ['-c1', '-W2', aIp], true)).exitCode).toBe(0);
    // the reference, same config, in a host netns of its own
    const r = await setup();
    r.conf = {
      ...s.conf,
      name: r.conf.name,
      ipam: { ...(s.conf.ipam as object), ranges: (r.conf.ipam as { ranges: unknown }).ranges, dataDir: r.dataDir },
    };
    const ra = await attach(r, true);
    const rb = await attach(r, true);
    expect(shape(a.res)).toEqual(JSON.parse(JSON.stringify(shape(ra.res)).replaceAll(r.v4, s.v4)));
    const [oursView, refView] = [await kernelView(s, b.ns, hostVethOf(b.res)), await kernelView(r, rb.ns, hostVethOf(rb.res))];
    const sub = (t: string): string => t.replaceAll(r.v4, s.v4).replaceAll(hostVethOf(ra.res), hostVethOf(a.res));
    expect(oursView.cont).toEqual(sub(refView.cont));
    expect(oursView.host).toEqual(sub(refView.host));
    // DEL: links, host routes and reservations go; repeated and netns-less DEL succeed
    ok(await call(s, 'DEL', a.ns, a.id, { prevResult: a.res }));
    ok(await call(s, 'DEL', b.ns, b.id, { prevResult: b.res }));
    ok(await call(s, 'DEL', b.ns, b.id, { prevResult: b.res }));
    ok(await call(s, 'DEL', undefined, b.id));
    expect((await inNs(s.host, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
    expect((await inNs(s.host, 'ip', ['-4', 'route'])).stdout.trim()).toBe('');
    expect((await inNs(a.ns, 'ip', ['-o', 'link', 'show', 'eth0'], true)).exitCode).not.toBe(0);
    const dir = `${s.dataDir}/${s.conf.name as string}`;
    expect(existsSync(dir) ? readdirSync(dir).filter((f) => /^\d/.test(f)) : []).toEqual([]);
  });

  it('dual stack with ipMasq: IPv6 connectivity, masquerade rules owned by the attachment, removed by DEL', async () => {
    const s = await setup({ ipMasq: true }, true);
    const a = await attach(s);
    const b = await attach(s);
    const b6 = (b.res.ips as Array<{ address: string }>).find((i) => i.address.includes(':'))!.address.split('/')[0];
    expect((await inNs(a.ns, 'ping', ['-6', '-c1', '-W2', b6], true)).exitCode).toBe(0);
    const rules = (await inNs(s.host, 'nft', ['list', 'table', 'inet', s.conf.nftTable as string])).stdout;
    for (const ip of [...(a.res.ips as Array<{ address: string }>), ...(b.res.ips as Array<{ address: string }>)])
      expect(rules).toContain(ip.address.split('/')[0]);
    ok(await call(s, 'DEL', a.ns, a.id, { prevResult: a.res }));
    const after = (await inNs(s.host, 'nft', ['list', 'table', 'inet', s.conf.nftTable as string], true)).stdout;
    for (const ip of a.res.ips as Array<{ address: string }>) expect(after).not.toContain(` ${ip.address.split('/')[0]} `);
    for (const ip of b.res.ips as Array<{ address: string }>) expect(after).toContain(ip.address.split('/')[0]);
  });

  it('a repeated ADD of a live attachment fails with 102 and leaves the attachment, its reservation and its rules alone', async () => {
    const s = await setup({ ipMasq: true });
    const a = await attach(s);
    const ip = (a.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const again = await call(s, 'ADD', a.ns, a.id);
    expect(again.json).toMatchObject({ code: 102 });
    expect(existsSync(`${s.dataDir}/${s.conf.name as string}/${ip}`)).toBe(true);
    expect((await inNs(s.host, 'nft', ['list', 'table', 'inet', s.conf.nftTable as string])).stdout).toContain(` ${ip} `);
    ok(await call(s, 'CHECK', a.ns, a.id, { prevResult: a.res }));
    expect((await inNs(s.host, 'ping', ['-c1', '-W2', ip], true)).exitCode).toBe(0);
  });

  it('GC removes the masquerade rules and reservations of attachments not listed, keeps the listed one; STATUS answers', async () => {
    const s = await setup({ ipMasq: true, cniVersion: '1.1.0' });
    s.conf.cniVersion = '1.1.0';
    const a = await attach(s);
    const b = await attach(s);
    const ipA = (a.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const ipB = (b.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const gc = await runPlugin('ptp', {
      command: 'GC',
      config: { ...s.conf, 'cni.dev/valid-attachments': [{ containerID: a.id, ifname: 'eth0' }] },
      hostNetns: s.host.path,
    });
    expect(gc.exitCode, gc.stdout + gc.stderr).toBe(0);
    const rules = (await inNs(s.host, 'nft', ['list', 'table', 'inet', s.conf.nftTable as string])).stdout;
    expect(rules).toContain(ipA);
    expect(rules).not.toContain(` ${ipB} `);
    const dir = `${s.dataDir}/${s.conf.name as string}`;
    expect(existsSync(`${dir}/${ipA}`)).toBe(true);
    expect(existsSync(`${dir}/${ipB}`)).toBe(false);
    const st = await runPlugin('ptp', { command: 'STATUS', config: s.conf, hostNetns: s.host.path });
    expect(st.exitCode, st.stdout + st.stderr).toBe(0);
  });

  it('CHECK passes on a fresh attachment and detects drift (host route, container route, gateway address, masquerade)', async () => {
    const s = await setup({ ipMasq: true });
    const a = await attach(s);
    ok(await call(s, 'CHECK', a.ns, a.id, { prevResult: a.res }));
    const veth = hostVethOf(a.res);
    const ip = (a.res.ips as Array<{ address: string }>)[0].address.split('/')[0];
    const gw = (a.res.ips as Array<{ gateway: string }>)[0].gateway;
    const drift = async (breakIt: () => Promise<unknown>, fixIt: () => Promise<unknown>, msg: RegExp): Promise<void> => {
      await breakIt();
      const r = await call(s, 'CHECK', a.ns, a.id, { prevResult: a.res });
      expect(r.exitCode).not.toBe(0);
      expect(r.json?.code).toBe(105);
      expect(String(r.json?.msg)).toMatch(msg);
      await fixIt();
      ok(await call(s, 'CHECK', a.ns, a.id, { prevResult: a.res }));
    };
    await drift(
      () => inNs(s.host, 'ip', ['route', 'del', `${ip}/32`, 'dev', veth]),
      () => inNs(s.host, 'ip', ['route', 'add', `${ip}/32`, 'dev', veth, 'scope', 'host']),
      /host route/,
    );
    await drift(
      () => inNs(a.ns, 'ip', ['route', 'del', 'default']),
      () => inNs(a.ns, 'ip', ['route', 'add', 'default', 'via', gw, 'dev', 'eth0']),
      /route 0\.0\.0\.0\/0/,
    );
    await drift(
      () => inNs(s.host, 'ip', ['addr', 'del', `${gw}/32`, 'dev', veth]),
      async () => {
        await inNs(s.host, 'ip', ['addr', 'add', `${gw}/32`, 'dev', veth]);
        await inNs(s.host, 'ip', ['route', 'replace', `${ip}/32`, 'dev', veth, 'scope', 'host']);
      },
      /gateway address/,
    );
    await drift(
      () => inNs(s.host, 'nft', ['flush', 'table', 'inet', s.conf.nftTable as string]),
      () =>
        inNs(s.host, 'nft', ['delete', 'table', 'inet', s.conf.nftTable as string])
          .then(() => call(s, 'DEL', a.ns, a.id, { prevResult: a.res }))
          .then(async () => {
            a.res = ok(await call(s, 'ADD', a.ns, a.id));
          }),
      /masquerade/,
    );
  });

  it('interop: the reference CHECKs and DELs our attachment, we CHECK and DEL the reference one, the reference tuning chains after ours', async () => {
    const s = await setup();
    const a = await attach(s);
    ok(await call(s, 'CHECK', a.ns, a.id, { prevResult: a.res, ref: true }));
    // backups in the test's own dir (removed with it), not the default /run/cni/tuning
    const tuning = {
      ...s.conf,
      type: 'tuning',
      sysctl: { 'net.ipv4.conf.eth0.rp_filter': '2' },
      dataDir: `${s.dataDir}/tuning`,
      prevResult: a.res,
    };
    const t = await runPlugin('tuning', {
      command: 'ADD',
      containerId: a.id,
      netns: a.ns.path,
      ifname: 'eth0',
      config: tuning,
      binDir: REF_BIN,
      path: REF_BIN,
      hostNetns: s.host.path,
    });
    expect(t.exitCode, t.stdout + t.stderr).toBe(0);
    expect((await inNs(a.ns, 'sysctl', ['-n', 'net.ipv4.conf.eth0.rp_filter'])).stdout.trim()).toBe('2');
    const tDel = await runPlugin('tuning', {
      command: 'DEL',
      containerId: a.id,
      netns: a.ns.path,
      ifname: 'eth0',
      config: tuning,
      binDir: REF_BIN,
      path: REF_BIN,
      hostNetns: s.host.path,
    });
    expect(tDel.exitCode).toBe(0);
    ok(await call(s, 'DEL', a.ns, a.id, { prevResult: a.res, ref: true }));
    expect((await inNs(s.host, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
    const r = await attach(s, true);
    ok(await call(s, 'CHECK', r.ns, r.id, { prevResult: r.res }));
    ok(await call(s, 'DEL', r.ns, r.id, { prevResult: r.res }));
    expect((await inNs(s.host, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
  });
});
