/**
 * Probe tools for diagnostics (`cnictl diag`): iputils ping and tracepath, dig, tcpdump writing
 * a pcap and tshark reading one back. argv arrays only, each bounded in count and time (a
 * timeout kills the tool and what it printed so far is returned); `netns` runs the probe inside
 * a network namespace (nsenter --net=PATH). Parsing the output is the caller's (pure) business.
 */
import { run, type RunResult } from './exec.ts';
import { childProcess } from '../spawn.ts';

export interface ProbeOptions {
  netns?: string;
  timeoutMs?: number;
}

/** `ping -n -c COUNT -i 0.2 -W 1 [-M do -s SIZE] TARGET` (iputils: COUNT probes, then at most 1 s for the last answer). */
export function ping(target: string, count: number, o: ProbeOptions & { size?: number; df?: boolean } = {}): Promise<RunResult> {
  const deadline = Math.ceil(count * 0.2) + 1;
  const args = ['-n', '-c', String(count), '-i', '0.2', '-W', '1'];
  if (o.df) args.push('-M', 'do');
  if (o.size !== undefined) args.push('-s', String(o.size));
  return run('ping', [...args, target], { netns: o.netns, allowFail: true, timeoutMs: o.timeoutMs ?? (deadline + 2) * 1000 });
}

/** `tracepath -n -m HOPS TARGET` (iputils: UDP probes with DF set, so it finds the path MTU too). */
export function tracepath(target: string, maxHops: number, o: ProbeOptions = {}): Promise<RunResult> {
  return run('tracepath', ['-n', '-m', String(maxHops), target], { netns: o.netns, allowFail: true, timeoutMs: o.timeoutMs ?? 8000 });
}

/** `dig @SERVER NAME TYPE` with one try, short timeout, header, answer and statistics. */
export function dig(name: string, server: string, qtype = 'A', o: ProbeOptions = {}): Promise<RunResult> {
  return run('dig', [`@${server}`, '+tries=1', '+time=2', '+noall', '+comments', '+answer', '+stats', name, qtype], {
    netns: o.netns,
    allowFail: true,
    timeoutMs: o.timeoutMs ?? 5000,
  });
}

/** A program of ours (argv[0] an absolute path) run inside `netns`, bounded (the port test's socket must live there). */
export function inNetns(argv: string[], o: ProbeOptions & { netns: string }): Promise<RunResult> {
  return run(argv[0]!, argv.slice(1), { netns: o.netns, allowFail: true, timeoutMs: o.timeoutMs ?? 10_000 });
}

export interface Capture {
  iface: string;
  file: string;
  /** stop capturing (SIGINT: tcpdump writes what it holds), resolves with tcpdump's stderr */
  stop(): Promise<string>;
}

/**
 * `tcpdump -i IFACE -n -U --immediate-mode -Z root -s 256 -w FILE [FILTER...]`, started and waited for until it
 * listens (at most 5 s). The caller stops it; `maxSeconds` + 60 s is a hard bound regardless.
 */
export function startCapture(
  iface: string,
  file: string,
  maxSeconds: number,
  o: { netns?: string; filter?: string[] } = {},
): Promise<Capture> {
  // --immediate-mode: without it Linux hands packets to tcpdump in ring-buffer blocks retired by
  // a timeout, and the packets of a block not yet retired when tcpdump is stopped are lost
  const args = ['-i', iface, '-n', '-U', '--immediate-mode', '-Z', 'root', '-s', '256', '-w', file, ...(o.filter ?? [])];
  const [cmd, argv] = o.netns ? ['nsenter', [`--net=${o.netns}`, '--', 'tcpdump', ...args]] : ['tcpdump', args];
  const child = childProcess().spawn(cmd, argv, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  // a safety net only (the caller stops it when its probes are done): a capture cut while slow
  // probes still run would miss them
  const hard = setTimeout(() => child.kill('SIGINT'), maxSeconds * 1000 + 60_000);
  const stop = async (): Promise<string> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(kill);
    clearTimeout(hard);
    return err.trim();
  };
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      void stop().then(() => reject(new Error(`tcpdump on ${iface} did not start: ${err.trim()}`)));
    }, 5000);
    child.on('error', (e) => {
      clearTimeout(t);
      clearTimeout(hard);
      reject(new Error(`tcpdump could not be started: ${e.message}`));
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString('utf8');
      if (/listening on/.test(err)) {
        clearTimeout(t);
        resolve({ iface, file, stop });
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      clearTimeout(hard);
      reject(new Error(`tcpdump on ${iface} exited: ${err.trim()}`));
    });
  });
}

/** `tshark -r FILE -T fields -E separator=/t -E occurrence=f -e F...`: one line per packet. */
export function tsharkFields(file: string, fields: string[], timeoutMs = 20_000): Promise<RunResult> {
  return run(
    'tshark',
    ['-n', '-r', file, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=f', ...fields.flatMap((f) => ['-e', f])],
    { allowFail: true, timeoutMs },
  );
}

/** `mergecap -F pcap -w OUT IN...` (one pcap of several captures, in time order). */
export function mergePcaps(out: string, inputs: string[]): Promise<RunResult> {
  return run('mergecap', ['-F', 'pcap', '-w', out, ...inputs], { allowFail: true, timeoutMs: 20_000 });
}
