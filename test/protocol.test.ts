/**
 * The protocol engine seen from outside: the built executables run as a runtime runs them,
 * for the parts of the contract every plugin shares (env, decoding, versions, error JSON).
 */
import { execa } from 'execa';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SUPPORTED_VERSIONS } from '../shared/cni/version.ts';
import { Cleanup, sh } from './helpers/netns.ts';
import { BIN, runPlugin, uid } from './helpers/run.ts';

const NAMES = [
  'bridge',
  'portmap',
  'bandwidth',
  'loopback',
  'host-device',
  'overlay',
  'host-local',
  'static',
  'ptp',
  'tuning',
  'macvlan',
  'ipvlan',
  'vlan',
  'dummy',
  'vrf',
  'tap',
  'sbr',
  'firewall',
  'dhcp',
];
const env = { containerId: 'ctr1', netns: '/var/run/netns/does-not-exist', ifname: 'eth0' };
const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'net1',
  type: 'static',
  ipam: { type: 'static', addresses: [{ address: '10.9.0.2/24' }] },
  ...extra,
});

function expectError(r: { exitCode: number; json?: Record<string, unknown>; stdout: string }, code: number): void {
  expect(r.exitCode).not.toBe(0);
  expect(r.json, r.stdout).toBeDefined();
  expect(r.json?.code).toBe(code);
  expect(typeof r.json?.msg).toBe('string');
  expect(typeof r.json?.cniVersion).toBe('string');
  expect(r.stdout).not.toMatch(/\n\s+at /); // never a stack trace on stdout
}

describe('VERSION', () => {
  it.each(NAMES)('%s answers supportedVersions', async (name) => {
    const r = await runPlugin(name, { command: 'VERSION', config: { cniVersion: '0.4.0' } });
    expect(r.exitCode).toBe(0);
    expect(r.json).toEqual({ cniVersion: '0.4.0', supportedVersions: [...SUPPORTED_VERSIONS] });
  });
  it('answers with the latest version when stdin is empty', async () => {
    const r = await runPlugin('static', { command: 'VERSION', config: '' });
    expect(r.json?.cniVersion).toBe('1.1.0');
  });
});

describe('run by hand', () => {
  it('prints what it is, without reading stdin, when CNI_COMMAND is unset', async () => {
    const r = await execa(path.join(BIN, 'host-local'), [], {
      env: { PATH: process.env.PATH },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
    });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/host-local/);
    expect(r.stderr).toMatch(/0\.1\.0, 0\.2\.0, 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/);
  });
  it('the multi-call binary lists its plugins', async () => {
    const r = await execa(path.join(BIN, 'cni-ts'), [], { reject: false, stdin: 'ignore' });
    expect(r.stderr).toMatch(/bridge/);
    expect(r.stderr).toMatch(/host-local/);
  });
});

describe('environment (code 4)', () => {
  it('rejects an unknown CNI_COMMAND', async () => {
    expectError(await runPlugin('static', { command: 'FROB', ...env, config: conf() }), 4);
  });
  it.each([
    ['ADD', 'CNI_CONTAINERID'],
    ['ADD', 'CNI_NETNS'],
    ['ADD', 'CNI_IFNAME'],
    ['CHECK', 'CNI_NETNS'],
    ['DEL', 'CNI_CONTAINERID'],
    ['DEL', 'CNI_IFNAME'],
    ['GC', 'CNI_PATH'],
  ])('%s without %s', async (command, variable) => {
    const r = await runPlugin('static', { command, ...env, config: conf(), env: { [variable]: undefined } });
    expectError(r, 4);
    expect(`${r.json?.msg} ${r.json?.details}`).toContain(variable);
  });
  it.each(['../../etc', 'a/b', '-lead', 'sp ace', ''])('rejects container ID %j', async (id) => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, containerId: id, config: conf() }), 4);
  });
  it.each(['a/b', 'x'.repeat(16), '..', 'a b'])('rejects CNI_IFNAME %j', async (ifname) => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, ifname, config: conf() }), 4);
  });
  it('rejects a malformed CNI_ARGS', async () => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, args: 'IgnoreUnknown=1;garbage', config: conf() }), 4);
  });
});

describe('decoding (code 6) and input limits (code 5)', () => {
  it.each(['{', 'null', '[1,2]', '"str"', '\u0000\u0001', ''])('rejects stdin %j', async (stdin) => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, config: stdin }), 6);
  });
  it('rejects a malformed prevResult', async () => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, config: conf({ prevResult: { ips: 'nope' } }) }), 6);
  });
  it('refuses a huge stdin cleanly', async () => {
    const big = JSON.stringify(conf({ padding: 'x'.repeat(17 * 1024 * 1024) }));
    expectError(await runPlugin('static', { command: 'ADD', ...env, config: big }), 5);
  });
});

