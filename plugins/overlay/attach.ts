/**
 * Local pod attachment by delegation: this suite's `bridge` plugin (in-process when CNI_PATH
 * resolves to this executable) with a config derived from the host's lease, and `host-local`
 * IPAM over the leased subnet with its store under stateDir/ipam. The overlay's result is the
 * bridge's result.
 */
import path from 'node:path';
import { delegate, type DelegateCommand } from '../../shared/cni/delegate.ts';
import type { Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { formatCIDR } from '../../shared/ipnet.ts';
import type { OverlayConf, Settings } from '../../shared/overlay/config.ts';

/** The bridge config for pods of this host (pure). */
export function bridgeConfig(req: Request<OverlayConf>, s: Settings, subnet: string, mtu: number): Record<string, unknown> {
  const routes: Array<{ dst: string }> = [{ dst: formatCIDR(s.network) }];
  if (s.ipMasq) routes.push({ dst: '0.0.0.0/0' });
  const conf: Record<string, unknown> = {
    cniVersion: req.version,
    name: s.name,
    type: 'bridge',
    bridge: s.bridge,
    isGateway: true,
    ...(mtu ? { mtu } : {}),
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], routes, dataDir: path.join(s.stateDir, 'ipam') },
  };
  for (const k of [
    'runtimeConfig',
    'args',
    'prevResult',
    'cni.dev/valid-attachments',
    'cni.dev/attachments',
    'logFile',
    'logLevel',
  ] as const) {
    if (req.raw[k] !== undefined) conf[k] = req.raw[k];
  }
  if (req.config.dns) conf.dns = req.config.dns;
  // a runtime that moves the container end itself (Docker's CNM driver): the bridge leaves it in CNI_NETNS
  if (req.config.disableContainerInterface === true) conf.disableContainerInterface = true;
  return conf;
}

export async function delegateBridge(
  command: DelegateCommand,
  req: Request<OverlayConf>,
  s: Settings,
  subnet: string,
  mtu: number,
): Promise<Result | undefined> {
  return delegate('bridge', command, req, bridgeConfig(req, s, subnet, mtu));
}
