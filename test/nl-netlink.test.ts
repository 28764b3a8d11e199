/**
 * The in-process kernel doors (shared/kernel/netlink/) under Bun, against the real kernel:
 * setns keeps to the calling thread and comes back; a socket opened inside a netns stays
 * there; flock(2) on our fd excludes the flock(1) CLI (what the Go reference's flock is to
 * us) both ways; bridge + host-local through netlink make the same kernel state and the same
 * result as through the ip/nsenter/flock processes (CNI_TS_NETLINK=0), without those processes.
 * Every resource carries the prefix "nl" and is removed afterwards.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, inNs, makeNetns, sh } from './helpers/netns.ts';
import { BIN, ROOT, runPlugin } from './helpers/run.ts';

const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const hex = (n: number): string => randomBytes(n).toString('hex');
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());
const scripts: string[] = [];
afterAll(() => scripts.forEach((f) => rmSync(f, { force: true })));

/** Run a TypeScript snippet with the pinned Bun (what the shipped executable runs on); its JSON output. */
async function bun(body: string, env: Record<string, string> = {}): Promise<{ out: Record<string, unknown>; stderr: string }> {
  const file = `/tmp/nl-script-${hex(4)}.ts`;
  scripts.push(file);
  writeFileSync(file, body.replaceAll('@/', `${ROOT}/`));
  const r = await execa(BUN, [file], { reject: false, env: { PATH: process.env.PATH ?? '', ...env }, extendEnv: false });
  expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
  const last = String(r.stdout).trim().split('\n').at(-1) ?? '{}';
  return { out: JSON.parse(last) as Record<string, unknown>, stderr: String(r.stderr) };
}

