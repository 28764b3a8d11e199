/** vrf config (the Go reference's `vrfname`, `table`) and the table choice. Pure. */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';

export interface VrfConf extends NetConfBase {
  vrfname: string;
  table?: number;
}

/** Reserved routing tables: unspec, default, main, local. */
const RESERVED = new Set([0, 253, 254, 255]);

/** The lowest table id from 1 no VRF of the netns uses (and not a reserved one). */
export function freeTable(used: number[]): number {
  const taken = new Set(used);
  for (let t = 1; ; t++) if (!taken.has(t) && !RESERVED.has(t)) return t;
}

/** The table for a new VRF: the configured one (refused when reserved), else a free one. */
export function tableFor(c: VrfConf, used: number[]): number {
  if (c.table && RESERVED.has(c.table)) throw invalidConfig('table', `${c.table} is a reserved routing table`);
  return c.table || freeTable(used);
}
