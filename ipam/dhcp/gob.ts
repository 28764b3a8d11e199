/**
 * Go's encoding/gob, the subset the dhcp daemon's net/rpc protocol needs: bool, int, uint,
 * float, string, []byte, slices, maps, structs (pointers are flattened by gob, so a Go `*T`
 * is a `T` here). No interface values, no arrays, no GobEncoder types on the encoding side.
 *
 * The wire format (https://pkg.go.dev/encoding/gob): a stream of messages, each a uint byte
 * count then either a type definition (a negative type id, then a `wireType` struct) or a
 * value (a positive type id, then the value; a top-level non-struct value is preceded by a 0
 * byte). A uint below 128 is one byte; otherwise the negated byte count, then the big-endian
 * bytes. A signed int i is sent as the uint `i << 1` (`(~i << 1) | 1` when negative). A struct
 * is a sequence of (field-number delta, value) pairs ending with a 0 delta; zero-valued fields
 * of basic types are left out. Type ids: 1 bool, 2 int, 3 uint, 4 float, 5 []byte, 6 string,
 * 8 interface, 16–23 the wire types themselves; user types from 65, per encoder (connection).
 * The decoder matches struct fields by name, so a receiver may know more or fewer fields.
 */

export type GoType =
  | { kind: 'bool' | 'int' | 'uint' | 'float' | 'bytes' | 'string' }
  | { kind: 'slice'; name: string; elem: GoType }
  | { kind: 'map'; name: string; key: GoType; elem: GoType }
  | { kind: 'struct'; name: string; fields: Array<[string, GoType]> };

export const T = {
  bool: { kind: 'bool' } as GoType,
  int: { kind: 'int' } as GoType,
  uint: { kind: 'uint' } as GoType,
  float: { kind: 'float' } as GoType,
  bytes: { kind: 'bytes' } as GoType,
  string: { kind: 'string' } as GoType,
  slice: (name: string, elem: GoType): GoType => ({ kind: 'slice', name, elem }),
  map: (name: string, key: GoType, elem: GoType): GoType => ({ kind: 'map', name, key, elem }),
  struct: (name: string, fields: Array<[string, GoType]>): GoType => ({ kind: 'struct', name, fields }),
};

const BUILTIN: Record<string, number> = { bool: 1, int: 2, uint: 3, float: 4, bytes: 5, string: 6 };
const FIRST_USER_ID = 65;

/** A decoded gob value: struct → object by field name, slice → array, []byte → Buffer, map → Map. */
export type GobValue = boolean | number | bigint | string | Buffer | GobValue[] | Map<GobValue, GobValue> | { [field: string]: GobValue };

// ---------------------------------------------------------------------------------------------
// primitive encoding

class Writer {
  private parts: number[] = [];
  uint(v: number | bigint): void {
    let n = BigInt(v);
    if (n < 0n) throw new Error(`gob: negative uint ${n}`);
    if (n < 128n) {
      this.parts.push(Number(n));
      return;
    }
    const bytes: number[] = [];
    while (n > 0n) {
      bytes.unshift(Number(n & 0xffn));
      n >>= 8n;
    }
    this.parts.push(256 - bytes.length, ...bytes);
  }
  int(v: number | bigint): void {
    const n = BigInt(v);
    this.uint(n < 0n ? ((-n - 1n) << 1n) | 1n : n << 1n);
  }
  bytes(b: Uint8Array): void {
    this.uint(b.length);
    for (const x of b) this.parts.push(x);
  }
  string(s: string): void {
    this.bytes(Buffer.from(s, 'utf8'));
  }
  float(f: number): void {
    // the IEEE bits, byte-reversed, as a uint
    const b = Buffer.alloc(8);
    b.writeDoubleBE(f);
    b.reverse();
    this.uint(b.readBigUInt64BE(0));
  }
  raw(b: Uint8Array): void {
    for (const x of b) this.parts.push(x);
  }
  get length(): number {
    return this.parts.length;
  }
  done(): Buffer {
    return Buffer.from(this.parts);
  }
}

