/**
 * Timeline for performance work: with CNI_TS_TRACE=1 every marked step is written to stderr as
 * milliseconds since the process started (performance.now() counts from the time origin, so the
 * runtime's own start-up shows as the first mark's offset). Off by default and free when off.
 */
import { writeStderr } from './stdio.ts';

let on: boolean | undefined; // read on first use (a start-up snapshot must not freeze it)

export const tracing = (): boolean => (on ??= !!process.env.CNI_TS_TRACE);

export function trace(what: string): void {
  if (tracing()) writeStderr(`[trace ${process.pid} +${performance.now().toFixed(1)} ms] ${what}\n`);
}
