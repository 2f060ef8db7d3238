// Package deploy holds the tests of the install manifests in config/: they build config/default
// with kustomize, as `make deploy` and `make build-installer` do, and pin the properties of the
// rendered objects that the agent's security and correctness depend on.
//
// The tests need the kustomize binary: $KUSTOMIZE, or bin/kustomize in the repository root
// (`make kustomize` installs it). They fail, rather than skip, when it is missing, so that a
// test run never passes without having checked the manifests.
package deploy
