/**
 * podman 4 (CNI backend) drives host-device + static as a real runtime does: a veth end of this
 * test is handed to the container as eth0, the container pings the peer namespace through it,
 * and when the container goes the device is back on the host with its name, MTU, MAC and
 * address. Private podman tree from test/helpers/runtime (nothing of the system's podman used).
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, sh } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import { makePodman, podmanMissing, type Podman } from './helpers/runtime/podman.ts';
import { describePlan, planPlugins } from './helpers/runtime/plugins.ts';

const plan = await planPlugins(['host-device', 'static']);
const skip = (await podmanMissing()) || plan.skip;
if (skip) console.log(`host-device-podman: skipped: ${skip}`);
else console.log(`host-device-podman: plugins ${describePlan(plan)}`);

interface Link {
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  ifalias?: string;
  addr_info?: Array<{ local: string; prefixlen: number; scope: string }>;
}

async function hostLink(name: string): Promise<Link | undefined> {
  const r = await sh('ip', ['-json', '-details', 'addr', 'show', 'dev', name], { allowFail: true });
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as Link[])[0] : undefined;
}

describe('podman (CNI backend) drives host-device', () => {
  const cleanup = new Cleanup();
  afterAll(async () => cleanup.run(), 120_000);

  it.skipIf(skip)(
    'a veth end becomes the container eth0, carries traffic, and comes back unchanged',
    async () => {
      const tag = uid('');
      const pm: Podman = await makePodman(cleanup, `hd${tag}`, plan);
      const dev = `hdpm${tag}`;
      const n = Number.parseInt(tag, 16);
      const net = `10.${200 + (n % 50)}.${(n >> 8) % 256}`;
      const peer = await makeNetns(cleanup, `cnits-hdpm-${tag}`);
      cleanup.add(async () => {
        const l = await sh('ip', ['-json', '-details', 'link', 'show'], { allowFail: true });
        for (const x of JSON.parse(l.stdout || '[]') as Link[]) {
          if (x.ifname === dev || (x.ifalias ?? '').includes(`;n=${dev};`))
            await sh('ip', ['link', 'del', 'dev', x.ifname], { allowFail: true });
        }
      });
      await sh('ip', ['link', 'add', dev, 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1450', 'netns', peer.path]);
      await sh('ip', ['addr', 'add', `198.18.${(n >> 8) % 256}.1/24`, 'dev', dev]);
      await inNs(peer, 'ip', ['addr', 'add', `${net}.2/24`, 'dev', 'eth0']);
      await inNs(peer, 'ip', ['link', 'set', 'eth0', 'up']);
      const before = await hostLink(dev);

      const dataDir = path.join(pm.dir, 'host-device');
      cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
      const name = `cnits-hd-${tag}`;
      const conflist = {
        cniVersion: '1.0.0',
        name,
        plugins: [{ type: 'host-device', device: dev, dataDir, ipam: { type: 'static', addresses: [{ address: `${net}.1/24` }] } }],
      };
      pm.writeNetwork(conflist);

      const out = await pm.run([
        'run',
        '--rm',
        '--network',
        name,
        ...pm.image,
        'sh',
        '-c',
        `ip -o link show eth0; ip -o -4 addr show dev eth0; ping -c 2 -W 2 ${net}.2`,
      ]);
      expect(out.exitCode, out.stderr).toBe(0);
      expect(out.stdout).toContain('mtu 1450');
      expect(out.stdout).toContain(`${net}.1/24`);
      expect(out.stdout).toMatch(/2 packets received/);

      const after = await hostLink(dev);
      expect(after, 'the device is back on the host under its name').toBeDefined();
      expect({
        mtu: after?.mtu,
        mac: after?.address,
        alias: after?.ifalias,
        addrs: after?.addr_info?.filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`),
      }).toEqual({
        mtu: 1450,
        mac: before?.address,
        alias: undefined,
        addrs: [`198.18.${(n >> 8) % 256}.1/24`],
      });
    },
    180_000,
  );
});
