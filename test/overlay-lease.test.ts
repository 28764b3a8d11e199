/**
 * The overlay's lease parser (shared/overlay/lease-parse.ts): every lease field read from a
 * store is validated before it can reach a kernel command, and an invalid lease is skipped,
 * never fatal to the others. Examples plus a property test over hostile input.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { settingsOf } from '../shared/overlay/config.ts';
import { planPeers, type HostState } from '../shared/overlay/host.ts';
import { parseLease, validLeases, type LeaseContext, type RawLease } from '../shared/overlay/lease-parse.ts';
import { vtepMacFor } from '../shared/overlay/lease.ts';
import { leaseName, listLeases, openStore, withDeadline } from '../shared/overlay/store.ts';
import { FileStore as ObjectFileStore } from '../shared/store/file.ts';
import type { CniObject } from '../shared/objects/types.ts';
import { Logger } from '../shared/cni/log.ts';
import { parseCIDR } from '../shared/ipnet.ts';

const ctx: LeaseContext = { network: parseCIDR('10.244.0.0/16')!, subnetLen: 24, family: 4 };
const good = { publicIP: '192.0.2.7', vtepMAC: vtepMacFor('192.0.2.7', 1), hostname: 'node-7.example' };
const raw = (subnet: string, value: unknown): RawLease => ({ subnet, value });
const why = (r: RawLease, c: LeaseContext = ctx): string => {
  const p = parseLease(r, c);
  return p.ok ? '' : p.why;
};

describe('lease parser: examples', () => {
  it('accepts a well-formed lease, from JSON text (etcd) or an object (file store)', () => {
    expect(parseLease(raw('10.244.3.0/24', JSON.stringify(good)), ctx)).toEqual({ ok: true, lease: { subnet: '10.244.3.0/24', ...good } });
    expect(parseLease(raw('10.244.3.0/24', { ...good, subnet: '10.244.3.0/24', expires: 5 }), ctx).ok).toBe(true);
    expect(parseLease(raw('10.244.3.0/24', { ...good, vtepMAC: good.vtepMAC.toUpperCase() }), ctx)).toMatchObject({
      ok: true,
      lease: { vtepMAC: good.vtepMAC },
    });
    expect(parseLease(raw('10.244.3.0/24', { ...good, publicIP: 'fd00::7' }), { ...ctx, family: 6 }).ok).toBe(true);
  });

  it("refuses the issue's injection: a publicIP carrying a second bridge command", () => {
    const publicIP = '192.168.77.66 self permanent\nfdb append 00:00:00:00:00:00 dev ovl.1 dst 192.168.77.66 self permanent';
    expect(why(raw('10.244.3.0/24', { ...good, publicIP }))).toMatch(/publicIP (is too long|.* is not an IP address)/);
    expect(why(raw('10.244.3.0/24', { ...good, publicIP: '1.2.3.4\nfdb append' }))).toMatch(/publicIP .* is not an IP address/);
  });

  it.each([
    ['127.0.0.1', /loopback/],
    ['::1', /loopback/],
    ['224.0.0.1', /multicast/],
    ['ff02::1', /multicast/],
    ['0.0.0.0', /unspecified/],
    ['::', /unspecified/],
    ['255.255.255.255', /broadcast/],
    ['169.254.1.1', /link-local/],
    ['fe80::1', /link-local/],
    ['::ffff:192.0.2.1', /IPv4-mapped|canonical/],
    ['::ffff:c000:201', /IPv4-mapped/],
    ['192.0.2.007', /not an IP address|canonical/],
    ['FD00::7', /canonical/],
    ['192.0.2.7/24', /not an IP address/],
    [' 192.0.2.7', /not an IP address/],
    ['192.0.2.7 ', /not an IP address/],
    [7, /not a string/],
    [undefined, /not a string/],
  ])('refuses publicIP %j', (publicIP, re) => {
    expect(why(raw('10.244.3.0/24', { ...good, publicIP }), { ...ctx, family: String(publicIP).includes(':') ? 6 : 4 })).toMatch(re);
  });

  it("refuses a publicIP of the other family than this host's underlay", () => {
    expect(why(raw('10.244.3.0/24', { ...good, publicIP: 'fd00::7' }))).toMatch(/not an IPv4 address/);
    expect(why(raw('10.244.3.0/24', good), { ...ctx, family: 6 })).toMatch(/not an IPv6 address/);
  });

  it.each([
    ['zz:zz:zz'],
    ['01:00:5e:00:00:01'],
    ['00:00:00:00:00:00'],
    ['02:00:00:00:00:01 dev x'],
    ['02-00-00-00-00-01'],
    ['02:00:00:00:00:0100'],
    [null],
  ])('refuses vtepMAC %j', (vtepMAC) => {
    expect(why(raw('10.244.3.0/24', { ...good, vtepMAC }))).toMatch(/vtepMAC/);
  });

  it.each([
    ['10.245.3.0/24', /outside the cluster network/],
    ['10.244.3.0/25', /not a \/24/],
    ['10.244.0.0/16', /not a \/24/],
    ['10.244.3.1/24', /not a network address/],
    ['10.244.3.0/24 via 1.2.3.4', /not a CIDR/],
    ['fd00::/64', /outside the cluster network/],
    ['0.0.0.0/0', /outside the cluster network|not a \/24/],
  ])('refuses subnet %j', (subnet, re) => {
    expect(why(raw(subnet, good))).toMatch(re);
  });

  it('refuses a record whose subnet field contradicts its key, odd hostnames and non-objects', () => {
    expect(why(raw('10.244.3.0/24', { ...good, subnet: '10.244.4.0/24' }))).toMatch(/names subnet/);
    expect(why(raw('10.244.3.0/24', { ...good, hostname: 'a b' }))).toMatch(/hostname/);
    expect(why(raw('10.244.3.0/24', { ...good, hostname: 'x\nfdb append' }))).toMatch(/hostname/);
    expect(why(raw('10.244.3.0/24', { ...good, hostname: 'ünï' }))).toMatch(/hostname/);
    expect(why(raw('10.244.3.0/24', { ...good, hostname: 5 }))).toMatch(/hostname/);
    for (const v of [null, [], 'not json', '[1]', 5, true]) expect(why(raw('10.244.3.0/24', v))).toMatch(/not (a )?JSON/);
  });

  it('skips invalid leases and keeps the others; logs each invalid content once', () => {
    const lines: string[] = [];
    const log = new Logger('t', {});
    log.warn = (m: string) => void lines.push(m);
    const raws = [
      raw('10.244.3.0/24', good),
      raw('10.244.4.0/24', { ...good, vtepMAC: 'zz:zz:zz' }),
      raw('10.244.5.0/24', { ...good, publicIP: '1.2.3.4\nfdb' }),
    ];
    expect(validLeases(raws, ctx, log).map((l) => l.subnet)).toEqual(['10.244.3.0/24']);
    expect(lines).toHaveLength(2);
    expect(lines.join('\n')).not.toMatch(/\nfdb/); // hostile text is escaped in the log, never a raw newline
    validLeases(raws, ctx, log);
    expect(lines).toHaveLength(2);
  });
});

/** Characters that matter to the kernel tools' batch parsers, and a spread of others. */
const nasty = fc.constantFrom(
  ' ',
  '\n',
  '\r',
  '\t',
  '\0',
  '\v',
  '\f',
  '\u00a0',
  '\u2028',
  '\u3000',
  '"',
  "'",
  '\\',
  '#',
  ';',
  '/',
  ':',
  '.',
  '%',
  'ü',
  '😀',
  '0',
  'f',
  'F',
  'a',
);
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: nasty, maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  // a valid value with hostile text spliced in
  fc
    .tuple(
      fc.constantFrom('192.0.2.7', 'fd00::7', '02:00:00:00:00:01', '10.244.3.0/24', 'node-1'),
      fc.string({ unit: nasty, minLength: 1, maxLength: 10 }),
      fc.nat(20),
    )
    .map(([v, x, i]) => v.slice(0, i) + x + v.slice(i)),
);
const anyValue = fc.oneof(nastyString, fc.integer(), fc.double(), fc.constant(null), fc.boolean(), fc.array(fc.nat(), { maxLength: 3 }));

