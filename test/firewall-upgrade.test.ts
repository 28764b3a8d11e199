/**
 * Upgrade to the one firewall owner model: rules an earlier version of portmap wrote (nft rule
 * comments `<containerID> <ifname>` without the owner tag; iptables comments
 * `net=<net8> <containerID> <ifname>`) are still found and removed by DEL and GC, and nothing
 * else is touched. Everything happens inside a network namespace of this test (`fwo-…`): the
 * plugin runs in it (nsenter), so no host table or chain is read or written.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid } from './helpers/run.ts';
import {
  attachmentComment,
  attachmentTag,
  containerAddrs,
  mappingsOf,
  networkTag,
  planOf,
  settingsOf,
  type PortmapConf,
} from '../plugins/portmap/config.ts';
import { addScript } from '../plugins/portmap/nft.ts';
import { addRestore, attachmentChain, legacyIptComment, parseSave, type SavedNat } from '../plugins/portmap/iptables.ts';
import { ownerComment, tagOfName } from '../shared/firewall/owner.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

const NET = `fwonet-${uid('')}`;
/** Documentation addresses and ports; the namespace has no interface but lo, so nothing flows. */
const prevFor = (ip: string): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'fwobr' }, { name: 'eth0', sandbox: '/var/run/netns/x' }],
  ips: [{ address: `${ip}/24`, interface: 1 }],
});
const ATT = [
  { cid: 'fwo-a', ip: '203.0.113.10', port: 18081 },
  { cid: 'fwo-b', ip: '203.0.113.11', port: 18082 },
  { cid: 'fwo-c', ip: '203.0.113.12', port: 18083 },
];

function pmConf(extra: Record<string, unknown>, port?: number): PortmapConf {
  return {
    cniVersion: '1.1.0',
    name: NET,
    type: 'portmap',
    ...extra,
    runtimeConfig: { portMappings: port ? [{ hostPort: port, containerPort: 80 }] : [] },
  };
}

const pm = (ns: TestNetns, command: string, cid: string | undefined, config: Record<string, unknown>) =>
  runPlugin('portmap', {
    command,
    containerId: cid,
    netns: command === 'ADD' ? ns.path : '',
    ifname: cid ? 'eth0' : undefined,
    config,
    hostNetns: ns.path,
  });

/** What this version writes for attachment `a`, with the comments an earlier version wrote. */
function legacyNft(table: string, a: (typeof ATT)[number]): string {
  const conf = pmConf({ nftTable: table }, a.port);
  const s = settingsOf(conf);
  const plans = planOf(s, mappingsOf(conf), containerAddrs(prevFor(a.ip), 'eth0'));
  const now = attachmentComment(NET, a.cid, 'eth0');
  const script = addScript(s, attachmentTag(NET, a.cid, 'eth0'), now, plans, undefined);
  expect(script).toContain(`comment "${now}"`);
  return script.split(`comment "${now}"`).join(`comment "${a.cid} eth0"`);
}

function legacyIpt(prefix: string, a: (typeof ATT)[number], saved: SavedNat): string {
  const conf = pmConf({ backend: 'iptables', iptablesChainPrefix: prefix, snat: false }, a.port);
  const s = settingsOf(conf);
  const plans = planOf(s, mappingsOf(conf), containerAddrs(prevFor(a.ip), 'eth0'));
  const now = attachmentComment(NET, a.cid, 'eth0');
  const script = addRestore(s, attachmentTag(NET, a.cid, 'eth0'), now, plans[0], saved);
  expect(script).toContain(`"${now}"`);
  return script.split(`"${now}"`).join(`"${legacyIptComment(networkTag(NET), `${a.cid} eth0`)}"`);
}

