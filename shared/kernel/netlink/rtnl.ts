/**
 * In-process rtnetlink behind shared/kernel's functions: an `ip -batch` of known commands,
 * link/address/route reads, link deletion. Each returns undefined when it cannot do the job
 * (a command it does not know, not under Bun, CNI_TS_NETLINK=0) and the caller runs `ip`.
 * Synchronous under the hood (a netlink request is answered inside the send), so every entry
 * first yields to the event loop once: work started beside it (an nft child, a lock) starts
 * before this thread waits on the kernel (docs/netlink.md).
 */
import { CniError, ErrorCode } from '../../cni/errors.ts';
import type { LinkInfo, RouteInfo } from '../iptypes.ts';
import * as C from './constants.ts';
import { attr, ifaddrmsg, ifinfomsg, ipBytes, rtmsg } from './codec.ts';
import { decodeAddr, decodeLink, decodeRoute, resolveLink, resolveRoute, type LinkRef } from './decode.ts';
import { buildRequest, describeOp, parseIpBatch, type BuildContext } from './ipcmd.ts';
import { errnoText } from './errno.ts';
import { closeFd, netlinkEnabled, NetlinkError, openFd, RtnlSocket, SysError } from './socket.ts';
import { readFileSync } from 'node:fs';
import type { RunResult } from '../exec.ts';
import { decodeRule, fibRuleHdr, RTM_GETRULE, RTM_NEWRULE, type RuleEntry } from './rule.ts';
import {
  buildTcRequest,
  decodeClass,
  decodeFilter,
  decodeQdisc,
  describeTc,
  parseTcBatch,
  RTM_GETQDISC,
  RTM_GETTCLASS,
  RTM_GETTFILTER,
  RTM_NEWQDISC,
  RTM_NEWTCLASS,
  RTM_NEWTFILTER,
  tcmsg,
  hzOf,
  tickInUsec,
  type TcContext,
} from './tc.ts';

export { netlinkEnabled };

let hostSocket: RtnlSocket | undefined;

/** The socket for `netns` (undefined: ours). The host one is kept; a netns one is closed by `done`. */
function socketFor(netns?: string): { sock: RtnlSocket; done: () => void } {
  if (!netns) {
    hostSocket ??= RtnlSocket.open();
    return { sock: hostSocket, done: () => undefined };
  }
  let sock: RtnlSocket;
  try {
    sock = RtnlSocket.open(netns);
  } catch (e) {
    // what `nsenter --net=` failing is on the process path: code 100, the reason
    if (e instanceof SysError) throw new CniError(ErrorCode.KernelOperation, `cannot enter ${netns}: ${e.message}`, e.details);
    throw e;
  }
  return { sock, done: () => sock.close() };
}

const yieldOnce = (): Promise<void> => new Promise((r) => setImmediate(r));

const ENODEV = 19;

/** ifindex of `name` via RTM_GETLINK; undefined when there is no such link. */
function indexOf(sock: RtnlSocket, name: string): number | undefined {
  try {
    const [m] = sock.request(
      { type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST, header: ifinfomsg(), attrs: [attr.str(C.IFLA_IFNAME, name)] },
      `ip link show ${name}`,
    );
    return m ? decodeLink(m).info.ifindex : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
    throw e;
  }
}

function linkByIndex(sock: RtnlSocket, index: number): LinkInfo | undefined {
  try {
    const [m] = sock.request({ type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST, header: ifinfomsg({ index }) }, `ip link show index ${index}`);
    return m ? decodeLink(m).info : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
    throw e;
  }
}

/**
 * Run `ip -batch` lines in-process; false when a line is not one this module does (the
 * caller runs `ip`). A refused line throws what `run('ip', ...)` would: code 100 (the
 * errno's code), the line and the kernel's text.
 */
