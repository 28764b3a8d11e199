/**
 * dhcp IPAM: the container's address leased by a DHCP server on the container's network,
 * through a dhcp daemon (`cni-ts dhcp daemon`, or the Go reference's `dhcp daemon`), which
 * holds and renews each lease. Keys and calls as the Go reference: `ipam.daemonSocketPath`
 * (default /run/cni/dhcp.sock); ADD and CHECK call `DHCP.Allocate`, DEL `DHCP.Release`, over
 * Go net/rpc (rpc.ts) with the runtime's arguments and the config bytes as skel.CmdArgs.
 */
import path from 'node:path';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { NetConfBase, Result } from '../../shared/cni/types.ts';
import schema from '../../conf/schemas/dhcp.schema.json' with { type: 'json' };
import { DEFAULT_SOCKET } from './daemon.ts';
import { fromGoResult } from './result.ts';
import { CmdArgsT, rpcCall, rpcDial, RpcError, type CmdArgs, type GoResult } from './rpc.ts';

export { leaseResult } from './result.ts';

interface DhcpConf extends NetConfBase {
  ipam?: { type: string; daemonSocketPath?: string; priority?: number };
}

const socketOf = (c: DhcpConf): string => c.ipam?.daemonSocketPath || DEFAULT_SOCKET;

function argsOf(req: Request<DhcpConf>): CmdArgs {
  return {
    ContainerID: req.env.containerId,
    // the daemon may run in another working directory (the reference makes it absolute too)
    Netns: req.env.netns ? path.resolve(req.env.netns) : '',
    IfName: req.env.ifname,
    Args: req.rawEnv.CNI_ARGS ?? '',
    Path: req.rawEnv.CNI_PATH ?? '',
    StdinData: Buffer.from(JSON.stringify(req.raw)),
  };
}

async function call(req: Request<DhcpConf>, method: 'DHCP.Allocate' | 'DHCP.Release'): Promise<GoResult> {
  const sock = socketOf(req.config);
  try {
    return (await rpcCall(sock, method, CmdArgsT, argsOf(req))) as GoResult;
  } catch (e) {
    if (e instanceof RpcError) {
      throw new CniError(
        req.env.command === 'CHECK' ? ErrorCode.CheckMismatch : ErrorCode.NotAvailable,
        `error calling ${method}: ${e.message}`,
      );
    }
    throw new CniError(
      ErrorCode.TryAgainLater,
      `error dialing DHCP daemon: ${e instanceof Error ? e.message : String(e)}`,
      `is "cni-ts dhcp daemon" (or the reference's "dhcp daemon") running on ${sock}?`,
    );
  }
}

export default definePlugin<DhcpConf>({
  name: 'dhcp',
  about: 'IPAM: addresses leased from a DHCP server by the dhcp daemon ("dhcp daemon" runs it)',
  schema,
  async add(req): Promise<Result> {
    const r = fromGoResult(await call(req, 'DHCP.Allocate'));
    if (!r.ips?.length) throw new CniError(ErrorCode.NotAvailable, 'dhcp daemon returned no address');
    return r;
  },
  async del(req) {
    await call(req, 'DHCP.Release');
  },
  /** As the reference: Allocate again (the daemon answers the lease it holds); the address must be prevResult's. */
  async check(req) {
    const r = fromGoResult(await call(req, 'DHCP.Allocate'));
    const want = req.prevResult?.ips?.map((i) => i.address) ?? [];
    const got = r.ips?.map((i) => i.address) ?? [];
    if (want.length && !want.every((a) => got.includes(a))) {
      throw new CniError(ErrorCode.CheckMismatch, `the daemon's lease ${got.join(', ')} is not prevResult's ${want.join(', ')}`);
    }
  },
  async gc() {},
  async status(req) {
    await rpcDial(socketOf(req.config), 5000).then(
      ({ sock }) => sock.destroy(),
      (e: unknown) => {
        throw new CniError(ErrorCode.NotAvailable, `DHCP daemon is not running: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  },
});
