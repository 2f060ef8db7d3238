// Package compact holds the compact form of a Pod that the agent caches for every pod of the
// cluster and the translator reads: its name, namespace, node, labels, addresses, named ports and
// whether it takes part in policy at all, and nothing else.
//
// The cache transform (package controller) builds one per Pod event and the translator (package
// translate) reads them on every recompute, so both import this package rather than each other.
package compact