const WS = /[\s\0]/u;

describe('lease parser: property test over hostile input', () => {
  it('whatever a store holds, an accepted lease has only well-formed fields (no whitespace, canonical, in the network)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.oneof(nastyString, fc.constantFrom('10.244.3.0/24', '10.244.200.0/24')),
        fc.record({ publicIP: anyValue, vtepMAC: anyValue, hostname: fc.option(anyValue, { nil: undefined }) }, { requiredKeys: [] }),
        fc.boolean(),
        fc.boolean(),
        (subnet, fields, asText, mixGood) => {
          const value = { ...(mixGood ? good : {}), ...fields };
          const p = parseLease(raw(subnet, asText ? JSON.stringify(value) : value), ctx);
          if (!p.ok) {
            expect(typeof p.why).toBe('string');
            return;
          }
          accepted++;
          const l = p.lease;
          for (const v of [l.subnet, l.publicIP, l.vtepMAC, l.hostname ?? 'h']) expect(WS.test(v), JSON.stringify(v)).toBe(false);
          expect(l.publicIP).toMatch(/^(\d{1,3}\.){3}\d{1,3}$/);
          expect(l.vtepMAC).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
          expect(l.subnet).toMatch(/^10\.244\.\d{1,3}\.0\/24$/);
          // and the commands planned from it carry exactly these tokens
          const plan = planPeers(S, mine, [l], noHost, true, []);
          for (const c of [...plan.ip, ...plan.fdb]) for (const t of c) expect(WS.test(t) || t === '').toBe(false);
        },
      ),
      { numRuns: 4000, seed: 20261206 },
    );
    // the generator does reach the accepting side now and then (a good lease with some fields left)
    expect(accepted).toBeGreaterThan(0);
  });

  it('never throws, whatever the record (random bytes, unicode, deep junk)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.oneof(fc.jsonValue(), fc.string({ unit: 'binary' }), fc.anything()),
        (subnet, value) => {
          const p = parseLease(raw(subnet, value), ctx);
          expect(typeof p.ok).toBe('boolean');
        },
      ),
      { numRuns: 3000, seed: 61206 },
    );
  });
});

