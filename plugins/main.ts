/**
 * Entry of the multi-call executable: dispatch on the name it was invoked by
 * (/opt/cni/bin/bridge, /opt/cni/bin/host-local, ... are hard links to one binary), or on the
 * first argument when run as `cni-ts <plugin>`.
 */
import path from 'node:path';
import { aboutText, pluginMain } from '../shared/cni/skel.ts';
import { load, register, registered } from '../shared/cni/registry.ts';
import { SUPPORTED_VERSIONS } from '../shared/cni/version.ts';
import { writeStderr } from '../shared/cni/stdio.ts';
import { MULTICALL_NAME } from './names.ts';
import { trace } from '../shared/cni/trace.ts';

register('host-local', async () => (await import('../ipam/host-local/index.ts')).default);
register('static', async () => (await import('../ipam/static/index.ts')).default);
register('overlay', async () => (await import('./overlay/index.ts')).default);
register('loopback', async () => (await import('./loopback/index.ts')).default);
register('host-device', async () => (await import('./host-device/index.ts')).default);
register('bandwidth', async () => (await import('./bandwidth/index.ts')).default);
register('portmap', async () => (await import('./portmap/index.ts')).default);
register('bridge', async () => (await import('./bridge/index.ts')).default);
register('ptp', async () => (await import('./ptp/index.ts')).default);
register('tuning', async () => (await import('./tuning/index.ts')).default);
register('macvlan', async () => (await import('./macvlan/index.ts')).default);
register('ipvlan', async () => (await import('./ipvlan/index.ts')).default);
register('vlan', async () => (await import('./vlan/index.ts')).default);
register('dummy', async () => (await import('./dummy/index.ts')).default);
register('vrf', async () => (await import('./vrf/index.ts')).default);
register('tap', async () => (await import('./tap/index.ts')).default);
register('sbr', async () => (await import('./sbr/index.ts')).default);
register('firewall', async () => (await import('./firewall/index.ts')).default);
register('dhcp', async () => (await import('../ipam/dhcp/index.ts')).default);
register('endpoint', async () => (await import('./endpoint/index.ts')).default);

type Tool = (argv: string[]) => Promise<number>;
const tools = new Map<string, () => Promise<Tool>>();
tools.set('cnitool', async () => (await import('./cnitool/index.ts')).main);
tools.set('cnictl', async () => (await import('../tools/cnictl/index.ts')).main);
// `cni-ts agent --config FILE`: the node agent (a long-running daemon, not a CNI call).
tools.set('agent', async () => (await import('../agent/main.ts')).main);

async function main(): Promise<void> {
  const invoked = path.basename(process.argv0 || process.execPath);
  let name = invoked;
  // Under Bun argv is [bun, /$bunfs/root/cni-ts, ...args], under Node SEA [exe, exe, ...args],
  // under plain node [node, script, ...args]; argv0 is the name it was invoked by.
  let args = process.argv.slice(2);
  if (!registered().includes(name) && !tools.has(name)) {
    name = args[0] ?? '';
    args = args.slice(1);
  }
  const tool = tools.get(name);
  if (tool) {
    process.exitCode = await (await tool())(args);
    return;
  }
  // `overlay agent --config FILE`: the overlay's long-running peer agent (not a CNI call).
  if (name === 'overlay' && args[0] === 'agent') {
    process.exitCode = await (await import('./overlay/agent.ts')).agentMain(args.slice(1));
    return;
  }
  // `dhcp daemon [-socketpath P]`: the lease daemon; `dhcp client ...`: one lease, run by it in a netns.
  if (name === 'dhcp' && (args[0] === 'daemon' || args[0] === 'client')) {
    const m = args[0] === 'daemon' ? (await import('../ipam/dhcp/daemon.ts')).dhcpDaemonMain : (await import('../ipam/dhcp/client.ts')).dhcpClientMain;
    process.exitCode = await m(args.slice(1));
    process.exit();
  }
  const plugin = await load(name);
  if (!plugin) {
    writeStderr(
      `${MULTICALL_NAME}: CNI plugins in one executable; invoke it as one of: ${[...registered(), ...tools.keys()].join(', ')}\n` +
        `(hard links or symlinks named after the plugin, or "${MULTICALL_NAME} <plugin>")\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`,
    );
    process.exitCode = name ? 1 : 0;
    return;
  }
  if (args[0] === '--help' || args[0] === '-h' || args[0] === 'version' || args[0] === '--version') {
    writeStderr(aboutText(plugin));
    return;
  }
  trace(`plugin ${name} loaded`);
  await pluginMain(plugin);
  trace('done');
  // The reply is written (synchronously) and the verb has finished: leave now. Letting Node
  // drain and tear down its environment and heap normally costs ~10 ms of every call.
  process.exit();
}

main().catch((e: unknown) => {
  writeStderr(`${MULTICALL_NAME}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
