#!/usr/bin/env bash
# setup-deps.sh build|demo|test — install the Debian packages a README command needs, when
# they are missing. Called by `make` (build), `make demo` (demo), `make test` (test) and by
# .ci/run (test), so what the README promises and what CI installs are one list.
#
#   build: what `make` needs to build dist/bin (npm to fetch the pinned toolchain; strip)
#   demo:  build + what the plugins exec at run time, and what scripts/demo.sh runs
#   test:  demo + what the test suite drives: runtimes (podman, containerd), the Go reference
#          plugins (interop), etcd (overlay store), traffic tools
#
# Nothing to do when every package is installed (a dpkg query, ~20 ms). Otherwise it says what
# it installs and why, then runs apt-get as root; where it cannot (not root, no apt), it stops
# with the package names to install by hand. SETUP_DEPS=0 skips the step (you manage packages).
set -euo pipefail
what=${1:-build}

# package|why — Debian 12 (bookworm) names
BUILD=(
  "npm|npm fetches the pinned toolchain (Node 24, Bun, esbuild, tsc) into node_modules"
  "binutils|strip removes the runtime's debug symbols from the shipped executable"
  "ca-certificates|npm reaches the registry over TLS"
)
DEMO=(
  "iproute2|the plugins and the demo run ip and bridge"
  "nftables|bridge (ipMasq) and portmap program nft"
  "iptables|the iptables masquerade backend and portmap's iptables mode"
  "util-linux|nsenter (work inside a netns), flock (the store lock), unshare"
  "procps|sysctl (forwarding, DAD, route_localnet)"
  "conntrack|portmap clears stale UDP conntrack entries"
  "iputils-ping|the demo pings between its namespaces"
)
TEST=(
  "mount|mount/umount: tests mount a read-only tmpfs store (not Essential in a minimal Debian)"
  "kmod|lsmod/modprobe, to see which kernel features a skipped test lacks"
  "iperf3|traffic tests through the bridge and the overlay"
  "dnsmasq-base|a DHCP/DNS server for debugging namespaces (kept from CI's list)"
  "busybox-static|the container image podman and containerd run"
  "tcpdump|to watch what reaches an interface when a traffic test fails"
  "containernetworking-plugins|the Go reference plugins: interop and side-by-side tests"
  "etcd-server|the overlay's etcd store"
  "etcd-client|etcdctl, to look into the overlay store"
  "podman|runtime tests: podman (CNI backend) drives the plugins"
  "runc|the OCI runtime podman and containerd start containers with"
  "containerd|runtime tests: containerd (CRI) drives the plugins"
  "jq|the cnitool tests' recorder plugin (a shell script) echoes its result with jq"
  "strace|the static IPAM test proves it writes no file (every verb under strace)"
  "bind9-dnsutils|dig: the DNS tests query the agent's server from pod namespaces"
  "dnsperf|make bench: DNS throughput of the agent against dnsmasq"
  "make|README's commands"
  "docker.io|test/docker.test.ts: a private dockerd (20.10) drives the agent's CNM plugin (docs/docker.md); Debian 12's docker.io depends on the same containerd and runc packages as above"
)

case "$what" in
  build) list=("${BUILD[@]}") ;;
  demo) list=("${BUILD[@]}" "${DEMO[@]}") ;;
  test) list=("${BUILD[@]}" "${DEMO[@]}" "${TEST[@]}") ;;
  list-*) # print one list's package names (for docs and CI)
    sel=${what#list-}; [ "$sel" = test ] && list=("${BUILD[@]}" "${DEMO[@]}" "${TEST[@]}") || { [ "$sel" = demo ] && list=("${BUILD[@]}" "${DEMO[@]}") || list=("${BUILD[@]}"); }
    for e in "${list[@]}"; do printf '%s ' "${e%%|*}"; done; echo; exit 0 ;;
  *) echo "usage: $0 build|demo|test" >&2; exit 2 ;;
esac

[ "${SETUP_DEPS:-1}" = 0 ] && exit 0

names=()
for e in "${list[@]}"; do names+=("${e%%|*}"); done

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  installed=" $(dpkg-query -W -f='${Package}=${db:Status-Status} ' "${names[@]}" 2>/dev/null || true)"
  for p in "${names[@]}"; do
    # npm may come from elsewhere than Debian (nodesource, nvm): having the command is enough
    [ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
    [[ "$installed" == *" $p=installed "* ]] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && exit 0
fi

echo "setup-deps ($what): these Debian packages are missing:" >&2
for e in "${list[@]}"; do
  p=${e%%|*}
  if [ ${#missing[@]} -eq 0 ] || printf '%s\n' "${missing[@]}" | grep -qx -- "$p"; then
    printf '  %-28s %s\n' "$p" "${e#*|}" >&2
  fi
done

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup-deps: this is not a Debian-like system (no apt-get/dpkg): install the equivalents of" >&2
  echo "  ${names[*]}" >&2
  echo "by hand, then run again with SETUP_DEPS=0." >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-deps: installing them needs root. Run as root, or install them yourself:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "setup-deps: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || { echo "setup-deps: apt-get update failed" >&2; exit 1; }
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "setup-deps: apt-get install failed; install by hand: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "setup-deps: installed ${missing[*]}" >&2
