/**
 * `cni-ts dhcp client --ifname X --client-id ID [--provide CODE=HEX]... [--request 1,3,...]`:
 * one lease, run by the daemon inside the container's netns (nsenter). Gets a lease
 * (DISCOVER, OFFER, REQUEST, ACK, broadcast flag set), prints it as one JSON line on stdout,
 * renews it at T1 (T1 halved on failure, given up at expiry, the interface then set down),
 * ends when the interface is gone (checked before each renewal, as the reference), and on
 * SIGTERM sends DHCPRELEASE and exits. Node cannot bind a UDP socket to a device, and an
 * interface without an address has no route for 255.255.255.255: a host route
 * `255.255.255.255/32 dev X` is added while the lease lives (the reference uses a raw socket).
 */
import dgram from 'node:dgram';
import { randomBytes } from '../../shared/hash.ts';
import { ipBatch, getLink } from '../../shared/kernel/ip.ts';
import { clientOptions, decode, encode, ipOpt, leaseOf, msgType, MSG, planOf, type DhcpMessage, type Lease } from './packet.ts';

const BCAST = '255.255.255.255';

function argOf(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export async function dhcpClientMain(argv: string[]): Promise<number> {
  const ifname = argOf(argv, '--ifname') ?? 'eth0';
  const clientId = argOf(argv, '--client-id') ?? ifname;
  const timeoutMs = Number(argOf(argv, '--timeout-ms') ?? 10000);
  const plan = planOf(argv);
  const link = await getLink(ifname);
  if (!link?.address) {
    process.stderr.write(`dhcp client: no interface ${ifname}\n`);
    return 1;
  }
  const mac = link.address;
  await ipBatch([
    ['link', 'set', 'dev', ifname, 'up'],
    ['route', 'replace', `${BCAST}/32`, 'dev', ifname],
  ]);
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((res, rej) => {
    sock.once('error', rej);
    sock.bind(68, '0.0.0.0', () => res());
  });
  sock.setBroadcast(true);
  const waiters = new Set<(m: DhcpMessage) => void>();
  sock.on('message', (buf) => {
    const m = decode(buf);
    if (m && m.op === 2 && m.chaddr === mac.toLowerCase()) for (const w of [...waiters]) w(m);
  });
  const send = (m: DhcpMessage, to = BCAST): Promise<void> =>
    new Promise((res, rej) => sock.send(encode(m), 67, to, (e) => (e ? rej(e) : res())));
  /** send `m` (again every 2 s) until a reply of `types` with its xid, or the deadline */
  async function exchange(m: DhcpMessage, types: number[], ms: number): Promise<DhcpMessage | undefined> {
    return new Promise((resolve) => {
      const resend = (): void => void send(m).catch(() => undefined);
      const timer = setInterval(resend, 2000);
      const deadline = setTimeout(() => done(undefined), ms);
      const w = (r: DhcpMessage): void => {
        if (r.xid === m.xid && types.includes(msgType(r) ?? 0)) done(r);
      };
      function done(r: DhcpMessage | undefined): void {
        waiters.delete(w);
        clearInterval(timer);
        clearTimeout(deadline);
        resolve(r);
      }
      waiters.add(w);
      resend();
    });
  }
  const xid = (): number => randomBytes(4).readUInt32BE(0);
  const base = { op: 1 as const, chaddr: mac, flags: 0x8000 };

  async function acquire(): Promise<Lease | undefined> {
    const offer = await exchange({ ...base, xid: xid(), options: clientOptions(MSG.DISCOVER, clientId, [], plan) }, [MSG.OFFER], timeoutMs);
    if (!offer) return undefined;
    const o = leaseOf(offer);
    const ack = await exchange(
      {
        ...base,
        xid: xid(),
        options: clientOptions(
          MSG.REQUEST,
          clientId,
          [
            [50, ipOpt(o.address)],
            [54, ipOpt(o.server)],
          ],
          plan,
        ),
      },
      [MSG.ACK, MSG.NAK],
      timeoutMs,
    );
    return ack && msgType(ack) === MSG.ACK ? leaseOf(ack) : undefined;
  }

  const lease = await acquire();
  if (!lease) {
    process.stderr.write(`dhcp client: no lease on ${ifname} within ${timeoutMs} ms\n`);
    await cleanup();
    return 1;
  }
  process.stdout.write(`${JSON.stringify(lease)}\n`);
  let current = lease;
  let obtained = Date.now();

  async function cleanup(): Promise<void> {
    sock.close();
    await ipBatch([['route', 'del', `${BCAST}/32`, 'dev', ifname]]).catch(() => undefined);
  }

  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout;
    const renewIn = (s: number): void => {
      timer = setTimeout(() => void renew(), Math.max(1, s) * 1000);
    };
    async function renew(): Promise<void> {
      // as the reference: the container (or its interface) is gone without a DEL: stop here
      if (!(await getLink(ifname).catch(() => undefined))) {
        process.stderr.write(`dhcp client: interface ${ifname} no longer exists, lease maintenance ends\n`);
        sock.close();
        resolve(3);
        return;
      }
      const m = { ...base, xid: xid(), ciaddr: current.address, options: clientOptions(MSG.REQUEST, clientId, [], plan) };
      const ack = await exchange(m, [MSG.ACK, MSG.NAK], 5000);
      if (ack && msgType(ack) === MSG.ACK) {
        current = leaseOf(ack);
        obtained = Date.now();
        process.stderr.write(`dhcp client: renewed ${current.address} for ${current.leaseSeconds}s\n`);
        renewIn(current.t1);
        return;
      }
      const left = current.leaseSeconds - (Date.now() - obtained) / 1000;
      if (left <= 0) {
        // as the reference: an expired lease brings the interface down
        process.stderr.write(`dhcp client: lease ${current.address} expired, bringing ${ifname} down\n`);
        await cleanup();
        await ipBatch([['link', 'set', 'dev', ifname, 'down']]).catch(() => undefined);
        resolve(2);
        return;
      }
      renewIn(left / 2);
    }
    renewIn(current.t1);
    process.once('SIGTERM', () => {
      clearTimeout(timer);
      const rel = {
        op: 1 as const,
        chaddr: mac,
        xid: xid(),
        ciaddr: current.address,
        options: clientOptions(MSG.RELEASE, clientId, [[54, ipOpt(current.server)]]),
      };
      void send(rel)
        .catch(() => undefined)
        .then(cleanup)
        .then(() => resolve(0));
    });
  });
}
