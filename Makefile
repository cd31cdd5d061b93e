# Agentry — build, test and install.

# Versions of the tools and test components, all built from source into bin/.
# The Kubernetes release is the one go.mod's client libraries come from (hack/lib.sh says how).
K8S_VERSION ?= $(shell bash -c 'source hack/lib.sh && echo "$${K8S_VERSION}"')
ETCD_VERSION ?= 3.6.16
VERSITYGW_VERSION ?= 1.8.0
CONTROLLER_TOOLS_VERSION ?= v0.23.0
HELM_VERSION ?= v3.22.0
GOLANGCI_LINT_VERSION ?= 2.15.0

IMG ?= agentry/manager:dev
RUNNER_IMG ?= agentry/runner:dev

LOCALBIN ?= $(CURDIR)/bin
TOOLBIN ?= $(LOCALBIN)/tools
CONTROLLER_GEN ?= $(TOOLBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUBEBUILDER_ASSETS ?= $(LOCALBIN)/k8s/$(K8S_VERSION)-linux-amd64
VERSITYGW ?= $(LOCALBIN)/versitygw-v$(VERSITYGW_VERSION)
HELM ?= $(TOOLBIN)/helm-$(HELM_VERSION)
GOLANGCI_LINT ?= $(TOOLBIN)/golangci-lint-v$(GOLANGCI_LINT_VERSION)
KUBECTL ?= kubectl
# Prints the rules of the role of kind $$want from the multi-document role.yaml.
RBAC_RULES_AWK = /^---/{kind="";r=0;next} /^kind: /{kind=$$2} /^rules:/{r=1;next} r && kind==want {print}
# Packages whose markers generate CRDs and RBAC.
MARKER_PATHS = $(foreach d,api controllers gateway,$(if $(wildcard $(d)),paths="./$(d)/..."))
GO_TEST_FLAGS ?= -count=1 -timeout=20m

export KUBEBUILDER_ASSETS
export AGENTRY_VERSITYGW = $(VERSITYGW)
export AGENTRY_GITEA = $(LOCALBIN)/gitea
export AGENTRY_HELM = $(HELM)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Set-up

.PHONY: setup
setup: controller-gen helm envtest-assets versitygw gitea build ## Build everything the tests and a local run need (cached under bin/).
	@echo "Set-up complete: control plane in $(KUBEBUILDER_ASSETS), S3 server $(VERSITYGW), binaries in $(LOCALBIN)."

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd from source for envtest (cached).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-control-plane.sh

.PHONY: versitygw
versitygw: ## Build the versitygw S3 server (cached).
	VERSITYGW_VERSION=$(VERSITYGW_VERSION) hack/build-versitygw.sh

.PHONY: chromium
chromium: ## Install Debian's chromium (the session page's tests drive it headless) when missing.
	hack/install-chromium.sh

.PHONY: mcp-everything
mcp-everything: ## Install the MCP reference test server (npm, pinned) into bin/npm/ for the gateway's MCP tests.
	hack/install-mcp-everything.sh

.PHONY: gitea
gitea: ## Build the Gitea forge (delivery tests, the dev cluster's pull requests) (cached).
	hack/build-gitea.sh

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
$(CONTROLLER_GEN):
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(TOOLBIN)/controller-gen $(CONTROLLER_GEN)

.PHONY: helm
helm: $(HELM) ## Build helm into bin/ (for the chart tests).
$(HELM):
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) go install -ldflags='-s -w' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLBIN)/helm $(HELM)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from markers.
	$(CONTROLLER_GEN) rbac:roleName=agentry-manager crd $(MARKER_PATHS) output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	@# The Helm chart ships the same CRDs and RBAC rules.
	cp config/crd/bases/*.yaml charts/agentry/crds/
	awk -v want=ClusterRole '$(RBAC_RULES_AWK)' config/rbac/role.yaml > charts/agentry/files/manager-rules.yaml
	awk -v want=Role '$(RBAC_RULES_AWK)' config/rbac/role.yaml > charts/agentry/files/manager-namespace-rules.yaml
	cp config/rbac/user_roles.yaml charts/agentry/files/user-roles.yaml
	cp config/admission/approvals.yaml charts/agentry/files/admission-approvals.yaml
	$(MAKE) --no-print-directory chart-readme

.PHONY: chart-readme
chart-readme: ## Regenerate the values table in charts/agentry/README.md from the comments in values.yaml.
	go run ./hack/chart-readme -chart charts/agentry

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint (.golangci.yml; built into bin/tools on first use).
	GOLANGCI_LINT_VERSION=$(GOLANGCI_LINT_VERSION) hack/build-golangci-lint.sh
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

.PHONY: verify
verify: manifests generate ## Fail if generated files are stale.
	@git diff --exit-code -- api config charts || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }

.PHONY: test
test: manifests generate vet lint envtest-assets versitygw helm gitea chromium mcp-everything ## Run unit and envtest tests (real kube-apiserver, etcd, S3), then the end-to-end suite on the dev cluster when `make dev` brought one up.
	go test $(GO_TEST_FLAGS) ./...
	@if [ -f "$(DEV_KUBECONFIG)" ]; then $(MAKE) --no-print-directory test-e2e; \
	else echo "make test: no dev cluster ($(DEV_KUBECONFIG) absent): the end-to-end suite did not run; 'make dev' brings the cluster up"; fi

##@ Build

.PHONY: build
build: ## Build the manager, runner and kubectl plugin binaries into bin/.
	go build ./...
	$(if $(wildcard cmd/main.go),CGO_ENABLED=0 go build -o $(LOCALBIN)/manager ./cmd)
	$(if $(wildcard cmd/runner),CGO_ENABLED=0 go build -o $(LOCALBIN)/runner ./cmd/runner)
	$(if $(wildcard cmd/kubectl-agentry),CGO_ENABLED=0 go build -o $(LOCALBIN)/kubectl-agentry ./cmd/kubectl-agentry)

.PHONY: run
run: manifests generate ## Run the manager against the cluster in ~/.kube/config.
	go run ./cmd/main.go

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in ~/.kube/config.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs (and with them every AgentSession) from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator to the cluster in ~/.kube/config.
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Local cluster and end-to-end tests (a real node on this machine, as root; see docs/development.md)

# The cluster hack/cluster-up.sh builds; E2E_CLUSTER=existing runs the suite against $KUBECONFIG
# instead (any cluster with Agentry installed whose pods reach E2E_HOST_IP, e.g. kind).
E2E_CLUSTER ?= dev
DEV_KUBECONFIG ?= /var/lib/agentry-cluster/admin.kubeconfig
E2E_FLAGS ?= -count=1 -v -timeout=30m

.PHONY: network-policies
network-policies: ## Build kube-router, the dev cluster's NetworkPolicy engine, from source (cached in bin/).
	hack/build-network-policies.sh

.PHONY: coredns
coredns: ## Build CoreDNS, the dev cluster's DNS server, from source (cached in bin/).
	hack/build-coredns.sh

.PHONY: cluster-binaries
cluster-binaries: network-policies coredns ## Build etcd and every Kubernetes component a node needs from source (cached under bin/k8s).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-cluster-binaries.sh

.PHONY: images
images: ## Build the manager, runner and pause images without Docker (bin/images/); import them into the dev cluster when it is up.
	hack/images.sh

.PHONY: dev
dev: setup ## Local single-node cluster with Agentry (installed with its Helm chart), S3, a scripted model, a git server and a sample session.
	K8S_VERSION=$(K8S_VERSION) VERSITYGW_VERSION=$(VERSITYGW_VERSION) HELM=$(HELM) hack/dev-up.sh

.PHONY: dev-down
dev-down: ## Tear the dev cluster down and leave the machine as it was.
	hack/cluster-down.sh

.PHONY: test-e2e
test-e2e: ## Run the end-to-end suite (on the dev cluster, brought up first unless E2E_CLUSTER=existing).
	$(if $(filter dev,$(E2E_CLUSTER)),K8S_VERSION=$(K8S_VERSION) VERSITYGW_VERSION=$(VERSITYGW_VERSION) HELM=$(HELM) hack/dev-up.sh)
	$(if $(filter dev,$(E2E_CLUSTER)),KUBECONFIG=$(DEV_KUBECONFIG)) go test -tags e2e $(E2E_FLAGS) ./test/e2e/
