/**
 * cnitool `del` keeps going past a failing plugin (docs/cnitool.md, libcni's behaviour): the
 * other plugins still release what they hold, the failure is reported, and the cache entry is
 * kept so a retry still has prevResult.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgePlugin, makeTestbed, type Testbed } from './helpers/cnitool.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { BIN } from './helpers/run.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** A chained plugin that passes prevResult through on ADD and fails every DEL while `<dir>/fail` exists. */
function installFailer(tb: Testbed): { dir: string; heal: () => void } {
  const dir = path.join(tb.dir, 'bin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'failer'),
    `#!/bin/sh
in="$(cat)"
if [ "$CNI_COMMAND" = DEL ] && [ -e "$(dirname "$0")/fail" ]; then echo '{"cniVersion":"1.1.0","code":100,"msg":"failer cannot delete","details":"test switch"}'; exit 1; fi
if [ "$CNI_COMMAND" = ADD ]; then printf '%s' "$in" | jq -c '.prevResult'; fi
exit 0
`,
  );
  chmodSync(path.join(dir, 'failer'), 0o755);
  writeFileSync(path.join(dir, 'fail'), '');
  return { dir, heal: () => rmSync(path.join(dir, 'fail'), { force: true }) };
}

const reserved = (tb: Testbed, net: string): string[] =>
  existsSync(path.join(tb.dataDir, net)) ? readdirSync(path.join(tb.dataDir, net)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
const cacheFiles = (tb: Testbed): string[] =>
  existsSync(path.join(tb.cacheDir, 'results')) ? readdirSync(path.join(tb.cacheDir, 'results')) : [];

describe('cnitool del past a failing plugin', () => {
  it('the failing plugin (DELed first, the chain runs in reverse) does not stop bridge + host-local from releasing; exit 1, cache kept', async () => {
    const tb = await makeTestbed(cleanup, { prefix: 'ht' });
    const failer = installFailer(tb);
    tb.cniPath = `${failer.dir}:${BIN}`;
    const net = `${tb.id}-fail`;
    tb.writeConf('10-fail.conflist', { cniVersion: '1.1.0', name: net, plugins: [bridgePlugin(tb, { ipMasq: true }), { type: 'failer' }] });
    const c = await tb.container();
    const add = await tb.cnitool(['add', net, c.path, '--json']);
    expect(add.exitCode, add.stderr + add.stdout).toBe(0);
    const ip = (add.json?.ips as Array<{ address: string }>)[0].address.split('/')[0];
    expect(reserved(tb, net)).toEqual([ip]);
    const ruleset = async (): Promise<string> => (await inNs(tb.host, 'nft', ['list', 'ruleset'])).stdout;
    expect(await ruleset()).toContain(`saddr ${ip} `);
    expect(cacheFiles(tb)).toHaveLength(1);

    const del = await tb.cnitool(['del', net, c.path, '--json']);
    expect(del.exitCode, del.stdout + del.stderr).toBe(1);
    expect(`${del.stdout}${del.stderr}`).toMatch(/failer/);
    expect(`${del.stdout}${del.stderr}`).toMatch(/failer cannot delete/);
    // bridge (after the failer in reverse order) still ran its DEL
    expect(reserved(tb, net)).toEqual([]);
    expect((await inNs(c, 'ip', ['link', 'show', 'dev', 'eth0'], true)).exitCode).not.toBe(0);
    expect(await ruleset()).not.toContain(`saddr ${ip} `);
    // the cache entry stays for a retry, which succeeds once the plugin does
    expect(cacheFiles(tb)).toHaveLength(1);
    failer.heal();
    const again = await tb.cnitool(['del', net, c.path]);
    expect(again.exitCode, again.stdout + again.stderr).toBe(0);
    expect(cacheFiles(tb)).toEqual([]);
  });
});