const S = settingsOf({ name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/var/lib/x' });
const mine = { subnet: '10.244.1.0/24', publicIP: '192.0.2.1', vtepMAC: vtepMacFor('192.0.2.1', 1) };
const noHost: HostState = { links: [], routes: [], neigh: [], fdb: [] };

describe("the previous version's lease file: malformed files (issue 10 item 7)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ho-ovlstore-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: unknown): string => {
    const f = path.join(dir, name);
    writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
    return f;
  };
  const lease = { subnet: '10.244.9.0/24', ...good };

  it('refuses {"leases": [...]} with code 5 naming the file, for reads and writes', async () => {
    const f = file('array.json', { leases: [lease] });
    const st = await openStore({ type: 'file', path: f }, 'n');
    for (const op of [(): Promise<unknown> => st.list(), (): Promise<unknown> => st.create(lease, 60)]) {
      const e = await withDeadline<unknown>('op', 5000, op).catch((x: unknown) => x);
      expect(e).toMatchObject({ code: 5, message: expect.stringContaining(f) });
    }
  });

  it.each([
    ['null entry', { leases: { '10.244.9.0/24': null } }],
    ['top-level array', [lease]],
    ['leases a string', { leases: 'x' }],
  ])('refuses a %s with code 5, not 11', async (_n, content) => {
    const f = file(`bad-${Math.random()}.json`, content);
    const st = await openStore({ type: 'file', path: f }, 'n');
    const e = await withDeadline('list', 5000, () => st.list()).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 5, message: expect.stringContaining(f) });
  });

  it('treats a non-numeric, huge or negative expires as invalid: skipped, logged, and the subnet free again', async () => {
    const lines: string[] = [];
    const log = new Logger('t', {});
    log.warn = (m: string) => void lines.push(m);
    const leases: Record<string, unknown> = {};
    const bad = ['99999999999999999', 1e300, Number.MAX_SAFE_INTEGER, -5, 'soon', null];
    bad.forEach(
      (expires, i) =>
        (leases[`10.244.${20 + i}.0/24`] = { ...good, publicIP: `192.0.2.${20 + i}`, subnet: `10.244.${20 + i}.0/24`, expires }),
    );
    leases['10.244.30.0/24'] = { ...good, subnet: '10.244.30.0/24', expires: Date.now() + 60_000 };
    const f = file('expires.json', { leases });
    const st = await openStore({ type: 'file', path: f }, 'n');
    expect((await listLeases(st, ctx, log)).map((l) => l.subnet)).toEqual(['10.244.30.0/24']);
    expect(lines).toHaveLength(bad.length);
    expect(lines.join('\n')).toMatch(/expires/);
    expect(await st.create({ subnet: '10.244.21.0/24', ...good }, 60)).toBe(true);
  });
});

