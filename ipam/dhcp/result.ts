/**
 * The lease as a CNI result, as the reference daemon builds it (daemon.go Allocate, lease.go
 * Routes): the address with the first router as gateway; routes from option 121 if the server
 * sent any (then option 33 and the router are ignored, RFC 3442; a route whose router is
 * 0.0.0.0 is on-link: scope link, 253), else option 33's routes and a default route via the
 * router; `ipam.priority` on every route. And the same result as the Go types100.Result the
 * daemon sends on the wire (IP and mask as byte slices), both ways.
 */
import { isIPv4 } from 'node:net';
import type { Result, Route } from '../../shared/cni/types.ts';
import type { GoIPNet, GoResult } from './rpc.ts';
import type { Lease } from './packet.ts';

const SCOPE_LINK = 253;

export function leaseResult(l: Lease, priority = 0): Result {
  const r: Result = { ips: [{ address: `${l.address}/${l.prefix}`, ...(l.router ? { gateway: l.router } : {}) }] };
  let routes: Route[];
  if (l.classless?.length) {
    routes = l.classless.map((c) => (c.gw === '0.0.0.0' ? { dst: c.dst, gw: c.gw, scope: SCOPE_LINK } : { dst: c.dst, gw: c.gw }));
  } else {
    routes = (l.static ?? []).map((s) => ({ dst: s.dst, gw: s.gw }));
    if (l.router) routes.push({ dst: '0.0.0.0/0', gw: l.router });
  }
  if (priority) for (const x of routes) x.priority = priority;
  if (routes.length) r.routes = routes;
  return r;
}

// --- net.IP / net.IPNet as bytes ------------------------------------------------------------

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function ipString(b: Buffer): string {
  const v4mapped = b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (b.length === 4 || v4mapped) return [...b.subarray(b.length - 4)].join('.');
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i).toString(16));
  // the longest run of zero groups (two or more) becomes ::
  let best = [-1, 0];
  for (let i = 0; i < 8;) {
    if (g[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === '0') j++;
    if (j - i > best[1] && j - i > 1) best = [i, j - i];
    i = j;
  }
  if (best[0] < 0) return g.join(':');
  return `${g.slice(0, best[0]).join(':')}::${g.slice(best[0] + best[1]).join(':')}`;
}

function maskBytes(prefix: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < prefix; i++) b[i >> 3] |= 0x80 >> (i & 7);
  return b;
}
const maskLen = (m: Buffer): number => [...m].reduce((n, x) => n + (x.toString(2).match(/1/g)?.length ?? 0), 0);

function toIPNet(cidr: string): GoIPNet {
  const [ip, p] = cidr.split('/');
  const IP = ipBytes(ip);
  return { IP, Mask: maskBytes(Number(p), IP.length) };
}
const fromIPNet = (n: GoIPNet): string => `${ipString(n.IP)}/${maskLen(n.Mask)}`;

export function toGoResult(r: Result): GoResult {
  return {
    IPs: (r.ips ?? []).map((i) => ({
      ...(i.interface !== undefined ? { Interface: i.interface } : {}),
      Address: toIPNet(i.address),
      ...(i.gateway ? { Gateway: ipBytes(i.gateway) } : {}),
    })),
    Routes: (r.routes ?? []).map((x) => ({
      Dst: toIPNet(x.dst),
      ...(x.gw ? { GW: ipBytes(x.gw) } : {}),
      MTU: x.mtu,
      AdvMSS: x.advmss,
      Priority: x.priority,
      Table: x.table,
      Scope: x.scope,
    })),
    DNS: {
      Nameservers: r.dns?.nameservers,
      Domain: r.dns?.domain,
      Search: r.dns?.search,
      Options: r.dns?.options,
    },
  };
}

export function fromGoResult(g: GoResult): Result {
  const r: Result = {};
  if (g.IPs?.length)
    r.ips = g.IPs.map((i) => ({
      address: fromIPNet(i.Address),
      ...(i.Gateway?.length ? { gateway: ipString(i.Gateway) } : {}),
      ...(i.Interface !== undefined ? { interface: i.Interface } : {}),
    }));
  if (g.Routes?.length)
    r.routes = g.Routes.map((x) => {
      const route: Route = { dst: fromIPNet(x.Dst) };
      if (x.GW?.length) route.gw = ipString(x.GW);
      if (x.MTU) route.mtu = x.MTU;
      if (x.AdvMSS) route.advmss = x.AdvMSS;
      if (x.Priority) route.priority = x.Priority;
      if (x.Table !== undefined) route.table = x.Table;
      if (x.Scope !== undefined) route.scope = x.Scope;
      return route;
    });
  const d = g.DNS;
  if (d && (d.Nameservers?.length || d.Domain || d.Search?.length || d.Options?.length)) {
    r.dns = {
      ...(d.Nameservers?.length ? { nameservers: d.Nameservers } : {}),
      ...(d.Domain ? { domain: d.Domain } : {}),
      ...(d.Search?.length ? { search: d.Search } : {}),
      ...(d.Options?.length ? { options: d.Options } : {}),
    };
  }
  return r;
}
