/**
 * dhcp IPAM: the container's address leased by a DHCP server on the container's network,
 * through the dhcp daemon (`cni-ts dhcp daemon`), which holds and renews each lease. Keys as
 * the Go reference: `ipam.daemonSocketPath` (default /run/cni/dhcp.sock). The result: the
 * leased address with the router as gateway, and a default route via the router.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { NetConfBase, Result } from '../../shared/cni/types.ts';
import schema from '../../conf/schemas/dhcp.schema.json' with { type: 'json' };
import { askDaemon, DEFAULT_SOCKET, type DaemonRequest } from './daemon.ts';
import type { Lease } from './packet.ts';

interface DhcpConf extends NetConfBase {
  ipam?: { type: string; daemonSocketPath?: string };
}

const socketOf = (c: DhcpConf): string => c.ipam?.daemonSocketPath || DEFAULT_SOCKET;
/** The lease key, as the reference's client id: container ID, network name, interface. */
const idOf = (req: Request<DhcpConf>): string => `${req.env.containerId}/${req.config.name}/${req.env.ifname}`;

async function ask(req: Request<DhcpConf>, r: DaemonRequest): Promise<Lease | undefined> {
  let a;
  try {
    a = await askDaemon(socketOf(req.config), r);
  } catch (e) {
    throw new CniError(
      ErrorCode.TryAgainLater,
      `error dialing DHCP daemon: ${e instanceof Error ? e.message : String(e)}`,
      `is "cni-ts dhcp daemon" running on ${socketOf(req.config)}?`,
    );
  }
  if (!a.ok) throw new CniError(r.op === 'check' ? ErrorCode.CheckMismatch : ErrorCode.NotAvailable, a.error ?? 'dhcp daemon failed');
  return a.lease;
}

export function leaseResult(l: Lease): Result {
  const r: Result = { ips: [{ address: `${l.address}/${l.prefix}`, ...(l.router ? { gateway: l.router } : {}) }] };
  if (l.router) r.routes = [{ dst: '0.0.0.0/0', gw: l.router }];
  return r;
}

export default definePlugin<DhcpConf>({
  name: 'dhcp',
  about: 'IPAM: addresses leased from a DHCP server by the dhcp daemon ("dhcp daemon" runs it)',
  schema,
  async add(req) {
    const lease = await ask(req, { op: 'allocate', id: idOf(req), netns: req.env.netns, ifname: req.env.ifname });
    if (!lease) throw new CniError(ErrorCode.NotAvailable, 'dhcp daemon returned no lease');
    return leaseResult(lease);
  },
  async del(req) {
    await ask(req, { op: 'release', id: idOf(req) });
  },
  async check(req) {
    await ask(req, { op: 'check', id: idOf(req) });
  },
  async gc() {},
  async status(req) {
    await askDaemon(socketOf(req.config), { op: 'check', id: '' }).catch((e: unknown) => {
      throw new CniError(ErrorCode.NotAvailable, `DHCP daemon is not running: ${e instanceof Error ? e.message : String(e)}`);
    });
  },
});
