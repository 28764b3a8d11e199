/**
 * firewall against the real kernel and the Go reference (/usr/lib/cni/firewall, iptables
 * backend): each plugin runs inside a "host" netns of this test (nsenter), so the filter tables
 * they change are that namespace's; the `iptables-save` of both compared line for line;
 * interop (ADD with one, DEL/CHECK with the other); forwarding really opened by the rules.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import {
  addressRules,
  adminRule,
  deleteLines,
  ensureLines,
  isolationRules,
  jumpRule,
  missing,
  parseFilter,
  saveLine,
} from '../plugins/firewall/rules.ts';

const PREFIX = 'pq';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

const prevResult = (v6 = true): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'pqbr0' }, { name: 'pqveth1' }, { name: 'eth0', sandbox: '/var/run/netns/pq-x' }],
  ips: [
    { address: '10.77.1.5/24', gateway: '10.77.1.1', interface: 2 },
    ...(v6 ? [{ address: 'fd77::5/64', gateway: 'fd77::1', interface: 2 }] : []),
  ],
});

function call(command: string, host: TestNetns, conf: Record<string, unknown>, ref = false): Promise<PluginRun> {
  return runPlugin('firewall', {
    command,
    containerId: 'pqfw',
    netns: '/var/run/netns/pq-x',
    ifname: 'eth0',
    config: conf,
    hostNetns: host.path,
    ...(ref ? { binDir: REF_BIN, path: REF_BIN } : {}),
  });
}

const conf = (extra: Record<string, unknown> = {}, prev: Record<string, unknown> | null = prevResult()): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  name: uid(PREFIX),
  type: 'firewall',
  backend: 'iptables',
  ...extra,
  ...(prev ? { prevResult: prev } : {}),
});

async function filter(host: TestNetns): Promise<string> {
  const out = await Promise.all(['iptables-save', 'ip6tables-save'].map((c) => inNs(host, c, ['-t', 'filter'])));
  return out
    .map((r) =>
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n'),
    )
    .join('\n---\n');
}

describe('firewall: rules (pure)', () => {
  it('save spellings, ensure is idempotent and declares only missing chains, delete, CHECK wording, isolation order', () => {
    expect(saveLine(jumpRule())).toBe('-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    expect(addressRules('fd77:0::5').map(saveLine)).toEqual([
      '-A CNI-FORWARD -d fd77::5/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s fd77::5/128 -j ACCEPT',
    ]);
    const st = parseFilter(
      '*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:CNI-ADMIN - [0:0]\nCOMMIT\n',
    );
    expect([...st.chains]).toEqual(['INPUT', 'FORWARD', 'CNI-ADMIN']);
    const lines = ensureLines(st, ['CNI-FORWARD', 'CNI-ADMIN'], [jumpRule(), adminRule('CNI-ADMIN'), ...addressRules('10.0.0.2')]);
    expect(lines).toEqual([
      ':CNI-FORWARD - [0:0]',
      '-I FORWARD 1 -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
      '-I CNI-FORWARD 1 -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
      '-A CNI-FORWARD -d 10.0.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.0.0.2/32 -j ACCEPT',
    ]);
    expect(ensureLines(st, ['CNI-FORWARD', 'CNI-ADMIN'], [jumpRule(), ...addressRules('10.0.0.2')])).toEqual([]);
    expect(missing(st, 'CNI-ADMIN', ['10.0.0.2'])).toBeUndefined();
    expect(missing(st, 'CNI-ADMIN', ['10.0.0.3'])).toMatch(/expected rule -d 10\.0\.0\.3\/32/);
    expect(missing(st, 'MY-ADMIN', [])).toMatch(/chain MY-ADMIN not found/);
    expect(deleteLines(st, addressRules('10.0.0.2'))).toEqual([
      '-D CNI-FORWARD -d 10.0.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-D CNI-FORWARD -s 10.0.0.2/32 -j ACCEPT',
    ]);
    expect(deleteLines(st, addressRules('10.0.0.9'))).toEqual([]);
    const iso = isolationRules('br0', true).map(saveLine);
    expect(iso[0]).toBe(
      '-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)" -j CNI-ISOLATION-STAGE-1',
    );
    expect(iso[2]).toBe(
      '-A CNI-ISOLATION-STAGE-1 -i br0 -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP',
    );
    expect(isolationRules('br0', false).map(saveLine)).toHaveLength(5);
  });
});

describe('firewall: kernel, against the reference', () => {
  for (const extra of [{}, { ingressPolicy: 'same-bridge' }, { iptablesAdminChainName: 'PQ-ADMIN' }]) {
    it(`ADD, CHECK, DEL leave the reference's filter tables and result (${JSON.stringify(extra)})`, async () => {
      const [mine, theirs] = [await makeNetns(cleanup, PREFIX), await makeNetns(cleanup, PREFIX)];
      const c = conf(extra);
      const [a, b] = [await call('ADD', mine, c), await call('ADD', theirs, c, true)];
      expect(a.exitCode, a.stdout + a.stderr).toBe(0);
      expect(b.exitCode, b.stdout).toBe(0);
      expect(a.json).toEqual(b.json);
      const s = await filter(mine);
      expect(s).toBe(await filter(theirs));
      expect(s).toMatch(/-A CNI-FORWARD -s 10\.77\.1\.5\/32 -j ACCEPT/);
      expect(s).toMatch(/-A CNI-FORWARD -s fd77::5\/128 -j ACCEPT/);
      // a second container, then CHECK by both plugins on each other's state
      const c2 = conf(extra, { ...prevResult(false), ips: [{ address: '10.77.1.6/24', interface: 2 }] });
      for (const [ns, ref] of [
        [mine, false],
        [theirs, true],
      ] as const)
        expect((await call('ADD', ns, c2, ref)).exitCode).toBe(0);
      expect(await filter(mine)).toBe(await filter(theirs));
      for (const ns of [mine, theirs]) for (const ref of [false, true]) expect((await call('CHECK', ns, c, ref)).exitCode).toBe(0);
      const [d, e] = [await call('DEL', mine, c), await call('DEL', theirs, c, true)];
      expect([d.exitCode, e.exitCode]).toEqual([0, 0]);
      const after = await filter(mine);
      expect(after).toBe(await filter(theirs));
      expect(after).not.toMatch(/10\.77\.1\.5/);
      expect(after).toMatch(/10\.77\.1\.6/);
      const chk = await call('CHECK', mine, c);
      expect(chk.json).toMatchObject({ code: 105 });
      expect(String(chk.json?.msg)).toMatch(/expected rule/);
      // DEL again, and DEL without prevResult: nothing to do, success
      expect((await call('DEL', mine, c)).exitCode).toBe(0);
      expect((await call('DEL', mine, conf(extra, null))).exitCode).toBe(0);
    });
  }

  it('interop: ADD with ours, DEL with the reference, and the reverse', async () => {
    for (const [addRef, delRef] of [
      [false, true],
      [true, false],
    ]) {
      const host = await makeNetns(cleanup, PREFIX);
      const c = conf();
      expect((await call('ADD', host, c, addRef)).exitCode).toBe(0);
      expect((await call('DEL', host, c, delRef)).exitCode).toBe(0);
      expect(await filter(host)).not.toMatch(/10\.77\.1\.5|fd77::5/);
    }
  });

  it('isolated (newer references), firewalld refused with 101, no prevResult refused on ADD', async () => {
    const host = await makeNetns(cleanup, PREFIX);
    expect((await call('ADD', host, conf({ ingressPolicy: 'isolated' }))).exitCode).toBe(0);
    const s = await filter(host);
    expect(s).toMatch(
      /-A CNI-ISOLATION-STAGE-1 -i pqbr0 -o pqbr0 .* -j DROP\n-A CNI-ISOLATION-STAGE-1 -i pqbr0 ! -o pqbr0 .* -j CNI-ISOLATION-STAGE-2/,
    );
    expect(s.split('\n').filter((l) => l.startsWith('-A FORWARD'))[0]).toMatch(/CNI-ISOLATION-STAGE-1$/);
    const fwd = await call('ADD', host, conf({ backend: 'firewalld' }));
    expect(fwd.json).toMatchObject({ code: 101 });
    expect(String(fwd.json?.msg)).toMatch(/firewalld/);
    expect((await call('ADD', host, conf({}, null))).json).toMatchObject({ code: 7 });
    expect(
      (await call('ADD', host, conf({ ingressPolicy: 'same-bridge' }, { cniVersion: '1.0.0', ips: [{ address: '10.77.1.9/24' }] }))).json,
    ).toMatchObject({ code: 7 });
  });

  it('forwarding: with the FORWARD policy DROP, the container reaches its peer only once firewall ADD ran; DEL closes it again', async () => {
    const host = await makeNetns(cleanup, PREFIX);
    const [a, b] = [await makeNetns(cleanup, PREFIX), await makeNetns(cleanup, PREFIX)];
    for (const [ns, n] of [
      [a, 1],
      [b, 2],
    ] as const) {
      await inNs(host, 'ip', ['link', 'add', `pqv${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.path]);
      await inNs(host, 'ip', ['addr', 'add', `10.80.${n}.1/24`, 'dev', `pqv${n}`]);
      await inNs(host, 'ip', ['link', 'set', `pqv${n}`, 'up']);
      await inNs(ns, 'ip', ['addr', 'add', `10.80.${n}.2/24`, 'dev', 'eth0']);
      await inNs(ns, 'ip', ['link', 'set', 'eth0', 'up']);
      await inNs(ns, 'ip', ['route', 'add', 'default', 'via', `10.80.${n}.1`]);
    }
    await inNs(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await inNs(host, 'iptables', ['-P', 'FORWARD', 'DROP']);
    const ping = async (): Promise<number> => (await inNs(a, 'ping', ['-c1', '-W1', '10.80.2.2'], true)).exitCode;
    expect(await ping()).not.toBe(0);
    const c = conf(
      {},
      { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: a.path }], ips: [{ address: '10.80.1.2/24', interface: 0 }] },
    );
    expect((await call('ADD', host, c)).exitCode).toBe(0);
    expect(await ping()).toBe(0);
    expect((await call('DEL', host, c)).exitCode).toBe(0);
    expect(await ping()).not.toBe(0);
  });
});
