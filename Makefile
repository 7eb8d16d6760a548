# orderflow — see README.md. Every target works on a fresh Debian 12 machine as root.
SHELL := /bin/bash
GO ?= go
BIN := .cache/bin/orderflow
LDFLAGS := -X github.com/orderflow/orderflow/internal/version.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev) \
           -X github.com/orderflow/orderflow/internal/version.Commit=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
           -X github.com/orderflow/orderflow/internal/version.BuildTime=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: run run-native test unit lint build infra-up infra-down infra-status infra-reset fuzz bench chaos

## run: everything in one process with embedded Kafka, Postgres and Redis (orderflow dev; only Go
## needed); the tracking page is at http://127.0.0.1:8080/ (Ctrl-C stops everything)
run: build
	$(BIN) dev

## run-native: the production-like path: real servers (scripts/infra up), then every service in
## one process (Ctrl-C stops the services), every order traced to the Jaeger scripts/infra runs
run-native: infra-up build
	OTEL_EXPORTER_OTLP_ENDPOINT=$${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318} \
	QUERY_TRACES_URL=$${QUERY_TRACES_URL:-http://127.0.0.1:16686} $(BIN) all

## test: start the servers, run every test (unit and integration) with the race detector, then the
## tests that stop and restart shared servers, one package at a time
test: infra-up lint
	ORDERFLOW_INTEGRATION=1 $(GO) test -race -count=1 -timeout 20m ./...
	ORDERFLOW_INTEGRATION=1 ORDERFLOW_DISRUPTIVE=1 ORDERFLOW_E2E=1 ORDERFLOW_CHAOS=ci $(GO) test -count=1 -p 1 -timeout 30m ./test/disruptive/... ./test/e2e/... ./test/chaos/...

## unit: tests that need no servers
unit:
	$(GO) test -race -count=1 ./...

## lint: gofmt, go vet and golangci-lint with gosec (pinned; scripts/lint)
lint:
	scripts/lint

## fuzz: run each fuzz target for a short while
fuzz:
	$(GO) test ./internal/event/ -run '^$$' -fuzz FuzzDecode -fuzztime 30s
	$(GO) test ./internal/order/ -run '^$$' -fuzz FuzzCreateNeverFails500 -fuzztime 30s
	$(GO) test ./internal/query/ -run '^$$' -fuzz FuzzReadEndpoints -fuzztime 30s
	$(GO) test ./internal/platform/httpx/ -run '^$$' -fuzz FuzzDecodeJSON -fuzztime 30s

## build: the binary with development mode (-tags devmode: orderflow dev's embedded servers); the
## production image (Dockerfile) builds without it
build:
	@mkdir -p .cache/bin
	$(GO) build -tags devmode -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/orderflow

infra-up:
	scripts/infra up
infra-down:
	scripts/infra down
infra-status:
	scripts/infra status
infra-reset:
	scripts/infra reset

## chaos: the fault-injection scenarios (test/chaos) against the real servers
chaos: infra-up
	ORDERFLOW_INTEGRATION=1 ORDERFLOW_CHAOS=1 CHAOS_UPDATE_DOCS=1 $(GO) test -count=1 -p 1 -timeout 60m -v ./test/chaos/...

## bench: reset the servers, run the services with deploy/bench/bench.env, measure (docs/benchmarks.md)
bench:
	scripts/bench all
