#!/usr/bin/env bash
# Newcomer demo: build, then attach two throwaway network namespaces to a bridge network with
# our bridge + host-local + portmap + loopback + endpoint via cnitool, show their addresses,
# ping between them; then, with the node agent running on a private file store, label the two
# pods, block and allow traffic with NetworkPolicies (cnictl apply / policy trace), reach b
# through a Service VIP and resolve the Service through the agent's DNS; tear everything down
# again. Everything it makes is named cnits-demo* (nft tables cnits_demo_*) or lives in a temp
# dir; the plugins and the agent run inside a throwaway "host" namespace (cnits-demo-host), so
# the real host is not touched. Traffic only flows between the demo's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/dist/bin"
work=$(mktemp -d /tmp/cnits-demo.XXXXXX)
export NETCONFPATH="$work/net.d" CNI_PATH="$BIN" CNI_CACHE_DIR="$work/cache"
mkdir -p "$NETCONFPATH" "$work/store"
GW=10.123.45.1 VIP=10.123.200.10
# The node agent's config (also read by the endpoint plugin and cnictl): a file store, tables,
# lock, socket and log all private to the demo. DNS is served on the bridge's gateway.
cat > "$work/agent.json" <<JSON
{
  "store": { "type": "file", "path": "$work/store" },
  "node": "cnits-demo-node",
  "socket": "$work/agent.sock",
  "policy": { "table": "cnits_demo_policy", "lockFile": "$work/policy.lock" },
  "services": { "table": "cnits_demo_services" },
  "serviceCIDR": ["10.123.200.0/24"]
}
JSON
cat > "$NETCONFPATH/10-demo.conflist" <<JSON
{
  "cniVersion": "1.1.0",
  "name": "cnits-demo",
  "plugins": [
    { "type": "bridge", "bridge": "cnits-demo0", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "dataDir": "$work/ipam",
                "ranges": [[{ "subnet": "10.123.45.0/24" }]], "routes": [{ "dst": "10.123.0.0/16" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" },
    { "type": "endpoint", "agentConfig": "$work/agent.json" }
  ]
}
JSON
host() { ip netns exec cnits-demo-host "$@"; }
cnictl() { host "$BIN/cnictl" --config "$work/agent.json" "$@"; }
pids=()
cleanup() {
  rc=$?
  if [ "$rc" != 0 ] && [ -s "$work/agent.log" ]; then echo "== the agent's log" >&2; cat "$work/agent.log" >&2; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in cnits-demo-a cnits-demo-b; do
    host "$BIN/cnitool" del cnits-demo "/var/run/netns/$ns" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
  done
  # the agent's nft tables and sysctls live in the host namespace: they go with it
  ip netns del cnits-demo-host 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add cnits-demo-host
host ip link set lo up
echo "== cni-ts agent (file store $work/store, log $work/agent.log)"
ip netns exec cnits-demo-host "$BIN/cni-ts" agent --config "$work/agent.json" --no-http --resync 2 2>>"$work/agent.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
[ -S "$work/agent.sock" ] || { echo "the agent did not start:" >&2; cat "$work/agent.log" >&2; exit 1; }
for pod in a b; do
  ns=cnits-demo-$pod
  ip netns add "$ns"
  echo "== cnitool add cnits-demo /var/run/netns/$ns --args 'K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod'"
  host "$BIN/cnitool" add cnits-demo "/var/run/netns/$ns" --args "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod"
done
addr_b=$(ip -n cnits-demo-b -4 -json addr show dev eth0 | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].addr_info[0].local))')
echo "== ping from cnits-demo-a to cnits-demo-b ($addr_b)"
ip netns exec cnits-demo-a ping -c 3 -W 1 "$addr_b"
echo "== cnitool check"
host "$BIN/cnitool" check cnits-demo /var/run/netns/cnits-demo-a && echo "CHECK ok"

echo "== cnictl label: a is app=client, b is app=web"
cnictl label endpoint demo/a app=client
cnictl label endpoint demo/b app=web
# b serves TCP port 80 (one line per connection); a connects with a 1 s timeout
ip netns exec cnits-demo-b node -e 'require("net").createServer(s=>s.end("hello from b\n")).listen(80,"0.0.0.0")' &
pids+=($!)
tcp() { # tcp ADDR: connect from a to ADDR:80, print the answer; exit 1 when it fails
  ip netns exec cnits-demo-a node -e '
    const s=require("net").connect({host:process.argv[1],port:80,timeout:1000});
    s.on("data",d=>process.stdout.write("  "+d)).on("end",()=>process.exit(0));
    s.on("timeout",()=>{console.log("  no answer (timed out)");process.exit(1)});
    s.on("error",e=>{console.log("  "+e.code);process.exit(1)});' "$1"
}
expect() { # expect ok|fail ADDR: retry for up to 10 s until the agent has programmed the change
  for _ in $(seq 10); do
    if tcp "$2" >"$work/tcp.out" 2>&1; then r=ok; else r=fail; fi
    [ "$r" = "$1" ] && { cat "$work/tcp.out"; return 0; }
    sleep 1
  done
  cat "$work/tcp.out"; echo "expected $1" >&2; return 1
}
echo "== TCP a -> b:80 (no policy)"
expect ok "$addr_b"
echo "== cnictl apply: default-deny ingress in namespace demo"
cnictl apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: demo}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
echo "== TCP a -> b:80 (now blocked)"
expect fail "$addr_b"
echo "== cnictl apply: allow app=client -> app=web on TCP 80"
cnictl apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: demo}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80, protocol: TCP}]
YAML
echo "== TCP a -> b:80 (allowed again)"
expect ok "$addr_b"
echo "== cnictl policy trace --from demo/a --to demo/b --port 80/tcp"
cnictl policy trace --from demo/a --to demo/b --port 80/tcp
echo "== cnictl apply: Service demo/web ($VIP:80 -> app=web:80)"
cnictl apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  clusterIP: $VIP
  ports: [{name: http, port: 80, targetPort: 80}]
YAML
echo "== TCP a -> $VIP:80 (the Service VIP, DNAT to b)"
expect ok "$VIP"
echo "== cnictl get endpoints,services -n demo"
cnictl get endpoints -n demo -o wide
cnictl get services -n demo
echo "== cnictl dns lookup web.demo.svc.cluster.local"
cnictl dns lookup web.demo.svc.cluster.local
echo "== DNS query from cnits-demo-a to the agent on the gateway ($GW:53)"
for _ in $(seq 10); do
  ip netns exec cnits-demo-a node -e '
    const r=new (require("dns").promises.Resolver)({timeout:1000,tries:1}); r.setServers([process.argv[1]]);
    r.resolve4("web.demo.svc.cluster.local").then(a=>console.log("  web.demo.svc.cluster.local ->",a.join(" ")),e=>{console.log("  "+e.code);process.exit(1)});' "$GW" && break
  sleep 1
done
echo "== what the agent did (its log)"
sed 's/^[^ ]* //' "$work/agent.log"
echo "== cleaning up"
