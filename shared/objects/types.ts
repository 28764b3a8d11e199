/**
 * The object kinds of the cluster store, in the shapes Kubernetes users know (paste what you
 * have). Only the fields we act on are typed; unknown fields are kept as written.
 */

export type Kind =
  | 'Namespace'
  | 'NetworkPolicy'
  | 'AdminNetworkPolicy'
  | 'BaselineAdminNetworkPolicy'
  | 'Service'
  | 'EndpointSlice'
  | 'Endpoint'
  | 'SubnetLease'
  | 'BackendHealth'
  | 'DockerNetwork'
  | 'DockerEndpoint'
  | 'DockerPool'
  | 'Node';

export const CLUSTER_SCOPED: ReadonlySet<Kind> = new Set([
  'Namespace',
  'AdminNetworkPolicy',
  'BaselineAdminNetworkPolicy',
  'SubnetLease',
  'DockerNetwork',
  'DockerEndpoint',
  'DockerPool',
  'Node',
]);

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** set by the store on read: the revision of the last write */
  resourceVersion?: string;
  creationTimestamp?: string;
  uid?: string;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Namespace {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: ObjectMeta;
}

/**
 * A host of the cluster, as Kubernetes shows it (`kubectl get node -o yaml` pastes): labels,
 * and its addresses. Each node agent registers its own at start (policy: ANP `nodes` peers).
 */
export interface NodeAddress {
  /** InternalIP, ExternalIP, Hostname, ... (only IP addresses are matched) */
  type: string;
  address: string;
}
export interface Node {
  apiVersion: 'v1';
  kind: 'Node';
  metadata: ObjectMeta;
  status?: { addresses?: NodeAddress[] };
}

// ---- networking.k8s.io/v1 NetworkPolicy ----
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export interface NetworkPolicyPort {
  protocol?: Protocol;
  /** number, or a named container port (resolved on the destination pod) */
  port?: number | string;
  endPort?: number;
}
export interface IPBlock {
  cidr: string;
  except?: string[];
}
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}
export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}
export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}
export interface NetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: ObjectMeta;
  spec: {
    podSelector: LabelSelector;
    policyTypes?: ('Ingress' | 'Egress')[];
    ingress?: NetworkPolicyIngressRule[];
    egress?: NetworkPolicyEgressRule[];
  };
}

// ---- policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy ----
export interface AnpNamespacedPod {
  namespaceSelector: LabelSelector;
  podSelector: LabelSelector;
}
export interface AnpSubject {
  namespaces?: LabelSelector;
  pods?: AnpNamespacedPod;
}
export interface AnpPeer {
  namespaces?: LabelSelector;
  pods?: AnpNamespacedPod;
  /** egress only */
  networks?: string[];
  /** egress only: nodes by their labels (their addresses: Node objects' status.addresses) */
  nodes?: LabelSelector;
}
export type AnpPort =
  | { portNumber: { protocol: Protocol; port: number } }
  | { namedPort: string }
  | { portRange: { protocol?: Protocol; start: number; end: number } };
export interface AnpRule<Action extends string> {
  name?: string;
  action: Action;
  from?: AnpPeer[];
  to?: AnpPeer[];
  ports?: AnpPort[];
}
export interface AdminNetworkPolicy {
  apiVersion: 'policy.networking.k8s.io/v1alpha1';
  kind: 'AdminNetworkPolicy';
  metadata: ObjectMeta;
  spec: {
    /** 0..1000, lower is evaluated first */
    priority: number;
    subject: AnpSubject;
    ingress?: AnpRule<'Allow' | 'Deny' | 'Pass'>[];
    egress?: AnpRule<'Allow' | 'Deny' | 'Pass'>[];
  };
}
export interface BaselineAdminNetworkPolicy {
  apiVersion: 'policy.networking.k8s.io/v1alpha1';
  kind: 'BaselineAdminNetworkPolicy';
  /** metadata.name must be "default" (a singleton, as upstream) */
  metadata: ObjectMeta;
  spec: {
    subject: AnpSubject;
    ingress?: AnpRule<'Allow' | 'Deny'>[];
    egress?: AnpRule<'Allow' | 'Deny'>[];
  };
}

// ---- v1 Service (+ explicit backends) ----
export interface ServicePort {
  name?: string;
  protocol?: Protocol;
  port: number;
  targetPort?: number | string;
}
export interface Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: ObjectMeta;
  spec: {
    selector?: Record<string, string>;
    ports?: ServicePort[];
    /** "None" = headless */
    clusterIP?: string;
    clusterIPs?: string[];
    sessionAffinity?: 'None' | 'ClientIP';
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  };
}
export interface EndpointSlice {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'EndpointSlice';
  metadata: ObjectMeta & { labels: { 'kubernetes.io/service-name': string } & Record<string, string> };
  endpoints: { addresses: string[]; conditions?: { ready?: boolean }; hostname?: string; nodeName?: string }[];
  ports?: { name?: string; port: number; protocol?: Protocol }[];
}

