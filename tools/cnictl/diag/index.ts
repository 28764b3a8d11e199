/**
 * `cnictl diag`: why a container cannot reach something, found from the right place and said in
 * plain words (docs/diagnostics.md). Three subcommands:
 *   connectivity TARGET [--from NS/POD | --from-host] [--port N/tcp|udp] [--count N] [--capture S] [-w FILE.pcap]
 *   service NAME -n NS [--from NS/POD]
 *   endpoint NS/POD
 * Human output (diagnosis first) or `-o json` (docs/diagnostics.schema.json). Exit code 0 when
 * the path works, 1 when a finding explains a failure (or on an error), 2 on a usage error.
 */
import { parseArgs } from 'node:util';
import { UsageError, type Ctx } from '../common.ts';
import type { Endpoint } from '../../../shared/objects/types.ts';
import { connectivity, endpoint, service, type ConnectivityArgs } from './gather.ts';
import { portProbe } from './probes.ts';
import { connectivityText, endpointText, serviceText } from './report.ts';
import { exitCodeOf, type EndpointReport } from './schema.ts';

export const usage = `usage: cnictl diag connectivity TARGET [--from NS/POD | --from-host] [--port N/tcp|udp] [--count N] [--capture SECONDS] [-w FILE.pcap] [-n NS] [-o json]
  TARGET      NS/POD, svc/NAME (-n NS) or a service's DNS name, an IP address, or a host name
  --from      the pod to test from (its network namespace); default --from-host (this node)
  --port      also test this port (80/tcp, 53/udp); a service's first port by default
  --count     ping count (default 3, at most 20)
  --capture   tcpdump on the host-side interfaces of both ends for SECONDS (at most 30), summarised
  -w FILE     keep that capture as a pcap
usage: cnictl diag service NAME -n NS [--from NS/POD] [-o json]
  DNS answer, VIP reachability, then each backend: health, ping, port test
usage: cnictl diag endpoint NS/POD [--cache-dir DIR] [--cni-path DIRS] [-o json]
  interfaces, addresses, routes, MTUs, the CNI CHECK of its attachment (from the runtime's cache,
  default $CNI_CACHE_DIR or /var/lib/cni; plugins on $CNI_PATH or /opt/cni/bin), the policy rules
  that apply to it, their counters and its open connections
exit code: 0 the path works, 1 a finding explains a failure, 2 usage error
`;

function portArg(s: string): { port: number; protocol: 'tcp' | 'udp' } {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(s);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) throw new UsageError(`--port ${s}: expected PORT[/tcp|udp]`);
  return { port: Number(m[1]), protocol: (m[2]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp' };
}

function intArg(name: string, s: string | undefined, def: number, min: number, max: number): number {
  if (s === undefined) return def;
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max)
    throw new UsageError(`--${name} ${s}: expected a whole number from ${min} to ${max}`);
  return Number(s);
}

export function parseConnectivity(args: string[]): ConnectivityArgs & { json: boolean } {
  const { values, positionals } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      'from-host': { type: 'boolean' },
      port: { type: 'string', short: 'p' },
      count: { type: 'string', short: 'c' },
      capture: { type: 'string' },
      write: { type: 'string', short: 'w' },
      namespace: { type: 'string', short: 'n' },
      output: { type: 'string', short: 'o' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1)
    throw new UsageError(positionals.length ? `unexpected ${JSON.stringify(positionals[1])}` : 'diag connectivity needs a TARGET');
  if (values.from && values['from-host']) throw new UsageError('--from and --from-host exclude each other');
  if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
  if (values.write && !values.capture) throw new UsageError('-w needs --capture SECONDS');
  return {
    target: positionals[0]!,
    namespace: values.namespace,
    from: values.from,
    fromHost: !values.from,
    port: values.port ? portArg(values.port) : undefined,
    count: intArg('count', values.count, 3, 1, 20),
    capture: values.capture === undefined ? undefined : intArg('capture', values.capture, 0, 1, 30),
    write: values.write,
    json: values.output === 'json',
  };
}

