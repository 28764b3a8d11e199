/**
 * A minimal CRI RuntimeService client (gRPC over the runtime's unix socket), just the calls the
 * runtime tests make. The proto beside this file is a field-for-field subset of k8s.io/cri-api v1.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface PortMapping {
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  containerPort: number;
  hostPort: number;
  hostIp?: string;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  logDirectory?: string;
  portMappings?: PortMapping[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroupParent?: string; securityContext?: { namespaceOptions?: { network?: 'POD' | 'NODE' } } };
}

export interface PodSandboxStatus {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  network: { ip: string; additionalIps: Array<{ ip: string }> } | null;
}

export interface VersionResponse {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void;

export class CriClient {
  private readonly client: grpc.Client & Record<string, Unary>;

  constructor(socket: string) {
    const def = protoLoader.loadSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'cri.proto'), {
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
    this.client = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure()) as unknown as grpc.Client &
      Record<string, Unary>;
  }

  private call<T>(method: string, req: unknown, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method].call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) =>
        e ? reject(e) : resolve(r as T),
      );
    });
  }

  version(): Promise<VersionResponse> {
    return this.call('Version', { version: 'v1' });
  }

  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler: '' }, 120_000);
    return r.podSandboxId;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: id });
  }

  /** Status, plus the verbose info JSON containerd attaches (netns path, CNI result). */
  async podSandboxStatus(id: string): Promise<{ status: PodSandboxStatus; info: Record<string, unknown> }> {
    const r = await this.call<{ status: PodSandboxStatus; info: Record<string, string> }>('PodSandboxStatus', {
      podSandboxId: id,
      verbose: true,
    });
    let info: Record<string, unknown>;
    try {
      info = JSON.parse(r.info?.info ?? '{}') as Record<string, unknown>;
    } catch {
      info = {};
    }
    return { status: r.status, info };
  }

  close(): void {
    this.client.close();
  }
}
