# jobsd: `make help` lists the targets.
GO ?= go
# Build with the toolchain go.mod names (it carries standard-library security
# fixes), downloading it through the module proxy when the local Go is older.
export GOTOOLCHAIN ?= auto
BIN := bin/jobsd
# `go test` flags; CI and `make test` use the race detector.
TESTFLAGS ?= -race -count=1

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## regenerate gen/ (models, server/, apiclient/) from openapi.yaml
	$(GO) generate ./gen/...

.PHONY: docs
docs: ## regenerate docs/configuration.md from the settings table (cmd/jobsd/settings.go); a test fails when they differ
	go test ./cmd/jobsd/ -run '^TestConfigurationReference$$' -count=1 -update

.PHONY: generate-check
generate-check: generate ## regenerate and fail if gen/ differs from what is committed
	@git diff --exit-code -- gen/ || { echo "gen/ is stale: run 'make generate' and commit"; exit 1; }

.PHONY: spec-lint
spec-lint: ## lint openapi.yaml with Spectral's OpenAPI ruleset (npm, cached outside the repository); fails on errors
	bash scripts/spec-lint.sh

.PHONY: tidy-check
tidy-check: ## fail if go.mod or go.sum (here, in bench/ or in tools/*/) differ from what `go mod tidy` makes
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }
	@for d in bench $(TOOL_MODULES); do \
		(cd $$d && $(GO) mod tidy -diff) || { echo "$$d/go.mod/go.sum are not tidy: run 'cd $$d && go mod tidy' and commit"; exit 1; }; \
	done

.PHONY: build
build: ## build bin/jobsd
	$(GO) build -o $(BIN) ./cmd/jobsd

# The runtime image: a static binary and the CA bundle in an empty (scratch)
# image, so building it pulls nothing. CA_BUNDLE is this machine's bundle
# (Debian's ca-certificates), copied into bin/ for the build context.
IMAGE ?= jobsd:dev
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
DOCKER ?= docker

# -buildvcs=auto overrides a GOFLAGS=-buildvcs=false in the environment, so
# the image's `jobsd version` names its commit when built in a git clone
# (the go command does not stamp from a linked worktree, whose .git is a file).
.PHONY: build-static
build-static: ## build bin/jobsd static (CGO_ENABLED=0, -trimpath), keeping the VCS revision in its build info
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/jobsd

.PHONY: image
image: build-static ## build the runtime image IMAGE (jobsd:dev) from bin/jobsd, FROM scratch
	@test -s $(CA_BUNDLE) || { echo "no CA bundle at $(CA_BUNDLE): install ca-certificates or set CA_BUNDLE"; exit 1; }
	cp $(CA_BUNDLE) bin/ca-certificates.crt
	$(DOCKER) build -t $(IMAGE) .

.PHONY: image-test
image-test: image ## run IMAGE's migrate, serve and worker in containers and the black-box conformance suite against them
	JOBS_TEST_IMAGE=$(IMAGE) $(GO) test -count=1 -v -run '^TestImage$$' ./deploy/

.PHONY: run
run: build ## run the API and a local token issuer on 127.0.0.1:8080 (jobsd dev)
	./$(BIN) dev

# The jobsd binary the tests run as a process (internal/proctest), built
# once here and passed in as JOBSD_BIN so that no test package builds its
# own. Not bin/jobsd: the image test rebuilds that one (static) while other
# packages run theirs.
TEST_BIN := bin/test/jobsd
# `go test -short` flags. The short suites mostly wait (second-scale
# leases), so four packages at a time finish sooner than the default two on
# a 2-core machine.
SHORTFLAGS ?= -short -count=1 -p 4

.PHONY: test-bin
test-bin: ## build the jobsd binary the tests run (bin/test/jobsd)
	$(GO) build -o $(TEST_BIN) ./cmd/jobsd

.PHONY: test
test: test-bin ## unit, integration, conformance, fault, browser and image tests (needs Docker or the PostgreSQL binaries)
	JOBSD_BIN=$(CURDIR)/$(TEST_BIN) $(GO) test $(TESTFLAGS) ./...

# The suites that run jobsd's pools behind PgBouncer when
# JOBS_TEST_POOLER=pgbouncer asks: the store's, the API's (impl, and
# in-process for the conformance suite), the worker's, the Lambda handler's
# (dispatch), and the real processes' of the fault suite.
POOLED_PACKAGES := ./store/ ./impl/ ./worker/ ./dispatch/ ./conformance/ ./faults/