describe('setns and the calling thread', () => {
  it('only the JS thread enters the netns, for the FFI bracket only, under JIT and thread-pool load; sockets and sysctl files opened there stay there', async () => {
    const ns = await makeNetns(cleanup, 'nl');
    const link = `nlk${hex(3)}`;
    await inNs(ns, 'ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`]);
    const { out } = await bun(`
      import { readdirSync, readlinkSync, statSync } from 'node:fs';
      import { inNetnsSync, libc, RtnlSocket, writeSysctlInNetns } from '@/shared/kernel/netlink/socket.ts';
      import * as C from '@/shared/kernel/netlink/constants.ts';
      import { ifinfomsg } from '@/shared/kernel/netlink/codec.ts';
      import { decodeLink } from '@/shared/kernel/netlink/decode.ts';
      const P = ${JSON.stringify(ns.path)};
      const nsOf = (task) => { try { return readlinkSync(task); } catch { return 'gone'; } };
      const tasks = () => readdirSync('/proc/self/task').map((t) => nsOf('/proc/self/task/' + t + '/ns/net'));
      const before = readlinkSync('/proc/thread-self/ns/net');
      const target = \`net:[\${statSync(P).ino}]\`; // a bind mount of the nsfs inode
      // where the thread is inside the bracket, seen through an fd opened there (no JavaScript inside)
      const l = libc();
      const self = new TextEncoder().encode('/proc/thread-self/ns/net\\0');
      const fd = inNetnsSync(P, () => l.open(self, 0, 0));
      const inside = readlinkSync('/proc/self/fd/' + fd);
      l.close(fd);
      // load on the other threads meanwhile: timers, the fs thread pool, the JIT (a hot function), GC
      let ticks = 0; const iv = setInterval(() => ticks++, 1);
      const busy = [];
      const hot = (n) => { let x = 0; for (let i = 0; i < n; i++) x = (x * 31 + i) | 0; return x; };
      const names = (s) => s.request({ type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: ifinfomsg() }, 'dump').filter((m) => m.type === C.RTM_NEWLINK).map((m) => decodeLink(m).info.ifname);
      let inNs = [];
      for (let i = 0; i < 300; i++) {
        busy.push(Bun.file('/proc/self/status').text());
        hot(20000 + i);
        const s = RtnlSocket.open(P);
        if (i === 299) inNs = names(s);
        s.close();
        writeSysctlInNetns([['net/ipv6/conf/${link}/accept_dad', String(i % 2)]], P);
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 0));
      }
      await Promise.all(busy);
      clearInterval(iv);
      const all = tasks();
      const after = readlinkSync('/proc/thread-self/ns/net');
      let leaked = 'no';
      try { writeSysctlInNetns([['net/ipv6/conf/${link}p/accept_dad', '0']], '/proc/self/ns/net'); leaked = 'host has the link'; } catch (e) { leaked = e.message; }
      console.log(JSON.stringify({ before, target, inside, threads: all.length, strays: all.filter((n) => n !== before).length, after, inNs, hostHasLink: names(RtnlSocket.open()).includes(${JSON.stringify(link)}), leaked }));
    `);
    expect(out.target).not.toBe(out.before);
    expect(out.inside).toBe(out.target);
    expect(out.threads as number).toBeGreaterThan(1); // Bun is multi-threaded...
    expect(out.strays).toBe(0); // ...and no thread but ours ever stayed in the container's netns
    expect(out.after).toBe(out.before);
    expect(out.inNs).toEqual(expect.arrayContaining(['lo', link, `${link}p`]));
    expect(out.hostHasLink).toBe(false);
    expect(out.leaked).toMatch(/No such file or directory/); // the sysctl of a netns-only link is not on the host
    // the last write (i = 299: 1) landed in the netns
    expect((await inNs(ns, 'sysctl', ['-n', `net.ipv6.conf.${link}.accept_dad`])).stdout.trim()).toBe('1');
  });

  it('a netns path that is not a netns: code 4 from setns/open, and the thread stays home', async () => {
    const { out } = await bun(`
      import { readlinkSync } from 'node:fs';
      import { inNetnsSync } from '@/shared/kernel/netlink/socket.ts';
      const before = readlinkSync('/proc/thread-self/ns/net');
      const errs = [];
      for (const p of ['/proc/self/status', '/nonexistent/nl-ns']) {
        try { inNetnsSync(p, () => 1); } catch (e) { errs.push([e.code, e.message]); }
      }
      console.log(JSON.stringify({ errs, same: readlinkSync('/proc/thread-self/ns/net') === before }));
    `);
    expect(out.same).toBe(true);
    const errs = out.errs as Array<[number, string]>;
    expect(errs).toHaveLength(2);
    expect(errs[0][0]).toBe(4);
    expect(errs[0][1]).toMatch(/setns .*Invalid argument/);
    expect(errs[1][1]).toMatch(/No such file or directory/);
  });
});

describe('flock(2) in-process (Bun) and the flock(1) CLI on the same file', () => {
  it('our lock excludes flock(1) while held; a lock held by flock(1) is waited for in-process, then taken', async () => {
    const file = `/tmp/nl-lock-${hex(4)}`;
    cleanup.add(async () => rmSync(file, { force: true }));
    const { out, stderr } = await bun(
      `
      import { execFileSync, spawn } from 'node:child_process';
      import { existsSync, rmSync } from 'node:fs';
      import { withFlock } from '@/shared/flock.ts';
      const f = ${JSON.stringify(file)};
      const tryCli = () => { try { execFileSync('flock', ['-n', f, 'true']); return 'got'; } catch { return 'busy'; } };
      const whileOurs = await withFlock(f, async () => tryCli());
      const afterOurs = tryCli();
      // the CLI holds it for 300 ms; we ask meanwhile and must get it only after
      // (the marker is written while the CLI's child still holds the lock: it is released when that exits)
      const marker = f + '.done';
      const holder = spawn('flock', [f, 'sh', '-c', 'echo held; sleep 0.3; touch ' + marker]);
      await new Promise((r) => holder.stdout.once('data', r));
      const orderOk = await withFlock(f, async () => existsSync(marker));
      rmSync(marker, { force: true });
      console.log(JSON.stringify({ whileOurs, afterOurs, orderOk }));
    `,
      { CNI_TS_TRACE: '1' },
    );
    expect(out).toEqual({ whileOurs: 'busy', afterOurs: 'got', orderOk: true });
    expect(stderr).toContain('taken in-process'); // the free lock: no process
    // the held one: waited for in-process too (flock(2) LOCK_NB tried again with a backoff), no flock(1)
    expect(stderr).toMatch(/flock .*: held elsewhere, waiting in-process/);
    expect(stderr).toMatch(/flock .*: taken in-process after \d+ tries/);
    expect(stderr).not.toMatch(/flock .*: spawned/);
  });

  it('waiters in-process exclude each other (one holder at a time) and time out with 11 and the timeout in the message', async () => {
    const file = `/tmp/nl-lock-${hex(4)}`;
    cleanup.add(async () => rmSync(file, { force: true }));
    const { out, stderr } = await bun(
      `
      import { spawn } from 'node:child_process';
      import { withFlock } from '@/shared/flock.ts';
      const f = ${JSON.stringify(file)};
      // flock(2) locks belong to the open file description: each withFlock opens its own, so
      // waiters in one process exclude each other like waiters in different processes
      let inside = 0, most = 0, done = 0;
      await Promise.all(Array.from({ length: 6 }, () => withFlock(f, async () => {
        most = Math.max(most, ++inside);
        await new Promise((r) => setTimeout(r, 15));
        inside--; done++;
      })));
      // held until killed (the whole group: flock and its shell), not for 3 s that a stalled
      // process could outwait
      const holder = spawn('flock', [f, 'sh', '-c', 'echo held; sleep 60'], { detached: true });
      await new Promise((r) => holder.stdout.once('data', r));
      const t0 = performance.now();
      let err;
      try { await withFlock(f, async () => 'got', 1); } catch (e) { err = { code: e.code, msg: e.message, details: e.details }; }
      const waited = performance.now() - t0;
      process.kill(-holder.pid, 'SIGKILL');
      holder.stdout.destroy();
      console.log(JSON.stringify({ most, done, err, waited }));
    `,
      { CNI_TS_TRACE: '1' },
    );
    expect(out.most).toBe(1);
    expect(out.done).toBe(6);
    expect(out.err).toEqual({ code: 11, msg: expect.stringContaining('could not lock'), details: 'timed out after 1s' });
    expect(out.waited).toBeGreaterThanOrEqual(950);
    expect(stderr).not.toMatch(/flock .*: spawned/);
  });
});

/** Tools a plugin call started, from its CNI_TS_TRACE timeline. */
const spawnedTools = (trace: string): string[] =>
  [...trace.matchAll(/\] spawned (\S+)/g)]
    .map((m) => path.basename(m[1]))
    .concat([...trace.matchAll(/flock \S+: spawned/g)].map(() => 'flock'));