describe('firewall owner model: rules of an earlier portmap are found on DEL and GC', () => {
  it('nftables: untagged comments; DEL removes one attachment, GC another, the valid one stays', async () => {
    const ns = await makeNetns(cleanup, 'fwo');
    const table = `fwo_pm_${uid('')}`;
    for (const a of ATT) await inNs(ns, 'nft', ['-f', '-'], false, legacyNft(table, a));
    const before = (await inNs(ns, 'nft', ['list', 'table', 'inet', table])).stdout;
    expect(before).not.toContain('cni:');
    for (const a of ATT) expect(before).toContain(`comment "${a.cid} eth0"`);

    const del = await pm(ns, 'DEL', ATT[0].cid, pmConf({ nftTable: table }, ATT[0].port));
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
    const gc = await pm(ns, 'GC', undefined, {
      ...pmConf({ nftTable: table }),
      'cni.dev/valid-attachments': [{ containerID: ATT[2].cid, ifname: 'eth0' }],
    });
    expect(gc.exitCode, gc.stderr + gc.stdout).toBe(0);

    const after = (await inNs(ns, 'nft', ['list', 'table', 'inet', table])).stdout;
    const chain = (cid: string): string => `pm-${attachmentTag(NET, cid, 'eth0')}`;
    expect(after).not.toContain(chain(ATT[0].cid));
    expect(after).not.toContain(chain(ATT[1].cid));
    expect(after).toContain(`chain ${chain(ATT[2].cid)}`);
    expect(after).toContain(`: goto ${chain(ATT[2].cid)}`);
    expect(after).not.toContain(`${ATT[0].port} : goto`);
    expect(after).not.toContain(`${ATT[1].port} : goto`);

    // A new ADD for the kept attachment converges its chain to tagged comments.
    const add = await pm(ns, 'ADD', ATT[2].cid, { ...pmConf({ nftTable: table }, ATT[2].port), prevResult: prevFor(ATT[2].ip) });
    expect(add.exitCode, add.stderr + add.stdout).toBe(0);
    const tagged = (await inNs(ns, 'nft', ['list', 'chain', 'inet', table, chain(ATT[2].cid)])).stdout;
    expect(tagged).toContain(`comment "${ownerComment({ network: NET, containerId: ATT[2].cid, ifname: 'eth0' })}"`);
    expect(tagged).not.toContain(`comment "${ATT[2].cid} eth0"`);
  });

  it('iptables: net=<net8> comments; DEL removes one attachment, GC another, the valid one stays', async (ctx) => {
    const ns = await makeNetns(cleanup, 'fwo');
    const probe = await inNs(ns, 'iptables-save', ['-t', 'nat'], true);
    if (probe.exitCode !== 0) {
      console.log(`skipped: iptables-save does not work in a netns here: ${probe.stderr.trim()}`);
      ctx.skip();
    }
    const prefix = `FWO${uid('').slice(0, 4)}`;
    const save = async (): Promise<string> => (await inNs(ns, 'iptables-save', ['-t', 'nat'])).stdout;
    // each as the earlier version's ADD did it: read, then restore (declaring an existing chain would flush it)
    for (const a of ATT) await inNs(ns, 'iptables-restore', ['--noflush', '-w', '5'], false, legacyIpt(prefix, a, parseSave(await save())));
    const before = await save();
    expect(before).not.toContain('cni:');
    expect(before).toContain(`net=${networkTag(NET)} ${ATT[0].cid} eth0`);
    const chain = (cid: string): string => attachmentChain(prefix, attachmentTag(NET, cid, 'eth0'));
    for (const a of ATT) expect(parseSave(before).chains.has(chain(a.cid))).toBe(true);

    const ipt = { backend: 'iptables', iptablesChainPrefix: prefix, snat: false };
    const del = await pm(ns, 'DEL', ATT[0].cid, pmConf(ipt, ATT[0].port));
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
    const gc = await pm(ns, 'GC', undefined, {
      ...pmConf(ipt),
      'cni.dev/valid-attachments': [{ containerID: ATT[2].cid, ifname: 'eth0' }],
    });
    expect(gc.exitCode, gc.stderr + gc.stdout).toBe(0);

    const after = parseSave(await save());
    expect(after.chains.has(chain(ATT[0].cid))).toBe(false);
    expect(after.chains.has(chain(ATT[1].cid))).toBe(false);
    expect(after.chains.has(chain(ATT[2].cid))).toBe(true);
    expect(after.rules.some((r) => r.tokens.includes(chain(ATT[0].cid)) || r.tokens.includes(chain(ATT[1].cid)))).toBe(false);
    // the kept attachment's jump, still with its legacy comment
    expect(after.rules.find((r) => r.tokens.at(-1) === chain(ATT[2].cid))?.comment).toBe(
      legacyIptComment(networkTag(NET), `${ATT[2].cid} eth0`),
    );
    expect(tagOfName(attachmentTag(NET, ATT[2].cid, 'eth0'))).toMatch(/^cni:/);
  });
});
