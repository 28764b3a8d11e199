#!/usr/bin/env bash
# Newcomer demo: build, then attach two throwaway network namespaces to a bridge network with
# our bridge + host-local + portmap + loopback via cnitool, show their addresses, ping between
# them, and tear everything down again. Everything it makes is named cnits-demo*; the plugins
# run inside a throwaway "host" namespace (cnits-demo-host), so the real host is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/dist/bin"
work=$(mktemp -d /tmp/cnits-demo.XXXXXX)
export NETCONFPATH="$work/net.d" CNI_PATH="$BIN" CNI_CACHE_DIR="$work/cache"
mkdir -p "$NETCONFPATH"
cat > "$NETCONFPATH/10-demo.conflist" <<JSON
{
  "cniVersion": "1.1.0",
  "name": "cnits-demo",
  "plugins": [
    { "type": "bridge", "bridge": "cnits-demo0", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "dataDir": "$work/ipam",
                "ranges": [[{ "subnet": "10.123.45.0/24" }]], "routes": [{ "dst": "10.123.0.0/16" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
JSON
host() { ip netns exec cnits-demo-host "$@"; }
cleanup() {
  for ns in cnits-demo-a cnits-demo-b; do
    host "$BIN/cnitool" del cnits-demo "/var/run/netns/$ns" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip netns del cnits-demo-host 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add cnits-demo-host
host ip link set lo up
for ns in cnits-demo-a cnits-demo-b; do
  ip netns add "$ns"
  echo "== cnitool add cnits-demo /var/run/netns/$ns"
  host "$BIN/cnitool" add cnits-demo "/var/run/netns/$ns"
done
addr_b=$(ip -n cnits-demo-b -4 -json addr show dev eth0 | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].addr_info[0].local))')
echo "== ping from cnits-demo-a to cnits-demo-b ($addr_b)"
ip netns exec cnits-demo-a ping -c 3 -W 1 "$addr_b"
echo "== cnitool check"
host "$BIN/cnitool" check cnits-demo /var/run/netns/cnits-demo-a && echo "CHECK ok"
echo "== cleaning up"
