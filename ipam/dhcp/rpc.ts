/**
 * Go net/rpc over HTTP on a unix socket, as the reference `dhcp` plugin and daemon speak it:
 * the client sends `CONNECT /_goRPC_ HTTP/1.0\n\n`, the server answers `HTTP/1.0 200 Connected
 * to Go RPC\n\n`, then one gob stream each way. A call: rpc.Request{ServiceMethod, Seq} then
 * the argument; the answer: rpc.Response{ServiceMethod, Seq, Error} then the reply (an empty
 * struct when Error is set). The types are the reference's: skel.CmdArgs in, types100.Result
 * (or struct{}) out; net.IP and net.IPMask are byte slices on the wire.
 */
import net from 'node:net';
import { GobDecoder, GobEncoder, T, type GobValue, type GoType } from './gob.ts';

export const RPC_PATH = '/_goRPC_';
const CONNECTED = '200 Connected to Go RPC';

export const RequestT = T.struct('Request', [
  ['ServiceMethod', T.string],
  ['Seq', T.uint],
]);
export const ResponseT = T.struct('Response', [
  ['ServiceMethod', T.string],
  ['Seq', T.uint],
  ['Error', T.string],
]);
/** skel.CmdArgs (newer Go versions have more fields; gob matches by name and skips the rest). */
export const CmdArgsT = T.struct('CmdArgs', [
  ['ContainerID', T.string],
  ['Netns', T.string],
  ['IfName', T.string],
  ['Args', T.string],
  ['Path', T.string],
  ['StdinData', T.bytes],
]);
const Strings = T.slice('[]string', T.string);
const IPNetT = T.struct('IPNet', [
  ['IP', T.bytes],
  ['Mask', T.bytes],
]);
/** types100.Result with the fields the reference's daemon fills, Route with the newer keys. */
export const ResultT = T.struct('Result', [
  ['CNIVersion', T.string],
  [
    'Interfaces',
    T.slice(
      '[]*types100.Interface',
      T.struct('', [
        ['Name', T.string],
        ['Mac', T.string],
        ['Sandbox', T.string],
      ]),
    ),
  ],
  [
    'IPs',
    T.slice(
      '[]*types100.IPConfig',
      T.struct('', [
        ['Interface', T.int],
        ['Address', IPNetT],
        ['Gateway', T.bytes],
      ]),
    ),
  ],
  [
    'Routes',
    T.slice(
      '[]*types.Route',
      T.struct('', [
        ['Dst', IPNetT],
        ['GW', T.bytes],
        ['MTU', T.int],
        ['AdvMSS', T.int],
        ['Priority', T.int],
        ['Table', T.int],
        ['Scope', T.int],
      ]),
    ),
  ],
  [
    'DNS',
    T.struct('DNS', [
      ['Nameservers', Strings],
      ['Domain', T.string],
      ['Search', Strings],
      ['Options', Strings],
    ]),
  ],
]);
export const EmptyT = T.struct('', []);

export interface CmdArgs {
  ContainerID?: string;
  Netns?: string;
  IfName?: string;
  Args?: string;
  Path?: string;
  StdinData?: Buffer;
}
export interface GoIPNet {
  IP: Buffer;
  Mask: Buffer;
}
export interface GoResult {
  CNIVersion?: string;
  IPs?: Array<{ Interface?: number; Address: GoIPNet; Gateway?: Buffer }>;
  Routes?: Array<{ Dst: GoIPNet; GW?: Buffer; MTU?: number; AdvMSS?: number; Priority?: number; Table?: number; Scope?: number }>;
  DNS?: { Nameservers?: string[]; Domain?: string; Search?: string[]; Options?: string[] };
}

/** An error the remote method returned (rpc.ServerError). */
export class RpcError extends Error {}

export interface Method {
  args: GoType;
  reply: GoType;
  call: (args: Record<string, GobValue>) => Promise<unknown>;
}

