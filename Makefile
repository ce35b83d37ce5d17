# Bulwark: `make help` lists the targets. `make demo` and `make test` run as root.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
MULTIARCH := $(shell gcc -dumpmachine 2>/dev/null || echo $$(uname -m)-linux-gnu)
export BPF_EXTRA_CFLAGS := -I/usr/include/$(MULTIARCH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bulwark-filter/bulwark/agent.Version=$(VERSION)
GOBUILD = CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)'
# Package version: VERSION without a leading "v"; one that does not start with a digit (a bare commit) becomes
# 0.0.0+gitHASH; "-" becomes "." (both dpkg and rpm accept the result).
PKG_VERSION ?= $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/^[^0-9]/0.0.0+git&/' -e 'y/-/./')
PKG_ARCH ?= $(shell $(GO) env GOARCH)
PKG_DIR ?= dist
TEST_TIMEOUT ?= 30m
NFT_SIZES ?= 10000,100000,1000000
# make bench's repetitions: datapath rounds, and runs of each Go benchmark (-benchtime 1x -count).
BENCH_COUNT ?= 5
BENCH_START := $(shell date +%s)
# make bench's fleet runs: real agents for the propagation (test/fleet), lightweight clients for the fan-out
# simulation, verdicts per second and seconds (both), and verdicts to cold-sync.
FLEET_AGENTS ?= 10
FLEET_CLIENTS ?= 200
FLEET_RATE ?= 1000
FLEET_SECONDS ?= 30
FLEET_COLDSYNC ?= 1000000

.PHONY: help deps generate build package test bench resilience lint demo demo-fleet clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install what is missing with apt-get (clang, llvm, iproute2, procps, ethtool, nftables...: see scripts/deps.sh)
	@scripts/deps.sh

generate: deps ## rebuild the BPF objects and Go bindings (bpf2go)
	$(GO) generate ./bpf/

build: ## build bin/bulwark (needs no clang: the BPF objects are committed)
	$(GOBUILD) -o bin/bulwark ./cmd/bulwark

package: ## build $(PKG_DIR)/*.deb and *.rpm (nfpm, staged in dist/build): the binary, the unit, a monitor-mode config, completions, man page
	@mkdir -p dist/build $(PKG_DIR)
	$(GOBUILD) -o dist/build/bulwark ./cmd/bulwark
	for sh in bash zsh fish; do dist/build/bulwark completion $$sh >dist/build/completion.$$sh || exit 1; done
	dist/build/bulwark man | gzip -9n >dist/build/bulwark.1.gz
	sed -e '1s|.*|# Bulwark agent, installed by the bulwark package; config in /etc/bulwark/bulwark.hcl.|' \
		-e 's|/usr/local/bin/bulwark|/usr/bin/bulwark|g' configs/systemd/bulwark.service >dist/build/bulwark.service
	for p in deb rpm; do \
		PKG_VERSION='$(PKG_VERSION)' PKG_ARCH='$(PKG_ARCH)' \
			$(GO) tool nfpm package --config configs/packaging/nfpm.yaml --packager $$p --target $(PKG_DIR)/ || exit 1; \
	done

test: deps ## run every test, as root; a skip that test/skipcheck does not allow fails
	set -o pipefail; $(GO) test -count=1 -json -timeout $(TEST_TIMEOUT) ./... 2>&1 | $(GO) run ./test/skipcheck

