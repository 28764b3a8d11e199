/**
 * The gob codec and the net/rpc framing against bytes captured from the Go reference
 * (Debian's containernetworking-plugins 1.1.1, /usr/lib/cni/dhcp): its plugin's ADD/DEL calls
 * to its daemon, and the daemon's answers, through a logging proxy on a unix socket, with
 * dnsmasq serving 10.93.0.0/24 and option 121 (10.94.0.0/16 and 0.0.0.0/0 via 10.93.0.1).
 */
import net from 'node:net';
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { GobDecoder, GobEncoder, GobReader, T } from '../ipam/dhcp/gob.ts';
import { CmdArgsT, EmptyT, RequestT, ResponseT, rpcCall, rpcConnectionHandler, rpcDial, RpcError } from '../ipam/dhcp/rpc.ts';
import { goDurationMs, parseDaemonFlags } from '../ipam/dhcp/daemon.ts';
import { uid } from './helpers/run.ts';

const cap = (b64: string): Buffer => Buffer.from(b64, 'base64');
/** reference plugin → reference daemon: ADD (DHCP.Allocate) */
const ADD_REQ = cap(
  'Q09OTkVDVCAvX2dvUlBDXyBIVFRQLzEuMAoKL/+BAwEBB1JlcXVlc3QB/4IAAQIBDVNlcnZpY2VNZXRob2QBDAABA1NlcQEGAAAAEv+CAQ1ESENQLkFsbG9jYXRlAFr/gwMBAQdDbWRBcmdzAf+EAAEGAQtDb250YWluZXJJRAEMAAEFTmV0bnMBDAABBklmTmFtZQEMAAEEQXJncwEMAAEEUGF0aAEMAAEJU3RkaW5EYXRhAQoAAAD/tv+EAQRjdHIxARkvdmFyL3J1bi9uZXRucy9kaHItY2FwY3RyAQRldGgwAgwvdXNyL2xpYi9jbmkBfHsiY25pVmVyc2lvbiI6IjEuMC4wIiwibmFtZSI6ImRocm5ldCIsInR5cGUiOiJtYWN2bGFuIiwiaXBhbSI6eyJ0eXBlIjoiZGhjcCIsImRhZW1vblNvY2tldFBhdGgiOiIvdG1wL2Roci1jYXAvcHJveHkuc29jayJ9fQoA',
);
/** reference daemon → plugin: the lease 10.93.0.49/24, gateway 10.93.0.1, two option-121 routes */
const ADD_RSP = cap(
  'SFRUUC8xLjAgMjAwIENvbm5lY3RlZCB0byBHbyBSUEMKCjr/gQMBAQhSZXNwb25zZQH/ggABAwENU2VydmljZU1ldGhvZAEMAAEDU2VxAQYAAQVFcnJvcgEMAAAAEv+CAQ1ESENQLkFsbG9jYXRlAFH/gwMBAQZSZXN1bHQB/4QAAQUBCkNOSVZlcnNpb24BDAABCkludGVyZmFjZXMB/4gAAQNJUHMB/44AAQZSb3V0ZXMB/5IAAQNETlMB/5QAAAAk/4cCAQEVW10qdHlwZXMxMDAuSW50ZXJmYWNlAf+IAAH/hgAAKf+FAwEC/4YAAQMBBE5hbWUBDAABA01hYwEMAAEHU2FuZGJveAEMAAAAI/+NAgEBFFtdKnR5cGVzMTAwLklQQ29uZmlnAf+OAAH/igAAM/+JAwEC/4oAAQMBCUludGVyZmFjZQEEAAEHQWRkcmVzcwH/jAABB0dhdGV3YXkBCgAAACP/iwMBAQVJUE5ldAH/jAABAgECSVABCgABBE1hc2sBCgAAAB3/kQIBAQ5bXSp0eXBlcy5Sb3V0ZQH/kgAB/5AAABz/jwMBAv+QAAECAQNEc3QB/4wAAQJHVwEKAAAARv+TAwEBA0ROUwH/lAABBAELTmFtZXNlcnZlcnMB/5YAAQZEb21haW4BDAABBlNlYXJjaAH/lgABB09wdGlvbnMB/5YAAAAW/5UCAQEIW11zdHJpbmcB/5YAAQwAAEj/hAMBAgEECl0AMQEE////AAABBApdAAEAAQIBAQQKXgAAAQT//wAAAAEECl0AAQABAQQAAAAAAQQAAAAAAAEECl0AAQABAAA=',
);
/** DEL (DHCP.Release) and its answer, an empty struct */
const DEL_REQ = cap(
  'Q09OTkVDVCAvX2dvUlBDXyBIVFRQLzEuMAoKL/+BAwEBB1JlcXVlc3QB/4IAAQIBDVNlcnZpY2VNZXRob2QBDAABA1NlcQEGAAAAEf+CAQxESENQLlJlbGVhc2UAWv+DAwEBB0NtZEFyZ3MB/4QAAQYBC0NvbnRhaW5lcklEAQwAAQVOZXRucwEMAAEGSWZOYW1lAQwAAQRBcmdzAQwAAQRQYXRoAQwAAQlTdGRpbkRhdGEBCgAAAP+2/4QBBGN0cjEBGS92YXIvcnVuL25ldG5zL2Roci1jYXBjdHIBBGV0aDACDC91c3IvbGliL2NuaQF8eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJuYW1lIjoiZGhybmV0IiwidHlwZSI6Im1hY3ZsYW4iLCJpcGFtIjp7InR5cGUiOiJkaGNwIiwiZGFlbW9uU29ja2V0UGF0aCI6Ii90bXAvZGhyLWNhcC9wcm94eS5zb2NrIn19CgA=',
);
const DEL_RSP = cap(
  'SFRUUC8xLjAgMjAwIENvbm5lY3RlZCB0byBHbyBSUEMKCjr/gQMBAQhSZXNwb25zZQH/ggABAwENU2VydmljZU1ldGhvZAEMAAEDU2VxAQYAAQVFcnJvcgEMAAAAEf+CAQxESENQLlJlbGVhc2UACv+XAwEC/5gAAAAD/5gA',
);
/** ADD for an interface that does not exist: an rpc error */
const ERR_RSP = cap(
  'SFRUUC8xLjAgMjAwIENvbm5lY3RlZCB0byBHbyBSUEMKCjr/gQMBAQhSZXNwb25zZQH/ggABAwENU2VydmljZU1ldGhvZAEMAAEDU2VxAQYAAQVFcnJvcgEMAAAAPf+CAQ1ESENQLkFsbG9jYXRlAillcnJvciBsb29raW5nIHVwICJub3N1Y2giOiBMaW5rIG5vdCBmb3VuZAAK/5cDAQL/mAAAAAP/mAA=',
);