export class GobReader {
  private b: Buffer;
  pos: number;
  constructor(b: Buffer, pos = 0) {
    this.b = b;
    this.pos = pos;
  }
  get left(): number {
    return this.b.length - this.pos;
  }
  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new GobShort();
  }
  byte(): number {
    this.need(1);
    return this.b[this.pos++];
  }
  bigUint(): bigint {
    const first = this.byte();
    if (first < 128) return BigInt(first);
    const n = 256 - first;
    if (n > 8) throw new Error(`gob: bad uint length ${n}`);
    this.need(n);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.b[this.pos++]);
    return v;
  }
  uint(): number {
    return Number(this.bigUint());
  }
  bigInt(): bigint {
    const u = this.bigUint();
    return u & 1n ? -(u >> 1n) - 1n : u >> 1n;
  }
  int(): number {
    return Number(this.bigInt());
  }
  bytes(): Buffer {
    const n = this.uint();
    this.need(n);
    const out = Buffer.from(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
  string(): string {
    return this.bytes().toString('utf8');
  }
  float(): number {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(this.bigUint());
    return b.reverse().readDoubleBE(0);
  }
}

/** The input ended inside a message: wait for more bytes. */
export class GobShort extends Error {
  constructor() {
    super('gob: short buffer');
  }
}

// ---------------------------------------------------------------------------------------------
// encoder

const isZero = (t: GoType, v: unknown): boolean => {
  if (t.kind === 'struct') return false; // gob sends struct fields even when empty
  if (v === undefined || v === null) return true;
  switch (t.kind) {
    case 'bool':
      return v === false;
    case 'int':
    case 'uint':
    case 'float':
      return v === 0 || v === 0n;
    case 'string':
      return v === '';
    case 'bytes':
      return (v as Uint8Array).length === 0;
    case 'slice':
      return (v as unknown[]).length === 0;
    case 'map':
      return (v as Map<unknown, unknown>).size === 0;
  }
};

/** One gob stream (one per connection): remembers which types it has defined. */
export class GobEncoder {
  private ids = new Map<GoType, number>();
  private sent = new Set<GoType>();
  private next = FIRST_USER_ID;

  /** The messages for one top-level value: the definitions of types not sent yet, then the value. */
  encode(t: GoType, value: unknown): Buffer {
    const out: Buffer[] = [];
    this.assign(t);
    this.sendType(t, out);
    const w = new Writer();
    w.int(this.idOf(t));
    if (t.kind !== 'struct') w.uint(0);
    this.value(w, t, value);
    out.push(message(w));
    return Buffer.concat(out);
  }

  idOf(t: GoType): number {
    return BUILTIN[t.kind] ?? this.ids.get(t) ?? this.assign(t);
  }

  /** Type ids in Go's order: a struct before its fields, a slice or map after its elements. */
  private assign(t: GoType): number {
    if (t.kind in BUILTIN) return BUILTIN[t.kind];
    const have = this.ids.get(t);
    if (have !== undefined) return have;
    if (t.kind === 'struct') {
      this.ids.set(t, this.next++);
      for (const [, ft] of t.fields) this.assign(ft);
    } else if (t.kind === 'slice') {
      this.assign(t.elem);
      this.ids.set(t, this.next++);
    } else if (t.kind === 'map') {
      this.assign(t.key);
      this.assign(t.elem);
      this.ids.set(t, this.next++);
    }
    return this.ids.get(t)!;
  }

  /** Go's sendType: the type's definition, then its components' (not already sent, not builtin). */
  private sendType(t: GoType, out: Buffer[]): void {
    if (t.kind in BUILTIN || this.sent.has(t)) return;
    this.sent.add(t);
    const w = new Writer();
    w.int(-this.idOf(t));
    const common = (name: string): void => {
      // CommonType {Name string; Id typeId}
      if (name) {
        w.uint(1);
        w.string(name);
        w.uint(1);
      } else w.uint(2);
      w.int(this.idOf(t));
      w.uint(0);
    };
    if (t.kind === 'slice') {
      w.uint(2); // wireType.SliceT (field 1)
      w.uint(1); // sliceType.CommonType
      common(t.name);
      w.uint(1); // sliceType.Elem
      w.int(this.idOf(t.elem));
      w.uint(0);
    } else if (t.kind === 'struct') {
      w.uint(3); // wireType.StructT (field 2)
      w.uint(1); // structType.CommonType
      common(t.name);
      if (t.fields.length) {
        w.uint(1); // structType.Field
        w.uint(t.fields.length);
        for (const [name, ft] of t.fields) {
          w.uint(1);
          w.string(name);
          w.uint(1);
          w.int(this.idOf(ft));
          w.uint(0);
        }
      }
      w.uint(0);
    } else if (t.kind === 'map') {
      w.uint(4); // wireType.MapT (field 3)
      w.uint(1);
      common(t.name);
      w.uint(1);
      w.int(this.idOf(t.key));
      w.uint(1);
      w.int(this.idOf(t.elem));
      w.uint(0);
    }
    w.uint(0); // end of wireType
    out.push(message(w));
    if (t.kind === 'struct') for (const [, ft] of t.fields) this.sendType(ft, out);
    else if (t.kind === 'slice') this.sendType(t.elem, out);
    else if (t.kind === 'map') {
      this.sendType(t.key, out);
      this.sendType(t.elem, out);
    }
  }

  private value(w: Writer, t: GoType, v: unknown): void {
    switch (t.kind) {
      case 'bool':
        w.uint(v ? 1 : 0);
        return;
      case 'int':
        w.int(v as number | bigint);
        return;
      case 'uint':
        w.uint(v as number | bigint);
        return;
      case 'float':
        w.float(v as number);
        return;
      case 'string':
        w.string(v as string);
        return;
      case 'bytes':
        w.bytes(typeof v === 'string' ? Buffer.from(v) : (v as Uint8Array));
        return;
      case 'slice': {
        const a = v as unknown[];
        w.uint(a.length);
        for (const e of a) this.value(w, t.elem, e);
        return;
      }
      case 'map': {
        const m = v as Map<unknown, unknown>;
        w.uint(m.size);
        for (const [k, e] of m) {
          this.value(w, t.key, k);
          this.value(w, t.elem, e);
        }
        return;
      }
      case 'struct': {
        const o = (v ?? {}) as Record<string, unknown>;
        let last = -1;
        t.fields.forEach(([name, ft], i) => {
          if (isZero(ft, o[name])) return;
          w.uint(i - last);
          last = i;
          this.value(w, ft, o[name]);
        });
        w.uint(0);
        return;
      }
    }
  }
}

function message(w: Writer): Buffer {
  const body = w.done();
  const head = new Writer();
  head.uint(body.length);
  return Buffer.concat([head.done(), body]);
}

// ---------------------------------------------------------------------------------------------
// decoder

interface WireType {
  kind: 'slice' | 'array' | 'struct' | 'map' | 'gobencoder';
  name: string;
  elem?: number;
  key?: number;
  len?: number;
  fields?: Array<{ name: string; id: number }>;
}

/** One gob stream: feed it bytes, take values out. Type definitions are kept for the stream. */
export class GobDecoder {
  private types = new Map<number, WireType>();
  private buf: Buffer = Buffer.alloc(0);

  push(b: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, b]) : b;
  }

  /** The next value (type definitions before it are taken in), or undefined until more bytes arrive. */
  next(): { typeId: number; value: GobValue } | undefined {
    for (;;) {
      const r = new GobReader(this.buf);
      let len: number;
      try {
        len = r.uint();
      } catch (e) {
        if (e instanceof GobShort) return undefined;
        throw e;
      }
      if (r.left < len) return undefined;
      const msg = new GobReader(this.buf.subarray(r.pos, r.pos + len));
      this.buf = this.buf.subarray(r.pos + len);
      const id = msg.int();
      if (id < 0) {
        this.types.set(-id, readWireType(msg));
        continue;
      }
      const wt = this.types.get(id);
      if (!wt || wt.kind !== 'struct') {
        if (msg.uint() !== 0) throw new Error('gob: a top-level non-struct value without its 0 byte');
      }
      return { typeId: id, value: this.value(msg, id) };
    }
  }

  /** Bytes received but not yet part of a whole message. */
  get pending(): number {
    return this.buf.length;
  }

  private value(r: GobReader, id: number): GobValue {
    switch (id) {
      case 1:
        return r.uint() !== 0;
      case 2: {
        const n = r.bigInt();
        return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      }
      case 3: {
        const n = r.bigUint();
        return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      }
      case 4:
        return r.float();
      case 5:
        return r.bytes();
      case 6:
        return r.string();
      case 8:
        throw new Error('gob: interface values are not supported');
    }
    const wt = this.types.get(id);
    if (!wt) throw new Error(`gob: value of undefined type ${id}`);
    switch (wt.kind) {
      case 'gobencoder':
        return r.bytes();
      case 'slice':
      case 'array': {
        const n = r.uint();
        const a: GobValue[] = [];
        for (let i = 0; i < n; i++) a.push(this.value(r, wt.elem!));
        return a;
      }
      case 'map': {
        const n = r.uint();
        const m = new Map<GobValue, GobValue>();
        for (let i = 0; i < n; i++) m.set(this.value(r, wt.key!), this.value(r, wt.elem!));
        return m;
      }
      case 'struct': {
        const o: Record<string, GobValue> = {};
        let f = -1;
        for (;;) {
          const d = r.uint();
          if (d === 0) return o;
          f += d;
          const field = wt.fields?.[f];
          if (!field) throw new Error(`gob: field ${f} out of range for ${wt.name || 'struct'}`);
          o[field.name] = this.value(r, field.id);
        }
      }
    }
  }
}

