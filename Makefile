# Sluice — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build test e2e bench demo fuzz lint clean update-golden install-cni

all: build

# The lab wires pods with sluice-cni and the standard static and
# host-local IPAM plugins.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/ github.com/containernetworking/plugins/plugins/ipam/static github.com/containernetworking/plugins/plugins/ipam/host-local

# The tests: formatting, vet, and every package's tests (the fuzz seed
# corpora run as plain tests).
test: lint
	$(GO) test -count=1 -timeout 14m ./...

# The end-to-end tests alone: the lab (also part of make test as root).
e2e: build
	$(GO) test -count=1 -timeout 10m ./loader/lab/

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Regenerate the golden files of the examples after a deliberate change.
update-golden:
	$(GO) test ./cmd/sluice/ -run Golden -update

# Compile a synthetic cluster at 1/4, 1/2 and full size (50,000 pods) and
# report time, memory and entries, with growth ratios; then the datapath's
# per-packet costs and the CNI plugin's ADD/DEL latency.
bench: build
	$(GO) run ./cmd/sluice-bench -sluice $(BIN)/sluice
	@echo
	@echo "sluice-cni: ADD and DEL over 200 pods through libcni, against the reference ptp plugin (needs root)"
	$(GO) test -run '^$$' -bench BenchmarkAddDel -benchtime=1x ./loader/cni/

# The decoder for a minute; then the adversarial generator: FUZZ_CLUSTERS
# clusters from a new seed each run (printed, and FUZZ_SEED=N repeats
# one), every verdict compared with the spec oracle, the evaluator and
# the kernel; then its seed fuzzed for a minute.
FUZZ_CLUSTERS ?= 1000
FUZZ_SEED ?= $(shell date +%s)
fuzz:
	$(GO) test ./schema/ -run '^$$' -fuzz FuzzDecode -fuzztime 60s
	$(GO) test -count=1 -timeout 60m ./internal/adversary/ -run '^TestAdversary$$' -v -args -clusters=$(FUZZ_CLUSTERS) -seed=$(FUZZ_SEED)
	$(GO) test ./internal/adversary/ -run '^$$' -fuzz FuzzAdversary -fuzztime 60s

# The main job on the bundled example: compile it, bring it up as a lab of
# network namespaces (when the machine allows it: root, iproute2, BPF),
# show what the kernel lets through and why, and tear the lab down.
demo: build
	./examples/demo.sh

# Place sluice-cni in /opt/cni/bin and a network configuration list in
# /etc/cni/net.d (CNI_BIN_DIR, CNI_CONF_DIR and CNI_CONFLIST override them).
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
CNI_CONFLIST ?= examples/cni/10-sluice.conflist
install-cni: build
	$(BIN)/sluice-cni install --bin-dir $(CNI_BIN_DIR) --conf-dir $(CNI_CONF_DIR) --conflist $(CNI_CONFLIST)

clean:
	rm -rf $(BIN) out