.PHONY: test-pooled
test-pooled: test-bin ## the store, API, worker, Lambda handler, conformance and fault suites with every pool behind PgBouncer in transaction mode (needs pgbouncer: apt-get install pgbouncer)
	JOBS_TEST_POOLER=pgbouncer JOBSD_BIN=$(CURDIR)/$(TEST_BIN) $(GO) test $(TESTFLAGS) $(POOLED_PACKAGES)

.PHONY: test-short
test-short: test-bin ## the quick loop (under a minute): go test -short, one PostgreSQL for every package; skips the fault, soak, replica, image, browser, Lambda emulator and worker-process suites
	JOBSD_BIN=$(CURDIR)/$(TEST_BIN) bash scripts/test-short.sh $(SHORTFLAGS)

.PHONY: conformance
conformance: ## the contract suite alone (CONFORMANCE_BASE_URL runs it against a deployment)
	$(GO) test -count=1 -v ./conformance/

# Every fuzz target and its package; `make test` replays their seeds and
# any corpus under testdata/fuzz.
FUZZ_TARGETS := FuzzServer:./impl FuzzIsCanonical:./internal/uuidform FuzzParseCursor:./store \
	FuzzUnmarshal:./timestamp FuzzBearerToken:./auth FuzzVerify:./auth \
	FuzzEncodeJob:./impl
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (30s); failures land in testdata/fuzz
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; pkg=$${t#*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

.PHONY: vulncheck
vulncheck: ## govulncheck on an offline database; fails on reachable vulnerabilities that have a fix, or when it cannot run
	bash scripts/vulncheck.sh

.PHONY: conformance-blackbox
conformance-blackbox: ## the contract suite in black-box mode against a real `jobsd dev` process
	bash scripts/conformance-blackbox.sh

# Developer tools, each pinned in its own module under tools/ (so the main
# go.mod stays free of them, and so golangci-lint builds with the dependency
# versions it was released with: in one module with oasdiff, viper would be
# upgraded under it). Each binary is rebuilt only when its go.sum changes:
# golangci-lint takes minutes to compile.
TOOL_MODULES := tools/golangci-lint tools/oasdiff
GOLANGCI_LINT := bin/golangci-lint
OASDIFF := bin/oasdiff

$(GOLANGCI_LINT): tools/golangci-lint/go.mod tools/golangci-lint/go.sum
	cd tools/golangci-lint && $(GO) build -o ../../$@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(OASDIFF): tools/oasdiff/go.mod tools/oasdiff/go.sum
	cd tools/oasdiff && $(GO) build -o ../../$@ github.com/oasdiff/oasdiff

.PHONY: tools
tools: $(GOLANGCI_LINT) $(OASDIFF) ## build the pinned developer tools (golangci-lint, oasdiff) into bin/

.PHONY: lint
lint: $(GOLANGCI_LINT) ## go vet, gofmt and golangci-lint (.golangci.yml), here and in bench/
	$(GO) vet ./...
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run ./...
	cd bench && $(GO) vet ./...
	cd bench && ../$(GOLANGCI_LINT) run --config ../.golangci.yml ./...

# The baseline is the contract as last released; it changes only on purpose
# (see README, "Linters and checks").
SPEC_BASELINE := openapi.baseline.yaml

.PHONY: breaking-check
breaking-check: $(OASDIFF) ## fail if openapi.yaml breaks clients of openapi.baseline.yaml (oasdiff, ERR level)
	$(OASDIFF) breaking --fail-on ERR $(SPEC_BASELINE) openapi.yaml

.PHONY: deps-check
deps-check: ## check the dependency rules with go list -deps (scripts/deps-check.sh)
	bash scripts/deps-check.sh

.PHONY: rules-check
rules-check: ## check deploy/prometheus/alerts.yml with promtool (Debian package prometheus)
	promtool check rules deploy/prometheus/alerts.yml

.PHONY: compose-check
compose-check: ## validate compose.yaml (docker-compose config, Debian package docker-compose) and its Prometheus configuration (promtool)
	docker-compose -f compose.yaml config -q
	promtool check config deploy/prometheus/prometheus.yml

.PHONY: bench
bench: ## full benchmark (about 50 min): cd bench && go run . -out results/latest.json
	cd bench && $(GO) run . -out results/latest.json

.PHONY: bench-quick
bench-quick: ## quick benchmark smoke (< 2 min)
	cd bench && $(GO) run . -quick -out results/latest.json

.PHONY: soak
soak: ## long soak (5 min): users, a DB cut and a worker SIGKILL at intervals, audit at the end (faults/)
	JOBS_SOAK=5m $(GO) test -run TestSoak -v -count=1 -timeout 20m ./faults/
