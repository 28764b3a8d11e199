#!/bin/bash
# CPU (perf stat task-clock) of the firewall-bearing plugin verbs, one at a time (issue 12,
# docs/benchmarks.md "nftables in plugin calls"): bridge + host-local + ipMasq ADD and DEL,
# portmap ADD and DEL, each `perf stat -r N` with the set-up and the undo in --pre/--post.
# Everything happens inside a netns hnfb-<pid> (its bridge, its nft tables), removed at the end.
#   bash bench/nft-plugins.sh [BIN_DIR...]   (default dist/bin; as root; N=${BENCH_ITER:-20})
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_ITER:-20}
H=hnfb-$$
W=$(mktemp -d /tmp/hnfb-XXXXXX)
trap 'ip netns del $H 2>/dev/null || true; ip netns del $H-c 2>/dev/null || true; rm -rf "$W"' EXIT
ip netns add $H
ip -n $H link set lo up
cat > "$W/bridge.json" <<J
{"cniVersion":"1.0.0","name":"hnfb","type":"bridge","bridge":"hnfbr0","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","subnet":"10.231.0.0/24","dataDir":"$W/ipam"}}
J
cat > "$W/portmap.json" <<J
{"cniVersion":"1.0.0","name":"hnfb","type":"portmap","capabilities":{"portMappings":true},
 "runtimeConfig":{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]},
 "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"hnfbr0"},{"name":"veth0"},{"name":"eth0","sandbox":"/run/netns/$H-c"}],
   "ips":[{"address":"10.231.0.5/24","gateway":"10.231.0.1","interface":2}]}}
J
for BIN in "${@:-dist/bin}"; do
  BIN=$(readlink -f "$BIN")
  env="CNI_CONTAINERID=hnfb1 CNI_NETNS=/run/netns/$H-c CNI_IFNAME=eth0 CNI_PATH=$BIN"
  run() { echo "env $env CNI_COMMAND=$1 ${CNI_TS_ENV:-} sh -c 'exec $BIN/$2 < $W/$2.json > /dev/null'"; }
  inh() { ip netns exec $H perf stat -r "$N" -x, -e task-clock "$@" 2>&1 >/dev/null | grep task-clock | cut -d, -f1,4; }
  # the bridge exists before the first measured ADD (the first ADD of a node creates it)
  ip netns add $H-c; ip netns exec $H sh -c "$(run ADD bridge)"; ip netns exec $H sh -c "$(run DEL bridge)"; ip netns del $H-c
  echo "$BIN bridge+ipMasq ADD: $(inh --pre "ip netns add $H-c" --post "sh -c \"$(run DEL bridge)\"; ip netns del $H-c" sh -c "$(run ADD bridge)")"
  echo "$BIN bridge+ipMasq DEL: $(inh --pre "sh -c 'ip netns add $H-c; $(run ADD bridge)'" --post "ip netns del $H-c" sh -c "$(run DEL bridge)")"
  echo "$BIN portmap ADD: $(inh --post "sh -c \"$(run DEL portmap)\"" sh -c "$(run ADD portmap)")"
  echo "$BIN portmap DEL: $(inh --pre "sh -c \"$(run ADD portmap)\"" sh -c "$(run DEL portmap)")"
done
echo "(task-clock ms of the plugin and its children, mean of $N, and the spread; includes one sh -c exec, ~0.5 ms)"
