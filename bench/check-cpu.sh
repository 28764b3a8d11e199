#!/usr/bin/env bash
# CPU time and processes of each chained plugin's CHECK (and tuning's ADD) (issue 12, "the last processes"):
# bridge (macspoofchk) + tuning (alias) + portmap + bandwidth (IPv4 and IPv6 subnets) ADDed by
# cnitool in a netns of its own, then each plugin's CHECK alone, `perf stat -r N -e task-clock`
# and `strace -f -c -e trace=execve`, for every directory of executables given (default: dist/bin;
# e.g. a copy of an earlier build first: `bench/check-cpu.sh /tmp/x-before dist/bin`). As root.
# Prints one line per plugin and build: CPU ms (mean ± perf's spread) and execve count.
# Env: BENCH_ITER (default 20), BENCH_ENV (extra env for the plugins, e.g. CNI_TS_NETLINK=0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ $# -gt 0 ] || set -- dist/bin
ITER=${BENCH_ITER:-20}
ID=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
H=nr-bh-$ID C=nr-bc-$ID DIR=/run/cni-nr-bench-$ID
cleanup() {
  ip netns exec "$H" true 2>/dev/null && CNI_PATH=$ROOT/dist/bin NETCONFPATH=$DIR/net.d CNI_CACHE_DIR=$DIR/cache CAP_ARGS="$CAP" \
    ip netns exec "$H" "$ROOT/dist/bin/cnitool" del nrbench "/run/netns/$C" >/dev/null 2>&1 || true
  ip netns del "$H" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  rm -rf "$DIR"
}
CAP='{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}'
trap cleanup EXIT
ip netns add "$H"
ip netns add "$C"
ip -n "$H" link set lo up
mkdir -p "$DIR/net.d"
cat >"$DIR/net.d/10-nr.conflist" <<EOF
{"cniVersion":"1.0.0","name":"nrbench","plugins":[
 {"type":"bridge","bridge":"nrb$ID","isGateway":true,"macspoofchk":true,"nftTable":"nr_br",
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.214.7.0/24"}],[{"subnet":"fd00:214:7::/64"}]],"dataDir":"$DIR/ipam"}},
 {"type":"tuning","alias":"web pod","dataDir":"$DIR/tuning"},
 {"type":"portmap","capabilities":{"portMappings":true},"nftTable":"nr_pm","snat":true},
 {"type":"bandwidth","ingressRate":80000000,"ingressBurst":800000,"egressRate":40000000,"egressBurst":400000,
  "unshapedSubnets":["10.214.0.0/16","fd00:214::/32"]}]}
EOF
RES=$(CNI_PATH=$ROOT/dist/bin NETCONFPATH=$DIR/net.d CNI_CACHE_DIR=$DIR/cache CAP_ARGS="$CAP" ip netns exec "$H" "$ROOT/dist/bin/cnitool" add nrbench "/run/netns/$C" --json)
# each plugin's own config with the chain's result as prevResult (CHECK gets the final result)
for p in bridge tuning portmap bandwidth; do
  node -e '
    const [conf, res, p, cap] = [JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")), JSON.parse(process.argv[2]), process.argv[3], JSON.parse(process.argv[4])];
    const pl = conf.plugins.find((x) => x.type === p);
    const out = { cniVersion: conf.cniVersion, name: conf.name, ...pl, prevResult: res };
    if (p === "portmap") out.runtimeConfig = cap;
    delete out.capabilities;
    process.stdout.write(JSON.stringify(out));' "$DIR/net.d/10-nr.conflist" "$RES" "$p" "$CAP" >"$DIR/$p.json"
done
CONTAINER_ID=$(ls "$DIR/cache/results" | sed -n 's/^nrbench-\(.*\)-eth0$/\1/p' | head -1)
printf '%-16s %-28s %14s %10s\n' 'plugin verb' build 'CPU ms' processes
# every CHECK, and tuning's ADD (the alias is written by ADD and DEL; a repeated ADD writes the same values)
for pv in bridge:CHECK tuning:CHECK tuning:ADD portmap:CHECK bandwidth:CHECK; do
  p=${pv%%:*} verb=${pv##*:}
  for bin in "$@"; do
    # nsenter, then exec of the plugin reading its config from the file (each of perf's runs)
    run=(nsenter "--net=/run/netns/$H" -- env -i PATH="$PATH" CNI_COMMAND=$verb CNI_CONTAINERID="$CONTAINER_ID" CNI_NETNS="/run/netns/$C"
      CNI_IFNAME=eth0 CNI_PATH="$bin" ${BENCH_ENV:-} sh -c 'exec "$0" < "$1"' "$bin/$p" "$DIR/$p.json")
    "${run[@]}" >/dev/null || { echo "$verb of $p with $bin failed" >&2; "${run[@]}" >&2 || true; exit 1; }
    cpu=$(perf stat -r "$ITER" -x, -e task-clock "${run[@]}" 2>&1 >/dev/null | awk -F, '/task-clock/ {printf "%.1f ± %s", $1, $4}')
    # successful execve calls besides the 4 of the wrapper (nsenter, env, sh, the plugin): the plugin's own processes
    ex=$(strace -f -e trace=execve -o "$DIR/strace" "${run[@]}" >/dev/null 2>&1; grep -c ' = 0$' "$DIR/strace" | awk '{print $1 - 4}')
    [ -z "${BENCH_SHOW_EXEC:-}" ] || grep ' = 0$' "$DIR/strace" | sed 's/, \[.*//' >&2
    printf '%-16s %-28s %14s %10s\n' "$p $verb" "$bin" "$cpu" "$ex"
  done
done