/** The CNI CHECK of an attachment, from the runtime's cache (libcni's cniCacheV1 records). */
async function cniCheck(ep: Endpoint, cacheDir: string, cniPath: string[]): Promise<EndpointReport['check']> {
  const { listCache } = await import('../../../shared/libcni/cache.ts');
  const { parseConfList } = await import('../../../shared/libcni/conf.ts');
  const { checkNetworkList, runtimeFromCache } = await import('../../../shared/libcni/libcni.ts');
  const e =
    listCache(cacheDir).find(
      (x) => x.containerId === ep.spec.containerId && x.ifName === ep.spec.ifname && x.networkName === ep.spec.network,
    ) ?? listCache(cacheDir).find((x) => x.containerId === ep.spec.containerId && x.ifName === ep.spec.ifname);
  if (!e)
    return {
      result: 'skipped',
      detail: `no cached attachment of container ${ep.spec.containerId} ${ep.spec.ifname} under ${cacheDir}/results (not added by a libcni runtime with this cache dir)`,
    };
  try {
    const list = parseConfList(Buffer.from(e.config, 'base64').toString('utf8'), `cache of ${e.networkName}`);
    const outcome = await checkNetworkList(list, runtimeFromCache(e), { cacheDir, path: cniPath });
    return outcome === 'disabled'
      ? { result: 'skipped', detail: 'disableCheck is set on the network' }
      : { result: 'ok', detail: `${list.plugins.map((p) => p.type).join(', ')} checked` };
  } catch (err) {
    const x = err as Error & { details?: string };
    return { result: 'failed', detail: `${x.message}${x.details ? `: ${x.details}` : ''}` };
  }
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === '_port') {
    // internal: the port test, run by diag itself inside the source's netns
    const [proto, address, port, timeout] = rest;
    if ((proto !== 'tcp' && proto !== 'udp') || !address || !port) throw new UsageError('_port tcp|udp ADDRESS PORT [TIMEOUT_MS]');
    ctx.out(`${JSON.stringify(await portProbe(proto, address, Number(port), Number(timeout ?? 2000)))}\n`);
    return 0;
  }
  if (sub === 'connectivity') {
    const a = parseConnectivity(rest);
    const r = await connectivity(ctx, a);
    ctx.out(a.json ? `${JSON.stringify(r, null, 2)}\n` : connectivityText(r));
    return exitCodeOf(r.diagnosis);
  }
  if (sub === 'service' || sub === 'svc') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { namespace: { type: 'string', short: 'n' }, from: { type: 'string' }, output: { type: 'string', short: 'o' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1) throw new UsageError('diag service needs one NAME');
    if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
    const [ns, name] = positionals[0]!.includes('/')
      ? (positionals[0]!.split('/', 2) as [string, string])
      : [values.namespace ?? 'default', positionals[0]!];
    const r = await service(ctx, name, ns, values.from);
    ctx.out(values.output === 'json' ? `${JSON.stringify(r, null, 2)}\n` : serviceText(r));
    return exitCodeOf(r.diagnosis);
  }
  if (sub === 'endpoint' || sub === 'ep') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { output: { type: 'string', short: 'o' }, 'cache-dir': { type: 'string' }, 'cni-path': { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1) throw new UsageError('diag endpoint needs one NS/POD');
    if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
    const cacheDir = values['cache-dir'] ?? process.env.CNI_CACHE_DIR ?? '/var/lib/cni';
    const cniPath = (values['cni-path'] ?? process.env.CNI_PATH ?? '/opt/cni/bin').split(':').filter(Boolean);
    const r = await endpoint(ctx, positionals[0]!, (ep) => cniCheck(ep, cacheDir, cniPath));
    ctx.out(values.output === 'json' ? `${JSON.stringify(r, null, 2)}\n` : endpointText(r));
    return exitCodeOf(r.diagnosis);
  }
  throw new UsageError(
    sub ? `unknown diag subcommand ${JSON.stringify(sub)}` : 'diag needs a subcommand: connectivity, service or endpoint',
  );
}
