# flock-netpol — run `make help` for the targets.

# Image and tool versions.
IMG ?= ghcr.io/flock-net/flock-netpol:dev
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
ENVTEST_K8S_VERSION ?= 1.37.2

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
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

##@ Demo

DEMO_ARGS ?=
.PHONY: demo
demo: ## Guided tour (root, ~1 min): two-node cluster in network namespaces, real agents, example policies measured with real packets. DEMO_ARGS=-show-rules prints the nft tables.
	@go run ./hack/demo -check # says what is missing before the first-time envtest build
	@[ -n "$$KUBEBUILDER_ASSETS" ] || $(MAKE) --no-print-directory envtest
	KUBEBUILDER_ASSETS="$${KUBEBUILDER_ASSETS:-$(abspath $(ENVTEST_ASSETS))}" go run ./hack/demo $(DEMO_ARGS)

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

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml; built from Go modules into bin/ on first use).
	"$(GOLANGCI_LINT)" run ./...

.PHONY: test
test: fmt vet kustomize ## Run every test: unit, golden, kernel and datapath (root), envtest, install manifests.
	KUSTOMIZE="$(KUSTOMIZE)" go test ./... -count=1 -coverprofile cover.out

# A KUBEBUILDER_ASSETS from the environment or the make command line wins; otherwise the envtest
# binaries are built (when missing) and the tests pointed at them. The path must be absolute:
# go test runs each package in its own directory.
ifeq ($(strip $(KUBEBUILDER_ASSETS)),)
test: envtest
test: export KUBEBUILDER_ASSETS = $(abspath $(ENVTEST_ASSETS))
endif

# `make test` runs each fuzz target's seeds (testdata/fuzz/); this explores further, one target at a
# time (go test -fuzz takes one), FUZZTIME each. As root every script is also checked with
# `nft -c` in a network namespace of its own (unshare --net), which makes a run slow (~10 execs/s).
FUZZTIME ?= 60s
FUZZ_TARGETS ?= ./internal/translate:FuzzTranslate ./internal/translate:FuzzTranslateClusterPolicies ./internal/translate:FuzzIncremental ./internal/render:FuzzRender
.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 60s); a failing input is written to the package's testdata/fuzz/.
	@for t in $(FUZZ_TARGETS); do \
		echo "go test $${t%%:*} -run '^$$' -fuzz '^$${t##*:}$$' -fuzztime $(FUZZTIME)"; \
		go test "$${t%%:*}" -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

# The fault suite (test/cluster TestFaults) in its long form: 20+20 agent restarts, a crash loop
# of 10, 10-minute API server outages. `make test` runs its short form (about 2.5 minutes).
.PHONY: faults
faults: envtest ## Fault suite, long form (root, ~25 min): restarts, crash loop, nft missing/hanging/refusing, API server lost, tampering, reboot; prints a table.
	FLOCK_FAULTS=full FLOCK_REQUIRE_KERNEL_TESTS=1 KUBEBUILDER_ASSETS="$${KUBEBUILDER_ASSETS:-$(abspath $(ENVTEST_ASSETS))}" \
		go test ./test/cluster/ -run '^TestFaults$$' -count=1 -v -timeout 60m

BENCH_ARGS ?=
.PHONY: bench
bench: envtest ## Scale benchmarks, each figure next to its target (~15 min; apply and datapath need root). BENCH_ARGS=-quick skips the long ones.
	KUBEBUILDER_ASSETS="$${KUBEBUILDER_ASSETS:-$(abspath $(ENVTEST_ASSETS))}" go run ./hack/bench $(BENCH_ARGS)

##@ Build

.PHONY: build
build: fmt vet ## Build the flock-netpol binary into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/flock-netpol ./cmd

.PHONY: run
run: fmt vet ## Run the agent against the current kubeconfig (NODE_NAME must be set; needs root and nft).
	go run ./cmd run

.PHONY: manifests
manifests: controller-gen ## Regenerate config/rbac/role.yaml from the +kubebuilder:rbac markers.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role paths="./..." output:rbac:artifacts:config=config/rbac

# The ClusterNetworkPolicy CRD is vendored, byte for byte, from the Go module
# sigs.k8s.io/network-policy-api at the version go.mod requires; test/deploy fails while the copy
# differs from the module's file.
CNP_CRD ?= policy.networking.k8s.io_clusternetworkpolicies.yaml
CNP_COMPONENT ?= config/components/clusternetworkpolicy

