/**
 * Write to stdout/stderr with plain write(2) calls. Touching process.stdout/stderr builds
 * stream objects (net, stream, readable modules: ~5 ms of every start); a plugin writes one
 * reply and a few log lines, so it doesn't need them.
 */
import { writeSync } from 'node:fs';

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      return; // a closed stdout/stderr must not crash the plugin
    }
  }
}

export const writeStdout = (text: string): void => writeAll(1, text);
export const writeStderr = (text: string): void => writeAll(2, text);