describe('bridge + host-local: netlink and the process fallback make the same thing', () => {
  async function attach(
    netlink: boolean,
    containerId: string,
  ): Promise<{
    result: Record<string, unknown>;
    state: string;
    tools: { add: string[]; check: string[]; del: string[] };
    linkGone: boolean;
  }> {
    const id = hex(3);
    const br = `nlbr${id}`;
    const dataDir = `/var/lib/cni/nl-${id}`;
    cleanup.add(async () => {
      await deleteLink(br);
      rmSync(dataDir, { recursive: true, force: true });
    });
    const ns = await makeNetns(cleanup, 'nl');
    // the same subnets both times: the results must agree byte for byte but for random MACs
    const config = {
      cniVersion: '1.1.0',
      name: `nlnet-${id}`,
      type: 'bridge',
      bridge: br,
      isGateway: true,
      mtu: 1400,
      hairpinMode: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.213.7.0/24' }], [{ subnet: 'fd0e:213:7::/64' }]],
        routes: [{ dst: '198.51.100.0/24' }],
        dataDir,
      },
    };
    const env = { CNI_TS_TRACE: '1', CNI_TS_NETLINK: netlink ? '1' : '0' };
    const args = { containerId, netns: ns.path, ifname: 'eth0', env };
    const add = await runPlugin('bridge', { ...args, command: 'ADD', config });
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    const result = add.json!;
    const check = await runPlugin('bridge', { ...args, command: 'CHECK', config: { ...config, prevResult: result } });
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    const norm = (s: string): string =>
      s
        .replaceAll(br, 'BR')
        .replaceAll(ns.path, 'NETNS')
        .replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/g, 'MAC')
        .replace(/fe80::[0-9a-f:]+/g, 'LL')
        .replace(/"ifindex":\d+|"link_index":\d+|"link_netnsid":\d+/g, 'IDX');
    const inside = await inNs(ns, 'ip', ['-details', '-json', 'addr', 'show', 'dev', 'eth0']);
    const routes4 = await inNs(ns, 'ip', ['-json', 'route', 'show', 'table', 'all']);
    const routes6 = await inNs(ns, 'ip', ['-6', '-json', 'route', 'show']);
    const dad = await inNs(ns, 'sysctl', ['-n', 'net.ipv6.conf.eth0.accept_dad']);
    const host = (await sh('ip', ['-details', '-json', 'link', 'show', 'master', br])).stdout.replace(/"ifname":"veth[0-9a-f]+"/, 'VETH');
    const bridge = (await sh('ip', ['-json', 'addr', 'show', 'dev', br])).stdout;
    const state = norm([inside.stdout, routes4.stdout, routes6.stdout, dad.stdout, host, bridge].join('\n'))
      .replace(/"(valid|preferred)_life_time":\d+/g, 'LT')
      .replace(/_timer":[\d.]+/g, '_timer":T')
      .replace(/"(bridge|root)_id":"[^"]+"/g, '"$1_id":"ID"')
      // DAD of a link-local address ends on its own clock
      .replace(/"local":"LL","prefixlen":64,"scope":"link","tentative":true/g, '"local":"LL","prefixlen":64,"scope":"link"');
    const del = await runPlugin('bridge', { ...args, command: 'DEL', config: { ...config, prevResult: result } });
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    const del2 = await runPlugin('bridge', { ...args, command: 'DEL', config: { ...config, prevResult: result } });
    expect(del2.exitCode, del2.stdout + del2.stderr).toBe(0);
    const linkGone = (await inNs(ns, 'ip', ['link', 'show', 'dev', 'eth0'], true)).exitCode !== 0;
    for (const f of ['10.213.7.2']) expect(existsSync(path.join(dataDir, `nlnet-${id}`, f))).toBe(false);
    return {
      result: JSON.parse(norm(JSON.stringify(result))) as Record<string, unknown>,
      state,
      tools: { add: spawnedTools(add.stderr), check: spawnedTools(check.stderr), del: spawnedTools(del.stderr) },
      linkGone,
    };
  }

  it('same result, same kernel state, DEL idempotent; the netlink path starts no ip/nsenter/sysctl/flock process', async () => {
    const containerId = `nlc-${hex(4)}`; // the same both times: so is the host veth's name
    const nl = await attach(true, containerId);
    await cleanup.run();
    const proc = await attach(false, containerId);
    expect(nl.result).toEqual(proc.result);
    expect(nl.state.split(/(?<=[,\n])/)).toEqual(proc.state.split(/(?<=[,\n])/));
    expect(nl.linkGone && proc.linkGone).toBe(true);
    const kernelTools = ['ip', 'nsenter', 'sysctl', 'flock'];
    for (const verb of ['add', 'check', 'del'] as const) {
      expect(
        nl.tools[verb].filter((t) => kernelTools.includes(t)),
        `netlink ${verb}`,
      ).toEqual([]);
    }
    // and the fallback really is the process path
    expect(proc.tools.add).toEqual(expect.arrayContaining(['ip', 'nsenter', 'flock']));
    console.log(
      `processes per call, netlink: ADD ${nl.tools.add.length}, CHECK ${nl.tools.check.length}, DEL ${nl.tools.del.length}; fallback: ADD ${proc.tools.add.length} (${proc.tools.add.join(' ')}), CHECK ${proc.tools.check.length}, DEL ${proc.tools.del.length}`,
    );
  });
});

// keep BIN referenced for readers: the plugin runs are the shipped executables in dist/bin
void BIN;
