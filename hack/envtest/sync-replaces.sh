#!/usr/bin/env bash
# Keeps hack/envtest/go.mod consistent with the go.mod of k8s.io/kubernetes.
#
# k8s.io/kubernetes is not meant to be used as a dependency: its go.mod
# requires its "staging" modules (k8s.io/api, k8s.io/apiserver, ...) at the
# placeholder version v0.0.0 and points them at ./staging/src/... with replace
# directives. Replace directives only apply in the main module, so a module
# that depends on k8s.io/kubernetes must map each staging module to its
# published tag itself: kubernetes v1.X.Y corresponds to staging v0.X.Y.
#
# etcd is pinned to exactly the go.etcd.io/etcd/server/v3 version that
# kubernetes' go.mod requires. In one module MVS cannot select anything older
# anyway, and a newer one would also bump the etcd client libraries compiled
# into kube-apiserver; this way both binaries match what upstream tests with.
#
# Usage (from anywhere):
#   sync-replaces.sh            rewrite the replaces and the etcd pin for the
#                               kubernetes version currently in go.mod
#   sync-replaces.sh v1.38.0    switch to another kubernetes version; then run
#                               `go mod tidy` in hack/envtest
#   sync-replaces.sh --check    exit 1 if go.mod is not what it should be
#                               (build.sh runs this before building)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export GOWORK=off

check=false
kube_version=""
case "${1:-}" in
  --check) check=true ;;
  v*) kube_version="$1" ;;
  "") ;;
  *) echo "usage: $0 [--check | vX.Y.Z]" >&2; exit 2 ;;
esac

# Reads `go mod edit -print` output on stdin and prints the version with
# which module $1 is required.
required_version() {
  awk -v mod="$1" '$1 == "require" { $1 = "" ; $0 = $0 } $1 == mod && $2 ~ /^v/ { print $2 }'
}

# Reads `go mod edit -print` output on stdin and prints every replace
# directive as "old => new[ version]", sorted.
replace_lines() {
  awk '$1 == "replace" { $1 = ""; $0 = $0 } $2 == "=>" { $1 = $1; print }' | sort
}

if [[ -z "$kube_version" ]]; then
  kube_version=$(go mod edit -print go.mod | required_version k8s.io/kubernetes)
fi
if [[ ! "$kube_version" =~ ^v1\.([0-9]+\.[0-9]+.*)$ ]]; then
  echo "sync-replaces: cannot derive a staging version from k8s.io/kubernetes '$kube_version'" >&2
  exit 1
fi
staging_version="v0.${BASH_REMATCH[1]}"

# Only kubernetes' go.mod file is needed here, not the whole module zip. Ask
# from outside our module so that a half-edited go.mod cannot get in the way.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! kube_gomod=$(cd "$tmp" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$kube_version"); then
  echo "sync-replaces: cannot fetch the go.mod of k8s.io/kubernetes@$kube_version (is the Go module proxy reachable?)" >&2
  exit 1
fi
kube_mod=$(go mod edit -print "$kube_gomod")

# The staging modules are exactly those replaced by a directory below
# ./staging/src/ named like the module.
mapfile -t staging < <(echo "$kube_mod" | replace_lines |
  awk '$3 == "./staging/src/" $1 { print $1 }')
if [[ ${#staging[@]} -eq 0 ]]; then
  echo "sync-replaces: no ./staging replaces in go.mod of k8s.io/kubernetes@$kube_version; has its layout changed?" >&2
  exit 1
fi
etcd_version=$(echo "$kube_mod" | required_version go.etcd.io/etcd/server/v3)
if [[ -z "$etcd_version" ]]; then
  echo "sync-replaces: k8s.io/kubernetes@$kube_version does not require go.etcd.io/etcd/server/v3" >&2
  exit 1
fi

our_mod=$(go mod edit -print go.mod)
want=$(for m in "${staging[@]}"; do echo "$m => $m $staging_version"; done | sort)
have=$(echo "$our_mod" | replace_lines)

if $check; then
  ok=true
  if [[ "$want" != "$have" ]]; then
    ok=false
    echo "sync-replaces: replace directives in hack/envtest/go.mod differ from the staging modules of k8s.io/kubernetes@$kube_version (< have, > want):" >&2
    diff <(echo "$have") <(echo "$want") | grep '^[<>]' | sed 's/^/  /' >&2 || true
  fi
  have_etcd=$(echo "$our_mod" | required_version go.etcd.io/etcd/server/v3)
  if [[ "$have_etcd" != "$etcd_version" ]]; then
    ok=false
    echo "sync-replaces: go.etcd.io/etcd/server/v3 is '$have_etcd' but k8s.io/kubernetes@$kube_version requires $etcd_version" >&2
  fi
  if ! $ok; then
    echo "sync-replaces: fix with: hack/envtest/sync-replaces.sh && (cd hack/envtest && go mod tidy)" >&2
    exit 1
  fi
  exit 0
fi

# Drop every existing replace and write the wanted ones as one block, so that
# modules that kubernetes no longer stages do not linger here.
args=()
while read -r old _; do
  [[ -n "$old" ]] && args+=("-dropreplace=$old")
done <<<"$have"
args+=("-require=k8s.io/kubernetes@$kube_version" "-require=go.etcd.io/etcd/server/v3@$etcd_version")
go mod edit "${args[@]}" go.mod
# go mod edit keeps comments, so strip our own generated header before adding it again.
sed -i '/^\/\/ Staging modules of k8s.io\/kubernetes/,/^\/\/ hack\/envtest\/sync-replaces.sh/d' go.mod
{
  echo
  echo "// Staging modules of k8s.io/kubernetes $kube_version at their published tags."
  echo "// Generated by hack/envtest/sync-replaces.sh; do not edit by hand."
  echo "// hack/envtest/sync-replaces.sh --check verifies them."
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} >>go.mod
go mod edit -fmt go.mod
echo "sync-replaces: k8s.io/kubernetes $kube_version: ${#staging[@]} staging modules => $staging_version, etcd $etcd_version"
