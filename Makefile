# jobsd: `make help` lists the targets.
GO ?= go
BIN := bin/jobsd
# `go test` flags; CI and `make test` use the race detector.
TESTFLAGS ?= -race -count=1

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## regenerate gen/ from openapi.yaml
	$(GO) generate ./gen

.PHONY: generate-check
generate-check: generate ## regenerate and fail if gen/ differs from what is committed
	@git diff --exit-code -- gen/ || { echo "gen/ is stale: run 'make generate' and commit"; exit 1; }

.PHONY: build
build: ## build bin/jobsd
	$(GO) build -o $(BIN) ./cmd/jobsd

.PHONY: run
run: build ## run the API and a local token issuer on 127.0.0.1:8080 (jobsd dev)
	./$(BIN) dev

.PHONY: test
test: ## unit, integration and conformance tests (needs Docker or the PostgreSQL binaries)
	$(GO) test $(TESTFLAGS) ./...

.PHONY: conformance
conformance: ## the contract suite alone (CONFORMANCE_BASE_URL runs it against a deployment)
	$(GO) test -count=1 -v ./conformance/

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
