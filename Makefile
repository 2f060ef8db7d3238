# flock-netpol — run `make help` for the targets.

# Image and tool versions.
IMG ?= ghcr.io/flock-net/flock-netpol:dev
CONTROLLER_TOOLS_VERSION ?= v0.20.1
KUSTOMIZE_VERSION ?= v5.8.1
ENVTEST_K8S_VERSION ?= 1.37.2

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
ENVTEST_ASSETS ?= $(LOCALBIN)/k8s/$(ENVTEST_K8S_VERSION)

# Example node for `make example`.
NODE ?= node-1

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: example
example: ## Render the bundled examples/ for node $(NODE) (offline; prints the nft script).
	go run ./cmd render --node $(NODE) -f examples/

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: test
test: fmt vet ## Run every test: unit, golden, kernel and datapath (root), and envtest.
	go test ./... -count=1 -coverprofile cover.out

# A KUBEBUILDER_ASSETS from the environment or the make command line wins; otherwise the envtest
# binaries are built (when missing) and the tests pointed at them. The path must be absolute:
# go test runs each package in its own directory.
ifeq ($(strip $(KUBEBUILDER_ASSETS)),)
test: envtest
test: export KUBEBUILDER_ASSETS = $(abspath $(ENVTEST_ASSETS))
endif

.PHONY: bench
bench: ## Run the benchmarks.
	go test ./... -run '^$$' -bench . -benchmem

##@ Build

.PHONY: build
build: fmt vet ## Build the flock-netpol binary into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/flock-netpol ./cmd

.PHONY: run
run: fmt vet ## Run the agent against the current kubeconfig (NODE_NAME must be set; needs root and nft).
	go run ./cmd run

##@ Dependencies

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest from Go modules into $(ENVTEST_ASSETS) (skipped when present).
	hack/envtest/build.sh $(ENVTEST_ASSETS)