export async function nlIpBatch(cmds: string[][], netns?: string, family?: 4 | 6): Promise<boolean> {
  if (!netlinkEnabled()) return false;
  const ops = parseIpBatch(cmds);
  if (!ops) return false;
  // `ip -4/-6 -batch`: only rules, each of that family (what ipBatchByFamily hands over)
  if (family && !ops.every((o) => o.op === 'rule' && o.family === family)) return false;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  const fds: number[] = [];
  const where = netns ? ` (in ${netns})` : '';
  const ctx: BuildContext = {
    index(name) {
      const i = indexOf(sock, name);
      if (i === undefined)
        throw new CniError(ErrorCode.KernelOperation, `ip: Cannot find device "${name}"${where}`, `Cannot find device "${name}"`);
      return i;
    },
    nsFd(path) {
      const fd = openFd(path);
      fds.push(fd);
      return fd;
    },
  };
  try {
    cmds.forEach((argv, i) => {
      const what = describeOp(argv);
      try {
        sock.request(buildRequest(ops[i], ctx), what);
      } catch (e) {
        // details as `ip -batch` gives them: the kernel's answer, then which line failed (callers read both)
        if (e instanceof NetlinkError)
          throw new CniError(e.code, `${what}${where} failed: ${e.details}`, `${e.details}\nCommand failed -:${i + 1}`);
        throw e;
      }
    });
  } finally {
    for (const fd of fds) closeFd(fd);
    done();
  }
  return true;
}

/** `ip -details addr show dev NAME`: the link with its addresses; null when absent; undefined = use `ip`. */
export async function nlGetLink(name: string, netns?: string): Promise<LinkInfo | null | undefined> {
  if (!netlinkEnabled()) return undefined;
  await yieldOnce();
  let opened;
  try {
    opened = socketFor(netns);
  } catch {
    return null; // like `ip` failing under nsenter: no such link to be seen
  }
  const { sock, done } = opened;
  try {
    let raw;
    try {
      const [m] = sock.request(
        { type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST, header: ifinfomsg(), attrs: [attr.str(C.IFLA_IFNAME, name)] },
        `ip link show ${name}`,
      );
      if (!m) return null;
      raw = decodeLink(m);
    } catch (e) {
      // a name the kernel cannot look up (too long, absent): `ip` exits non-zero, getLink says undefined
      if (e instanceof NetlinkError) return null;
      throw e;
    }
    const refs = new Map<number, LinkRef | undefined>();
    const lookup = (i: number): LinkRef | undefined => {
      if (!refs.has(i)) {
        const l = linkByIndex(sock, i);
        refs.set(i, l && { name: l.ifname, up: l.flags.includes('UP') });
      }
      return refs.get(i);
    };
    const info = resolveLink(raw, lookup);
    const addrs = sock.request(
      { type: C.RTM_GETADDR, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: ifaddrmsg({ index: info.ifindex }) },
      `ip addr show dev ${name}`,
    );
    const mine = addrs
      .filter((m) => m.type === C.RTM_NEWADDR)
      .map(decodeAddr)
      .filter((a) => a.index === info.ifindex);
    // `ip` lists IPv4 addresses first (it dumps per family), in the kernel's order within one
    info.addr_info = [...mine.filter((a) => a.info.family === 'inet'), ...mine.filter((a) => a.info.family === 'inet6')].map((a) => a.info);
    return info;
  } finally {
    done();
  }
}

/** `ip -N route show [table all] [default]`; undefined for selectors this module does not do. */
export async function nlRoutes(family: 4 | 6, netns: string | undefined, extra: string[]): Promise<RouteInfo[] | undefined> {
  if (!netlinkEnabled()) return undefined;
  let all = false;
  let onlyDefault = false;
  for (let i = 0; i < extra.length; i++) {
    if (extra[i] === 'table' && extra[i + 1] === 'all') {
      all = true;
      i++;
    } else if (extra[i] === 'default') onlyDefault = true;
    else return undefined;
  }
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    const msgs = sock.request(
      { type: C.RTM_GETROUTE, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: rtmsg({ family: family === 4 ? C.AF_INET : C.AF_INET6 }) },
      `ip -${family} route show`,
    );
    const raws = msgs
      .filter((m) => m.type === C.RTM_NEWROUTE)
      .map(decodeRoute)
      .filter((r) => (all || r.table === C.RT_TABLE_MAIN) && !r.cloned && (!onlyDefault || r.dstLen === 0));
    const names = new Map<number, string | undefined>();
    const nameOf = (i: number): string | undefined => {
      if (!names.has(i)) names.set(i, linkByIndex(sock, i)?.ifname);
      return names.get(i);
    };
    return raws.map((r) => resolveRoute(r, nameOf));
  } finally {
    done();
  }
}

/** `ip link del dev NAME`: true deleted, false absent, undefined = use `ip`. */
export async function nlDeleteLink(name: string, netns?: string): Promise<boolean | undefined> {
  if (!netlinkEnabled()) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    sock.request(
      { type: C.RTM_DELLINK, flags: C.NLM_F_REQUEST | C.NLM_F_ACK, header: ifinfomsg(), attrs: [attr.str(C.IFLA_IFNAME, name)] },
      `ip link del dev ${name}`,
    );
    return true;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return false;
    if (e instanceof NetlinkError) throw new CniError(e.code, `ip link del ${name} failed: ${e.details}`, e.details);
    throw e;
  } finally {
    done();
  }
}

