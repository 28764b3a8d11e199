/** `dig +noall +comments +answer +authority` output, parsed (test/dns*.test.ts). */
export interface Dig {
  status: string;
  flags: string[];
  answer: { name: string; ttl: number; type: string; data: string }[];
  authority: { name: string; type: string }[];
}

export function parseDig(out: string): Dig {
  const status = out.match(/status: ([A-Z]+)/)?.[1] ?? 'NONE';
  const flags = (out.match(/;; flags: ([a-z ]+);/)?.[1] ?? '').trim().split(/\s+/);
  const d: Dig = { status, flags, answer: [], authority: [] };
  let section = '';
  for (const line of out.split('\n')) {
    const h = line.match(/^;; ([A-Z]+) SECTION:/);
    if (h) section = h[1];
    if (!line || line.startsWith(';')) continue;
    const [name, ttl, , type, ...rest] = line.split(/\s+/);
    if (section === 'ANSWER') d.answer.push({ name, ttl: Number(ttl), type, data: rest.join(' ') });
    if (section === 'AUTHORITY') d.authority.push({ name, type });
  }
  return d;
}