const CONNECT = 'CONNECT /_goRPC_ HTTP/1.0\n\n';
const CONNECTED = 'HTTP/1.0 200 Connected to Go RPC\n\n';
const STDIN =
  '{"cniVersion":"1.0.0","name":"dhrnet","type":"macvlan","ipam":{"type":"dhcp","daemonSocketPath":"/tmp/dhr-cap/proxy.sock"}}\n';
const ARGS = {
  ContainerID: 'ctr1',
  Netns: '/var/run/netns/dhr-capctr',
  IfName: 'eth0',
  Args: '',
  Path: '/usr/lib/cni',
  StdinData: Buffer.from(STDIN),
};

/** The types100.Result of the Go 1.0.1 cni library that Debian's reference is built with. */
const Strings = T.slice('[]string', T.string);
const IPNet = T.struct('IPNet', [
  ['IP', T.bytes],
  ['Mask', T.bytes],
]);
const LegacyResultT = T.struct('Result', [
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
        ['Address', IPNet],
        ['Gateway', T.bytes],
      ]),
    ),
  ],
  [
    'Routes',
    T.slice(
      '[]*types.Route',
      T.struct('', [
        ['Dst', IPNet],
        ['GW', T.bytes],
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
const ip = (s: string): Buffer => Buffer.from(s.split('.').map(Number));
const RESULT = {
  IPs: [{ Address: { IP: ip('10.93.0.49'), Mask: ip('255.255.255.0') }, Gateway: ip('10.93.0.1') }],
  Routes: [
    { Dst: { IP: ip('10.94.0.0'), Mask: ip('255.255.0.0') }, GW: ip('10.93.0.1') },
    { Dst: { IP: ip('0.0.0.0'), Mask: ip('0.0.0.0') }, GW: ip('10.93.0.1') },
  ],
  DNS: {},
};

function decodeAll(b: Buffer): unknown[] {
  const d = new GobDecoder();
  d.push(b);
  const out: unknown[] = [];
  for (let v = d.next(); v; v = d.next()) out.push(v.value);
  expect(d.pending).toBe(0);
  return out;
}

describe('gob: against the Go reference captures', () => {
  it('the reference plugin: CONNECT, then Request + CmdArgs; our encoder gives the same bytes', () => {
    expect(ADD_REQ.subarray(0, CONNECT.length).toString()).toBe(CONNECT);
    const body = ADD_REQ.subarray(CONNECT.length);
    expect(decodeAll(body)).toEqual([{ ServiceMethod: 'DHCP.Allocate' }, { ...ARGS, Args: undefined }].map(strip));
    const e = new GobEncoder();
    expect(Buffer.concat([e.encode(RequestT, { ServiceMethod: 'DHCP.Allocate', Seq: 0 }), e.encode(CmdArgsT, ARGS)])).toEqual(body);
    const e2 = new GobEncoder();
    expect(Buffer.concat([e2.encode(RequestT, { ServiceMethod: 'DHCP.Release' }), e2.encode(CmdArgsT, ARGS)])).toEqual(
      DEL_REQ.subarray(CONNECT.length),
    );
  });

  it('the reference daemon: Response + Result; our encoder gives the same bytes for the same types', () => {
    expect(ADD_RSP.subarray(0, CONNECTED.length).toString()).toBe(CONNECTED);
    const body = ADD_RSP.subarray(CONNECTED.length);
    const [hdr, res] = decodeAll(body);
    expect(hdr).toEqual({ ServiceMethod: 'DHCP.Allocate' });
    expect(res).toEqual(RESULT);
    const e = new GobEncoder();
    expect(Buffer.concat([e.encode(ResponseT, { ServiceMethod: 'DHCP.Allocate' }), e.encode(LegacyResultT, RESULT)])).toEqual(body);
  });

  it('Release answers an empty struct; an error answers Response.Error and an empty struct', () => {
    expect(decodeAll(DEL_RSP.subarray(CONNECTED.length))).toEqual([{ ServiceMethod: 'DHCP.Release' }, {}]);
    expect(decodeAll(ERR_RSP.subarray(CONNECTED.length))).toEqual([
      { ServiceMethod: 'DHCP.Allocate', Error: 'error looking up "nosuch": Link not found' },
      {},
    ]);
    // our empty struct: the same definition (the id is per process in Go, per stream here)
    const e = new GobEncoder();
    e.encode(ResponseT, {});
    const mine = e.encode(EmptyT, {});
    expect(decodeAll(Buffer.concat([new GobEncoder().encode(ResponseT, {}), mine]))).toEqual([{}, {}]);
    expect(mine.toString('hex')).toBe('0aff830301 02ff84000000 03ff8400'.replace(/ /g, ''));
  });

  it('the decoder waits for whole messages (bytes one at a time)', () => {
    const body = ADD_RSP.subarray(CONNECTED.length);
    const d = new GobDecoder();
    const got: unknown[] = [];
    for (const b of body) {
      d.push(Buffer.from([b]));
      for (let v = d.next(); v; v = d.next()) got.push(v.value);
    }
    expect(got[1]).toEqual(RESULT);
  });
});

describe('gob: numbers and other kinds (round trip)', () => {
  it('uint and int encodings as the gob docs spell them', () => {
    const e = new GobEncoder();
    const u = (n: number): string => e.encode(T.uint, n).toString('hex');
    // message: length, type id 3 (uint: 06), the 0 byte of a non-struct top-level value, the value
    expect(u(7)).toBe('03060007');
    expect(u(256)).toBe('050600fe0100');
    const r = new GobReader(Buffer.from('fe0100', 'hex'));
    expect(r.uint()).toBe(256);
    const i = (n: number): string => {
      const b = new GobEncoder().encode(T.int, n);
      return b.subarray(3).toString('hex');
    };
    expect(i(-1)).toBe('01');
    expect(i(1)).toBe('02');
    expect(i(-129)).toBe('fe0101');
  });

  it('structs with every kind, maps, negative and big numbers, floats', () => {
    const t = T.struct('All', [
      ['B', T.bool],
      ['I', T.int],
      ['U', T.uint],
      ['F', T.float],
      ['S', T.string],
      ['Y', T.bytes],
      ['L', T.slice('[]int', T.int)],
      ['M', T.map('map[string]int', T.string, T.int)],
      ['N', T.struct('Inner', [['X', T.string]])],
    ]);
    const v = {
      B: true,
      I: -123456789,
      U: 2n ** 63n,
      F: 17.25,
      S: 'héllo',
      Y: Buffer.from([0, 1, 2]),
      L: [0, -1, 300],
      M: new Map([['a', 1]]),
      N: { X: 'x' },
    };
    const e = new GobEncoder();
    const d = new GobDecoder();
    d.push(Buffer.concat([e.encode(t, v), e.encode(t, { I: 5 })]));
    expect(d.next()!.value).toEqual(v);
    // zero fields are left out, a nested struct is always sent
    expect(d.next()!.value).toEqual({ I: 5, N: {} });
  });
});

describe('net/rpc server and client (loopback unix socket)', () => {
  const servers: Array<() => void> = [];
  afterEach(() => servers.splice(0).forEach((f) => f()));
  async function serve(): Promise<string> {
    const sock = `/tmp/${uid('dhr')}-rpc.sock`;
    const Reply = T.struct('Reply', [['Got', T.string]]);
    const srv = net.createServer(
      rpcConnectionHandler(
        {
          'T.Echo': {
            args: CmdArgsT,
            reply: Reply,
            call: async (a) => {
              if (a.IfName === 'slow') await new Promise((r) => setTimeout(r, 200));
              if (a.IfName === 'fail') throw new Error('it failed');
              return { Got: `${String(a.ContainerID)}/${String(a.IfName)}` };
            },
          },
        },
        () => undefined,
      ),
    );
    await new Promise<void>((r) => srv.listen(sock, r));
    servers.push(() => {
      srv.close();
      rmSync(sock, { force: true });
    });
    return sock;
  }

  it('a call, a method error, an unknown method, a plain HTTP request', async () => {
    const sock = await serve();
    expect(await rpcCall(sock, 'T.Echo', CmdArgsT, { ContainerID: 'c', IfName: 'eth0' })).toEqual({ Got: 'c/eth0' });
    await expect(rpcCall(sock, 'T.Echo', CmdArgsT, { IfName: 'fail' })).rejects.toThrow(new RpcError('it failed'));
    await expect(rpcCall(sock, 'T.Nope', CmdArgsT, {})).rejects.toThrow(/rpc: can't find method T.Nope/);
    const http = await new Promise<string>((resolve) => {
      const c = net.createConnection(sock, () => c.write('GET /_goRPC_ HTTP/1.0\r\n\r\n'));
      let b = '';
      c.on('data', (d) => (b += d.toString()));
      c.on('end', () => resolve(b));
    });
    expect(http).toMatch(/^HTTP\/1\.0 405 Method Not Allowed\r\n[\s\S]*405 must CONNECT\n$/);
    await expect(rpcCall('/tmp/dhr-absent.sock', 'T.Echo', CmdArgsT, {})).rejects.toThrow(/ENOENT/);
  });

  it('calls on one connection are answered by Seq, a slow one after a quick one', async () => {
    const sock = await serve();
    const { sock: c, rest } = await rpcDial(sock, 2000);
    const enc = new GobEncoder();
    const dec = new GobDecoder();
    dec.push(rest);
    c.write(
      Buffer.concat([
        enc.encode(RequestT, { ServiceMethod: 'T.Echo', Seq: 1 }),
        enc.encode(CmdArgsT, { ContainerID: 'a', IfName: 'slow' }),
        enc.encode(RequestT, { ServiceMethod: 'T.Echo', Seq: 2 }),
        enc.encode(CmdArgsT, { ContainerID: 'b', IfName: 'eth0' }),
      ]),
    );
    const got: unknown[] = [];
    await new Promise<void>((resolve) => {
      c.on('data', (d: Buffer) => {
        dec.push(d);
        for (let v = dec.next(); v; v = dec.next()) got.push(v.value);
        if (got.length === 4) resolve();
      });
    });
    c.destroy();
    expect(got).toEqual([{ ServiceMethod: 'T.Echo', Seq: 2 }, { Got: 'b/eth0' }, { ServiceMethod: 'T.Echo', Seq: 1 }, { Got: 'a/slow' }]);
  });
});

describe('the daemon flags, as the reference spells them', () => {
  it('Go flag forms and durations', () => {
    expect(goDurationMs('4s')).toBe(4000);
    expect(goDurationMs('1m30s')).toBe(90000);
    expect(goDurationMs('1.5h')).toBe(5400000);
    expect(goDurationMs('10')).toBeUndefined();
    expect(parseDaemonFlags([])).toEqual({ socketPath: '/run/cni/dhcp.sock', hostPrefix: '', timeoutMs: 10000 });
    expect(
      parseDaemonFlags([
        '-socketpath',
        '/x.sock',
        '-hostprefix=/host',
        '--pidfile',
        '/run/x.pid',
        '-broadcast',
        '-timeout',
        '5s',
        '-resendtimeout=30s',
      ]),
    ).toEqual({ socketPath: '/x.sock', hostPrefix: '/host', pidfile: '/run/x.pid', timeoutMs: 30000 });
    expect(() => parseDaemonFlags(['-nosuch'])).toThrow(/flag provided but not defined/);
    expect(() => parseDaemonFlags(['-timeout', 'soon'])).toThrow(/invalid value/);
    expect(() => parseDaemonFlags(['-pidfile', 'rel.pid'])).toThrow(/not absolute/);
  });
});

function strip(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== ''));
}
