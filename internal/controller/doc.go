// Package controller is the glue between the cluster and the kernel: one controller-runtime
// reconciler that watches NetworkPolicies, Namespaces, Pods and Nodes (and ClusterNetworkPolicies,
// when their CRD is installed at startup: see ClusterPoliciesInstalled) through the manager's
// cache and, on any change, recomputes the node's whole rule set (package translate), renders it (package
// render) and applies it in one nft transaction (package nft).
//
// The rule set is translated incrementally (translate.Incremental, feed.go): the watches' events
// are recorded and only what they can affect is translated again. A full translation of the cache
// builds that state at the start, checks it at every periodic check (and rebuilds it when they
// differ), and replaces it with --full-translate.
//
// Every event enqueues the same key, so a burst of changes collapses into one recompute. The
// controller starts its workers only after every cache has synced, so the first apply is always
// complete, and it never flushes anything at startup: the kernel keeps the last applied table
// until that first apply replaces it in one transaction. Nothing is removed on shutdown.
package controller
