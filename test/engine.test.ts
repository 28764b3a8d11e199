import { describe, expect, it } from 'vitest';
import { parseResult, renderResult } from '../shared/cni/result.ts';
import { negotiate, compareVersions } from '../shared/cni/version.ts';
import { parseCniArgs, parseEnv } from '../shared/cni/env.ts';
import { CniError } from '../shared/cni/errors.ts';
import { prepareValidators, validate } from '../shared/cni/validate.ts';
import { invoke } from '../shared/cni/skel.ts';
import { definePlugin } from '../shared/cni/plugin.ts';
import type { Result } from '../shared/cni/types.ts';

const full: Result = {
  interfaces: [
    { name: 'br0', mac: '00:11:22:33:44:55', mtu: 1400 },
    { name: 'eth0', mac: '00:11:22:33:44:66', sandbox: '/run/netns/x', pciID: '0000:00:01.0' },
  ],
  ips: [
    { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 },
    { address: 'fd00::5/64', gateway: 'fd00::1', interface: 1 },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, priority: 5 }, { dst: '::/0' }],
  dns: { nameservers: ['10.1.0.1'], search: ['example.test'] },
};

describe('result conversion', () => {
  it('1.1.0 keeps the new interface and route fields', () => {
    const r = renderResult(full, '1.1.0');
    expect(r.cniVersion).toBe('1.1.0');
    expect((r.interfaces as Array<Record<string, unknown>>)[0].mtu).toBe(1400);
    expect((r.interfaces as Array<Record<string, unknown>>)[1].pciID).toBe('0000:00:01.0');
    expect((r.routes as Array<Record<string, unknown>>)[0]).toEqual({ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, priority: 5 });
  });
  it('1.0.0 drops 1.1.0 fields and has no ips[].version', () => {
    const r = renderResult(full, '1.0.0');
    expect((r.interfaces as Array<Record<string, unknown>>)[0]).toEqual({ name: 'br0', mac: '00:11:22:33:44:55' });
    expect((r.ips as Array<Record<string, unknown>>)[0]).toEqual({ interface: 1, address: '10.1.0.5/24', gateway: '10.1.0.1' });
    expect((r.routes as Array<Record<string, unknown>>)[0]).toEqual({ dst: '0.0.0.0/0', gw: '10.1.0.1' });
  });
  it.each(['0.3.0', '0.3.1', '0.4.0'])('%s adds ips[].version', (v) => {
    const r = renderResult(full, v);
    expect((r.ips as Array<Record<string, unknown>>).map((i) => i.version)).toEqual(['4', '6']);
  });
  it.each(['0.1.0', '0.2.0'])('%s uses ip4/ip6', (v) => {
    const r = renderResult(full, v);
    expect(r.ip4).toEqual({ ip: '10.1.0.5/24', gateway: '10.1.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }] });
    expect(r.ip6).toEqual({ ip: 'fd00::5/64', gateway: 'fd00::1', routes: [{ dst: '::/0' }] });
    expect(r.interfaces).toBeUndefined();
  });
  it.each(['0.1.0', '0.2.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])('round trips through %s', (v) => {
    const back = parseResult(JSON.parse(JSON.stringify(renderResult(full, v))), v);
    expect(back.ips?.map((i) => i.address)).toEqual(['10.1.0.5/24', 'fd00::5/64']);
    expect(back.dns?.nameservers).toEqual(['10.1.0.1']);
  });
  it('rejects a malformed prevResult with code 6', () => {
    for (const bad of [{ ips: 'x' }, { ips: [{}] }]) {
      let thrown: unknown;
      try {
        parseResult(bad, '1.0.0');
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(CniError);
      expect((thrown as CniError).code).toBe(6);
    }
  });
});

describe('versions', () => {
  it('orders semver', () => {
    expect(compareVersions('0.10.0', '0.9.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0', '1.0.0')).toBe(0);
  });
  it('negotiates', () => {
    expect(negotiate('1.0.0')).toBe('1.0.0');
    expect(negotiate(undefined)).toBe('0.1.0');
    expect(negotiate('9.9.9', ['9.9.9', '1.0.0', '0.4.0'])).toBe('1.0.0');
    expect(() => negotiate('0.5.0')).toThrow(/incompatible/);
  });
});

describe('environment', () => {
  it('parses CNI_ARGS', () => {
    expect([...parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=a=b;;IP=10.0.0.2')]).toEqual([
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAME', 'a=b'],
      ['IP', '10.0.0.2'],
    ]);
    expect(() => parseCniArgs('novalue')).toThrow(/CNI_ARGS/);
  });
  it('requires per verb', () => {
    expect(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0' })).toThrow(/CNI_NETNS/);
    expect(parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0' }).netns).toBe('');
    expect(() => parseEnv({ CNI_COMMAND: 'GC' })).toThrow(/CNI_PATH/);
    expect(parseEnv({ CNI_COMMAND: 'STATUS' }).command).toBe('STATUS');
    expect(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: '../x', CNI_NETNS: '/x', CNI_IFNAME: 'eth0' })).toThrow(/CNI_CONTAINERID/);
    expect(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a', CNI_NETNS: '/x', CNI_IFNAME: 'a/b' })).toThrow(/CNI_IFNAME/);
    expect(() => parseEnv({ CNI_COMMAND: 'NOPE' })).toThrow(/CNI_COMMAND/);
  });
});

describe('validation', () => {
  const schema = { type: 'object', properties: { ipam: { type: 'object', properties: { subnet: { type: 'string', format: 'cidr' } } } } };
  it('names the offending field', async () => {
    await prepareValidators([[schema]]);
    expect(() => validate(schema, { name: 'n', ipam: { subnet: '10.0.0.0/33' } })).toThrow(/ipam\.subnet/);
    expect(validate(schema, { name: 'n', ipam: { subnet: '10.0.0.0/8' }, unknownKey: 1 })).toBeTruthy();
  });
});

describe('engine', () => {
  const plugin = definePlugin({
    name: 'fake',
    about: 'test plugin',
    async add() {
      return { ips: [{ address: '10.0.0.2/24' }] };
    },
    async del() {},
    async check() {},
  });
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/x', CNI_IFNAME: 'eth0' };
  it('renders ADD in the config version', async () => {
    const out = await invoke(plugin, env, JSON.stringify({ cniVersion: '0.3.1', name: 'n' }));
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: '0.3.1', ips: [{ version: '4', address: '10.0.0.2/24' }], dns: {} });
  });
  it.each([
    ['{bad', 6],
    ['[]', 6],
    [JSON.stringify({ cniVersion: '0.5.0', name: 'n' }), 1],
    [JSON.stringify({ cniVersion: '1.0.0' }), 7],
    [JSON.stringify({ cniVersion: '1.0.0', name: '../x' }), 7],
    [JSON.stringify({ cniVersion: '1.0.0', name: 'n', ipam: { type: 'a/b' } }), 7],
  ])('config %s gives code %i', async (stdin, code) => {
    const out = await invoke(plugin, env, stdin);
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout).code).toBe(code);
  });
  it('refuses CHECK without prevResult with code 7 before the plugin runs, for every version with CHECK', async () => {
    let checked = 0;
    const p = definePlugin({ ...plugin, validateConfig: () => void checked++, check: async () => void checked++ });
    for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
      for (const extra of [{}, { prevResult: null }]) {
        const out = await invoke(p, { ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ cniVersion: v, name: 'n', ...extra }));
        expect(JSON.parse(out.stdout)).toMatchObject({
          cniVersion: v,
          code: 7,
          msg: 'invalid network config: prevResult: is required for CHECK',
        });
      }
      const ok = await invoke(
        p,
        { ...env, CNI_COMMAND: 'CHECK' },
        JSON.stringify({ cniVersion: v, name: 'n', prevResult: { cniVersion: v, ips: [] } }),
      );
      expect(ok.exitCode, ok.stdout).toBe(0);
    }
    expect(checked).toBe(6); // validateConfig + check, only for the three with prevResult
    // below 0.4.0 there is no CHECK at all: still code 1
    const old = await invoke(p, { ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ cniVersion: '0.3.1', name: 'n' }));
    expect(JSON.parse(old.stdout).code).toBe(1);
  });
  it('names the plugin the runtime called once, then the cause of a delegate error (nesting never doubles names)', async () => {
    const { DelegatedError, causeOf } = await import('../shared/cni/errors.ts');
    expect(causeOf('host-local: no address is reserved', ['host-local'])).toBe('no address is reserved');
    expect(causeOf('bridge: bridge: x', ['bridge'])).toBe('x');
    expect(causeOf('no name: here', ['bridge'])).toBe('no name: here');
    const failing = (name: string, err: Error) => definePlugin({ ...plugin, name, add: async () => Promise.reject(err) });
    // what the runtime sees from the outer plugin when its delegate failed
    const inner = await invoke(
      failing('bridge', new DelegatedError(105, 'no address is reserved', 'via host-local')),
      env,
      JSON.stringify({ cniVersion: '1.1.0', name: 'n' }),
    );
    expect(JSON.parse(inner.stdout)).toMatchObject({ code: 105, msg: 'bridge: no address is reserved', details: 'via host-local' });
    const outer = await invoke(
      failing('overlay', new DelegatedError(105, causeOf(JSON.parse(inner.stdout).msg, ['bridge']), 'via bridge > host-local')),
      env,
      JSON.stringify({ cniVersion: '1.1.0', name: 'n' }),
    );
    expect(JSON.parse(outer.stdout)).toMatchObject({ code: 105, msg: 'overlay: no address is reserved' });
    // the plugin's own errors are not prefixed
    const own = await invoke(
      failing('overlay', new CniError(7, 'invalid network config: x: y')),
      env,
      JSON.stringify({ cniVersion: '1.1.0', name: 'n' }),
    );
    expect(JSON.parse(own.stdout).msg).toBe('invalid network config: x: y');
  });
  it('refuses CHECK below 0.4.0 and GC/STATUS below 1.1.0', async () => {
    for (const [cmd, v] of [
      ['CHECK', '0.3.1'],
      ['GC', '1.0.0'],
      ['STATUS', '1.0.0'],
    ]) {
      const out = await invoke(plugin, { ...env, CNI_COMMAND: cmd, CNI_PATH: '/x' }, JSON.stringify({ cniVersion: v, name: 'n' }));
      expect(JSON.parse(out.stdout).code).toBe(1);
    }
  });
});