/**
 * `ip -json route get DST` (RTM_GETROUTE for one address, as iproute2 sends it): the route the
 * kernel picks, or its refusal as `ip` prints it after "RTNETLINK answers:" ("Network is
 * unreachable"); undefined = use `ip`.
 */
export async function nlRouteGet(dst: string, netns?: string): Promise<{ route?: RouteInfo; error?: string } | undefined> {
  if (!netlinkEnabled()) return undefined;
  const bytes = ipBytes(dst);
  if (!bytes) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    const v6 = bytes.length === 16;
    const [m] = sock.request(
      {
        type: C.RTM_GETROUTE,
        flags: C.NLM_F_REQUEST,
        header: rtmsg({ family: v6 ? C.AF_INET6 : C.AF_INET, dstLen: v6 ? 128 : 32 }),
        attrs: [attr.bytes(C.RTA_DST, bytes)],
      },
      `ip route get ${dst}`,
    );
    if (!m || m.type !== C.RTM_NEWROUTE) return { error: 'no route' };
    return { route: resolveRoute(decodeRoute(m), (i) => linkByIndex(sock, i)?.ifname) };
  } catch (e) {
    if (e instanceof NetlinkError) return { error: errnoText(e.errno) };
    throw e;
  } finally {
    done();
  }
}

/** `ip -json -details link show` (no addresses): every link, named as `ip` names masters and peers; undefined = use `ip`. */
export async function nlListLinks(netns?: string): Promise<LinkInfo[] | undefined> {
  if (!netlinkEnabled()) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    const raws = sock
      .request({ type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: ifinfomsg() }, 'ip link show')
      .filter((m) => m.type === C.RTM_NEWLINK)
      .map(decodeLink);
    const byIndex = new Map(raws.map((r) => [r.info.ifindex, { name: r.info.ifname, up: r.info.flags.includes('UP') }]));
    return raws.map((r) => resolveLink(r, (i) => byIndex.get(i)));
  } finally {
    done();
  }
}

/**
 * The links with these names (RTM_GETLINK by name each, no dump: a host with hundreds of
 * veths answers as fast as an empty one), in the order given, absent ones left out; named as
 * `ip -details link show` names masters and peers. undefined = use `ip`.
 */
export async function nlLinksNamed(names: string[], netns?: string): Promise<LinkInfo[] | undefined> {
  if (!netlinkEnabled()) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    const out: LinkInfo[] = [];
    for (const name of names) {
      const index = indexOf(sock, name);
      const raw = index === undefined ? undefined : getRaw(sock, index);
      if (!raw) continue;
      out.push(
        resolveLink(raw, (i) => {
          const l = linkByIndex(sock, i);
          return l && { name: l.ifname, up: l.flags.includes('UP') };
        }),
      );
    }
    return out;
  } finally {
    done();
  }
}

function getRaw(sock: RtnlSocket, index: number): ReturnType<typeof decodeLink> | undefined {
  try {
    const [m] = sock.request({ type: C.RTM_GETLINK, flags: C.NLM_F_REQUEST, header: ifinfomsg({ index }) }, `ip link show index ${index}`);
    return m ? decodeLink(m) : undefined;
  } catch (e) {
    if (e instanceof NetlinkError && e.errno === ENODEV) return undefined;
    throw e;
  }
}

/** `ip -json -<family> rule show`: the fields sbr reads; undefined = use `ip`. */
export async function nlRules(family: 4 | 6, netns?: string): Promise<RuleEntry[] | undefined> {
  if (!netlinkEnabled()) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    return sock
      .request(
        { type: RTM_GETRULE, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: fibRuleHdr({ family: family === 4 ? C.AF_INET : C.AF_INET6 }) },
        `ip -${family} rule show`,
      )
      .filter((m) => m.type === RTM_NEWRULE)
      .map(decodeRule);
  } finally {
    done();
  }
}

let tick: number | undefined;
let hz: number | undefined;
/** ticks per microsecond of the packet scheduler clock, read once (the same in every netns) */
const psTick = (): number => (tick ??= tickInUsec(readFileSync('/proc/net/psched', 'utf8')));

