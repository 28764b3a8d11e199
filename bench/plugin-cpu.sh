#!/bin/bash
# CPU (perf stat task-clock) and page faults of one plugin process, per verb, for one or more
# builds interleaved block by block (issue 12 session 5, docs/benchmarks.md "Session 5: CPU and
# page faults per plugin call"): VERSION, host-local ADD alone, bridge + host-local ADD and DEL,
# bridge + host-local + ipMasq ADD and DEL. Each figure is `perf stat -r R` of
# `sh -c 'exec BIN/plugin <conf'` (the sh exec is in every figure alike: ~0.4 ms, ~60 faults),
# with the set-up and the undo in --pre/--post, repeated in BLOCKS alternating between the builds.
# Everything runs inside a netns pgb<pid>-h (its bridge, its nft tables); the IPAM dataDirs are
# under /run/cni-pg-b<pid>; both are removed at the end.
#   bash bench/plugin-cpu.sh [BIN_DIR...]   (as root; default dist/bin; BLOCKS=${BLOCKS:-3} R=${R:-10};
#                                            ONLY=version,hl,bridge,masq to pick rows)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-10}
BLOCKS=${BLOCKS:-3}
ONLY=${ONLY:-version,hl,bridge,masq}
H=pgb$$-h
C=pgb$$-c
W=/run/cni-pg-b$$
trap 'ip netns del $H 2>/dev/null || true; ip netns del $C 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W"
ip netns add $H
ip -n $H link set lo up
conf() { # name masq
  cat > "$W/$1.json" <<J
{"cniVersion":"1.0.0","name":"pgb-$1","type":"bridge","bridge":"pgbr-$1","isGateway":true,"ipMasq":$2,
 "ipam":{"type":"host-local","subnet":"10.231.$3.0/24","dataDir":"$W/ipam-$1"}}
J
}
conf bridge false 1
conf masq true 2
cat > "$W/hl.json" <<J
{"cniVersion":"1.0.0","name":"pgb-hl","ipam":{"type":"host-local","subnet":"10.231.3.0/24","dataDir":"$W/ipam-hl"}}
J
BINS=()
for b in "${@:-dist/bin}"; do BINS+=("$(readlink -f "$b")"); done
# cmd BIN VERB PLUGIN CONF: the shell line of one call
cmd() { echo "env CNI_CONTAINERID=pgb1 CNI_NETNS=/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=$1 CNI_COMMAND=$2 ${CNI_TS_ENV:-} sh -c 'exec $1/$3 < $W/$4.json > /dev/null'"; }
# stat ARGS...: "task-clock-ms page-faults" (means of R runs)
stat() {
  ip netns exec $H perf stat -r "$R" -x, -e task-clock,page-faults "$@" 2>&1 >/dev/null |
    awk -F, '$3 ~ /^task-clock/ {t=$1} $3 ~ /^page-faults/ {f=$1} END {printf "%.2f %.0f\n", t, f}'
}
measure() { # row BIN
  local B=$1 row=$2
  case $row in
    version) stat sh -c "$(cmd "$B" VERSION host-local hl)" ;;
    hl-add) stat --post "sh -c \"$(cmd "$B" DEL host-local hl)\"" sh -c "$(cmd "$B" ADD host-local hl)" ;;
    bridge-add | masq-add)
      local c=${row%-add}
      stat --pre "ip netns add $C" --post "sh -c \"$(cmd "$B" DEL bridge "$c")\"; ip netns del $C" sh -c "$(cmd "$B" ADD bridge "$c")"
      ;;
    bridge-del | masq-del)
      local c=${row%-del}
      stat --pre "sh -c 'ip netns add $C; $(cmd "$B" ADD bridge "$c")'" --post "ip netns del $C" sh -c "$(cmd "$B" DEL bridge "$c")"
      ;;
  esac
}
ROWS=()
[[ ,$ONLY, == *,version,* ]] && ROWS+=(version)
[[ ,$ONLY, == *,hl,* ]] && ROWS+=(hl-add)
[[ ,$ONLY, == *,bridge,* ]] && ROWS+=(bridge-add bridge-del)
[[ ,$ONLY, == *,masq,* ]] && ROWS+=(masq-add masq-del)
# the bridges and firewall chains exist before the first measured call (a node's first ADD makes them)
for B in "${BINS[@]}"; do
  for c in bridge masq; do
    ip netns add $C
    ip netns exec $H sh -c "$(cmd "$B" ADD bridge $c)"
    ip netns exec $H sh -c "$(cmd "$B" DEL bridge $c)"
    ip netns del $C
  done
done
declare -A T F
for row in "${ROWS[@]}"; do
  for ((k = 0; k < BLOCKS; k++)); do
    for i in "${!BINS[@]}"; do
      read -r t f < <(measure "${BINS[$i]}" "$row")
      T[$row,$i]="${T[$row,$i]:-} $t"
      F[$row,$i]="${F[$row,$i]:-} $f"
    done
  done
done
printf '%-12s' row
for B in "${BINS[@]}"; do printf ' | %-40s' "$B (ms CPU, faults)"; done
echo
for row in "${ROWS[@]}"; do
  printf '%-12s' "$row"
  for i in "${!BINS[@]}"; do
    printf ' | %-40s' "$(echo "${T[$row,$i]}" "/" "${F[$row,$i]}" | awk '{n=0; for (j=1;j<=NF;j++) { if ($j=="/") {m=j; break} st+=$j; n++ } for (j=m+1;j<=NF;j++) sf+=$j; printf "%.2f ms %.0f faults (blocks:", st/n, sf/n; for (j=1;j<m;j++) printf " %s", $j; printf ")"}')"
  done
  echo
done
echo "(perf stat -r $R × $BLOCKS blocks, builds alternating per block; task-clock of the plugin process and its children, incl. one sh exec)"
