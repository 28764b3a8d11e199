/**
 * Timeline for performance work: with CNI_TS_TRACE set, every marked step is written as
 * milliseconds since the process started (performance.now() counts from the time origin, so the
 * runtime's own start-up shows as the first mark's offset). CNI_TS_TRACE=1 writes to stderr;
 * an absolute path appends to that file instead (runtimes such as containerd keep a plugin's
 * stderr only when it fails). Off by default and free when off. With CNI_TS_TRACE_RSS=1 each
 * mark also shows the process's resident memory then (VmRSS, of which file-backed), from
 * /proc/self/statm.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { writeStderr } from './stdio.ts';

let target: string | undefined; // read on first use: '' = off, '-' = stderr, else a file

function where(): string {
  if (target === undefined) {
    const v = process.env.CNI_TS_TRACE ?? '';
    target = v.startsWith('/') ? v : v ? '-' : '';
  }
  return target;
}

export const tracing = (): boolean => where() !== '';

let withRss: boolean | undefined;

/**
 * ` [rss 41.2 MiB, file 36.0, faults 1234, cpu 12.3 ms]`: resident and file-backed memory from
 * /proc/self/statm (pages: size resident shared ...), and the page faults and CPU time of the
 * process so far (getrusage: every thread), or ''.
 */
function rss(): string {
  withRss ??= process.env.CNI_TS_TRACE_RSS === '1';
  if (!withRss) return '';
  try {
    const [, resident, shared] = readFileSync('/proc/self/statm', 'latin1').split(' ').map(Number);
    const u = process.resourceUsage();
    return ` [rss ${((resident * 4096) / 1048576).toFixed(1)} MiB, file ${((shared * 4096) / 1048576).toFixed(1)}, faults ${u.minorPageFault}, cpu ${((u.userCPUTime + u.systemCPUTime) / 1000).toFixed(1)} ms]`;
  } catch {
    return '';
  }
}

/** Marks the Bun entry made before the bundle ran (scripts/bun-main.cjs), written with the first mark here. */
function earlyMarks(): string {
  const g = globalThis as { __cniTsEarlyTrace?: Array<[number, string]> };
  const marks = g.__cniTsEarlyTrace;
  if (!marks) return '';
  g.__cniTsEarlyTrace = undefined;
  return marks.map(([t, what]) => `[trace ${process.pid} +${t.toFixed(1)} ms] ${what}\n`).join('');
}

export function trace(what: string): void {
  const t = where();
  if (!t) return;
  const line = `${earlyMarks()}[trace ${process.pid} +${performance.now().toFixed(1)} ms] ${what}${rss()}\n`;
  if (t === '-') writeStderr(line);
  else {
    try {
      appendFileSync(t, line);
    } catch {
      /* tracing must never fail a call */
    }
  }
}
