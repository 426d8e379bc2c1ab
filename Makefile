# Confidant — build, test and demo entry points.
# `make test` is what CI runs (.ci/run); `make demo` runs the main job.

GO       ?= go
BIN      ?= bin
GOFLAGS  ?=
STATICCHECK_VERSION ?= v0.8.2

# Every command directory that exists: <component>/cmd/<program>.
CMDS := $(wildcard agent/cmd/* verifier/cmd/* hostd/cmd/* images/cmd/*)

.PHONY: all deps build test unit lint demo bench fuzz-smoke mutation-check clean

all: build

deps:
	./scripts/install-deps.sh

# confidant-agent runs as /init in the initramfs: static, no cgo.
build:
	@mkdir -p $(BIN)
	@for d in $(CMDS); do \
		name=$$(basename $$d); \
		if [ "$$name" = confidant-agent ]; then \
			echo "build $$name (static)"; CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/$$name ./$$d || exit 1; \
		else \
			echo "build $$name"; $(GO) build -trimpath -o $(BIN)/$$name ./$$d || exit 1; \
		fi; \
	done

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Everything CI runs. The TPM simulator needs cgo. A private PostgreSQL
# cluster is started for the store tests (CONFIDANT_TEST_POSTGRES) and
# stopped afterwards, also when the tests fail.
PGDIR ?= $(CURDIR)/.pgtest
# The hostile corpus tests write their counts by group here; printed at the end.
CORPUS ?= $(CURDIR)/.corpus-summary
test: deps lint build fuzz-smoke
	@./scripts/start-postgres.sh stop $(PGDIR) 2>/dev/null || true
	@rm -rf $(PGDIR)
	@rm -f $(CORPUS)
	@dsn=$$(./scripts/start-postgres.sh start $(PGDIR)) || exit 1; \
	CONFIDANT_TEST_POSTGRES="$$dsn" CONFIDANT_TEST_REQUIRE_POSTGRES=1 CONFIDANT_TEST_REQUIRE_ROOT=1 CGO_ENABLED=1 \
	CONFIDANT_CORPUS_SUMMARY=$(CORPUS) CONFIDANT_CORPUS_SUMMARY_HOSTD=$(CORPUS).hostd \
		$(GO) test -count=1 -timeout 40m ./...; rc=$$?; \
	./scripts/start-postgres.sh stop $(PGDIR); rm -rf $(PGDIR); \
	cat $(CORPUS) $(CORPUS).hostd 2>/dev/null; rm -f $(CORPUS) $(CORPUS).hostd; exit $$rc

unit:
	CGO_ENABLED=1 $(GO) test -count=1 -short ./...

demo: deps build
	./scripts/demo.sh

# Benchmarks with the crypto floor measured around every round; rewrites
# the generated part of BENCHMARKS.md (3 rounds, about 10 minutes).
bench:
	CGO_ENABLED=1 ./scripts/bench-report.sh

# A short run of every fuzz target (each parser of untrusted input),
# discovered from the source; part of `make test`.
FUZZTIME ?= 3s
fuzz-smoke:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-smoke.sh

# Removes each check of the DESIGN.md verifier checklist in turn, in a
# copy of the tree, and expects a named test to fail (about 15 minutes).
mutation-check:
	CGO_ENABLED=1 ./scripts/mutation-check.sh

clean:
	rm -rf $(BIN)
