/**
 * The host's local pod bridge, made by converge before any pod exists so the host subnet is
 * routed at once: addressed with the subnet's gateway, and with a MAC fixed from the subnet so
 * it never flips to a port's MAC when pods come and go. Pods are attached by the bridge plugin.
 */
import { sha256Bytes } from '../hash.ts';
import { parseCIDR } from '../ipnet.ts';
import type { Settings } from './config.ts';
import { gatewayOf } from './host.ts';

export function bridgeMac(subnet: string): string {
  const h = Buffer.from(sha256Bytes(`cni-ts-overlay-bridge|${subnet}`));
  h[0] = (h[0] & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** ip -batch commands creating the bridge and/or its gateway address when missing (pure). */
export function planBridge(s: Settings, subnet: string, mtu: number, exists: boolean, hasGateway: boolean): string[][] {
  const gw = `${gatewayOf(subnet)}/${parseCIDR(subnet)!.prefix}`;
  const cmds: string[][] = [];
  if (!exists) cmds.push(['link', 'add', s.bridge, 'address', bridgeMac(subnet), 'mtu', String(mtu), 'type', 'bridge']);
  if (!exists || !hasGateway) cmds.push(['addr', 'replace', gw, 'dev', s.bridge]);
  if (!exists) cmds.push(['link', 'set', s.bridge, 'up']);
  return cmds;
}
