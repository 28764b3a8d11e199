/**
 * libnftables (`libnftables.so.1`, Debian's libnftables1, which the nftables package depends
 * on) through `bun:ffi`: what `nft -f -` and `nft -j list …` do, without starting `nft`.
 *
 * One context per command: nft_ctx_new, nft_ctx_buffer_output/_error (the text nft would
 * print, kept in memory), nft_ctx_output_set_flags (JSON, terse), nft_run_cmd_from_buffer,
 * nft_ctx_get_output_buffer/_error_buffer, nft_ctx_free.
 *
 * Network namespace: libnftables' netlink socket belongs to the netns of the thread that
 * opened it (at nft_ctx_new, in the versions we ship; at the first command in others). For
 * another netns the whole sequence new → flags → run runs inside the setns bracket of
 * socket.ts (`inNetnsSync`): FFI calls only, the script encoded before, nothing of
 * JavaScript in between (docs/netlink.md, "Threading"). The buffers are read and the context
 * freed after coming back.
 */
import { trace, tracing } from '../../trace.ts';
import { inNetnsSync, libc } from './socket.ts';

/** nft_ctx_output_set_flags bits (libnftables.h). */
export const NFT_CTX_OUTPUT_JSON = 1 << 4;
export const NFT_CTX_OUTPUT_TERSE = 1 << 11;

interface LibNft {
  ctxNew(flags: number): number;
  bufferOutput(ctx: number): number;
  bufferError(ctx: number): number;
  setFlags(ctx: number, flags: number): void;
  run(ctx: number, buf: Uint8Array): number;
  runFile(ctx: number, path: Uint8Array): number;
  memfd(name: Uint8Array, flags: number): number;
  write(fd: number, buf: Uint8Array, len: number): number | bigint;
  close(fd: number): number;
  output(ctx: number): string;
  error(ctx: number): string;
  free(ctx: number): void;
}

