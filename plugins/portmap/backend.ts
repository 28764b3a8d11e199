/** What a firewall backend (nftables, iptables) does for portmap; one transaction per verb. */
import type { FamilyPlan, Settings } from './config.ts';

export interface Backend {
  /** Publish the plan's ports for attachment `tag`; code 102 when a port is held by another. */
  add(s: Settings, tag: string, comment: string, plans: FamilyPlan[]): Promise<void>;
  /** Remove everything attachment `tag` owns; succeeds when nothing is there. */
  del(s: Settings, tag: string): Promise<void>;
  /** Code 105 when a rule of the plan is missing. */
  check(s: Settings, tag: string, plans: FamilyPlan[]): Promise<void>;
  /** Remove the network's (`netTag`) attachments whose tag is not in `validTags`. */
  gc(s: Settings, netTag: string, validTags: Set<string>): Promise<void>;
  status(s: Settings): Promise<void>;
}
