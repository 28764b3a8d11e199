/**
 * cnitool: run a network from the config directory against a network namespace, as a
 * runtime (libcni) would. Interface of the reference cnitool, plus flags for everything a
 * runtime passes (ifname, container ID, CNI_ARGS, capability args, cache dir).
 */
import { sha512Hex } from '../../shared/hash.ts';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { asCniError, CniError, ErrorCode } from '../../shared/cni/errors.ts';
import type { Attachment } from '../../shared/cni/types.ts';
import { DEFAULT_CACHE_DIR, listCache } from '../../shared/libcni/cache.ts';
import { loadNetwork, type NetworkList } from '../../shared/libcni/conf.ts';
import { errorJson, formatError, formatGc, formatResult, formatStatus } from './format.ts';
import {
  addNetworkList,
  checkNetworkList,
  delNetworkList,
  gcNetworkList,
  statusNetworkList,
  type RuntimeConf,
  type ToolOptions,
} from '../../shared/libcni/libcni.ts';

export const DEFAULT_NET_DIR = '/etc/cni/net.d';
export const DEFAULT_CNI_PATH = '/opt/cni/bin';

const USAGE = `cnitool: run a CNI network configuration against a network namespace, as a runtime does

usage: cnitool <command> <network-name> [<netns-path>] [flags]
  add     <net> <netns>   ADD the network's plugin chain; prints the result
  check   <net> <netns>   CHECK it against the cached result (skipped with disableCheck)
  del     <net> [<netns>] DEL the chain in reverse with the cached result as prevResult
  gc      <net> [<netns>] DEL cached attachments that are not valid, then GC every plugin
  status  <net>           STATUS of every plugin

flags:
  -i, --ifname NAME          interface in the container (default $CNI_IFNAME or eth0)
      --container-id ID      default: cnitool-<sha512(netns path)[:10] in hex>, like the reference
      --args K=V;K=V         CNI_ARGS (default $CNI_ARGS)
      --capability-args JSON capability args, e.g. '{"portMappings":[...]}' (default $CAP_ARGS)
      --cache-dir DIR        results cache (default $CNI_CACHE_DIR or ${DEFAULT_CACHE_DIR})
      --conf-dir DIR         config directory (default $NETCONFPATH or ${DEFAULT_NET_DIR})
      --cni-path DIRS        plugin directories, colon separated (default $CNI_PATH or ${DEFAULT_CNI_PATH})
      --valid ID[/IF],...    gc: the attachments still in use (default: every cached attachment
                             except the one named by <netns>/--container-id; '' = none)
      --no-rollback          add: leave a failed ADD as it is instead of DELeting the chain
      --json                 print the result (or the error) as JSON
  -h, --help
`;

class UsageError extends Error {}

/** The reference's container ID: "cnitool-" + hex of the first 10 bytes of sha512(netns path). */
export function containerIdFor(netnsPath: string): string {
  return `cnitool-${sha512Hex(netnsPath).slice(0, 20)}`;
}

/** CNI_ARGS as the reference cnitool parses it: K=V pairs separated by ';', both non-empty. */
export function parseCniArgsPairs(s: string): Array<[string, string]> {
  if (!s) return [];
  return s.split(';').map((pair) => {
    const kv = pair.split('=');
    if (kv.length !== 2 || !kv[0] || !kv[1]) throw new UsageError(`invalid CNI_ARGS pair "${pair}"`);
    return [kv[0], kv[1]] as [string, string];
  });
}

