# keyward — see README.md. `make run` starts a dev server; `make test` runs every test.
GO      ?= go
BIN     := bin/keyward
PKGS    := ./...

.PHONY: all build run test test-deps vet fmt-check bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/keyward

# Starts a single dev-mode node with embedded defaults (local KEK, temp data dir, plain HTTP on
# 127.0.0.1:8200) and prints what to type next. Ctrl-C stops it.
run: build
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

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
