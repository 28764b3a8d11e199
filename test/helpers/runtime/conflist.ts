/** The conflists the runtime tests hand to podman and containerd (pure functions). */

export interface TestNetwork {
  /** network name (unique per test) */
  name: string;
  /** Linux bridge name (unique per test, at most 15 characters) */
  bridge: string;
  subnet: string;
  gateway: string;
  /** host-local dataDir (per test) */
  dataDir: string;
  /** log file our plugins append to (logLevel debug), or undefined */
  logFile?: string;
  /** include portmap (runtimeConfig.portMappings) */
  portmap?: boolean;
  /** include loopback first (containerd brings lo up through its own loopback call) */
  loopback?: boolean;
  cniVersion?: string;
  /** bridge ipMasq: masquerade scoped to the pod addresses, for destinations outside the subnet */
  ipMasq?: boolean;
}

/** Our nftables table for this test network (bridge masquerade/macspoof and portmap). */
export const nftTableOf = (n: TestNetwork): string => `cnits_${n.bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;

/**
 * portmap's own table: given bridge's table, portmap's ADD (which re-asserts its base chains,
 * `postrouting` included) would flush bridge's masquerade rules.
 */
export const portmapTableOf = (n: TestNetwork): string => `${nftTableOf(n)}_pm`;

/** bridge + host-local (+ portmap), in the keys the reference plugins and ours share. */
export function bridgeConflist(n: TestNetwork): { name: string } & Record<string, unknown> {
  const log = n.logFile ? { logFile: n.logFile, logLevel: 'debug' } : {};
  const plugins: Array<Record<string, unknown>> = [];
  if (n.loopback) plugins.push({ type: 'loopback', ...log });
  plugins.push({
    type: 'bridge',
    bridge: n.bridge,
    isGateway: true,
    ipMasq: n.ipMasq ?? false,
    hairpinMode: true,
    nftTable: nftTableOf(n),
    capabilities: { ips: true, mac: true },
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: n.subnet, gateway: n.gateway }]],
      routes: [{ dst: '0.0.0.0/0' }],
      dataDir: n.dataDir,
    },
    ...log,
  });
  if (n.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true, nftTable: portmapTableOf(n), ...log });
  return { cniVersion: n.cniVersion ?? '1.0.0', name: n.name, plugins };
}
