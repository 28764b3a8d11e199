/** The Docker driver's pure parts: --opt mapping, conflists, CNM <-> CNI conversions, container lookup. */
import { describe, expect, it } from 'vitest';
import {
  OptionError,
  endpointConflist,
  exposedPortsOf,
  networkConflist,
  networkSettings,
  poolsOf,
  allocatePorts,
  overlayConflist,
  parsePortRange,
  portBindingsOf,
  portRequestsOf,
  portmapConf,
  srcNameOf,
  staticRoutesOf,
} from '../agent/docker/options.ts';
import { findContainer, withContainer, type ContainerSummary } from '../agent/docker/resolver.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import { dockerSettings } from '../agent/docker/driver.ts';
import { parseAgentConfig } from '../shared/agentconfig.ts';

const NET = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2';

describe('docker network options', () => {
  it('defaults: bridge cnd-<id>, masquerade on (as Docker), namespace default', () => {
    const s = networkSettings(NET, {});
    expect(s).toMatchObject({ network: 'docker-a1b2c3d4e5f6', bridge: 'cnd-a1b2c3d4e5f', ipMasq: true, namespace: 'default', labels: {} });
  });

  it('maps our keys and Docker bridge driver spellings', () => {
    const s = networkSettings(NET, {
      'com.docker.network.bridge.name': 'br-x',
      'com.docker.network.driver.mtu': '1400',
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
      'com.docker.network.bridge.enable_icc': 'false',
      macspoofchk: 'true',
      nftTable: 'my_table',
      portmapTable: 'my_pm',
      namespace: 'team-a',
      'label.tier': 'db',
      'com.docker.network.something.else': 'ignored',
    });
    expect(s).toMatchObject({
      bridge: 'br-x',
      mtu: 1400,
      ipMasq: false,
      portIsolation: true,
      macspoofchk: true,
      nftTable: 'my_table',
      portmapTable: 'my_pm',
      namespace: 'team-a',
      labels: { tier: 'db' },
    });
  });

  it('bad options are errors naming the option', () => {
    expect(() => networkSettings(NET, { bogus: '1' })).toThrow(/unknown option "bogus" \(cni-ts knows: bridge, mtu/);
    expect(() => networkSettings(NET, { mtu: '12' })).toThrow(/option mtu: "12" is not a number from 68 to 65535/);
    expect(() => networkSettings(NET, { ipMasq: 'maybe' })).toThrow(/not a boolean/);
    expect(() => networkSettings(NET, { bridge: 'a-name-much-too-long' })).toThrow(/not an interface name/);
    expect(() => networkSettings(NET, { namespace: 'Team_A' })).toThrow(/not a namespace name/);
    expect(() => networkSettings(NET, { type: 'vxlan' })).toThrow(/must be "bridge" or "overlay"/);
    expect(networkSettings(NET, { type: 'overlay', namespace: 'x', 'label.a': 'b' })).toMatchObject({ type: 'overlay', namespace: 'x' });
    // the overlay's bridge, MTU, masquerade and CNI network name are its config's
    expect(() => networkSettings(NET, { type: 'overlay', bridge: 'br1', mtu: '1400' })).toThrow(
      /option bridge, mtu: not for a type=overlay network/,
    );
    expect(() => networkSettings(NET, { 'label.bad key': 'x' })).toThrow(OptionError);
  });

  it('pools and gateways from IPv4Data', () => {
    expect(poolsOf([{ AddressSpace: 'L', Pool: '10.9.0.0/24', Gateway: '10.9.0.1/24' }], 4)).toEqual([
      { pool: '10.9.0.0/24', gateway: '10.9.0.1/24' },
    ]);
    expect(poolsOf([], 6)).toEqual([]);
    expect(() => poolsOf([{ Pool: 'fd00::/64' }], 4)).toThrow(/not an IPv4 subnet/);
  });
});

describe('conflists', () => {
  const s = networkSettings(NET, { bridge: 'br0', 'label.tier': 'web' });
  const net = networkConflist(s, '/etc/cni-ts/agent.json');

  it('the network: bridge (gateway on the bridge, container side left to Docker) then endpoint', () => {
    expect(net).toMatchObject({ cniVersion: '1.0.0', name: 'docker-a1b2c3d4e5f6' });
    const [bridge, endpoint] = net.plugins as Array<Record<string, unknown>>;
    expect(bridge).toMatchObject({ type: 'bridge', bridge: 'br0', isGateway: true, ipMasq: true, disableContainerInterface: true });
    expect(endpoint).toMatchObject({ type: 'endpoint', agentConfig: '/etc/cni-ts/agent.json', setDns: false });
  });

  it('an endpoint: static IPAM with the address Docker gave and the pool gateway; labels and ports for the endpoint plugin', () => {
    const c = endpointConflist(net, [{ pool: '10.9.0.0/24', gateway: '10.9.0.1/24' }], {
      addresses: ['10.9.0.7/24'],
      labels: { tier: 'web' },
      ports: [{ containerPort: 80, protocol: 'TCP' }],
    });
    const [bridge, endpoint] = c.plugins as Array<Record<string, unknown>>;
    expect(bridge!.ipam).toEqual({ type: 'static', addresses: [{ address: '10.9.0.7/24', gateway: '10.9.0.1' }] });
    expect(endpoint!.args).toEqual({ cni: { labels: { tier: 'web' }, containerPorts: [{ containerPort: 80, protocol: 'TCP' }] } });
    // the network's own list is not changed
    expect((net.plugins as Array<Record<string, unknown>>)[0]!.ipam).toBeUndefined();
  });

  it('portmap config from the options', () => {
    expect(portmapConf({ portmapTable: 'pm', portmapSnat: false })).toEqual({
      type: 'portmap',
      capabilities: { portMappings: true },
      nftTable: 'pm',
      snat: false,
    });
  });
});

describe('CNM <-> CNI', () => {
  it('-p bindings: fixed ports kept, -p PORT / --publish-all / a host range take a free port', () => {
    const reqs = portRequestsOf([
      { Proto: 6, Port: 80, HostPort: 8080, HostPortEnd: 8080 },
      { Proto: 17, Port: 53, HostIP: '127.0.0.1', HostPort: 5353, HostPortEnd: 5354 },
      { Proto: 6, Port: 443, HostPort: 0 },
      { Proto: 6, Port: 22 },
    ]);
    expect(reqs[1]).toEqual({ hostPort: 5353, hostPortEnd: 5354, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' });
    expect(allocatePorts(reqs, new Set(['udp/5353', 'tcp/49153']), [49153, 49160])).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5354, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
      { hostPort: 49154, containerPort: 443, protocol: 'tcp' },
      { hostPort: 49155, containerPort: 22, protocol: 'tcp' },
    ]);
    // a fixed port another endpoint publishes is refused; a full range says so
    expect(() => allocatePorts(reqs, new Set(['tcp/8080']), [49153, 49160])).toThrow(/host port 8080\/tcp is already published/);
    expect(() => allocatePorts(portRequestsOf([{ Proto: 6, Port: 1 }]), new Set(['tcp/7']), [7, 7])).toThrow(
      /no free tcp host port in 7-7/,
    );
    // a fixed port asked for by number is never the pick of a free one
    expect(
      allocatePorts(
        portRequestsOf([
          { Proto: 6, Port: 1 },
          { Proto: 6, Port: 2, HostPort: 7 },
        ]),
        new Set(),
        [7, 8],
      ),
    ).toEqual([
      { hostPort: 8, containerPort: 1, protocol: 'tcp' },
      { hostPort: 7, containerPort: 2, protocol: 'tcp' },
    ]);
    expect(portBindingsOf([{ hostPort: 49154, containerPort: 443, protocol: 'tcp' }], '10.1.0.5')).toEqual([
      { Proto: 6, IP: '10.1.0.5', Port: 443, HostIP: '0.0.0.0', HostPort: 49154, HostPortEnd: 49154 },
    ]);
    expect(portRequestsOf(undefined)).toEqual([]);
    expect(parsePortRange('49153-60999')).toEqual([49153, 60999]);
    expect(parsePortRange('9-8')).toBeUndefined();
    expect(parsePortRange('1-70000')).toBeUndefined();
  });

  it('a type=overlay network: the overlay plugin (container end left to Docker) + endpoint, addresses through args.cni.ips', () => {
    const net = overlayConflist(
      { cniVersion: '1.1.0', name: 'ovl', type: 'overlay', network: '10.244.0.0/16', store: { type: 'file', path: '/x' } },
      '/etc/cni-ts/agent.json',
    );
    expect(net).toMatchObject({ cniVersion: '1.1.0', name: 'ovl' });
    const plugins = net.plugins as Array<Record<string, unknown>>;
    expect(plugins[0]).toEqual({
      type: 'overlay',
      network: '10.244.0.0/16',
      store: { type: 'file', path: '/x' },
      disableContainerInterface: true,
    });
    expect(plugins[1]).toMatchObject({ type: 'endpoint', agentConfig: '/etc/cni-ts/agent.json' });
    const ep = endpointConflist(net, [{ pool: '10.244.0.0/16', gateway: '10.244.0.1/16' }], {
      addresses: ['10.244.3.7/24'],
      labels: { a: 'b' },
      ports: [],
    });
    const first = (ep.plugins as Array<Record<string, unknown>>)[0]!;
    expect(first.args).toEqual({ cni: { ips: ['10.244.3.7'] } });
    expect(first.ipam).toBeUndefined();
  });

  it('exposed ports become container ports', () => {
    expect(
      exposedPortsOf([
        { Proto: 6, Port: 80 },
        { Proto: 17, Port: 53 },
        { Proto: 6, Port: 80 },
      ]),
    ).toEqual([
      { containerPort: 80, protocol: 'TCP' },
      { containerPort: 53, protocol: 'UDP' },
    ]);
  });

  it('the interface name Docker moves is at most 15 characters', () => {
    expect(srcNameOf(NET, 'cnm')).toBe('cnma1b2c3d4e5f6');
    expect(srcNameOf(NET, 'cnm')).toHaveLength(15);
  });

  it("Join's static routes: the CNI result's routes without the default one", () => {
    expect(
      staticRoutesOf([{ dst: '0.0.0.0/0', gw: '10.9.0.1' }, { dst: '10.10.0.0/16', gw: '10.9.0.254' }, { dst: '10.11.0.0/16' }]),
    ).toEqual([
      { Destination: '10.10.0.0/16', RouteType: 0, NextHop: '10.9.0.254' },
      { Destination: '10.11.0.0/16', RouteType: 1 },
    ]);
    // a route without gw goes through the interface's gateway (the CNI spec's reading), not on-link
    expect(staticRoutesOf([{ dst: '10.244.0.0/16' }, { dst: 'fd00:1::/48' }], { 4: '10.244.3.1', 6: 'fd00:9::1' })).toEqual([
      { Destination: '10.244.0.0/16', RouteType: 0, NextHop: '10.244.3.1' },
      { Destination: 'fd00:1::/48', RouteType: 0, NextHop: 'fd00:9::1' },
    ]);
  });
});

describe('container lookup', () => {
  const list: ContainerSummary[] = [
    { Id: 'c'.repeat(64), Names: ['/other'], NetworkSettings: { Networks: { n: { EndpointID: 'x', NetworkID: NET } } } },
    {
      Id: 'abcdef0123456789'.repeat(4),
      Names: ['/web_1'],
      Labels: { app: 'web', 'com.example/bad key': 'v' },
      NetworkSettings: { Networks: { mynet: { EndpointID: 'ep1', NetworkID: NET, Aliases: ['web-alias'] } } },
    },
  ];
  it('finds the container holding the endpoint', () => {
    expect(findContainer(list, NET, 'ep1')).toEqual({
      id: list[1]!.Id,
      name: 'web_1',
      labels: list[1]!.Labels!,
      aliases: ['web-alias'],
      network: 'mynet',
    });
    expect(findContainer(list, NET, 'nope')).toBeUndefined();
  });

  it('writes labels (valid ones), names and aliases onto the Endpoint', () => {
    const e: Endpoint = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'docker-ep1', namespace: 'default', labels: { tier: 'db' } },
      spec: { node: 'n', network: 'docker-x', containerId: 'ep1', ifname: 'cnmep1', ips: ['10.9.0.7/24'] },
    };
    const { endpoint, skipped } = withContainer(e, findContainer(list, NET, 'ep1')!);
    expect(endpoint.metadata.labels).toEqual({ tier: 'db', app: 'web' });
    expect(skipped).toEqual(['com.example/bad key']);
    expect(endpoint.spec.aliases).toEqual(['web_1', 'web-alias', 'abcdef012345']);
    expect(endpoint.metadata.annotations).toEqual({ 'cni-ts.dev/docker-container': 'web_1', 'cni-ts.dev/docker-network': 'mynet' });
  });
});

