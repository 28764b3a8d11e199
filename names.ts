/**
 * The one table of names the multi-call executable answers to: what each is (a CNI plugin, an
 * IPAM plugin, an operator tool, the daemon), the module it loads and which plugins run
 * in-process inside its calls. Read by main.ts (dispatch) and by scripts/build.mjs (the hard
 * links in dist/bin, one bundle per plugin holding it and its in-process members, the names
 * `make install` also links on PATH). A new name is one entry here.
 *
 * `module` is the path `load` imports, written twice on one line because the bundler needs a
 * literal import(); scripts/build.mjs checks that they agree.
 */
import type { Plugin } from './shared/cni/plugin.ts';
import type { NetConfBase } from './shared/cni/types.ts';

export const MULTICALL_NAME = 'cni-ts';

export type Tool = (argv: string[]) => Promise<number>;
export interface PluginModule {
  default: Plugin<NetConfBase>;
}
export interface ToolModule {
  main: Tool;
}
interface Subcommand {
  module: string;
  load: () => Promise<ToolModule>;
}
interface Common {
  module: string;
  /** `make install` also links it into BIN_DIR (on PATH) */
  onPath?: boolean;
}
export interface PluginName extends Common {
  role: 'plugin' | 'ipam';
  load: () => Promise<PluginModule>;
  /**
   * Plugins its calls may run in-process (delegation without an exec): its bundle holds them.
   * Every plugin has a bundle of its own ([name, ...inProcess]); the rest run from the whole one.
   */
  inProcess?: readonly string[];
  /** `<name> <subcommand> ...`: a long-running command of the plugin, not a CNI call */
  subcommands?: Readonly<Record<string, Subcommand>>;
}
export interface ToolName extends Common {
  role: 'tool' | 'daemon';
  load: () => Promise<ToolModule>;
}
export type NameEntry = PluginName | ToolName;
export const isPlugin = (e: NameEntry): e is PluginName => e.role === 'plugin' || e.role === 'ipam';
/** Every name but the daemon (run as `cni-ts agent`) is a hard link in dist/bin (CNI_BIN_DIR). */
export const isLinked = (e: NameEntry): boolean => e.role !== 'daemon';

const IPAM = ['host-local', 'static'] as const;

export const NAMES: Readonly<Record<string, NameEntry>> = {
  bridge: { role: 'plugin', inProcess: IPAM, module: './plugins/bridge/index.ts', load: () => import('./plugins/bridge/index.ts') },
  portmap: { role: 'plugin', module: './plugins/portmap/index.ts', load: () => import('./plugins/portmap/index.ts') },
  bandwidth: { role: 'plugin', module: './plugins/bandwidth/index.ts', load: () => import('./plugins/bandwidth/index.ts') },
  loopback: { role: 'plugin', module: './plugins/loopback/index.ts', load: () => import('./plugins/loopback/index.ts') },
  'host-device': {
    role: 'plugin',
    inProcess: IPAM,
    module: './plugins/host-device/index.ts',
    load: () => import('./plugins/host-device/index.ts'),
  },
  // overlay attaches pods through bridge
  overlay: {
    role: 'plugin',
    inProcess: ['bridge', ...IPAM],
    module: './plugins/overlay/index.ts',
    load: () => import('./plugins/overlay/index.ts'),
    // `overlay agent --config FILE`: the overlay's long-running peer agent
    subcommands: {
      agent: { module: './plugins/overlay/agent.ts', load: async () => ({ main: (await import('./plugins/overlay/agent.ts')).agentMain }) },
    },
  },
  'host-local': { role: 'ipam', module: './ipam/host-local/index.ts', load: () => import('./ipam/host-local/index.ts') },
  static: { role: 'ipam', module: './ipam/static/index.ts', load: () => import('./ipam/static/index.ts') },
  endpoint: { role: 'plugin', module: './plugins/endpoint/index.ts', load: () => import('./plugins/endpoint/index.ts') },
  ptp: { role: 'plugin', inProcess: IPAM, module: './plugins/ptp/index.ts', load: () => import('./plugins/ptp/index.ts') },
  tuning: { role: 'plugin', module: './plugins/tuning/index.ts', load: () => import('./plugins/tuning/index.ts') },
  macvlan: { role: 'plugin', inProcess: IPAM, module: './plugins/macvlan/index.ts', load: () => import('./plugins/macvlan/index.ts') },
  ipvlan: { role: 'plugin', inProcess: IPAM, module: './plugins/ipvlan/index.ts', load: () => import('./plugins/ipvlan/index.ts') },
  vlan: { role: 'plugin', inProcess: IPAM, module: './plugins/vlan/index.ts', load: () => import('./plugins/vlan/index.ts') },
  dummy: { role: 'plugin', inProcess: IPAM, module: './plugins/dummy/index.ts', load: () => import('./plugins/dummy/index.ts') },
  vrf: { role: 'plugin', module: './plugins/vrf/index.ts', load: () => import('./plugins/vrf/index.ts') },
  tap: { role: 'plugin', inProcess: IPAM, module: './plugins/tap/index.ts', load: () => import('./plugins/tap/index.ts') },
  sbr: { role: 'plugin', module: './plugins/sbr/index.ts', load: () => import('./plugins/sbr/index.ts') },
  firewall: { role: 'plugin', module: './plugins/firewall/index.ts', load: () => import('./plugins/firewall/index.ts') },
  dhcp: {
    role: 'ipam',
    module: './ipam/dhcp/index.ts',
    load: () => import('./ipam/dhcp/index.ts'),
    // `dhcp daemon [-socketpath P]`: the lease daemon; `dhcp client ...`: one lease, run by the daemon inside a netns
    subcommands: {
      daemon: { module: './ipam/dhcp/daemon.ts', load: async () => ({ main: (await import('./ipam/dhcp/daemon.ts')).dhcpDaemonMain }) },
      client: { module: './ipam/dhcp/client.ts', load: async () => ({ main: (await import('./ipam/dhcp/client.ts')).dhcpClientMain }) },
    },
  },
  cnitool: { role: 'tool', module: './tools/cnitool/index.ts', load: () => import('./tools/cnitool/index.ts') },
  cnictl: { role: 'tool', onPath: true, module: './tools/cnictl/index.ts', load: () => import('./tools/cnictl/index.ts') },
  // `cni-ts agent --config FILE`: the node agent (a long-running daemon, not a CNI call)
  agent: { role: 'daemon', module: './agent/main.ts', load: () => import('./agent/main.ts') },
};

/** Every module a name (or its subcommands) loads, with the name it belongs to. */
export function modulesOf(): Array<[module: string, name: string]> {
  const out: Array<[string, string]> = [];
  for (const [name, e] of Object.entries(NAMES)) {
    out.push([e.module, name]);
    if (isPlugin(e)) for (const s of Object.values(e.subcommands ?? {})) out.push([s.module, name]);
  }
  return out;
}

/** The bundles of the executable besides the whole one: each plugin with its in-process members. */
export function bundleGroups(): Record<string, string[]> {
  const groups: Record<string, string[]> = {};
  for (const [name, e] of Object.entries(NAMES)) if (isPlugin(e)) groups[name] = [name, ...(e.inProcess ?? [])];
  return groups;
}
