/**
 * Plugin call records for the agent's metrics (issue 16): plugins are short processes, so each
 * call appends ONE small JSON line to a bounded file the agent reads and exports
 * (`cni_ts_plugin_calls_total`, `cni_ts_plugin_call_duration_seconds`).
 *
 * - File: $CNI_TS_PLUGIN_CALLS, else /run/cni-ts/plugin-calls.log; "off" (or empty) disables.
 *   Appended to only when the file exists (the agent creates it when it starts): a host
 *   without the agent gets no file and a plugin makes no file-writing call.
 * - One `O_APPEND` write of one line (< 4 KiB, so concurrent plugins never interleave), no
 *   lock, no fsync. When the file passed CALLS_MAX_BYTES it is renamed to `<file>.1` first
 *   (the previous `.1` is dropped): at most twice that on disk.
 * - Never throws and never delays the call beyond those syscalls: any error is ignored.
 */
import { closeSync, constants, openSync, renameSync, statSync, writeSync } from 'node:fs';

export const CALLS_ENV = 'CNI_TS_PLUGIN_CALLS';
export const DEFAULT_CALLS_FILE = '/run/cni-ts/plugin-calls.log';
export const CALLS_MAX_BYTES = 1 << 20;

export interface PluginCallRecord {
  /** epoch milliseconds at the end of the call */
  t: number;
  plugin: string;
  verb: string;
  result: 'ok' | 'error';
  /** the CNI error code of a failed call */
  code?: number;
  /** wall time of the call in seconds */
  seconds: number;
}

export function callsFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env[CALLS_ENV];
  if (v === undefined) return DEFAULT_CALLS_FILE;
  if (v === '' || v === 'off') return undefined;
  return v;
}

/** Append one record (best effort; see the module comment). */
export function recordCall(rec: PluginCallRecord, env: NodeJS.ProcessEnv = process.env, maxBytes = CALLS_MAX_BYTES): void {
  try {
    const file = callsFile(env);
    if (!file) return;
    let size = -1;
    try {
      size = statSync(file).size;
    } catch {
      /* not there yet */
    }
    if (size < 0) return; // no agent (it creates the file): no record
    let flags = constants.O_WRONLY | constants.O_APPEND;
    if (size >= maxBytes) {
      try {
        renameSync(file, `${file}.1`);
      } catch {
        /* another plugin rotated it first */
      }
      flags |= constants.O_CREAT; // the rotating call starts the new file
    }
    const fd = openSync(file, flags, 0o644);
    try {
      writeSync(fd, `${JSON.stringify(rec)}\n`);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* never fail a plugin call over its metrics */
  }
}

/** Parse appended lines (a torn or foreign line is skipped). */
export function parseCallLines(text: string): PluginCallRecord[] {
  const out: PluginCallRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const r = JSON.parse(line) as Partial<PluginCallRecord>;
      if (
        typeof r.plugin === 'string' &&
        typeof r.verb === 'string' &&
        (r.result === 'ok' || r.result === 'error') &&
        typeof r.seconds === 'number'
      )
        out.push(r as PluginCallRecord);
    } catch {
      /* skip */
    }
  }
  return out;
}
