// Package translate turns Kubernetes objects into the rule set one node enforces.
//
// Translate is a pure function: no I/O, no clock, no hidden state, and it never mutates its
// inputs. Every NetworkPolicy semantic lives here, each pinned by a table test that names it
// (semantics_test.go): pod identity, policyTypes defaulting, label selectors, ipBlocks with
// except, ports, endPort and named ports, and addresses several pods claim (claims.go). Values that passed (or predate) API validation but cannot be honoured
// make the peer, port or rule that holds them match nothing, and are reported as a Problem; the
// policy still isolates its targets, so bad input fails closed for that policy only.
package translate