.PHONY: sync-crds
sync-crds: ## Copy the ClusterNetworkPolicy CRD of sigs.k8s.io/network-policy-api (the go.mod version) into config/components/clusternetworkpolicy.
	go mod download sigs.k8s.io/network-policy-api
	install -m 0644 "$$(go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)/config/crd/standard/$(CNP_CRD)" "$(CNP_COMPONENT)/$(CNP_CRD)"

CONTAINER_TOOL ?= docker
KUBECTL ?= kubectl
PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: docker-build
docker-build: ## Build the agent image $(IMG) for the local platform.
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the agent image $(IMG).
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: docker-buildx
docker-buildx: ## Build and push $(IMG) for $(PLATFORMS).
	$(CONTAINER_TOOL) buildx build --platform=$(PLATFORMS) --push -t $(IMG) .

# INSTALL_CNP_CRD=true adds the ClusterNetworkPolicy CRD ($(CNP_COMPONENT)) to the install of
# `make deploy` and `make build-installer`. Leave it unset when something else installs the CRD.
INSTALL_CNP_CRD ?=

# Prints config/default rendered with the image $(IMG) (and the CRD component with
# INSTALL_CNP_CRD=true). Both are set on a throwaway copy of config/, so the committed
# kustomizations never change.
define render-install
tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -R config "$$tmp/" && \
(cd "$$tmp/config/manager" && "$(KUSTOMIZE)" edit set image controller=$(IMG)) && \
$(if $(filter true,$(INSTALL_CNP_CRD)),(cd "$$tmp/config/default" && "$(KUSTOMIZE)" edit add component ../components/clusternetworkpolicy) &&) \
"$(KUSTOMIZE)" build "$$tmp/config/default"
endef

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml, the whole install with the image $(IMG); INSTALL_CNP_CRD=true adds the ClusterNetworkPolicy CRD.
	mkdir -p dist
	$(render-install) > dist/install.yaml.tmp && mv dist/install.yaml.tmp dist/install.yaml

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: deploy
deploy: manifests kustomize ## Install the agent with the image $(IMG) into the current kubeconfig's cluster; INSTALL_CNP_CRD=true adds the ClusterNetworkPolicy CRD.
	$(render-install) | $(KUBECTL) apply -f -

# The agent leaves its nft table in force when it stops: after undeploy every node keeps its last
# rules until `flock-netpol cleanup` runs on it. The ClusterNetworkPolicy CRD stays too, even when
# INSTALL_CNP_CRD put it there: deleting it would delete every ClusterNetworkPolicy.
.PHONY: undeploy
undeploy: kustomize ## Remove the agent (nft tables stay on the nodes). ignore-not-found=true ignores missing objects.
	"$(KUSTOMIZE)" build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest from Go modules into $(ENVTEST_ASSETS) (skipped when present).
	hack/envtest/build.sh $(ENVTEST_ASSETS)

# Tools live in $(LOCALBIN)/<tool>-<version> with $(LOCALBIN)/<tool> a symlink: a version bump
# installs the new version; an existing one is reused.
.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION) ## Install controller-gen into $(LOCALBIN) if missing.
$(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION): | $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: kustomize
kustomize: $(KUSTOMIZE)-$(KUSTOMIZE_VERSION) ## Install kustomize into $(LOCALBIN) if missing.
$(KUSTOMIZE)-$(KUSTOMIZE_VERSION): | $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)-$(GOLANGCI_LINT_VERSION) ## Install golangci-lint into $(LOCALBIN) if missing.
$(GOLANGCI_LINT)-$(GOLANGCI_LINT_VERSION): | $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool <path> <package> <version>
define go-install-tool
@set -e; \
tmpbin=$$(mktemp -d); trap 'rm -rf "$$tmpbin"' EXIT; \
echo "installing $(2)@$(3) into $(LOCALBIN)"; \
GOBIN="$$tmpbin" go install $(2)@$(3); \
mv "$$tmpbin/$$(basename $(1))" "$(1)-$(3)"; \
ln -sf "$$(basename $(1))-$(3)" "$(1)"
endef
