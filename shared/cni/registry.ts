/**
 * The plugins built into this multi-call executable, by `type` name, loaded lazily so a call
 * only evaluates the plugin it runs. Filled by main.ts from names.ts.
 */
import type { Plugin } from './plugin.ts';
import type { NetConfBase } from './types.ts';

type Loader = () => Promise<Plugin<NetConfBase>> | Plugin<NetConfBase>;
const loaders = new Map<string, Loader>();

export function register(name: string, load: Loader): void {
  loaders.set(name, load);
}

export function registered(): string[] {
  return [...loaders.keys()].sort();
}

export async function load(name: string): Promise<Plugin<NetConfBase> | undefined> {
  const l = loaders.get(name);
  return l ? await l() : undefined;
}
