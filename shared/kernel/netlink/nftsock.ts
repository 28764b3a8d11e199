/**
 * The NETLINK_NETFILTER socket for nf_tables (./nftnl.ts builds and reads the messages): one
 * socket per process (and per netns asked for), opened on first use, synchronous like
 * ./socket.ts's RtnlSocket. `batch` sends one transaction (BATCH_BEGIN … END) and reads the
 * answers: nfnetlink handles the whole batch inside sendto(2) and queues them before it returns
 * (the error of each refused message, and the ACK the last message asks for). `dump` sends a GET…|NLM_F_DUMP and reads to NLMSG_DONE.
 *
 * Errors: nft's wording where a caller matches on it ("Could not process rule: File exists"),
 * the kernel's errno text and extended ack, the CNI code of the errno (./errno.ts).
 */
import { trace, tracing } from '../../trace.ts';
import { CniError, ErrorCode } from '../../cni/errors.ts';
import * as C from './constants.ts';
import { parseError, parseMessages, type NlMsg } from './codec.ts';
import { codeOfErrno, errnoName, errnoText } from './errno.ts';
import { KERNEL, libc, openNetlinkFd, SysError } from './socket.ts';
import { encodeBatch, NETLINK_NETFILTER, type NftMsg } from './nftnl.ts';

const MSG_DONTWAIT = 0x40;
const NETLINK_CAP_ACK = 10;
const EAGAIN = 11;
const EINTR = 4;

/** A refused nf_tables message: the errno, nft's words for it, and which message. */
export class NftNetlinkError extends CniError {
  constructor(
    readonly errno: number,
    /** what nft prints on stderr for it */
    readonly stderr: string,
  ) {
    super(codeOfErrno(errno), `nft transaction failed: ${stderr}`, `${errnoName(errno)} (errno ${errno})`);
  }
}

/** nft's words for a refused message (`Error: Could not process rule: File exists` and the line). */
export function nftErrorText(errno: number, what: string | undefined, ext?: string): string {
  return `Error: Could not process rule: ${errnoText(errno)}${ext ? ` (${ext})` : ''}${what ? `\n${what}` : ''}`;
}

export class NftSocket {
  /** Sees every datagram received (tests record kernel replies with it). */
  static tap: ((datagram: Uint8Array, what: string) => void) | undefined;
  private seq = Math.floor(Math.random() * 0x3fffffff);
  private readonly buf = new Uint8Array(1 << 17);
  private constructor(
    readonly fd: number,
    readonly netns: string | undefined,
  ) {}

  private static cache = new Map<string, NftSocket>();

  /** The process's socket for the caller's netns (or the one at `netns`), opened on first use. */
  static get(netns?: string): NftSocket {
    const key = netns ?? '';
    let s = NftSocket.cache.get(key);
    if (!s) {
      s = NftSocket.open(netns);
      NftSocket.cache.set(key, s);
    }
    return s;
  }

  private static open(netns?: string): NftSocket {
    if (!libc()) throw new CniError(ErrorCode.Internal, 'in-process nf_tables netlink used without bun:ffi');
    // NETLINK_CAP_ACK: errors without the request echoed
    return new NftSocket(openNetlinkFd(NETLINK_NETFILTER, netns, 'nf_tables netlink', [NETLINK_CAP_ACK]), netns);
  }

  private send(datagram: Uint8Array, what: string): void {
    const l = libc()!;
    for (;;) {
      const n = Number(l.sendto(this.fd, datagram, datagram.length, 0, KERNEL, 12));
      if (n >= 0) return;
      const errno = l.errno();
      if (errno !== EINTR) throw new SysError(`nf_tables netlink send (${what})`, errno);
    }
  }

  /** One datagram; undefined when nothing is queued (`wait` false). */
  private receive(wait: boolean, what: string): NlMsg[] | undefined {
    const l = libc()!;
    for (;;) {
      const n = Number(l.recv(this.fd, this.buf, this.buf.length, wait ? 0 : MSG_DONTWAIT));
      if (n >= 0) {
        NftSocket.tap?.(this.buf.slice(0, n), what);
        return parseMessages(this.buf.slice(0, n));
      }
      const errno = l.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN && !wait) return undefined;
      throw new SysError(`nf_tables netlink receive (${what})`, errno);
    }
  }

  /**
   * One transaction: all of `msgs` or none. Resolves to undefined on success, or the first
   * refusal (errno, nft's text). An empty list changes nothing.
   */
  batch(msgs: NftMsg[]): { errno: number; stderr: string } | undefined {
    if (!msgs.length) return undefined;
    const t0 = tracing() ? performance.now() : 0;
    const { datagram, seqs } = encodeBatch(msgs, this.seq);
    this.seq = seqs[seqs.length - 1] + 1;
    const what = msgs[0].what;
    const t1 = t0 ? performance.now() : 0;
    this.send(datagram, what);
    const t2 = t0 ? performance.now() : 0;
    const last = seqs[seqs.length - 1];
    let closed = false;
    let failure: { errno: number; stderr: string } | undefined;
    // Everything is queued by now (nfnetlink works inside sendto): the errors of refused
    // messages, then the answer to the last one. Blocking reads only until that answer, and
    // none after a failure (whatever else is queued is drained without waiting).
    while (!closed) {
      const got = this.receive(failure === undefined, what);
      if (!got) break;
      for (const m of got) {
        if (m.type !== C.NLMSG_ERROR) continue;
        const e = parseError(m);
        const i = seqs.indexOf(m.seq);
        if (i < 0 && m.seq !== seqs[0] - 1) continue; // an answer to an earlier request
        if (e.errno !== 0 && !failure)
          failure = { errno: e.errno, stderr: nftErrorText(e.errno, i >= 0 ? msgs[i].what : undefined, e.message) };
        if (m.seq === last || i < 0) closed = true; // the last message's answer, or the batch itself refused
      }
    }
    if (t0)
      trace(
        `nf_tables netlink ${what}${msgs.length > 1 ? ` (+${msgs.length - 1})` : ''}${this.netns ? ` (in ${this.netns})` : ''} -> ${failure ? failure.errno : 0} in ${(performance.now() - t0).toFixed(2)} ms (encode ${(t1 - t0).toFixed(2)}, kernel ${(t2 - t1).toFixed(2)})`,
      );
    return failure;
  }

  /**
   * A dump (`request` made by ./nftnl.ts with seq = `nextSeq()`): its messages, or the errno
   * when the kernel refused it (ENOENT: no such table/chain/set). An interrupted dump is re-read.
   */
  dump(request: (seq: number) => Uint8Array, what: string): { msgs: NlMsg[] } | { errno: number } {
    const t0 = tracing() ? performance.now() : 0;
    for (let attempt = 1; ; attempt++) {
      const seq = (this.seq = (this.seq + 1) >>> 0);
      this.send(request(seq), what);
      const out: NlMsg[] = [];
      let errno = 0;
      let interrupted = false;
      for (let done = false; !done;) {
        for (const m of this.receive(true, what)!) {
          if (m.seq !== seq) continue;
          if (m.flags & C.NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === C.NLMSG_DONE) done = true;
          else if (m.type === C.NLMSG_ERROR) {
            errno = parseError(m).errno;
            done = true;
          } else out.push(m);
        }
      }
      if (interrupted && attempt < 5) continue;
      if (t0)
        trace(
          `nf_tables netlink ${what}${this.netns ? ` (in ${this.netns})` : ''}: ${errno ? `errno ${errno}` : `${out.length} messages`} in ${(performance.now() - t0).toFixed(2)} ms`,
        );
      return errno ? { errno } : { msgs: out };
    }
  }
}
