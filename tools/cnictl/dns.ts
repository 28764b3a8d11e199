/**
 * `cnictl dns lookup NAME [TYPE] [--network NET] [-o json]`: what the node agent's DNS server
 * answers for NAME (type A by default), and `cnictl get dns [-o json]` (get.ts hands `dns`
 * here): every record it serves. Both ask the agent over its unix socket (`socket` in the
 * agent config): the answer comes from the zone the agent is serving, not from the store.
 */
import { parseArgs } from 'node:util';
import { askAgent, DEFAULT_AGENT_SOCKET, type AgentRequest, type AgentResponse, type DnsRecord } from '../../shared/agentapi.ts';
import { CliError, table, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl dns lookup NAME [TYPE] [--network NETWORK] [-o json]
  what the node agent's DNS server answers for NAME (TYPE: A, AAAA, SRV, PTR, TXT, SOA, CNAME,
  ANY...; default A; an address as NAME looks up its PTR)
  --network NET   as a client on that network's gateway sees it (its container names); default every network
  -o json         the answer as JSON
usage: cnictl get dns [-o json]
  every record the agent serves: NAME, TYPE, TTL, DATA (NETWORK for container names)
`;

async function ask(ctx: Ctx, req: AgentRequest): Promise<AgentResponse & { ok: true }> {
  let socket = DEFAULT_AGENT_SOCKET;
  try {
    socket = ctx.config().socket;
  } catch {
    // no readable agent config: the default socket
  }
  let r: AgentResponse;
  try {
    r = await askAgent(socket, req);
  } catch (e) {
    throw new CliError(`cannot reach the agent on ${socket}: ${(e as Error).message}`);
  }
  if (!r.ok) throw new CliError(`agent: ${r.error}`);
  return r;
}

const recordRows = (rs: DnsRecord[], network: boolean): string[][] =>
  rs.map((r) => [r.name, r.type, String(r.ttl), r.data, ...(network ? [r.network ?? ''] : [])]);

/** An address given as NAME: its reverse name (PTR). */
export function reverseOf(name: string): string | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(name);
  if (v4) return `${v4.slice(1).reverse().join('.')}.in-addr.arpa`;
  if (!name.includes(':') || !/^[0-9a-f:]+$/i.test(name)) return undefined;
  const [head, tail = ''] = name.split('::');
  const groups = (s: string): string[] => (s ? s.split(':') : []);
  const h = groups(head!);
  const t = groups(tail);
  const all = name.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  if (all.length !== 8) return undefined;
  return `${all
    .map((g) => g.padStart(4, '0'))
    .join('')
    .split('')
    .reverse()
    .join('.')}.ip6.arpa`;
}

export async function getDns(ctx: Ctx, output: string | undefined): Promise<number> {
  if (output !== undefined && output !== 'json' && output !== 'wide')
    throw new UsageError(`-o ${output}: get dns prints a table, wide or json`);
  const r = await ask(ctx, { type: 'dns-records' });
  if (r.type !== 'dns-records') throw new CliError('agent: unexpected answer');
  if (output === 'json') {
    ctx.out(`${JSON.stringify(r.dns, null, 2)}\n`);
    return 0;
  }
  const recs = [...r.dns.records].sort(
    (a, b) =>
      (a.network ?? '').localeCompare(b.network ?? '') ||
      a.name.localeCompare(b.name) ||
      a.type.localeCompare(b.type) ||
      a.data.localeCompare(b.data),
  );
  const withNet = recs.some((x) => x.network !== undefined);
  ctx.out(
    `; zone ${r.dns.domain} serial ${r.dns.serial}, listening on ${r.dns.listeners.map((l) => `${l.address}:${l.port}`).join(' ') || 'nothing'}\n`,
  );
  ctx.out(table(['NAME', 'TYPE', 'TTL', 'DATA', ...(withNet ? ['NETWORK'] : [])], recordRows(recs, withNet)));
  return 0;
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { output: { type: 'string', short: 'o' }, network: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const [sub, name, qtype, ...extra] = positionals;
  if (sub !== 'lookup') throw new UsageError(sub ? `unknown dns subcommand ${JSON.stringify(sub)}` : 'dns needs a subcommand: lookup');
  if (!name) throw new UsageError('dns lookup needs a NAME');
  if (extra.length) throw new UsageError(`unexpected ${JSON.stringify(extra[0])}`);
  if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
  const rev = reverseOf(name);
  const r = await ask(ctx, { type: 'dns-lookup', name: rev ?? name, qtype: qtype ?? (rev ? 'PTR' : 'A'), network: values.network });
  if (r.type !== 'dns-lookup') throw new CliError('agent: unexpected answer');
  const l = r.lookup;
  if (values.output === 'json') {
    ctx.out(`${JSON.stringify(l, null, 2)}\n`);
    return 0;
  }
  if (l.forwarded) {
    ctx.out(`${l.name} ${l.type}: not one of the agent's names: forwarded to its upstream resolvers\n`);
    return 0;
  }
  const answers = l.answers ?? [];
  ctx.out(`${l.name} ${l.type}: ${l.rcode}${l.rcode === 'NOERROR' && !answers.length ? ' (no data of this type)' : ''}\n`);
  const rows = [
    ...answers.map((x) => ['answer', ...recordRows([x], false)[0]!]),
    ...(l.authority ?? []).map((x) => ['authority', ...recordRows([x], false)[0]!]),
    ...(l.additionals ?? []).map((x) => ['additional', ...recordRows([x], false)[0]!]),
  ];
  if (rows.length) ctx.out(table(['SECTION', 'NAME', 'TYPE', 'TTL', 'DATA'], rows));
  return 0;
}