/**
 * Run `tc -batch` lines in-process; undefined when a line is not one netlink/tc.ts does (the
 * caller runs `tc`). As `tc -batch`: stops at the first refusal, which throws (code 100, the
 * kernel's text) unless `allowFail`; `force` (tc -force) runs every line and reports the
 * failures together. The outcome in `tc`'s shape: exit code 1 when a line failed, its text as stderr.
 */
export async function nlTcBatch(
  cmds: string[][],
  opts: { netns?: string; allowFail?: boolean; force?: boolean } = {},
): Promise<RunResult | undefined> {
  if (!netlinkEnabled()) return undefined;
  const ops = parseTcBatch(cmds);
  if (!ops) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(opts.netns);
  const where = opts.netns ? ` (in ${opts.netns})` : '';
  const errors: string[] = [];
  const ctx: TcContext = {
    index(name) {
      const i = indexOf(sock, name);
      if (i === undefined)
        throw new CniError(ErrorCode.KernelOperation, `Cannot find device "${name}"${where}`, `Cannot find device "${name}"`);
      return i;
    },
    tick: psTick,
    hz: () => (hz ??= hzOf(readFileSync('/proc/net/psched', 'utf8'))),
  };
  try {
    for (let i = 0; i < cmds.length; i++) {
      const what = describeTc(cmds[i]);
      try {
        sock.request(buildTcRequest(ops[i], ctx), what);
      } catch (e) {
        if (!(e instanceof CniError)) throw e;
        const text = e instanceof NetlinkError ? e.details : e.details || e.message;
        const err = new CniError(e.code, `${what}${where} failed: ${text}`, `${text}\nCommand failed -:${i + 1}`);
        if (!opts.allowFail && !opts.force) throw err;
        errors.push(err.details);
        if (!opts.force) break;
      }
    }
  } finally {
    done();
  }
  if (errors.length && !opts.allowFail)
    throw new CniError(ErrorCode.KernelOperation, `tc -batch${where} failed: ${errors[0]}`, errors.join('\n'));
  return { exitCode: errors.length ? 1 : 0, stdout: '', stderr: errors.join('\n') };
}

/**
 * `tc -json qdisc show dev D`, `tc -json filter show dev D ingress` and `tc class show dev D`
 * in-process (what bandwidth's CHECK reads: netlink/tc.ts decodeQdisc / decodeFilter /
 * decodeClass); [] when the device does
 * not exist (as tcJson); undefined for any other arguments (the caller runs `tc`).
 */
export async function nlTcShow(args: string[], netns?: string): Promise<unknown[] | undefined> {
  if (!netlinkEnabled()) return undefined;
  const w = args.join(' ');
  const q = /^qdisc show dev (\S+)$/.exec(w);
  const f = /^filter show dev (\S+) ingress$/.exec(w);
  const c = /^class show dev (\S+)$/.exec(w);
  if (!q && !f && !c) return undefined;
  await yieldOnce();
  const { sock, done } = socketFor(netns);
  try {
    const index = indexOf(sock, (q ?? f ?? c)![1]);
    if (index === undefined) return [];
    if (c) {
      return sock
        .request({ type: RTM_GETTCLASS, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: tcmsg({ index }) }, `tc class show dev ${c[1]}`)
        .filter((m) => m.type === RTM_NEWTCLASS)
        .map(decodeClass)
        .filter((e) => e.ifindex === index)
        .map(({ ifindex: _, ...e }) => e);
    }
    if (q) {
      return sock
        .request({ type: RTM_GETQDISC, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: tcmsg({ index }) }, `tc qdisc show dev ${q[1]}`)
        .filter((m) => m.type === RTM_NEWQDISC)
        .map((m) => decodeQdisc(m, psTick()))
        .filter((e) => e.ifindex === index)
        .map(({ ifindex: _, ...e }) => e);
    }
    const names = new Map<number, string | undefined>();
    const nameOf = (i: number): string | undefined => {
      if (!names.has(i)) names.set(i, linkByIndex(sock, i)?.ifname);
      return names.get(i);
    };
    let msgs;
    try {
      msgs = sock.request(
        { type: RTM_GETTFILTER, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: tcmsg({ index, parent: 0xffff0000 }) },
        `tc filter show dev ${f![1]} ingress`,
      );
    } catch (e) {
      if (e instanceof NetlinkError) return []; // no ingress qdisc: tc prints nothing
      throw e;
    }
    return msgs
      .filter((m) => m.type === RTM_NEWTFILTER)
      .map((m) => decodeFilter(m, nameOf))
      .map(({ ifindex: _, ...e }) => e);
  } finally {
    done();
  }
}
