/** Text for people: results as small tables, CNI errors spelled out (pure functions). */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { parseResult } from '../../shared/cni/result.ts';
import type { Attachment } from '../../shared/cni/types.ts';
import { ChainError, type GcReport, type PluginStatus } from '../../shared/libcni/libcni.ts';
import { PluginError } from '../../shared/libcni/invoke.ts';

const CODE_NAMES: Record<number, string> = {
  1: 'incompatible CNI version',
  2: 'unsupported field',
  3: 'unknown container',
  4: 'invalid environment variables',
  5: 'I/O failure',
  6: 'failed to decode content',
  7: 'invalid network config',
  11: 'try again later',
  50: 'plugin not available',
  51: 'plugin not available, existing containers may have limited connectivity',
  [ErrorCode.KernelOperation]: 'kernel operation failed',
  [ErrorCode.KernelFeatureMissing]: 'kernel feature missing',
  [ErrorCode.Conflict]: 'conflict',
  [ErrorCode.PoolExhausted]: 'address pool exhausted',
  [ErrorCode.DelegateFailed]: 'plugin failed',
  [ErrorCode.CheckMismatch]: 'CHECK found a difference',
  [ErrorCode.Internal]: 'internal error',
};

export const codeName = (code: number): string => CODE_NAMES[code] ?? (code >= 100 ? 'plugin-specific error' : 'error');

/** Fixed-width columns; empty trailing cells are trimmed. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const width = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map(
      (r) =>
        '  ' +
        r
          .map((c, i) => (c ?? '').padEnd(width[i]))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

/** An ADD result (any version) as text. */
export function formatResult(raw: Record<string, unknown>, version: string): string {
  const r = parseResult(raw, version);
  const out: string[] = [];
  const ifs = r.interfaces ?? [];
  if (ifs.length) {
    out.push('interfaces:');
    out.push(
      table(
        ['#', 'NAME', 'MAC', 'MTU', 'SANDBOX'],
        ifs.map((i, n) => [String(n), i.name, i.mac ?? '', i.mtu ? String(i.mtu) : '', i.sandbox ?? '']),
      ),
    );
  }
  const ips = r.ips ?? [];
  if (ips.length) {
    out.push('ips:');
    out.push(
      table(
        ['ADDRESS', 'GATEWAY', 'INTERFACE'],
        ips.map((ip) => [
          ip.address,
          ip.gateway ?? '',
          ip.interface !== undefined ? `${ifs[ip.interface]?.name ?? '?'} (#${ip.interface})` : '',
        ]),
      ),
    );
  }
  const routes = r.routes ?? [];
  if (routes.length) {
    out.push('routes:');
    out.push(
      table(
        ['DESTINATION', 'GATEWAY', 'EXTRA'],
        routes.map((rt) => [
          rt.dst,
          rt.gw ?? '',
          (['mtu', 'advmss', 'priority', 'table', 'scope'] as const)
            .filter((k) => rt[k] !== undefined)
            .map((k) => `${k} ${rt[k]}`)
            .join(' '),
        ]),
      ),
    );
  }
  const dns = r.dns;
  if (dns && (dns.nameservers?.length || dns.domain || dns.search?.length || dns.options?.length)) {
    out.push('dns:');
    if (dns.nameservers?.length) out.push(`  nameservers  ${dns.nameservers.join(' ')}`);
    if (dns.domain) out.push(`  domain       ${dns.domain}`);
    if (dns.search?.length) out.push(`  search       ${dns.search.join(' ')}`);
    if (dns.options?.length) out.push(`  options      ${dns.options.join(' ')}`);
  }
  if (!out.length) out.push('(empty result)');
  return out.join('\n');
}

function errorLines(e: CniError, indent: string, lead = ''): string[] {
  const inner = e instanceof ChainError ? e.inner : e;
  const lines = [`${indent}${lead}${e.message}`, `${indent}  CNI error code ${inner.code} (${codeName(inner.code)})`];
  if (inner.details) lines.push(`${indent}  details: ${inner.details}`);
  if (inner instanceof PluginError && inner.stderr)
    lines.push(
      ...inner.stderr
        .split('\n')
        .slice(-10)
        .map((l) => `${indent}  stderr: ${l}`),
    );
  if (e instanceof ChainError) for (const a of e.also) lines.push(...errorLines(a, indent + '  ', 'then: '));
  return lines;
}

/** A failure as people read it. */
export function formatError(what: string, e: CniError): string {
  return [`cnitool: ${what} failed`, ...errorLines(e, '  ')].join('\n');
}

/** A failure as JSON (the spec's error shape, plus the plugin errors that followed). */
export function errorJson(e: CniError, cniVersion: string): Record<string, unknown> {
  const inner = e instanceof ChainError ? e.inner : e;
  const out: Record<string, unknown> = { cniVersion, code: inner.code, msg: e.message };
  if (inner.details) out.details = inner.details;
  if (e instanceof ChainError && e.also.length) out.also = e.also.map((a) => errorJson(a, cniVersion));
  return out;
}

const att = (a: Attachment): string => `${a.containerID}/${a.ifname}`;

export function formatGc(net: string, r: GcReport): string {
  const out = [`network "${net}": gc`];
  if (r.skipped && !r.deleted.length && !r.collected.length && r.skipped.startsWith('disableGC'))
    return `network "${net}": gc skipped (${r.skipped})`;
  out.push(`  valid attachments: ${r.valid.length ? r.valid.map(att).join(', ') : '(none)'}`);
  out.push(`  stale attachments deleted: ${r.deleted.length ? r.deleted.map(att).join(', ') : '(none)'}`);
  out.push(`  plugins collected: ${r.collected.length ? r.collected.join(', ') : r.skipped ? `(none: ${r.skipped})` : '(none)'}`);
  for (const e of r.errors) out.push(...errorLines(e, '  ', 'error: '));
  return out.join('\n');
}

export function formatStatus(net: string, version: string, s: { skipped?: string; plugins: PluginStatus[] }): string {
  if (s.skipped) return `network "${net}" (cniVersion ${version}): status not available (${s.skipped})`;
  const out = [`network "${net}" (cniVersion ${version}): ${s.plugins.every((p) => p.ok) ? 'ready' : 'NOT ready'}`];
  out.push(
    table(
      ['PLUGIN', 'STATUS'],
      s.plugins.map((p) => [p.type, p.ok ? 'ok' : `code ${p.error?.code} (${codeName(p.error?.code ?? 0)}): ${p.error?.message ?? ''}`]),
    ),
  );
  return out.join('\n');
}
