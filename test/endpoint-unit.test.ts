/** endpoint plugin: the Endpoint object out of a request (pure), and the CHECK helpers. */
import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
import {
  aliasesOf,
  dnsOf,
  endpointOf,
  identityOf,
  interfacesOf,
  labelsOf,
  portsOf,
  type EndpointConf,
} from '../plugins/endpoint/config.ts';
import { mentions } from '../plugins/endpoint/index.ts';
import type { Result } from '../shared/cni/types.ts';

const prev: Result = {
  interfaces: [
    { name: 'cni0', mac: '0a:00:00:00:00:01' },
    { name: 'veth1234', mac: '0a:00:00:00:00:02' },
    { name: 'eth0', mac: '0a:00:00:00:00:03', sandbox: '/run/netns/p' },
  ],
  ips: [
    { interface: 2, address: '10.1.0.5/24', gateway: '10.1.0.1' },
    { interface: 2, address: 'fd00::5/64', gateway: 'fd00::1' },
  ],
};
const conf = (extra: Partial<EndpointConf> = {}): EndpointConf => ({ name: 'net1', type: 'endpoint', ...extra });
const env = (args: Record<string, string> = {}) => ({
  command: 'ADD' as const,
  containerId: 'ABC123',
  netns: '/run/netns/p',
  ifname: 'eth0',
  args: new Map(Object.entries(args)),
  path: [],
});

describe('endpoint: the Endpoint object', () => {
  it('takes identity from K8S_POD_*, else default / the container ID', () => {
    expect(
      identityOf(
        new Map([
          ['K8S_POD_NAMESPACE', 'web'],
          ['K8S_POD_NAME', 'front-1'],
        ]),
        'c1',
      ),
    ).toEqual({ namespace: 'web', name: 'front-1' });
    expect(identityOf(new Map([['K8S_POD_NAME', 'Reverent_Cannon_']]), 'c1')).toEqual({ namespace: 'default', name: 'reverent-cannon' }); // podman's names
    expect(identityOf(new Map(), 'ABC123')).toEqual({ namespace: 'default', name: 'abc123' });
    expect(() => identityOf(new Map([['K8S_POD_NAMESPACE', 'Bad_NS']]), 'c1')).toThrow(CniError);
  });

  it("reads labels as the conventions' list or a map, and rejects invalid ones (code 7)", () => {
    expect(
      labelsOf(
        conf({
          args: {
            cni: {
              labels: [
                { key: 'app', value: 'web' },
                { key: 'example.com/tier', value: 'front' },
              ],
            },
          },
        }),
      ),
    ).toEqual({ app: 'web', 'example.com/tier': 'front' });
    expect(labelsOf(conf({ args: { cni: { labels: { app: 'db' } } } }))).toEqual({ app: 'db' });
    expect(() => labelsOf(conf({ args: { cni: { labels: { 'bad key': 'x' } } } }))).toThrow(/label key/);
    expect(() => labelsOf(conf({ args: { cni: { labels: { app: 'no spaces' } } } }))).toThrow(/label value/);
  });

  it('reads container ports (protocol upper-cased) and rejects bad or duplicate names', () => {
    expect(
      portsOf(
        conf({
          args: {
            cni: {
              containerPorts: [
                { name: 'http', containerPort: 80, protocol: 'tcp' },
                { containerPort: 53, protocol: 'UDP' },
              ],
            },
          },
        }),
      ),
    ).toEqual([
      { name: 'http', containerPort: 80, protocol: 'TCP' },
      { containerPort: 53, protocol: 'UDP' },
    ]);
    expect(() => portsOf(conf({ args: { cni: { containerPorts: [{ name: 'HTTP', containerPort: 80 }] } } }))).toThrow(/port name/);
    expect(() =>
      portsOf(
        conf({
          args: {
            cni: {
              containerPorts: [
                { name: 'a', containerPort: 80 },
                { name: 'a', containerPort: 81 },
              ],
            },
          },
        }),
      ),
    ).toThrow(/twice/);
  });

  it("reads aliases as a list or podman's per-network map", () => {
    expect(aliasesOf(conf({ runtimeConfig: { aliases: ['db', 'db', 'primary'] } }))).toEqual(['db', 'primary']);
    expect(aliasesOf(conf({ runtimeConfig: { aliases: { net1: ['web'], other: ['x'] } } }))).toEqual(['web']);
  });

  it('finds the container interface and the host side listed before it', () => {
    expect(interfacesOf(prev, 'eth0')).toEqual({ index: 2, mac: '0a:00:00:00:00:03', hostInterface: 'veth1234' });
    expect(interfacesOf({ interfaces: [{ name: 'eth0', sandbox: '/x' }] }, 'eth0')).toEqual({
      index: 0,
      mac: undefined,
      hostInterface: undefined,
    });
    expect(interfacesOf(prev, 'net9').index).toBe(-1);
  });

  it('builds the whole object', () => {
    const ep = endpointOf(
      {
        env: env({ K8S_POD_NAMESPACE: 'web', K8S_POD_NAME: 'front-1' }),
        config: conf({
          args: { cni: { labels: { app: 'web' }, containerPorts: [{ name: 'http', containerPort: 80 }] } },
          runtimeConfig: { aliases: ['front'] },
        }),
        prevResult: prev,
      },
      'node1',
    );
    expect(ep).toEqual({
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'front-1', namespace: 'web', labels: { app: 'web' } },
      spec: {
        node: 'node1',
        network: 'net1',
        containerId: 'ABC123',
        ifname: 'eth0',
        ips: ['10.1.0.5/24', 'fd00::5/64'],
        hostInterface: 'veth1234',
        mac: '0a:00:00:00:00:03',
        gateways: ['10.1.0.1', 'fd00::1'],
        aliases: ['front'],
        ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }],
        sandbox: '/run/netns/p',
      },
    });
  });

  it('CHECK matches addresses as whole tokens', () => {
    expect(mentions('elements = { 10.1.0.5, 10.1.0.50 }', '10.1.0.5')).toBe(true);
    expect(mentions('elements = { 10.1.0.50 }', '10.1.0.5')).toBe(false);
    expect(mentions('10.1.0.5 . 10.1.0.6', '10.1.0.6')).toBe(true);
    expect(mentions('fd00::51 : jump g', 'fd00::5')).toBe(false);
  });
});

