# keyward — see README.md. `make run` starts a dev server; `make test` runs every test.
GO      ?= go
BIN     := bin/keyward
PKGS    := ./...

.PHONY: all build run run-dev stop test test-deps vet fmt-check bench clean jepsen

all: build

build:
	$(GO) build -o $(BIN) ./cmd/keyward

# Starts a local three-node cluster (three processes on loopback, TLS on, one shared KEK file)
# and prints the addresses, the CA file and example commands. `make stop` ends it.
run: build
	scripts/cluster.sh start

stop:
	scripts/cluster.sh stop

# A single dev-mode node with embedded defaults (plain HTTP on 127.0.0.1:8200); Ctrl-C stops it.
run-dev: build
	scripts/run-dev.sh

# Installs what the tests need, then runs gofmt, go vet and every test with the race detector.
test: test-deps fmt-check vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-deps:
	scripts/test-deps.sh

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The chaos suite (jepsen/, README "Chaos suite"): a long run against a fresh build, in
# network namespaces when root (loopback proxies otherwise). Exits non-zero on any violation.
#   make jepsen DURATION=30m NODES=5 WORKLOADS=register,versions NEMESES=kill,partition-leader
DURATION  ?= 30m
NODES     ?= 3
WORKLOADS ?= all
NEMESES   ?= all
JEPSEN_FLAGS ?=
jepsen: test-deps
	$(GO) run ./jepsen/cmd/jepsen -duration $(DURATION) -nodes $(NODES) -workloads $(WORKLOADS) \
		-nemeses $(NEMESES) $(JEPSEN_FLAGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	scripts/cluster.sh clean
	rm -rf bin