/** Serve `methods` ("DHCP.Allocate" → handler) on a listening socket's connections, as Go's rpc.HandleHTTP. */
export function rpcConnectionHandler(methods: Record<string, Method>, log: (s: string) => void): (c: net.Socket) => void {
  return (c) => {
    c.on('error', () => undefined);
    let head = Buffer.alloc(0);
    let dec: GobDecoder | undefined;
    const enc = new GobEncoder();
    let pending: { ServiceMethod: string; Seq: number } | undefined;
    const answer = (hdr: { ServiceMethod: string; Seq: number }, error: string, reply: GoType, value: unknown): void => {
      if (c.destroyed) return;
      c.write(Buffer.concat([enc.encode(ResponseT, { ...hdr, Error: error }), enc.encode(reply, value)]));
    };
    c.on('data', (d: Buffer) => {
      if (!dec) {
        head = Buffer.concat([head, d]);
        const s = head.toString('latin1');
        const end = s.search(/\r?\n\r?\n/);
        if (end < 0) {
          if (head.length > 8192) c.destroy();
          return;
        }
        const rest = head.subarray(end + (s.slice(end).startsWith('\r\n\r\n') ? 4 : s.slice(end).startsWith('\n\n') ? 2 : 3));
        const [method, target] = s.slice(0, end).split(/\s+/);
        if (method !== 'CONNECT' || target !== RPC_PATH) {
          c.end('HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n405 must CONNECT\n');
          return;
        }
        c.write(`HTTP/1.0 ${CONNECTED}\n\n`);
        dec = new GobDecoder();
        d = rest;
      }
      dec.push(d);
      try {
        for (let v = dec.next(); v; v = dec.next()) {
          if (!pending) {
            const h = v.value as { ServiceMethod?: string; Seq?: number };
            pending = { ServiceMethod: h.ServiceMethod ?? '', Seq: Number(h.Seq ?? 0) };
            continue;
          }
          const hdr = pending;
          pending = undefined;
          const m = methods[hdr.ServiceMethod];
          if (!m) {
            answer(hdr, `rpc: can't find method ${hdr.ServiceMethod}`, EmptyT, {});
            continue;
          }
          m.call(v.value as Record<string, GobValue>).then(
            (r) => answer(hdr, '', m.reply, r),
            (e: unknown) => answer(hdr, e instanceof Error ? e.message : String(e), EmptyT, {}),
          );
        }
      } catch (e) {
        log(`rpc: ${e instanceof Error ? e.message : String(e)}`);
        c.destroy();
      }
    });
  };
}

/** Dial the socket and do the CONNECT handshake; resolves with the socket and any bytes after it. */
export function rpcDial(socketPath: string, timeoutMs: number): Promise<{ sock: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => fail(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    function fail(e: Error): void {
      clearTimeout(t);
      sock.destroy();
      reject(e);
    }
    sock.on('error', fail);
    sock.on('connect', () => sock.write(`CONNECT ${RPC_PATH} HTTP/1.0\n\n`));
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const s = buf.toString('latin1');
      const end = s.search(/\r?\n\r?\n/);
      if (end < 0) return;
      sock.off('data', onData);
      clearTimeout(t);
      const status = s
        .slice(0, end)
        .split(/\r?\n/)[0]
        .replace(/^HTTP\/1\.[01] /, '');
      if (status !== CONNECTED) {
        fail(new Error(`unexpected HTTP response: ${status}`));
        return;
      }
      const skip = s.slice(end).startsWith('\r\n\r\n') ? 4 : s.slice(end).startsWith('\n\n') ? 2 : 3;
      resolve({ sock, rest: buf.subarray(end + skip) });
    };
    sock.on('data', onData);
  });
}

/** One call, as Go's rpc.DialHTTP("unix", path) + client.Call(method, args, reply). */
export async function rpcCall(socketPath: string, method: string, argsT: GoType, args: unknown, timeoutMs = 60000): Promise<GobValue> {
  const { sock, rest } = await rpcDial(socketPath, Math.min(timeoutMs, 10000));
  const enc = new GobEncoder();
  const dec = new GobDecoder();
  return new Promise<GobValue>((resolve, reject) => {
    let header: { Error?: string } | undefined;
    const t = setTimeout(() => done(new Error(`no answer to ${method} within ${timeoutMs} ms`)), timeoutMs);
    function done(e: Error | undefined, v?: GobValue): void {
      clearTimeout(t);
      sock.destroy();
      if (e) reject(e);
      else resolve(v!);
    }
    const take = (d: Buffer): void => {
      dec.push(d);
      try {
        for (let v = dec.next(); v; v = dec.next()) {
          if (!header) {
            header = v.value as { Error?: string };
            continue;
          }
          if (header.Error) done(new RpcError(header.Error));
          else done(undefined, v.value);
          return;
        }
      } catch (e) {
        done(e as Error);
      }
    };
    sock.on('data', take);
    sock.on('error', (e) => done(e));
    sock.on('end', () => done(new Error(`the connection closed before the answer to ${method}`)));
    if (rest.length) take(rest);
    sock.write(Buffer.concat([enc.encode(RequestT, { ServiceMethod: method, Seq: 0 }), enc.encode(argsT, args)]));
  });
}