/** A `wireType` struct: {ArrayT, SliceT, StructT, MapT, GobEncoderT, BinaryMarshalerT, TextMarshalerT}. */
function readWireType(r: GobReader): WireType {
  let wt: WireType | undefined;
  let f = -1;
  for (;;) {
    const d = r.uint();
    if (d === 0) break;
    f += d;
    const common = (into: WireType): void => {
      // CommonType {Name string; Id int}
      structFields(r, (i) => {
        if (i === 0) into.name = r.string();
        else if (i === 1) r.int();
        else throw new Error('gob: bad CommonType');
      });
    };
    const t: WireType = { kind: 'struct', name: '' };
    switch (f) {
      case 0: // arrayType {CommonType; Elem; Len}
        t.kind = 'array';
        structFields(r, (i) => (i === 0 ? common(t) : i === 1 ? (t.elem = r.int()) : (t.len = r.int())));
        break;
      case 1: // sliceType {CommonType; Elem}
        t.kind = 'slice';
        structFields(r, (i) => (i === 0 ? common(t) : (t.elem = r.int())));
        break;
      case 2: // structType {CommonType; Field []fieldType{Name; Id}}
        t.fields = [];
        structFields(r, (i) => {
          if (i === 0) return common(t);
          const n = r.uint();
          for (let k = 0; k < n; k++) {
            const fd = { name: '', id: 0 };
            structFields(r, (j) => (j === 0 ? (fd.name = r.string()) : (fd.id = r.int())));
            t.fields!.push(fd);
          }
        });
        break;
      case 3: // mapType {CommonType; Key; Elem}
        t.kind = 'map';
        structFields(r, (i) => (i === 0 ? common(t) : i === 1 ? (t.key = r.int()) : (t.elem = r.int())));
        break;
      case 4:
      case 5:
      case 6: // gobEncoderType {CommonType}: the value is a byte slice
        t.kind = 'gobencoder';
        structFields(r, () => common(t));
        break;
      default:
        throw new Error(`gob: unknown wireType field ${f}`);
    }
    wt = t;
  }
  if (!wt) throw new Error('gob: empty type definition');
  return wt;
}

function structFields(r: GobReader, each: (field: number) => unknown): void {
  let f = -1;
  for (;;) {
    const d = r.uint();
    if (d === 0) return;
    f += d;
    each(f);
  }
}
