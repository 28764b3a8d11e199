/**
 * Every firewall owner of the project, declared once: what it owns (nft family, table, chains;
 * iptables table and chains), how its rules are found again (the tag, ./owner.ts), which modules
 * build its rule text, and whether it writes through shared/firewall/ (./nft.ts, ./iptables.ts)
 * or, for now, still on its own. netavark's single firewall driver is the model: drivers say
 * what they want, one layer talks to the kernel.
 *
 * Data only (shared/ imports no role folder): test/firewall-owners.test.ts checks each owner's
 * builders tag every rule of an attachment, and that no module outside shared/firewall/, the
 * kernel doors and the `door: 'own'` owners below writes an nft or iptables transaction
 * (eslint.config.js says the same in `make lint`).
 */

/** How an owner finds an attachment's rules again. */
export type TagPlace =
  /** the rule's comment starts with `cni:<net8>:<att16>` */
  | 'comment'
  /** a chain named by `ownerName` (`<net8>-<att16>`), its rules' comments tagged too */
  | 'chain'
  /** set elements whose comment is the tag */
  | 'element'
  /** the whole table is the owner's (one node-wide owner per table); its rules tagged too */
  | 'table'
  /** the table is rebuilt from the owner's desired state (cluster objects), not per attachment */
  | 'desired-state'
  /**
   * the Go reference's rule text, untagged (interop: either implementation CHECKs and DELs what
   * the other added), found again from the attachment's addresses (prevResult); no GC
   */
  | 'reference-text';

export interface OwnerDeclaration {
  name: string;
  what: string;
  nft?: { family: 'inet' | 'ip' | 'bridge'; table: string; chains: string[] };
  iptables?: { table: 'nat' | 'filter'; chains: string[] };
  tag: TagPlace;
  /** how its iptables rules are found again, when not as `tag` says */
  iptablesTag?: TagPlace;
  /** modules (repository paths) that build its rule text */
  builders: string[];
  /** shared/firewall: writes through ./nft.ts / ./iptables.ts; own: still calls shared/kernel itself (to move) */
  door: 'shared/firewall' | 'own';
  /** modules that write its transactions when `door` is 'own' */
  writers?: string[];
}

export const FIREWALL_OWNERS: readonly OwnerDeclaration[] = [
  {
    name: 'masquerade',
    what: 'bridge/ptp ipMasq: container address to outside its subnet',
    nft: { family: 'inet', table: 'cni_bridge', chains: ['postrouting'] },
    iptables: { table: 'nat', chains: ['CNI-BRIDGE-MASQ', 'POSTROUTING (jump)'] },
    tag: 'comment',
    builders: ['shared/firewall/masquerade-nft.ts', 'shared/firewall/masquerade-iptables.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'macspoof',
    what: "bridge macspoofchk: frames from the container's port with another source MAC",
    nft: { family: 'bridge', table: 'cni_bridge', chains: ['macspoof'] },
    tag: 'comment',
    builders: ['plugins/bridge/macspoof.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'portmap',
    what: 'published container ports (DNAT, hairpin and localhost masquerade)',
    nft: {
      family: 'inet',
      table: 'cni_portmap',
      chains: ['portmap-prerouting', 'portmap-output', 'portmap-postrouting', 'hostports', 'pm-<net8>-<att16>'],
    },
    iptables: {
      table: 'nat',
      chains: ['<P>-HOSTPORT-DNAT', '<P>-HOSTPORT-SETMARK', '<P>-HOSTPORT-MASQ', '<P>-DN-<att14>', 'PREROUTING/OUTPUT/POSTROUTING (jumps)'],
    },
    tag: 'chain',
    builders: ['plugins/portmap/nft.ts', 'plugins/portmap/nft-netlink.ts', 'plugins/portmap/iptables.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'overlay-masquerade',
    what: "the overlay's node masquerade: the leased pod subnet to outside the cluster network",
    nft: { family: 'ip', table: 'cni_ts_overlay', chains: ['postrouting'] },
    tag: 'table',
    builders: ['shared/overlay/host.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'firewall',
    what: "the firewall plugin: allowed container addresses, bridge isolation, the user's admin chain",
    nft: { family: 'inet', table: 'cni_firewall', chains: ['forward', 'admin'] },
    iptables: { table: 'filter', chains: ['CNI-FORWARD', 'CNI-ADMIN'] },
    tag: 'element',
    iptablesTag: 'reference-text',
    builders: ['plugins/firewall/nft.ts', 'plugins/firewall/rules.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'policy',
    what: "network policy: the node's whole policy table, compiled from the cluster store",
    nft: { family: 'inet', table: 'cni_ts_policy', chains: ['(compiled)'] },
    tag: 'desired-state',
    builders: ['shared/policy/nft.ts'],
    door: 'shared/firewall',
  },
  {
    name: 'services',
    what: 'services: virtual IPs to backends, compiled from the cluster store',
    nft: { family: 'inet', table: 'cni_ts_services', chains: ['services', 'svc_…'] },
    tag: 'desired-state',
    builders: ['shared/services/compile.ts'],
    door: 'shared/firewall',
  },
];

/** The modules allowed to import shared/kernel's nft/iptables write functions besides shared/firewall/. */
export const pendingWriters = (): string[] => FIREWALL_OWNERS.flatMap((o) => (o.door === 'own' ? (o.writers ?? []) : []));