interface BunFfi {
  dlopen(lib: string, defs: Record<string, { args: number[]; returns: number }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  FFIType: Record<'i32' | 'u32' | 'i64' | 'u64' | 'ptr' | 'void' | 'cstring', number>;
}

let lib: LibNft | null | undefined;

/** libnftables through bun:ffi, loaded on first use; undefined when not under Bun, CNI_TS_NETLINK=0, or it cannot load. */
export function libnft(): LibNft | undefined {
  if (lib !== undefined) return lib ?? undefined;
  lib = null;
  if (typeof (globalThis as { Bun?: unknown }).Bun === 'undefined') return undefined;
  const v = process.env.CNI_TS_NETLINK;
  if (v === '0' || v === 'off' || v === 'false') return undefined;
  if (!libc()) return undefined; // the netns bracket needs libc
  const name = process.env.CNI_TS_LIBNFTABLES || 'libnftables.so.1';
  try {
    const t0 = tracing() ? performance.now() : 0;
    const ffi = (process as unknown as { getBuiltinModule(n: string): BunFfi }).getBuiltinModule('bun:ffi');
    const T = ffi.FFIType;
    const { symbols: s } = ffi.dlopen(name, {
      nft_ctx_new: { args: [T.u32], returns: T.ptr },
      nft_ctx_buffer_output: { args: [T.ptr], returns: T.i32 },
      nft_ctx_buffer_error: { args: [T.ptr], returns: T.i32 },
      nft_ctx_output_set_flags: { args: [T.ptr, T.u32], returns: T.void },
      nft_run_cmd_from_buffer: { args: [T.ptr, T.ptr], returns: T.i32 },
      nft_run_cmd_from_filename: { args: [T.ptr, T.ptr], returns: T.i32 },
      nft_ctx_get_output_buffer: { args: [T.ptr], returns: T.cstring },
      nft_ctx_get_error_buffer: { args: [T.ptr], returns: T.cstring },
      nft_ctx_free: { args: [T.ptr], returns: T.void },
    });
    const { symbols: c } = ffi.dlopen('libc.so.6', {
      memfd_create: { args: [T.ptr, T.u32], returns: T.i32 },
      write: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
      close: { args: [T.i32], returns: T.i32 },
    });
    lib = {
      runFile: s.nft_run_cmd_from_filename as LibNft['runFile'],
      memfd: c.memfd_create as LibNft['memfd'],
      write: c.write as LibNft['write'],
      close: c.close as LibNft['close'],
      ctxNew: s.nft_ctx_new as LibNft['ctxNew'],
      bufferOutput: s.nft_ctx_buffer_output as LibNft['bufferOutput'],
      bufferError: s.nft_ctx_buffer_error as LibNft['bufferError'],
      setFlags: s.nft_ctx_output_set_flags as LibNft['setFlags'],
      run: s.nft_run_cmd_from_buffer as LibNft['run'],
      output: (c) => String((s.nft_ctx_get_output_buffer as (c: number) => unknown)(c) ?? ''),
      error: (c) => String((s.nft_ctx_get_error_buffer as (c: number) => unknown)(c) ?? ''),
      free: s.nft_ctx_free as LibNft['free'],
    };
    if (t0) trace(`bun:ffi ${name} loaded in ${(performance.now() - t0).toFixed(1)} ms`);
  } catch (e) {
    trace(`libnftables unavailable (${String(e)}): the nft process is used`);
    lib = null;
  }
  return lib ?? undefined;
}

const enc = new TextEncoder();
const MFD_CLOEXEC = 1;

/**
 * Run one nft command text (a script, as `nft -f -` reads it, or `list table …`) in-process:
 * exit code 0/1 as the `nft` process has, its stdout and stderr text (trailing newline off, as
 * exec.ts `run` gives them). `asFile`: `text` is a script for `nft -f -`.
 */
export function libnftRun(
  text: string,
  opts: { flags?: number; netns?: string; asFile?: boolean } = {},
): { exitCode: number; stdout: string; stderr: string } {
  const l = libnft();
  if (!l) throw new Error('libnftables not loaded');
  const flags = opts.flags ?? 0;
  // A script is read as a file, as `nft -f -` reads /dev/stdin: from a memfd, through
  // /dev/fd/N, so nft's error locations carry a file name (`/dev/fd/N:3:5-9: Error: …`),
  // rewritten to `/dev/stdin:` below — the same text as the process prints. A command
  // (`list table …`) runs from a buffer, as `nft list table …` runs its argv.
  let memfd = -1;
  let buf: Uint8Array;
  if (opts.asFile) {
    memfd = l.memfd(enc.encode('nft-script\0'), MFD_CLOEXEC);
    if (memfd < 0) return { exitCode: 1, stdout: '', stderr: 'memfd_create failed' };
    const b = enc.encode(text);
    for (let off = 0; off < b.length;) {
      const n = Number(l.write(memfd, b.subarray(off), b.length - off));
      if (n <= 0) {
        l.close(memfd);
        return { exitCode: 1, stdout: '', stderr: 'write to memfd failed' };
      }
      off += n;
    }
    buf = enc.encode(`/dev/fd/${memfd}\0`);
  } else buf = enc.encode(`${text}\0`);
  const asFile = opts.asFile === true;
  const t0 = tracing() ? performance.now() : 0;
  // ctx, rc: filled inside the bracket (FFI calls only)
  const out = new Float64Array(2);
  const body = (): void => {
    const ctx = l.ctxNew(0);
    out[0] = ctx;
    if (!ctx) return;
    l.bufferOutput(ctx);
    l.bufferError(ctx);
    l.setFlags(ctx, flags);
    out[1] = asFile ? l.runFile(ctx, buf) : l.run(ctx, buf);
  };
  try {
    if (opts.netns) inNetnsSync(opts.netns, body);
    else body();
  } finally {
    if (memfd >= 0) l.close(memfd);
  }
  const ctx = out[0];
  if (!ctx) return { exitCode: 1, stdout: '', stderr: 'nft_ctx_new failed' };
  try {
    const stdout = l.output(ctx).replace(/\n$/, '');
    let stderr = l.error(ctx).replace(/\n$/, '');
    if (asFile) stderr = stderr.split(`/dev/fd/${memfd}:`).join('/dev/stdin:');
    const exitCode = out[1] === 0 ? 0 : 1;
    if (t0)
      trace(
        `libnftables ${text.split('\n', 1)[0].slice(0, 60)}${opts.netns ? ` (in ${opts.netns})` : ''} -> ${exitCode} in ${(performance.now() - t0).toFixed(2)} ms`,
      );
    return { exitCode, stdout, stderr };
  } finally {
    l.free(ctx);
  }
}
