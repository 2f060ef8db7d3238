// Package controller is the glue between the cluster and the kernel: one controller-runtime
// reconciler that watches NetworkPolicies, Namespaces, Pods and Nodes (and ClusterNetworkPolicies,
// when their CRD is installed at startup: see ClusterPoliciesInstalled) through the manager's
// cache and, on any change, recomputes the node's whole rule set (package translate), renders it (package
// render) and applies it in one nft transaction (package nft).
//
// Every event enqueues the same key, so a burst of changes collapses into one recompute. The
// controller starts its workers only after every cache has synced, so the first apply is always
// complete, and it never flushes anything at startup: the kernel keeps the last applied table
// until that first apply replaces it in one transaction. Nothing is removed on shutdown.
package controller