// ---- cni-ts.dev/v1 Endpoint: one per CNI attachment, written by the `endpoint` plugin ----
export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: Protocol;
}
export interface Endpoint {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'Endpoint';
  /** namespace/name: K8S_POD_NAMESPACE / K8S_POD_NAME, else "default" / the container ID */
  metadata: ObjectMeta;
  spec: {
    node: string;
    network: string;
    containerId: string;
    ifname: string;
    /** CIDR notation as in the CNI result ("10.1.0.5/24", "fd00::5/64") */
    ips: string[];
    /** the host-side interface (veth) of this attachment, when there is one */
    hostInterface?: string;
    /** the container-side interface's MAC */
    mac?: string;
    /** the container's network namespace (CNI_NETNS at ADD): where metrics and diagnostics look from the container's side */
    sandbox?: string;
    /** gateway addresses of the network (DNS listens there) */
    gateways?: string[];
    aliases?: string[];
    ports?: ContainerPort[];
  };
}

// ---- overlay subnet leases (moved here from the overlay's own store) ----
export interface SubnetLease {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'SubnetLease';
  metadata: ObjectMeta;
  spec: { network: string; subnet: string; publicIP: string; vtepMAC: string; hostname?: string; expires: string };
}

// ---- cni-ts.dev/v1 BackendHealth: a service backend's health-check result, written by the agent on the backend's node ----
export interface BackendHealth {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'BackendHealth';
  /** namespace = the Service's; name = `<service>-<address with dashes>-<port>` */
  metadata: ObjectMeta;
  spec: { service: string; address: string; port: number; node: string; healthy: boolean; checkedAt: string; reason?: string };
}

// ---- cni-ts.dev/v1 Docker* kinds: the node agent's CNM driver state (agent/docker, docs/docker.md) ----
/** A Docker network served by this node's agent (name = Docker's network ID). */
export interface DockerNetwork {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'DockerNetwork';
  metadata: ObjectMeta;
  spec: {
    node: string;
    /** the CNI network name its attachments are registered under */
    network: string;
    /** the driver options as Docker sent them (`--opt`) */
    options: Record<string, string>;
    /** IPv4/IPv6 pools with their gateways ("10.1.0.1/24") */
    ipv4: Array<{ pool: string; gateway?: string }>;
    ipv6: Array<{ pool: string; gateway?: string }>;
    /** the network list (conflist JSON) every endpoint of it is attached with, addresses left out */
    conflist: Record<string, unknown>;
    /** the portmap plugin config `-p` runs (ProgramExternalConnectivity) */
    portmap: Record<string, unknown>;
    /** the bridge did not exist before CreateNetwork: DeleteNetwork removes it */
    ownsBridge: boolean;
  };
}
/** One Docker endpoint (name = Docker's endpoint ID): what its CNI ADD returned and what Join/-p did. */
export interface DockerEndpoint {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'DockerEndpoint';
  metadata: ObjectMeta;
  spec: {
    node: string;
    networkId: string;
    /** the interface Docker moves into the container (CNI_IFNAME of the attachment) */
    srcName: string;
    /** the conflist it was added with (addresses filled in) and the chain's result */
    conflist: Record<string, unknown>;
    result: Record<string, unknown>;
    cniArgs: Array<[string, string]>;
    /** Docker's sandbox (the container's netns) once joined */
    sandboxKey?: string;
    /** published ports (portmap ADD done) */
    portMappings?: Array<{ hostPort: number; containerPort: number; protocol: string; hostIP?: string }>;
  };
}
/** An address pool of the IPAM driver (name = the PoolID Docker holds). */
export interface DockerPool {
  apiVersion: 'cni-ts.dev/v1';
  kind: 'DockerPool';
  metadata: ObjectMeta;
  spec: {
    node: string;
    addressSpace: string;
    pool: string;
    subPool?: string;
    /** the gateway Docker asked for (never handed out: host-local's range gateway) */
    gateway?: string;
    /** reserved address -> the host-local reservation (container ID) holding it */
    reservations: Record<string, string>;
  };
}

export type CniObject =
  | Namespace
  | NetworkPolicy
  | AdminNetworkPolicy
  | BaselineAdminNetworkPolicy
  | Service
  | EndpointSlice
  | Endpoint
  | SubnetLease
  | BackendHealth
  | DockerNetwork
  | DockerEndpoint
  | DockerPool
  | Node;

export function isClusterScoped(kind: Kind): boolean {
  return CLUSTER_SCOPED.has(kind);
}
