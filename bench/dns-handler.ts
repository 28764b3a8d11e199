/**
 * The DNS server's UDP handler alone, without the network (not part of `make bench`; no root):
 *   node_modules/@oven/bun-linux-x64-baseline/bin/bun bench/dns-handler.ts [TREE]
 * Loads TREE/agent/dns/server.ts (default: this tree), serves 1000 ClusterIP services, forwards
 * `*.fwd.test` to an in-process upstream on loopback (warmed once, so forwarded names come from
 * the cache), then hands the server's UDP callback DNS_HANDLER_N (200000) datagrams per name
 * kind, each a fresh Buffer as the runtime's receive gives it, with the reply's send replaced
 * by a counter. Prints CPU ns per query (process.cpuUsage), the median of DNS_HANDLER_ROUNDS
 * (5) rounds. DNS_HANDLER_KINDS=cluster (or forwarded) runs one kind; with BUN_JSC_logGC=1 the
 * garbage a query leaves shows as the number of collections:
 *   BUN_JSC_logGC=1 DNS_HANDLER_KINDS=cluster bun bench/dns-handler.ts 2>&1 | grep -c '=> EdenCollection'
 * Run it for two trees alternately (`git archive` of the other commit, node_modules linked) to
 * compare the code of the hot path on a loaded machine: the figure is the handler's CPU only
 * (the event loop's turn and the system calls are not in it).
 */
import dgram from 'node:dgram';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';

const ROOT = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const N = Number(process.env.DNS_HANDLER_N ?? 200000);
const ROUNDS = Number(process.env.DNS_HANDLER_ROUNDS ?? 5);
const KINDS = (process.env.DNS_HANDLER_KINDS ?? 'cluster,forwarded').split(',');

type Send = (out: Buffer, port: number, address: string, borrowed?: boolean) => void;
interface ServerLike {
  setListeners(s: { address: string; port: number }[]): Promise<unknown>;
  setZone(z: unknown): void;
  close(): Promise<void>;
  metrics: { answered: { zone: number; cache: number; upstream: number } };
}

async function main(): Promise<void> {
  const { DnsServer } = (await import(path.join(ROOT, 'agent/dns/server.ts'))) as {
    DnsServer: new (o: object) => ServerLike;
  };
  const { buildZone } = (await import(path.join(ROOT, 'shared/dns/records.ts'))) as { buildZone: (o: object) => unknown };
  const jsc = (await import('bun:jsc')) as unknown as { fullGC(): void };

  // the upstream: every `*.fwd.test A` is 192.0.2.1, TTL 3600
  const up = dgram.createSocket('udp4');
  up.on('message', (m, r) => {
    const q = dnsPacket.decode(m);
    const a = dnsPacket.encode({
      id: q.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions,
      answers: [{ name: q.questions![0].name, type: 'A', class: 'IN', ttl: 3600, data: '192.0.2.1' }],
    });
    up.send(a, r.port, r.address);
  });
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
  const upPort = (up.address() as { port: number }).port;

  const services = Array.from({ length: 1000 }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc-${i}`, namespace: 'default' },
    spec: { clusterIP: `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}` },
  }));
  const server = new DnsServer({ rateLimit: false, upstreams: [{ host: '127.0.0.1', port: upPort }], cacheSize: 20000 });
  server.setZone(buildZone({ services, namespaces: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }] }));
  await server.setListeners([{ address: '127.0.0.1', port: 0 }]);
  const l = [...(server as unknown as { listeners: Map<string, { udp: { send: Send } }> }).listeners.values()][0];
  const onUdp = (server as unknown as { onUdp: (l: unknown, m: Buffer, p: number, a: string) => void }).onUdp.bind(server);
  let sent = 0;
  let bytes = 0;
  l.udp.send = (out) => {
    sent++;
    bytes += out.length;
  };

  const q = (name: string, id: number): Buffer =>
    dnsPacket.encode({ id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
  const kinds: [string, Buffer[]][] = [
    ['cluster', Array.from({ length: 1000 }, (_, i) => q(`svc-${i}.default.svc.cluster.local`, i))],
    ['forwarded', Array.from({ length: 1000 }, (_, i) => q(`host-${i}.fwd.test`, i))],
  ];
  // warm: every name once (forwarded: wait for the upstream), twice more for the fast paths
  for (const [, qs] of kinds) {
    for (let i = 0; i < qs.length; i += 50) {
      const want = sent + Math.min(50, qs.length - i);
      for (const m of qs.slice(i, i + 50)) onUdp(l, Buffer.from(m), 40000, '127.0.0.1');
      for (let t = 0; t < 200 && sent < want; t++) await new Promise((r) => setTimeout(r, 5));
    }
  }
  if (sent < 2000) throw new Error(`warm-up: ${sent} of 2000 answers`);
  for (let k = 0; k < 2; k++) for (const [, qs] of kinds) for (const m of qs) onUdp(l, Buffer.from(m), 40000, '127.0.0.1');

  const results: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [kind, qs] of kinds) {
      if (!KINDS.includes(kind)) continue;
      jsc.fullGC();
      const s0 = sent;
      const c0 = process.cpuUsage();
      for (let i = 0; i < N; i++) {
        const m = Buffer.from(qs[i % 1000]);
        m.writeUInt16BE(i & 0xffff, 0);
        onUdp(l, m, 40000 + (i & 1023), '127.0.0.1');
      }
      const c = process.cpuUsage(c0);
      if (sent - s0 !== N) throw new Error(`${kind}: ${sent - s0} answers to ${N} queries (not all from the fast paths)`);
      (results[kind] ??= []).push(((c.user + c.system) * 1000) / N);
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];
  for (const [kind, r] of Object.entries(results)) {
    process.stdout.write(
      `${path.basename(ROOT)} ${kind}: ${med(r).toFixed(0)} ns CPU/query (rounds ${r.map((x) => x.toFixed(0)).join(' ')})\n`,
    );
  }
  process.stdout.write(`answers: ${server.metrics.answered.zone} zone, ${server.metrics.answered.cache} cache, ${bytes} bytes\n`);
  await server.close();
  up.close();
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
