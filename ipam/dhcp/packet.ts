/** DHCPv4 messages (RFC 2131/2132): encode and decode, pure. */
export const MSG = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7 } as const;
const COOKIE = 0x63825363;

export interface DhcpMessage {
  op: 1 | 2;
  xid: number;
  flags?: number;
  ciaddr?: string;
  yiaddr?: string;
  chaddr: string;
  options: Map<number, Buffer>;
}

export const ip2buf = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));
export const buf2ip = (b: Buffer, o = 0): string => [b[o], b[o + 1], b[o + 2], b[o + 3]].join('.');

export function encode(m: DhcpMessage): Buffer {
  const head = Buffer.alloc(240);
  head[0] = m.op;
  head[1] = 1; // ethernet
  head[2] = 6;
  head.writeUInt32BE(m.xid >>> 0, 4);
  head.writeUInt16BE(m.flags ?? 0, 10);
  if (m.ciaddr) ip2buf(m.ciaddr).copy(head, 12);
  if (m.yiaddr) ip2buf(m.yiaddr).copy(head, 16);
  Buffer.from(m.chaddr.split(':').map((h) => parseInt(h, 16))).copy(head, 28);
  head.writeUInt32BE(COOKIE, 236);
  const opts: Buffer[] = [];
  for (const [code, v] of m.options) opts.push(Buffer.from([code, v.length]), v);
  opts.push(Buffer.from([255]));
  const out = Buffer.concat([head, ...opts]);
  return out.length < 300 ? Buffer.concat([out, Buffer.alloc(300 - out.length)]) : out;
}

export function decode(b: Buffer): DhcpMessage | undefined {
  if (b.length < 240 || b.readUInt32BE(236) !== COOKIE) return undefined;
  const options = new Map<number, Buffer>();
  for (let i = 240; i < b.length;) {
    const code = b[i];
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    const len = b[i + 1];
    options.set(code, b.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  const chaddr = [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':');
  return {
    op: b[0] as 1 | 2,
    xid: b.readUInt32BE(4),
    flags: b.readUInt16BE(10),
    ciaddr: buf2ip(b, 12),
    yiaddr: buf2ip(b, 16),
    chaddr,
    options,
  };
}

export const msgType = (m: DhcpMessage): number | undefined => m.options.get(53)?.[0];
export const optIp = (m: DhcpMessage, code: number): string | undefined => {
  const v = m.options.get(code);
  return v && v.length >= 4 ? buf2ip(v) : undefined;
};
export const optU32 = (m: DhcpMessage, code: number): number | undefined => {
  const v = m.options.get(code);
  return v && v.length >= 4 ? v.readUInt32BE(0) : undefined;
};

/** The parameters a client asks for unless `ipam.request` says `skipDefault`. */
export const DEFAULT_REQUEST = [1, 3, 6, 15, 33, 51, 58, 59, 121];

/** Options a client sends (`ipam.provide`) and asks for (`ipam.request`), as the reference's prepareOptions. */
export interface OptionPlan {
  provide: Array<[number, Buffer]>;
  request: number[];
}

/** Option names the reference knows (options.go); anything else must be a number 0–255. */
const OPTION_NAMES: Record<string, number> = {
  'dhcp-client-identifier': 61,
  'subnet-mask': 1,
  routers: 3,
  'host-name': 12,
  'user-class': 77,
  'vendor-class-identifier': 60,
};

export function parseOptionName(o: string): number {
  if (o in OPTION_NAMES) return OPTION_NAMES[o];
  if (!/^\d{1,3}$/.test(o) || Number(o) > 255) throw new Error(`Can not parse option "${o}": Can not parse option: invalid syntax`);
  return Number(o);
}

export interface ProvideOption {
  option: string;
  value?: string;
  fromArg?: string;
}
export interface RequestOption {
  option?: string;
  skipDefault?: boolean;
}

/** `ipam.provide` (values, or CNI_ARGS keys) and `ipam.request` into the options of every DISCOVER/REQUEST. */
export function prepareOptions(cniArgs: string, provide: ProvideOption[] = [], request: RequestOption[] = []): OptionPlan {
  const args = new Map<string, string>();
  for (const pair of cniArgs.split(';')) {
    const i = pair.indexOf('=');
    if (i > 0) args.set(pair.slice(0, i), pair.slice(i + 1));
  }
  const plan: OptionPlan = { provide: [], request: [] };
  for (const p of provide) {
    const code = parseOptionName(String(p.option));
    if (p.value) {
      if (p.value.length > 255) throw new Error(`value too long for option "${p.option}": "${p.value}"`);
      plan.provide.push([code, Buffer.from(p.value)]);
    }
    const v = p.fromArg !== undefined ? args.get(p.fromArg) : undefined;
    if (v !== undefined) {
      if (v.length > 255) throw new Error(`value too long for option "${p.option}" from CNI_ARGS "${p.fromArg}"`);
      plan.provide.push([code, Buffer.from(v)]);
    }
  }
  let skipDefault = false;
  const asked: number[] = [];
  for (const r of request) {
    if (r.skipDefault) skipDefault = true;
    if (r.option) asked.push(parseOptionName(String(r.option)));
  }
  plan.request = [...new Set([...asked, ...(skipDefault ? [] : DEFAULT_REQUEST)])];
  return plan;
}

/** Options of a client message: type, client id, the provided options, extra ones, the parameters asked for. */
export function clientOptions(type: number, clientId: string, extra: Array<[number, Buffer]> = [], plan?: OptionPlan): Map<number, Buffer> {
  const m = new Map<number, Buffer>([[53, Buffer.from([type])]]);
  m.set(61, Buffer.concat([Buffer.from([0]), Buffer.from(clientId)]));
  for (const [c, v] of extra) m.set(c, v);
  if (type === MSG.DISCOVER || type === MSG.REQUEST) {
    for (const [c, v] of plan?.provide ?? []) m.set(c, v);
    m.set(55, Buffer.from(plan?.request ?? DEFAULT_REQUEST));
  }
  return m;
}

/** `--provide CODE=HEX` and `--request 1,3,...`: the plan on the client's command line, and back. */
export function planArgs(p: OptionPlan): string[] {
  return [...p.provide.flatMap(([c, v]) => ['--provide', `${c}=${v.toString('hex')}`]), '--request', p.request.join(',')];
}
export function planOf(argv: string[]): OptionPlan {
  const plan: OptionPlan = { provide: [], request: DEFAULT_REQUEST };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--provide') {
      const [c, hex] = argv[++i].split('=');
      plan.provide.push([Number(c), Buffer.from(hex, 'hex')]);
    } else if (argv[i] === '--request') plan.request = argv[++i].split(',').filter(Boolean).map(Number);
  }
  return plan;
}

