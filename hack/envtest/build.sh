#!/usr/bin/env bash
# Builds the control-plane binaries that controller-runtime's envtest runs,
# kube-apiserver and etcd, from their Go modules.
#
# Why from source: setup-envtest downloads prebuilt binaries from a release
# bucket that this project's machines (developers' and CI's) cannot reach,
# while the Go module proxy is reachable. So hack/envtest is a separate Go
# module that pins k8s.io/kubernetes and the etcd server it is tested with,
# and this script compiles them. It is a separate module so that the root
# module never depends on k8s.io/kubernetes (see sync-replaces.sh for why that
# dependency needs special care).
#
# kubectl is not built: envtest only computes its path when it starts, and
# runs it only if a test calls Run on ControlPlane.KubeCtl() or on a user's
# Kubectl(). Build k8s.io/kubernetes/cmd/kubectl the same way if that changes.
#
# Usage: hack/envtest/build.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to bin/k8s/<kubernetes version> in the repository
#   root. Binaries already in OUTPUT_DIR are kept, so a second run costs
#   nothing. On success the absolute OUTPUT_DIR is printed on stdout, e.g.
#   export KUBEBUILDER_ASSETS=$(hack/envtest/build.sh)
#
# With empty Go caches on two cores: about 85 MB of modules to download,
# kube-apiserver about 5 minutes, etcd then about 15 s more (it shares most
# dependencies; alone it takes about 1.5 minutes).
set -euo pipefail

module_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$module_dir/../.." && pwd)

log() { echo "envtest: $*" >&2; }

# Only read go.mod here, without loading the module graph, to keep the
# nothing-to-do path fast.
kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$module_dir/go.mod")
if [[ -z "$kube_version" ]]; then
  log "cannot find the k8s.io/kubernetes version in $module_dir/go.mod"
  exit 1
fi

out=$(realpath -m "${1:-"$repo_root/bin/k8s/${kube_version#v}"}")

# Directories are named after the Kubernetes version (bin/k8s/1.37.2); refuse
# to put binaries of another version into one, which would be silently wrong.
dir_version=$(basename "$out")
if [[ "$dir_version" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+$ && "${dir_version#v}" != "${kube_version#v}" ]]; then
  log "$out is named for Kubernetes $dir_version, but hack/envtest/go.mod pins $kube_version."
  log "Use a directory for ${kube_version#v}, or switch versions with hack/envtest/sync-replaces.sh."
  exit 1
fi

mkdir -p "$out"
missing=()
for bin in kube-apiserver etcd; do
  [[ -x "$out/$bin" ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "kube-apiserver and etcd for Kubernetes ${kube_version#v} are in $out"
  echo "$out"
  exit 0
fi

fail() {
  log "FAILED: $1"
  log "Instead of building, you can provide the binaries yourself: set KUBEBUILDER_ASSETS"
  log "to a directory holding kube-apiserver and etcd (Kubernetes ${kube_version#v}), or put them into $out."
  exit 1
}

cd "$module_dir"
# A go.work higher up must not pull this module into a workspace, and go.mod
# must be used as committed.
export GOWORK=off
# Static binaries, no C toolchain needed. They must run on this machine, so a
# GOOS/GOARCH from the environment must not cross-compile them.
export CGO_ENABLED=0
GOOS=$(go env GOHOSTOS) GOARCH=$(go env GOHOSTARCH)
export GOOS GOARCH

./sync-replaces.sh --check || fail "checking hack/envtest/go.mod against k8s.io/kubernetes $kube_version (see above)"

# Without these, a plain `go build` of kube-apiserver reports version
# v0.0.0-master to clients; upstream's build scripts stamp them the same way.
minor=${kube_version#v1.}
minor=${minor%%.*}
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

declare -A packages=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [etcd]=go.etcd.io/etcd/server/v3
)
declare -A ldflags=(
  [kube-apiserver]="-s -w$version_ldflags"
  [etcd]="-s -w"
)

tmp_files=()
trap 'rm -f "${tmp_files[@]}"' EXIT
for bin in "${missing[@]}"; do
  log "building $bin (${packages[$bin]}) into $out ..."
  start=$SECONDS
  # Build next to the target and rename, so that an interrupted build never
  # leaves a file that a later run would take for a finished binary.
  tmp="$out/.$bin.tmp.$$"
  tmp_files+=("$tmp")
  if ! go build -mod=readonly -trimpath -ldflags "${ldflags[$bin]}" -o "$tmp" "${packages[$bin]}"; then
    fail "go build of $bin (${packages[$bin]}) in hack/envtest"
  fi
  mv -f "$tmp" "$out/$bin"
  log "built $bin in $((SECONDS - start))s"
done

echo "$out"