export function parseCapabilityArgs(s: string | undefined): Record<string, unknown> {
  if (!s) return {};
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (e) {
    throw new UsageError(`capability args are not JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UsageError('capability args must be a JSON object');
  return v as Record<string, unknown>;
}

/**
 * The valid attachments for gc: `--valid` entries ("id" means every cached ifname of that
 * container, or `ifname` when none is cached); without `--valid`, every cached attachment
 * of the network except `exclude`.
 */
export function validAttachments(spec: string | undefined, cached: Attachment[], ifname: string, exclude?: Attachment): Attachment[] {
  if (spec === undefined) return cached.filter((a) => !exclude || a.containerID !== exclude.containerID || a.ifname !== exclude.ifname);
  const out: Attachment[] = [];
  for (const item of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [id, ifn] = item.split('/');
    if (ifn) out.push({ containerID: id, ifname: ifn });
    else {
      const mine = cached.filter((a) => a.containerID === id);
      out.push(...(mine.length ? mine : [{ containerID: id, ifname }]));
    }
  }
  return out;
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const stdio: Io = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, io: Io = stdio): Promise<number> {
  let json = false;
  let what = 'cnitool';
  let list: NetworkList | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ifname: { type: 'string', short: 'i' },
        'container-id': { type: 'string' },
        args: { type: 'string' },
        'capability-args': { type: 'string' },
        'cache-dir': { type: 'string' },
        'conf-dir': { type: 'string' },
        'cni-path': { type: 'string' },
        valid: { type: 'string' },
        'no-rollback': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    json = values.json === true;
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    const [command, netName, netnsArg] = positionals;
    if (!command) {
      io.err(USAGE);
      return 2;
    }
    if (!['add', 'check', 'del', 'gc', 'status'].includes(command)) throw new UsageError(`unknown command "${command}"`);
    if (!netName) throw new UsageError(`${command}: network name is required`);
    if (positionals.length > 3) throw new UsageError(`${command}: unexpected argument "${positionals[3]}"`);
    what = `${command} "${netName}"`;
    const netns = netnsArg ? path.resolve(netnsArg) : '';
    if ((command === 'add' || command === 'check') && !netns) throw new UsageError(`${command}: network namespace path is required`);
    const containerId = values['container-id'] ?? (netns ? containerIdFor(netns) : '');
    if (command === 'del' && !containerId) throw new UsageError('del: give the netns path or --container-id');
    const ifname = values.ifname || env.CNI_IFNAME || 'eth0';
    const rt: RuntimeConf = {
      containerId,
      netns,
      ifname,
      args: parseCniArgsPairs(values.args ?? env.CNI_ARGS ?? ''),
      capabilityArgs: parseCapabilityArgs(values['capability-args'] ?? env.CAP_ARGS),
    };
    const opts: ToolOptions = {
      cacheDir: values['cache-dir'] || env.CNI_CACHE_DIR || DEFAULT_CACHE_DIR,
      path: (values['cni-path'] ?? env.CNI_PATH ?? DEFAULT_CNI_PATH).split(':').filter(Boolean),
      env,
      rollback: values['no-rollback'] !== true,
    };
    list = loadNetwork(values['conf-dir'] || env.NETCONFPATH || DEFAULT_NET_DIR, netName);
    const head = `network "${list.name}" (cniVersion ${list.cniVersion}), container ${containerId || '-'}, ifname ${ifname}`;
    switch (command) {
      case 'add': {
        const result = await addNetworkList(list, rt, opts);
        io.out(json ? JSON.stringify(result, null, 2) : `${head}: added\n${formatResult(result, list.cniVersion)}`);
        return 0;
      }
      case 'check': {
        const r = await checkNetworkList(list, rt, opts);
        io.out(
          json ? JSON.stringify({ check: r }) : `${head}: ${r === 'checked' ? 'CHECK passed' : 'CHECK skipped (disableCheck is set)'}`,
        );
        return 0;
      }
      case 'del':
        await delNetworkList(list, rt, opts);
        io.out(json ? JSON.stringify({ deleted: true }) : `${head}: deleted`);
        return 0;
      case 'gc': {
        const cached = listCache(opts.cacheDir, list.name).map((e) => ({ containerID: e.containerId, ifname: e.ifName }));
        const valid = validAttachments(values.valid, cached, ifname, containerId ? { containerID: containerId, ifname } : undefined);
        const r = await gcNetworkList(list, valid, opts);
        io.out(
          json
            ? JSON.stringify({ ...r, errors: r.errors.map((e) => errorJson(e, list?.cniVersion ?? '')) }, null, 2)
            : formatGc(list.name, r),
        );
        return r.errors.length ? 1 : 0;
      }
      case 'status': {
        const s = await statusNetworkList(list, opts);
        io.out(
          json
            ? JSON.stringify(
                {
                  skipped: s.skipped,
                  plugins: s.plugins.map((p) => ({ type: p.type, ok: p.ok, error: p.error && errorJson(p.error, list?.cniVersion ?? '') })),
                },
                null,
                2,
              )
            : formatStatus(list.name, list.cniVersion, s),
        );
        return s.plugins.every((p) => p.ok) ? 0 : 1;
      }
    }
    return 2;
  } catch (e) {
    if (
      e instanceof UsageError ||
      (e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS'))
    ) {
      io.err(`cnitool: ${e.message}\nrun "cnitool --help" for usage`);
      return 2;
    }
    const err = e instanceof CniError ? e : asCniError(e);
    if (json) io.out(JSON.stringify(errorJson(err, list?.cniVersion ?? ''), null, 2));
    else io.err(formatError(what, err));
    return err.code === ErrorCode.Internal && !(e instanceof CniError) ? 3 : 1;
  }
}
