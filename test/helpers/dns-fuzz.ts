/**
 * Hostile-input sweep against a DNS server (run inside a test netns):
 *   node --experimental-strip-types test/helpers/dns-fuzz.ts <address> <port> <udpCount> <tcpCount>
 * Sends malformed, random and abusive messages over UDP (fire and forget) and TCP (random
 * frames, bad lengths, half-sent frames), bounded in count, seeded for repeatability; prints
 * "sent <udp> <tcp>".
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

const [address, portS, udpS, tcpS] = process.argv.slice(2);
const port = Number(portS);
const udpCount = Number(udpS ?? 3000);
const tcpCount = Number(tcpS ?? 200);

let seed = 0x2545f491;
const rnd = (n: number): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};
const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd(256)));

const valid = (): Buffer =>
  dnsPacket.encode({
    id: rnd(65536),
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }],
  });

/** One hostile message: every kind in turn. */
export function hostile(i: number): Buffer {
  const hdr = (flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer => {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(rnd(65536), 0);
    b.writeUInt16BE(flags, 2);
    b.writeUInt16BE(qd, 4);
    b.writeUInt16BE(an, 6);
    b.writeUInt16BE(ns, 8);
    b.writeUInt16BE(ar, 10);
    return b;
  };
  switch (i % 12) {
    case 0:
      return bytes(rnd(600));
    case 1: {
      const v = valid();
      for (let k = 0; k < 1 + rnd(6); k++) v[rnd(v.length)] ^= 1 << rnd(8);
      return v;
    }
    case 2: // compression pointer to itself / forward
      return Buffer.concat([hdr(0x0100, 1), Buffer.from([0xc0, 12 + rnd(3), 0, 1, 0, 1])]);
    case 3: // name over 255 bytes
      return Buffer.concat([
        hdr(0x0100, 1),
        ...Array.from({ length: 6 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])),
        Buffer.from([0, 0, 1, 0, 1]),
      ]);
    case 4: // counts lying
      return Buffer.concat([hdr(0x0100, 65535, 65535, 65535, 65535), bytes(rnd(40))]);
    case 5: // CHAOS / HESIOD / ANY class
      return dnsPacket.encode({
        id: 1,
        type: 'query',
        questions: [{ name: 'version.bind', type: 'TXT', class: (['CH', 'HS', 'ANY'] as const)[rnd(3)] }],
      });
    case 6: // opcodes other than QUERY
      return (() => {
        const v = valid();
        v.writeUInt16BE((v.readUInt16BE(2) & ~0x7800) | ((1 + rnd(15)) << 11), 2);
        return v;
      })();
    case 7: // several questions
      return dnsPacket.encode({
        id: 2,
        type: 'query',
        questions: Array.from({ length: 2 + rnd(20) }, (_, k) => ({ name: `q${k}.default.svc.cluster.local`, type: 'A' as const })),
      });
    case 8: // a response sent to us (reflection)
      return (() => {
        const v = valid();
        v.writeUInt16BE(v.readUInt16BE(2) | 0x8000, 2);
        return v;
      })();
    case 9: // bad label types (0x40, 0x80)
      return Buffer.concat([hdr(0x0100, 1), Buffer.from([0x40 | rnd(64), 0x61, 0x80, 0, 0, 1, 0, 1])]);
    case 10: // AXFR, ANY, unknown types
      return dnsPacket.encode({
        id: 3,
        type: 'query',
        questions: [{ name: 'cluster.local', type: (['AXFR', 'IXFR', 'ANY', 'UNKNOWN_65'] as const)[rnd(4)] as dnsPacket.RecordType }],
      });
    default: // truncated valid message
      return valid().subarray(0, rnd(30));
  }
}

async function main(): Promise<void> {
  const sock = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
  sock.on('message', () => {});
  sock.on('error', () => {});
  for (let i = 0; i < udpCount; i++) {
    await new Promise<void>((r) => sock.send(hostile(i), port, address, () => r()));
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
  }
  sock.close();
  let tcpDone = 0;
  for (let i = 0; i < tcpCount; i++) {
    await new Promise<void>((resolve) => {
      const c = net.connect({ host: address, port });
      const t = setTimeout(() => c.destroy(), 300);
      c.on('error', () => {});
      c.on('close', () => {
        clearTimeout(t);
        tcpDone++;
        resolve();
      });
      c.on('data', () => {});
      c.on('connect', () => {
        const m = hostile(i);
        const len = Buffer.alloc(2);
        switch (i % 4) {
          case 0: // well-framed hostile message, then close
            len.writeUInt16BE(m.length);
            c.end(Buffer.concat([len, m]));
            break;
          case 1: // length larger than what follows: half a frame, then close
            len.writeUInt16BE(m.length + 100);
            c.end(Buffer.concat([len, m]));
            break;
          case 2: // length below a header
            c.end(Buffer.from([0, rnd(12)]));
            break;
          default: // pure noise
            c.end(bytes(1 + rnd(300)));
        }
      });
    });
  }
  process.stdout.write(`sent ${udpCount} ${tcpDone}\n`);
}

if (process.argv[1]?.endsWith('dns-fuzz.ts')) void main();
