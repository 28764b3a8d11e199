/**
 * Wire format through `dns-packet` only. The library's per-section codecs (name, question,
 * answer) are exported by the package but absent from its type declarations: typed here.
 * Besides decode/encode we only ever patch fixed header fields (ID, flags) and the TTL fields
 * of a cached upstream answer, at offsets the library's own decoders report.
 */
import dnsPacket from 'dns-packet';

interface Codec<T> {
  decode: ((buf: Buffer, offset?: number) => T) & { bytes: number };
}
const codecs = dnsPacket as unknown as {
  name: Codec<string>;
  question: Codec<{ name: string; type: string; class: string }>;
  answer: Codec<{ name: string; type: string; ttl?: number }>;
};

export const QR = 1 << 15;
export const AA = dnsPacket.AUTHORITATIVE_ANSWER;
export const TC = dnsPacket.TRUNCATED_RESPONSE;
export const RD = dnsPacket.RECURSION_DESIRED;
export const RA = dnsPacket.RECURSION_AVAILABLE;
export const CD = dnsPacket.CHECKING_DISABLED;
export const OPCODE_MASK = 0x7800;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;
export const RCODE_NAMES = Object.keys(RCODE) as Rcode[];

/** Offset just past the first question (12 + its length), or -1 when it does not decode. */
export function questionEnd(buf: Buffer): number {
  try {
    codecs.question.decode(buf, 12);
    return 12 + codecs.question.decode.bytes;
  } catch {
    return -1;
  }
}

/**
 * Offsets of the TTL field of every record (OPT excluded: its "TTL" is EDNS flags), walked
 * with the library's decoders; null when the message does not decode.
 */
export function ttlOffsets(buf: Buffer): number[] | null {
  try {
    const qd = buf.readUInt16BE(4);
    const rrs = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
    let off = 12;
    for (let i = 0; i < qd; i++) {
      codecs.question.decode(buf, off);
      off += codecs.question.decode.bytes;
    }
    const out: number[] = [];
    for (let i = 0; i < rrs; i++) {
      codecs.name.decode(buf, off);
      const nameBytes = codecs.name.decode.bytes;
      const rr = codecs.answer.decode(buf, off);
      if (rr.type !== 'OPT') out.push(off + nameBytes + 4);
      off += codecs.answer.decode.bytes;
    }
    return out;
  } catch {
    return null;
  }
}

/** A copy of `b` (Buffer.from(buffer) costs several times this under Bun). */
export function copyOf(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  return out;
}

export { dnsPacket };
