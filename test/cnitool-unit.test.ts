import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cacheEntry, listCache, readCachedResult, writeCache } from '../shared/libcni/cache.ts';
import { loadNetwork, negotiateListVersion, parseConfList, parseSingleConf } from '../shared/libcni/conf.ts';
import { errorJson, formatResult } from '../tools/cnitool/format.ts';
import { containerIdFor, parseCniArgsPairs, validAttachments } from '../tools/cnitool/index.ts';
import { pluginEnv } from '../shared/libcni/invoke.ts';
import { buildPluginConfig, ChainError } from '../shared/libcni/libcni.ts';
import { CniError } from '../shared/cni/errors.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'cnits-cnitool-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('config loading (libcni order)', () => {
  it('prefers .conflist, then .conf/.json, each in lexical order', () => {
    const d = path.join(tmp, 'order');
    mkdirSync(d);
    writeFileSync(path.join(d, '20-b.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'second' }] }));
    writeFileSync(path.join(d, '10-a.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'first' }] }));
    writeFileSync(path.join(d, '00-a.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'single' }));
    writeFileSync(path.join(d, '05-x.json'), JSON.stringify({ cniVersion: '0.4.0', name: 'other', type: 'fromjson' }));
    writeFileSync(path.join(d, 'ignored.txt'), 'not a config');
    expect(loadNetwork(d, 'n').plugins.map((p) => p.type)).toEqual(['first']);
    const other = loadNetwork(d, 'other');
    expect(other.plugins.map((p) => p.type)).toEqual(['fromjson']);
    expect(other.cniVersion).toBe('0.4.0');
    expect(() => loadNetwork(d, 'missing')).toThrow(/no net configuration with name "missing"/);
    expect(() => loadNetwork(path.join(tmp, 'nope'), 'n')).toThrow(/no net configurations found/);
  });
  it('appends plugins from <dir>/<name>/*.conf unless loadOnlyInlinedPlugins', () => {
    const d = path.join(tmp, 'sub');
    mkdirSync(path.join(d, 'n'), { recursive: true });
    writeFileSync(path.join(d, 'a.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: 'n', plugins: [{ type: 'inline' }] }));
    writeFileSync(path.join(d, 'n', '1.conf'), JSON.stringify({ type: 'fromfile' }));
    expect(loadNetwork(d, 'n').plugins.map((p) => p.type)).toEqual(['inline', 'fromfile']);
    writeFileSync(
      path.join(d, 'a.conflist'),
      JSON.stringify({ cniVersion: '1.1.0', name: 'n', loadOnlyInlinedPlugins: true, plugins: [{ type: 'inline' }] }),
    );
    expect(loadNetwork(d, 'n').plugins.map((p) => p.type)).toEqual(['inline']);
  });
  it('wraps a single .conf into a list', () => {
    const l = parseSingleConf(JSON.stringify({ cniVersion: '0.3.1', name: 'x', type: 'bridge', disableCheck: true }));
    expect(l).toMatchObject({ name: 'x', cniVersion: '0.3.1', disableCheck: true, plugins: [{ type: 'bridge', name: 'x' }] });
  });
  it('negotiates cniVersions and parses disableCheck/disableGC like libcni', () => {
    expect(negotiateListVersion('1.0.0', ['0.4.0', '1.1.0', '9.0.0'])).toBe('1.1.0');
    expect(negotiateListVersion(undefined, ['0.3.1'])).toBe('0.3.1');
    expect(negotiateListVersion('0.4.0', undefined)).toBe('0.4.0');
    expect(negotiateListVersion(undefined, undefined)).toBe('0.1.0');
    const l = parseConfList(
      JSON.stringify({ name: 'n', cniVersion: '1.1.0', disableCheck: 'TRUE', disableGC: true, plugins: [{ type: 'a' }] }),
    );
    expect([l.disableCheck, l.disableGC]).toEqual([true, true]);
    expect(() => parseConfList(JSON.stringify({ name: 'n', disableCheck: 'maybe', plugins: [{ type: 'a' }] }))).toThrow(/disableCheck/);
    expect(() => parseConfList(JSON.stringify({ name: 'n', plugins: [] }))).toThrow(/no plugins/);
    expect(() => parseConfList(JSON.stringify({ name: 'n', plugins: [{}] }))).toThrow(/type/);
    expect(() => parseConfList('{bad')).toThrow(CniError);
  });
});

describe('config injection', () => {
  const list = parseConfList(
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'net',
      plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true, bandwidth: false } }],
    }),
  );
  const caps = {
    portMappings: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' }],
    bandwidth: { ingressRate: 1 },
    mac: 'aa:bb:cc:dd:ee:ff',
  };
  it('gives each plugin only the capability args it declares', () => {
    const bridge = buildPluginConfig(list, list.plugins[0], undefined, caps);
    expect(bridge.runtimeConfig).toBeUndefined();
    const portmap = buildPluginConfig(list, list.plugins[1], { cniVersion: '1.0.0', ips: [] }, caps);
    expect(portmap).toMatchObject({
      name: 'net',
      cniVersion: '1.0.0',
      runtimeConfig: { portMappings: caps.portMappings },
      prevResult: { cniVersion: '1.0.0' },
    });
    expect((portmap.runtimeConfig as Record<string, unknown>).bandwidth).toBeUndefined();
  });
  it('builds the plugin environment without stray CNI_ variables', () => {
    const env = pluginEnv(
      'ADD',
      {
        containerId: 'c',
        netns: '/run/netns/x',
        ifname: 'eth0',
        args: [
          ['K', 'V'],
          ['IgnoreUnknown', '1'],
        ],
      },
      ['/a', '/b'],
      { PATH: '/bin', CNI_NETNS: '/stale', CNI_LOG_LEVEL: 'debug' },
    );
    expect(env).toEqual({
      PATH: '/bin',
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c',
      CNI_NETNS: '/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K=V;IgnoreUnknown=1',
      CNI_PATH: '/a:/b',
      CNI_LOG_LEVEL: 'debug',
    });
    expect(pluginEnv('GC', {}, ['/a'], {})).toEqual({ CNI_COMMAND: 'GC', CNI_PATH: '/a' });
  });
});

describe('cnitool arguments', () => {
  it('derives the container ID like the reference cnitool', () => {
    const want = 'cnitool-' + createHash('sha512').update('/var/run/netns/x').digest().subarray(0, 10).toString('hex');
    expect(containerIdFor('/var/run/netns/x')).toBe(want);
    expect(want).toMatch(/^cnitool-[0-9a-f]{20}$/);
  });
  it('parses CNI_ARGS pairs strictly', () => {
    expect(parseCniArgsPairs('A=1;B=2')).toEqual([
      ['A', '1'],
      ['B', '2'],
    ]);
    expect(() => parseCniArgsPairs('A=')).toThrow(/CNI_ARGS/);
  });
  it('builds the gc valid list', () => {
    const cached = [
      { containerID: 'a', ifname: 'eth0' },
      { containerID: 'a', ifname: 'eth1' },
      { containerID: 'b', ifname: 'eth0' },
    ];
    expect(validAttachments(undefined, cached, 'eth0')).toEqual(cached);
    expect(validAttachments(undefined, cached, 'eth0', { containerID: 'b', ifname: 'eth0' })).toEqual(cached.slice(0, 2));
    expect(validAttachments('a', cached, 'eth0')).toEqual(cached.slice(0, 2));
    expect(validAttachments('b/eth9,zz', cached, 'net1')).toEqual([
      { containerID: 'b', ifname: 'eth9' },
      { containerID: 'zz', ifname: 'net1' },
    ]);
    expect(validAttachments('', cached, 'eth0')).toEqual([]);
  });
});

describe('cache (libcni cniCacheV1 format)', () => {
  it('writes, lists and reads records, and reads legacy bare results', () => {
    const dir = path.join(tmp, 'cache');
    const result = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] };
    const e = cacheEntry({
      network: 'n',
      listBytes: '{"name":"n"}',
      containerId: 'c1',
      ifname: 'eth0',
      netns: '/run/netns/x',
      args: [['K', 'V']],
      capabilityArgs: {},
      result,
    });
    const file = writeCache(dir, e);
    expect(path.basename(file)).toBe('n-c1-eth0');
    expect(Object.keys(e)).toEqual(['kind', 'containerId', 'config', 'ifName', 'networkName', 'netns', 'cniArgs', 'result']);
    expect(Buffer.from(e.config, 'base64').toString()).toBe('{"name":"n"}');
    expect(readCachedResult(dir, 'n', 'c1', 'eth0')).toEqual(result);
    writeFileSync(path.join(dir, 'results', 'n-legacy-eth0'), JSON.stringify(result));
    expect(readCachedResult(dir, 'n', 'legacy', 'eth0')).toEqual(result);
    expect(listCache(dir, 'n').map((x) => x.containerId)).toEqual(['c1']);
    expect(listCache(dir, 'other')).toEqual([]);
    expect(readCachedResult(dir, 'n', 'none', 'eth0')).toBeUndefined();
  });
});

describe('output', () => {
  it('prints a result as tables and errors as the spec shape', () => {
    const text = formatResult(
      {
        cniVersion: '0.3.1',
        interfaces: [{ name: 'eth0', mac: 'aa:bb:cc:dd:ee:ff', sandbox: '/x' }],
        ips: [{ version: '4', address: '10.1.0.2/24', gateway: '10.1.0.1', interface: 0 }],
        routes: [{ dst: '0.0.0.0/0' }],
        dns: { nameservers: ['10.1.0.1'] },
      },
      '0.3.1',
    );
    expect(text).toMatch(/10\.1\.0\.2\/24\s+10\.1\.0\.1\s+eth0 \(#0\)/);
    expect(text).toMatch(/nameservers\s+10\.1\.0\.1/);
    const err = new ChainError('plugin type="x" failed (add)', new CniError(7, 'bad', 'field "y"'), [new CniError(3, 'gone')]);
    expect(errorJson(err, '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      code: 7,
      msg: 'plugin type="x" failed (add): bad',
      details: 'field "y"',
      also: [{ cniVersion: '1.0.0', code: 3, msg: 'gone' }],
    });
  });
});