describe('versions (code 1)', () => {
  it.each(['0.5.0', '2.0.0', 'banana'])('rejects cniVersion %s', async (v) => {
    expectError(await runPlugin('static', { command: 'ADD', ...env, config: conf({ cniVersion: v }) }), 1);
  });
  it('negotiates from cniVersions', async () => {
    const r = await runPlugin('static', {
      command: 'ADD',
      ...env,
      config: conf({ cniVersion: '9.0.0', cniVersions: ['9.0.0', '1.0.0', '0.4.0'] }),
    });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json?.cniVersion).toBe('1.0.0');
  });
  it.each([
    ['CHECK', '0.3.1'],
    ['GC', '1.0.0'],
    ['STATUS', '1.0.0'],
  ])('refuses %s at %s', async (command, v) => {
    expectError(await runPlugin('static', { command, ...env, config: conf({ cniVersion: v }) }), 1);
  });
});

describe('config validation (code 7)', () => {
  it.each([
    [{ name: undefined }, 'name'],
    [{ name: '../escape' }, 'name'],
    [{ name: 'ok', ipam: { type: '../../bin/sh' } }, 'ipam.type'],
    [{ dns: { nameservers: ['999.1.1.1'] } }, 'dns.nameservers[0]'],
    [{ disableCheck: 'yes' }, 'disableCheck'],
  ])('names the field of %j', async (extra, field) => {
    const c = conf(extra as Record<string, unknown>);
    if ('name' in extra && (extra as Record<string, unknown>).name === undefined) delete (c as Record<string, unknown>).name;
    const r = await runPlugin('static', { command: 'ADD', ...env, config: c });
    expectError(r, 7);
    expect(`${r.json?.msg} ${r.json?.details}`).toContain(field);
  });
  it('tolerates unknown keys', async () => {
    const r = await runPlugin('static', { command: 'ADD', ...env, config: conf({ someVendorKey: { a: 1 }, 'cni.dev/whatever': true }) });
    expect(r.exitCode, r.stdout).toBe(0);
  });
});

describe('spellings Go runtimes send', () => {
  const cleanup = new Cleanup();
  afterEach(async () => cleanup.run());
  it('portmap accepts containerd 1.6 capitalised portMappings keys: ADD publishes, DEL (empty netns) removes', async () => {
    const table = `${uid('ht')}_caps`;
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
    const port = 20000 + (Number.parseInt(table.slice(2, 6), 16) % 20000);
    const config = {
      cniVersion: '1.0.0',
      name: 'capsnet',
      type: 'portmap',
      nftTable: table,
      // no route_localnet sysctl on whatever interface routes the (unused) container address
      snat: false,
      runtimeConfig: { portMappings: [{ HostPort: port, ContainerPort: 80, Protocol: 'tcp', HostIP: '' }] },
    };
    const rules = async (): Promise<string> => (await sh('nft', ['list', 'table', 'inet', table], { allowFail: true })).stdout;
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: env.netns }],
      ips: [{ address: '10.251.7.2/24', interface: 0 }],
    };
    const add = await runPlugin('portmap', { command: 'ADD', ...env, containerId: 'ctr-caps', config: { ...config, prevResult } });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(await rules()).toContain(`tcp dport ${port} dnat ip to 10.251.7.2:80`);
    const del = await runPlugin('portmap', { command: 'DEL', containerId: 'ctr-caps', ifname: 'eth0', netns: '', config });
    expect(del.exitCode, del.stdout).toBe(0);
    const after = await rules();
    expect(after, 'the table still exists').toContain(`table inet ${table}`);
    expect(after).not.toContain(String(port));
    expect(after).not.toContain('10.251.7.2');
  });
});

describe('unsupported field (code 2)', () => {
  it('names the key and value', async () => {
    const r = await runPlugin('portmap', {
      command: 'ADD',
      ...env,
      config: {
        cniVersion: '1.0.0',
        name: 'n2',
        type: 'portmap',
        backend: 'nftables',
        externalSetMarkChain: 'KUBE-MARK-MASQ',
        prevResult: { cniVersion: '1.0.0', ips: [] },
      },
    });
    expectError(r, 2);
    expect(String(r.json?.msg)).toContain('externalSetMarkChain');
    expect(String(r.json?.msg)).toContain('KUBE-MARK-MASQ');
  });
});
