import { appendFileSync } from 'node:fs';
import { writeStderr } from '../stdio.ts';

export type Level = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/**
 * Diagnostics go to stderr (never stdout, which carries the protocol) and, when
 * CNI_LOG_FILE or the config's `logFile` is set, appended to that file.
 */
export class Logger {
  private file: string | undefined;
  private level: Level;
  private readonly prefix: string;
  constructor(prefix: string, env: NodeJS.ProcessEnv = process.env) {
    this.prefix = prefix;
    this.file = env.CNI_LOG_FILE || undefined;
    this.level = (env.CNI_LOG_LEVEL as Level) in ORDER ? (env.CNI_LOG_LEVEL as Level) : 'warn';
  }
  configure(opts: { logFile?: unknown; logLevel?: unknown }): void {
    if (typeof opts.logFile === 'string' && opts.logFile) this.file = opts.logFile;
    if (typeof opts.logLevel === 'string' && opts.logLevel in ORDER) this.level = opts.logLevel as Level;
  }
  withPrefix(prefix: string): Logger {
    const l = Object.create(this) as Logger;
    (l as unknown as { prefix: string }).prefix = prefix;
    return l;
  }
  log(level: Level, msg: string): void {
    if (ORDER[level] > ORDER[this.level]) return;
    const line = `${new Date().toISOString()} ${level} ${this.prefix}: ${msg}\n`;
    writeStderr(line);
    if (this.file) {
      try {
        appendFileSync(this.file, line);
      } catch {
        /* a broken log file must not fail the operation */
      }
    }
  }
  error(m: string): void {
    this.log('error', m);
  }
  warn(m: string): void {
    this.log('warn', m);
  }
  info(m: string): void {
    this.log('info', m);
  }
  debug(m: string): void {
    this.log('debug', m);
  }
}
