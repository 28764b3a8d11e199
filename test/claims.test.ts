/**
 * Documented claims of the protocol engine that had no test of their own (README "Protocol
 * behaviour"): CNI_IFNAME checked on every verb that takes it, GC attachments' ifnames,
 * CNI_LOG_FILE / logFile / CNI_LOG_LEVEL, CNI_TS_TRACE to stderr and to a file, cnitool passing
 * both on; README's size figure. The built executables run as a runtime runs them.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCnitool } from './helpers/cnitool.ts';
import { Cleanup } from './helpers/netns.ts';
import { BIN, ROOT, runPlugin, uid } from './helpers/run.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

const conf = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: 'htclaims',
  type: 'static',
  ipam: { type: 'static', addresses: [{ address: '10.9.0.2/24' }] },
  ...extra,
});
const base = { containerId: 'htctr', netns: '/var/run/netns/ht-does-not-exist', ifname: 'eth0' };

/** A scratch directory under /tmp carrying the test prefix, removed after the test. */
function scratch(): string {
  const dir = path.join('/tmp', uid('ht'));
  mkdirSync(dir, { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('CNI_IFNAME is a Linux interface name on every verb that takes it', () => {
  const bad = ['eth:0', 'a/b', 'a b', 'a\tb', '.', '..', 'x'.repeat(16)];
  for (const verb of ['ADD', 'CHECK', 'DEL']) {
    it.each(bad)(`${verb} refuses %j with code 4 naming CNI_IFNAME`, async (ifname) => {
      const config = verb === 'CHECK' ? conf({ prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.9.0.2/24' }] } }) : conf();
      const r = await runPlugin('static', { command: verb, ...base, ifname, config });
      expect(r.exitCode, r.stdout).toBe(1);
      expect(r.json?.code).toBe(4);
      expect(`${String(r.json?.msg)} ${String(r.json?.details)}`).toContain('CNI_IFNAME');
    });
  }
  it('accepts the longest legal name (15 characters) on ADD, CHECK and DEL', async () => {
    const ifname = 'x'.repeat(15);
    const add = await runPlugin('static', { command: 'ADD', ...base, ifname, config: conf() });
    expect(add.exitCode, add.stdout).toBe(0);
    for (const verb of ['CHECK', 'DEL']) {
      const r = await runPlugin('static', { command: verb, ...base, ifname, config: conf({ prevResult: add.json }) });
      expect(r.exitCode, `${verb}: ${r.stdout}`).toBe(0);
    }
  });
  it('GC refuses an attachment whose ifname is not an interface name (code 7 naming the field)', async () => {
    const r = await runPlugin('static', {
      command: 'GC',
      config: conf({ 'cni.dev/valid-attachments': [{ containerID: 'htctr', ifname: 'eth:0' }] }),
    });
    expect(r.json?.code, r.stdout).toBe(7);
    expect(`${String(r.json?.msg)} ${String(r.json?.details)}`).toContain('ifname');
    const ok = await runPlugin('static', {
      command: 'GC',
      config: conf({ 'cni.dev/valid-attachments': [{ containerID: 'htctr', ifname: 'eth0' }] }),
    });
    expect(ok.exitCode, ok.stdout).toBe(0);
  });
});

describe('diagnostics: CNI_LOG_FILE, logFile, CNI_LOG_LEVEL', () => {
  const line = (level: string, verb: string): RegExp =>
    new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z ${level} static: ${verb} container=htctr ifname=eth0 netns=${base.netns}$`, 'm');

  it('CNI_LOG_FILE receives what stderr gets (appended, one call after another); stdout stays the protocol', async () => {
    const file = path.join(scratch(), 'cni.log');
    const env = { CNI_LOG_FILE: file, CNI_LOG_LEVEL: 'debug' };
    const add = await runPlugin('static', { command: 'ADD', ...base, config: conf(), env });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json?.ips).toEqual([{ address: '10.9.0.2/24' }]);
    expect(add.stderr).toMatch(line('debug', 'ADD'));
    const del = await runPlugin('static', { command: 'DEL', ...base, config: conf(), env });
    expect(del.exitCode, del.stdout).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(line('debug', 'ADD'));
    expect(text).toMatch(line('debug', 'DEL'));
    expect(text.indexOf(' ADD ')).toBeLessThan(text.indexOf(' DEL '));
    // everything in the file also went to stderr
    for (const l of text
      .trim()
      .split('\n')
      .filter((x) => x.includes(' ADD ')))
      expect(add.stderr).toContain(l);
  });

  it('the default level is warn: a successful call writes nothing; at info a failure is logged with its code', async () => {
    const file = path.join(scratch(), 'cni.log');
    const ok = await runPlugin('static', { command: 'ADD', ...base, config: conf(), env: { CNI_LOG_FILE: file } });
    expect(ok.exitCode).toBe(0);
    expect(existsSync(file) ? readFileSync(file, 'utf8') : '').toBe('');
    expect(ok.stderr).toBe('');
    const badConf = conf({ ipam: { type: 'static', addresses: [{ address: 'nope' }] } });
    const fail = await runPlugin('static', {
      command: 'ADD',
      ...base,
      config: badConf,
      env: { CNI_LOG_FILE: file, CNI_LOG_LEVEL: 'info' },
    });
    expect(fail.json?.code).toBe(7);
    expect(readFileSync(file, 'utf8')).toMatch(/^\S+ info static: error 7: .*ipam\.addresses\[0\]\.address/m);
  });

  it("the config's logFile and logLevel do the same", async () => {
    const file = path.join(scratch(), 'conf.log');
    const r = await runPlugin('static', { command: 'ADD', ...base, config: conf({ logFile: file, logLevel: 'debug' }) });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(line('debug', 'ADD'));
  });
});

describe('CNI_TS_TRACE', () => {
  const mark = (what: string): RegExp => new RegExp(`^\\[trace \\d+ \\+\\d+\\.\\d ms\\] ${what}$`, 'm');

  it('=1 prints the timeline on stderr: runtime start, plugin load, config validated, done', async () => {
    const r = await runPlugin('static', { command: 'ADD', ...base, config: conf(), env: { CNI_TS_TRACE: '1' } });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json?.ips).toEqual([{ address: '10.9.0.2/24' }]);
    for (const m of ['runtime started(?: \\((?:bun|node)\\))?', 'plugin static loaded', 'static ADD: config validated', 'done'])
      expect(r.stderr).toMatch(mark(m));
    const ms = [...r.stderr.matchAll(/^\[trace \d+ \+(\d+\.\d) ms\]/gm)].map((x) => Number(x[1]));
    expect(ms).toEqual([...ms].sort((a, b) => a - b));
  });

  it('=/abs/path appends the timeline to that file, not to stderr', async () => {
    const file = path.join(scratch(), 'trace.txt');
    writeFileSync(file, 'earlier\n');
    const r = await runPlugin('static', { command: 'ADD', ...base, config: conf(), env: { CNI_TS_TRACE: file } });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stderr).not.toMatch(/\[trace /);
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('earlier\n')).toBe(true);
    for (const m of ['plugin static loaded', 'static ADD: config validated', 'done']) expect(text).toMatch(mark(m));
  });

  it('is off by default: no trace line anywhere', async () => {
    const r = await runPlugin('static', { command: 'ADD', ...base, config: conf(), env: { CNI_TS_TRACE: undefined } });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).not.toMatch(/\[trace /);
  });

  it('cnitool passes CNI_TS_TRACE and CNI_LOG_FILE on to the plugins it runs', async () => {
    const dir = scratch();
    const confDir = path.join(dir, 'net.d');
    mkdirSync(confDir);
    writeFileSync(
      path.join(confDir, '10-ht.conflist'),
      JSON.stringify({
        cniVersion: '1.1.0',
        name: 'htclaims',
        plugins: [{ type: 'static', ipam: { type: 'static', addresses: [{ address: '10.9.0.2/24' }] } }],
      }),
    );
    const trace = path.join(dir, 'trace.txt');
    const log = path.join(dir, 'cni.log');
    const env = { CNI_TS_TRACE: trace, CNI_LOG_FILE: log, CNI_LOG_LEVEL: 'debug', CNI_IFNAME: 'eth0' };
    const r = await runCnitool(['add', 'htclaims', '/var/run/netns/ht-does-not-exist', '--container-id', 'htctr'], {
      confDir,
      cacheDir: path.join(dir, 'cache'),
      env,
    });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(trace, 'utf8')).toMatch(mark('static ADD: config validated'));
    expect(readFileSync(log, 'utf8')).toMatch(/ debug static: ADD container=htctr ifname=eth0 /);
  });
});

describe('README figures', () => {
  it('the install size README states is within 10 % of the built executable', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const m = /about (\d+(?:\.\d+)?) MiB for all plugins/.exec(readme.replace(/\s+/g, ' '));
    expect(m, 'README states "about N MiB for all plugins"').not.toBeNull();
    const stated = Number(m![1]);
    const built = statSync(path.join(BIN, 'cni-ts')).size / 1048576;
    expect(Math.abs(stated - built) / built, `README says about ${stated} MiB, the build is ${built.toFixed(1)} MiB`).toBeLessThanOrEqual(
      0.1,
    );
  });
});