describe('SubnetLease objects in the cluster store: hostile content (issue 10 items 1, 7)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ovs-ovlobj-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const soon = (): string => new Date(Date.now() + 60_000).toISOString();
  const obj = (name: string, spec: Record<string, unknown>): CniObject =>
    ({ apiVersion: 'cni-ts.dev/v1', kind: 'SubnetLease', metadata: { name }, spec }) as unknown as CniObject;
  const spec = (subnet: string, n: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    network: 'n',
    subnet,
    publicIP: `192.0.2.${n}`,
    vtepMAC: vtepMacFor(`192.0.2.${n}`, 1),
    expires: soon(),
    ...extra,
  });

  it('skips and logs (once) every invalid lease, ignores other networks, and only expired ones are free to take', async () => {
    const objects = new ObjectFileStore(path.join(dir, 'store'));
    const puts: Array<[string, Record<string, unknown>]> = [
      [leaseName('n', '10.244.40.0/24'), spec('10.244.40.0/24', 40)],
      [
        leaseName('n', '10.244.41.0/24'),
        spec('10.244.41.0/24', 41, { publicIP: '192.0.2.41 self permanent\nfdb append 00:00:00:00:00:00' }),
      ],
      [leaseName('n', '10.244.42.0/24'), spec('10.244.42.0/24', 42, { vtepMAC: 'zz:zz:zz' })],
      // the name says one subnet, the record another
      [leaseName('n', '10.244.43.0/24'), spec('10.244.99.0/24', 43)],
      [leaseName('n', '10.244.44.0/24'), spec('10.244.44.0/24', 44, { expires: 'soon' })],
      [leaseName('n', '10.244.45.0/24'), spec('10.244.45.0/24', 45, { expires: '9999-01-01T00:00:00Z' })],
      [leaseName('n', '10.244.46.0/24'), spec('10.244.46.0/24', 46, { expires: new Date(Date.now() - 1000).toISOString() })],
      // another network's lease, and a record outside the cluster network
      [leaseName('m', '10.244.47.0/24'), spec('10.244.47.0/24', 47, { network: 'm' })],
      [leaseName('n', '10.9.0.0/24'), spec('10.9.0.0/24', 48)],
      [leaseName('n', '10.244.49.0/24'), spec('10.244.49.0/24', 49, { padding: 'x'.repeat(5000) })],
    ];
    for (const [name, sp] of puts) await objects.put(obj(name, sp));
    const lines: string[] = [];
    const log = new Logger('t', {});
    log.warn = (m: string) => void lines.push(m);
    const st = await openStore({ type: 'file', path: path.join(dir, 'store') }, 'n');
    for (let i = 0; i < 2; i++) expect((await listLeases(st, ctx, log)).map((l) => l.subnet)).toEqual(['10.244.40.0/24']);
    expect(lines).toHaveLength(7);
    expect(lines.join('\n')).toMatch(/10.244.41.0\/24.*publicIP/);
    expect(lines.join('\n')).toMatch(/10.244.45.0\/24.*longest lease TTL/);
    const me = { publicIP: '192.0.2.1', vtepMAC: vtepMacFor('192.0.2.1', 1) };
    // live (even if invalid) blocks the subnet; expired or with an unusable expiry is free
    for (const s of ['10.244.40.0/24', '10.244.41.0/24', '10.244.42.0/24', '10.244.43.0/24'])
      expect(await st.create({ subnet: s, ...me }, 60)).toBe(false);
    for (const s of ['10.244.44.0/24', '10.244.45.0/24', '10.244.46.0/24', '10.244.47.0/24'])
      expect(await st.create({ subnet: s, ...me }, 60)).toBe(true);
    // a holder's renewal needs a valid record of its own
    expect(await st.renew({ subnet: '10.244.42.0/24', publicIP: '192.0.2.42', vtepMAC: vtepMacFor('192.0.2.42', 1) }, 60)).toBe(false);
    await st.close();
  });
});
