/**
 * dhcp IPAM: ADD and DEL for each plugin (ours, the Go reference's /usr/lib/cni/dhcp) against
 * each daemon (ours, the reference's), with dnsmasq serving DHCP in a bench netns on a veth
 * whose other end is the container's eth0. Each ADD is a fresh lease (the DEL before it
 * released the last one); "re-ADD" is a second ADD while the daemon holds the lease: our
 * daemon answers it from memory (plugin start + one net/rpc call), the reference 1.1.1
 * acquires again. Run: `node --experimental-strip-types bench/dhcp.ts` (BENCH_ITER, default 10).
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mdTable, ms, netnsBatch, nsPath, sh, sleep, stats, timed, uid } from './lib.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OURS = path.join(ROOT, 'dist', 'bin');
const REF = '/usr/lib/cni';
const ITER = Number(process.env.BENCH_ITER ?? 10);

async function main(): Promise<void> {
  if (!existsSync(`${REF}/dhcp`) || !existsSync('/usr/sbin/dnsmasq')) {
    console.log('bench/dhcp: skipped (needs /usr/lib/cni/dhcp and dnsmasq)');
    return;
  }
  const tag = uid('dhrb');
  const [srv, ctr] = [`${tag}-srv`, `${tag}-ctr`];
  const files = [`/tmp/${tag}.leases`, `/tmp/${tag}.pid`, `/tmp/${tag}.sock`];
  const procs: ResultPromise[] = [];
  const stop = async (p: ResultPromise): Promise<void> => {
    p.kill('SIGTERM');
    await Promise.race([p.catch(() => undefined), sleep(6000)]);
    p.kill('SIGKILL');
  };
  try {
    await netnsBatch('add', [srv, ctr]);
    await sh('ip', ['link', 'add', 'dhrb0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsPath(ctr)], { netns: nsPath(srv) });
    await sh('ip', ['addr', 'add', '10.97.0.1/24', 'dev', 'dhrb0'], { netns: nsPath(srv) });
    await sh('ip', ['link', 'set', 'dhrb0', 'up'], { netns: nsPath(srv) });
    await sh('ip', ['link', 'set', 'eth0', 'up'], { netns: nsPath(ctr) });
    const dnsmasq = execa('nsenter', [
      `--net=${nsPath(srv)}`,
      '--',
      'dnsmasq',
      '--no-daemon',
      '--port=0',
      '--no-ping',
      '--interface=dhrb0',
      '--bind-interfaces',
      '--conf-file=/dev/null',
      '--dhcp-range=10.97.0.10,10.97.0.200,255.255.255.0,10m',
      '--dhcp-option=3,10.97.0.1',
      '--dhcp-option-force=121,10.98.0.0/16,10.97.0.1,0.0.0.0/0,10.97.0.1',
      `--dhcp-leasefile=${files[0]}`,
      `--pid-file=${files[1]}`,
    ]);
    procs.push(dnsmasq);
    const sock = files[2];
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'dhrbench', type: 'dhcp', ipam: { type: 'dhcp', daemonSocketPath: sock } });
    const run = async (dir: string, command: string, id: string): Promise<number> => {
      const [r, t] = await timed(() =>
        execa(path.join(dir, 'dhcp'), [], {
          input: conf,
          reject: false,
          env: { CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: nsPath(ctr), CNI_IFNAME: 'eth0', CNI_PATH: dir },
        }),
      );
      if (r.exitCode !== 0) throw new Error(`${dir}/dhcp ${command}: ${String(r.stdout)} ${String(r.stderr)}`);
      return t;
    };
    const rows: Array<Array<string | number>> = [];
    for (const daemon of ['ours', 'reference'] as const) {
      rmSync(sock, { force: true });
      const d =
        daemon === 'ours'
          ? execa(path.join(OURS, 'cni-ts'), ['dhcp', 'daemon', '-socketpath', sock], { reject: false })
          : execa(`${REF}/dhcp`, ['daemon', '-socketpath', sock], { reject: false });
      procs.push(d);
      for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(100);
      for (const plugin of ['ours', 'reference'] as const) {
        const dir = plugin === 'ours' ? OURS : REF;
        const add: number[] = [];
        const readd: number[] = [];
        const del: number[] = [];
        for (let i = 0; i <= ITER; i++) {
          const id = uid('b');
          const a = await run(dir, 'ADD', id);
          const b = await run(dir, 'ADD', id);
          const c = await run(dir, 'DEL', id);
          if (i === 0) continue; // warm-up
          add.push(a);
          readd.push(b);
          del.push(c);
        }
        const [A, R, D] = [stats(add), stats(readd), stats(del)];
        rows.push([plugin, daemon, ms(A.median), ms(A.p95), ms(R.median), ms(R.p95), ms(D.median), ms(D.p95)]);
      }
      await stop(d);
    }
    console.log(`\n### dhcp: ADD / re-ADD / DEL in ms (${ITER} each, dnsmasq in a netns)\n`);
    console.log(mdTable(['plugin', 'daemon', 'ADD median', 'ADD p95', 're-ADD median', 're-ADD p95', 'DEL median', 'DEL p95'], rows));
  } finally {
    for (const p of procs) await stop(p);
    await netnsBatch('del', [srv, ctr]);
    for (const f of files) rmSync(f, { force: true });
  }
}

await main();