describe('the agent config docker section', () => {
  const cfg = (docker: unknown) => parseAgentConfig({ store: { type: 'file', path: '/tmp/x' }, docker }, '/etc/cni-ts/agent.json');
  it('defaults', () => {
    expect(dockerSettings(cfg({}), '/opt/bin')).toMatchObject({
      name: 'cni-ts',
      socket: '/run/docker/plugins/cni-ts.sock',
      dockerHost: 'unix:///run/docker.sock',
      cniPath: ['/opt/bin', '/opt/cni/bin'],
      ifPrefix: 'cnm',
      inProcess: true,
      hostPorts: [49153, 60999],
      holdUntilLabelled: true,
      holdSeconds: 30,
    });
    expect(dockerSettings(cfg({ hostPorts: '24150-24159', holdUntilLabelled: false, holdSeconds: 5 }), '/x')).toMatchObject({
      hostPorts: [24150, 24159],
      holdUntilLabelled: false,
      holdSeconds: 5,
    });
    expect(() => dockerSettings(cfg({ hostPorts: '9-8' }), '/x')).toThrow(/docker.hostPorts.*port range/);
    expect(() => dockerSettings(cfg({ holdUntilLabelled: 'yes' }), '/x')).toThrow(/docker.holdUntilLabelled/);
    expect(() => dockerSettings(cfg({ holdSeconds: 0 }), '/x')).toThrow(/docker.holdSeconds/);
    expect(dockerSettings(cfg({ name: 'net1', dockerHost: false }), '/x')).toMatchObject({
      socket: '/run/docker/plugins/net1.sock',
      dockerHost: '',
    });
  });
  it('bad values name the key', () => {
    expect(() => dockerSettings(cfg({ socket: 'rel.sock' }), '/x')).toThrow(/docker.socket: must be an absolute path/);
    expect(() => dockerSettings(cfg({ ifPrefix: 'a-much-too-long-prefix' }), '/x')).toThrow(/docker.ifPrefix/);
    expect(() => dockerSettings(cfg({ defaultPools: ['nope'] }), '/x')).toThrow(/docker.defaultPools/);
  });
});
