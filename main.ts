/**
 * Entry of the multi-call executable: dispatch on the name it was invoked by
 * (/opt/cni/bin/bridge, /opt/cni/bin/host-local, ... are hard links to one binary), or on the
 * first argument when run as `cni-ts <name>`. The names are in names.ts.
 */
import path from 'node:path';
import { aboutText, pluginMain } from './shared/cni/skel.ts';
import { load, register, registered } from './shared/cni/registry.ts';
import { SUPPORTED_VERSIONS } from './shared/cni/version.ts';
import { writeStderr } from './shared/stdio.ts';
import { isPlugin, MULTICALL_NAME, NAMES, type ToolName } from './names.ts';
import { trace } from './shared/trace.ts';
import type { Plugin } from './shared/cni/plugin.ts';
import type { NetConfBase } from './shared/cni/types.ts';

const tools = new Map<string, ToolName>();
for (const [name, e] of Object.entries(NAMES)) {
  if (isPlugin(e)) register(name, async () => (await e.load()).default);
  else tools.set(name, e);
}

/**
 * The Bun executable starts with JavaScriptCore's JIT tier-up thresholds scaled up
 * (scripts/build.mjs, --compile-jit-policy): a plugin call runs its code once, and compiling it
 * costs more than it saves. A command that keeps running (a tool, the agent, a plugin's daemon)
 * gets the normal policy back before it loads.
 */
function normalJit(): void {
  (globalThis as { Bun?: { unsafe?: { setJITPolicy?: (scale: number) => void } } }).Bun?.unsafe?.setJITPolicy?.(1);
}

/** A plugin that only answers VERSION (the engine answers it before any verb could run). */
function versionOnly(name: string): Plugin<NetConfBase> {
  const never = (): never => {
    throw new Error(`${name}: only VERSION is answered without loading the plugin`);
  };
  return { name, about: '', add: never, del: never, check: never };
}

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
    normalJit();
    process.exitCode = await (await tool.load()).main(args);
    return;
  }
  // `<plugin> <subcommand> ...` (`overlay agent --config FILE`): a long-running command, not a CNI call.
  const entry = Object.hasOwn(NAMES, name) ? NAMES[name] : undefined;
  const subs = entry && isPlugin(entry) ? entry.subcommands : undefined;
  if (subs && args[0] !== undefined && Object.hasOwn(subs, args[0])) {
    normalJit();
    process.exitCode = await (await subs[args[0]].load()).main(args.slice(1));
    return;
  }
  // VERSION's answer is the same for every plugin (the protocol versions this executable
  // speaks): it is given without loading the plugin's modules (~2 ms CPU, ~2 MiB RSS).
  if (process.env.CNI_COMMAND === 'VERSION' && !args.length && entry && isPlugin(entry)) {
    await pluginMain(versionOnly(name));
    trace('done');
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