bench: deps ## benchmarks (as root): datapath vs XDP_DROP floor, scorer, replay, verifier, agent RSS, scrape vs block add, 1M-line list load vs nft -f, fleet propagation to 10 agents, fan-out simulation and cold sync (lightweight client and a real agent), CrowdSec 100k startup apply and decisions vs crowdsec-firewall-bouncer, attack signatures (replayed floods, live SYN flood as fast as it goes and paced), nftables; bench/results.json, docs/benchmarks.md, README's figures table
	@mkdir -p bench docs
	$(GO) run ./test/bench/cmd -rounds $(BENCH_COUNT) -json bench/results-datapath.json
	$(GO) test -count=$(BENCH_COUNT) -run '^$$' -bench 'ScoreCycle|Replay|Reconcile1M|FeedParse|MapMemory|Verifier' -benchtime 1x -timeout 30m ./test/bench/ | tee bench/gobench.txt
	$(GO) test -count=$(BENCH_COUNT) -run '^$$' -bench 'CrowdSecApply100k' -benchtime 1x -timeout 10m ./agent/ | tee -a bench/gobench.txt
	$(GO) test -count=1 -run 'TestRuntimeBlockLatency' -v ./test/agent/ | grep 'run-time block' | tee bench/block-latency.txt
	BULWARK_AGENT_RSS_OUT=$(CURDIR)/bench/agent-rss.json $(GO) test -count=1 -run '^TestAgentRSS1M$$' -v -timeout 10m ./test/bench/
	BULWARK_SCRAPE_OUT=$(CURDIR)/bench/scrape.json $(GO) test -count=1 -run '^TestScrape1M$$' -v -timeout 10m ./test/bench/
	BULWARK_LISTLOAD_OUT=$(CURDIR)/bench/list-load.json $(GO) test -count=1 -run '^TestListLoad1M$$' -v -timeout 60m ./test/bench/
	BULWARK_FLEET_AGENTS_OUT=$(CURDIR)/bench/fleet-agents.json $(GO) test -count=1 -run '^TestFleetPropagationBench$$' -v -timeout 30m ./test/fleet/ \
		-args -fleet.agents=$(FLEET_AGENTS) -fleet.rate=$(FLEET_RATE) -fleet.seconds=$(FLEET_SECONDS)
	BULWARK_FLEET_COLD_AGENT_OUT=$(CURDIR)/bench/fleet-cold-agent.json $(GO) test -count=1 -run '^TestFleetColdSyncAgentBench$$' -v -timeout 40m ./test/fleet/ \
		-args -fleet.coldsync=$(FLEET_COLDSYNC)
	BULWARK_FLEET_OUT=$(CURDIR)/bench/fleet.json $(GO) test -count=1 -run '^TestFleetBench$$' -v -timeout 30m ./test/bench/ \
		-args -fleet.clients=$(FLEET_CLIENTS) -fleet.rate=$(FLEET_RATE) -fleet.seconds=$(FLEET_SECONDS) -fleet.coldsync=$(FLEET_COLDSYNC)
	BULWARK_CROWDSEC_OUT=$(CURDIR)/bench/crowdsec.json $(GO) test -count=1 -run '^TestCrowdSecBench$$' -v -timeout 120m ./test/bench/
	@# A missed signature target fails its test but not the bench: the report shows it.
	-BULWARK_SIGREPLAY_OUT=$(CURDIR)/bench/sig-replay.json $(GO) test -count=1 -run '^TestSignatureFloods$$' ./test/replay/
	-BULWARK_SIGLIVE_OUT=$(CURDIR)/bench/sig-live.json BULWARK_SIGLIVE_PACED_OUT=$(CURDIR)/bench/sig-live-paced.json \
		$(GO) test -count=1 -run '^TestLiveSYNFlood(Paced)?$$' -timeout 10m ./test/sigflood/
	$(GO) run ./test/bench/nft/cmd -sizes $(NFT_SIZES) -json bench/results-nft.json
	$(GO) run ./test/bench/report -started $(BENCH_START)
	@echo "wrote bench/results.json, docs/benchmarks.md and README.md's figures table"

resilience: deps build ## the resilience suite and the fleet scenarios at full size, and bounded fuzzing, within 35 minutes (as root)
	@scripts/resilience.sh

lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

demo: deps build ## the main job on a built-in netns testbed (as root)
	@scripts/demo.sh

# The demo is test/fleet's TestDemoFleet: the testbed's cleanups remove every namespace, process and pin it made.
demo-fleet: deps ## fleet demo: 3 NATS servers, 3 agents; a source blocked on one host stops on all three, with the measured delay (as root)
	@[ "$$(id -u)" -eq 0 ] || { echo "demo-fleet: run as root (sudo make demo-fleet)" >&2; exit 1; }
	$(GO) test -count=1 -run '^TestDemoFleet$$' -v ./test/fleet/

clean: ## remove build output
	rm -rf bin dist