export const ipOpt = (ip: string): Buffer => ip2buf(ip);

export interface Lease {
  address: string;
  prefix: number;
  router?: string;
  server: string;
  leaseSeconds: number;
  t1: number;
  dns: string[];
  /** option 121 (RFC 3442): classless static routes, gw 0.0.0.0 for an on-link destination */
  classless?: LeaseRoute[];
  /** option 33: classful static routes */
  static?: LeaseRoute[];
}

export interface LeaseRoute {
  dst: string;
  gw: string;
}

/** Option 121: (prefix length, the significant octets of the destination, router) repeated. */
export function parseClassless(b: Buffer): LeaseRoute[] {
  const out: LeaseRoute[] = [];
  for (let i = 0; i < b.length;) {
    const width = b[i];
    const n = Math.ceil(width / 8);
    if (width > 32 || i + 1 + n + 4 > b.length) return []; // malformed: ignore the option (RFC 3442)
    const dst = Buffer.alloc(4);
    b.copy(dst, 0, i + 1, i + 1 + n);
    out.push({ dst: `${buf2ip(dst)}/${width}`, gw: buf2ip(b, i + 1 + n) });
    i += 1 + n + 4;
  }
  return out;
}

/** Option 121 from routes (for tests and servers). */
export function encodeClassless(routes: LeaseRoute[]): Buffer {
  return Buffer.concat(
    routes.map((r) => {
      const [ip, w] = r.dst.split('/');
      const width = Number(w);
      return Buffer.concat([Buffer.from([width]), ip2buf(ip).subarray(0, Math.ceil(width / 8)), ip2buf(r.gw)]);
    }),
  );
}

/** Option 33: (destination, router) pairs; the destination's mask is its class's (as the reference). */
export function parseStatic(b: Buffer): LeaseRoute[] {
  const out: LeaseRoute[] = [];
  for (let i = 0; i + 8 <= b.length; i += 8) {
    const first = b[i];
    const width = first < 128 ? 8 : first < 192 ? 16 : 24; // Go's net.IP.DefaultMask
    out.push({ dst: `${buf2ip(b, i)}/${width}`, gw: buf2ip(b, i + 4) });
  }
  return out;
}

export function leaseOf(m: DhcpMessage): Lease {
  const mask = optIp(m, 1) ?? '255.255.255.0';
  const prefix = mask.split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
  const dnsBuf = m.options.get(6);
  const dns: string[] = [];
  if (dnsBuf) for (let i = 0; i + 4 <= dnsBuf.length; i += 4) dns.push(buf2ip(dnsBuf, i));
  const leaseSeconds = optU32(m, 51) ?? 3600;
  return {
    address: m.yiaddr ?? '',
    prefix,
    router: optIp(m, 3),
    server: optIp(m, 54) ?? '',
    leaseSeconds,
    t1: optU32(m, 58) ?? Math.floor(leaseSeconds / 2),
    dns,
    ...(m.options.has(121) ? { classless: parseClassless(m.options.get(121)!) } : {}),
    ...(m.options.has(33) ? { static: parseStatic(m.options.get(33)!) } : {}),
  };
}