describe("endpoint: the result's dns", () => {
  const k8s = { search: ['web.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'dns.podman'], options: ['ndots:5'] };
  it('names the gateways with the search list; prevResult entries after ours, its domain kept, our ndots wins', () => {
    expect(dnsOf(conf(), {}, 'cluster.local', 'web', ['10.1.0.1', 'fd00::1'], undefined)).toEqual({
      nameservers: ['10.1.0.1', 'fd00::1'],
      ...k8s,
    });
    expect(
      dnsOf(conf(), {}, 'cluster.local', 'web', ['10.1.0.1'], {
        nameservers: ['192.0.2.53', '10.1.0.1', '192.0.2.54', '192.0.2.55'],
        domain: 'corp.example',
        search: ['corp.example', 'svc.cluster.local'],
        options: ['ndots:1', 'rotate'],
      }),
    ).toEqual({
      nameservers: ['10.1.0.1', '192.0.2.53', '192.0.2.54'],
      domain: 'corp.example',
      search: [...k8s.search, 'corp.example'],
      options: ['ndots:5', 'rotate'],
    });
  });
  it('off with setDns: false or dns.enabled: false; dns.listen on port 53 when gateways are not served', () => {
    expect(dnsOf(conf({ setDns: false }), {}, 'cluster.local', 'web', ['10.1.0.1'], undefined)).toBeUndefined();
    expect(dnsOf(conf(), { enabled: false }, 'cluster.local', 'web', ['10.1.0.1'], undefined)).toBeUndefined();
    expect(
      dnsOf(conf(), { networkDomains: { net1: 'web.internal.' } }, 'cluster.local', 'web', ['10.1.0.1'], undefined)?.search?.at(-1),
    ).toBe('web.internal');
    expect(dnsOf(conf(), { networkDomain: '' }, 'cluster.local', 'web', ['10.1.0.1'], undefined)?.search).toEqual(k8s.search.slice(0, 3));
    expect(dnsOf(conf(), { port: 5353 }, 'cluster.local', 'web', ['10.1.0.1'], undefined)).toBeUndefined();
    expect(
      dnsOf(
        conf(),
        { listenOnGateways: false, listen: ['10.0.0.10', '127.0.0.1:5353', '[fd00::53]:53'] },
        'k8s.test',
        'web',
        ['10.1.0.1'],
        undefined,
      )?.nameservers,
    ).toEqual(['10.0.0.10', 'fd00::53']);
  });
});
