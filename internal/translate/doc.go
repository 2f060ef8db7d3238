// Package translate turns Kubernetes objects into the rule set one node enforces.
//
// Translate is a pure function: no I/O, no clock, no hidden state, and it never mutates its
// inputs. Every NetworkPolicy semantic lives here, each pinned by a table test that names it
// (semantics_test.go): pod identity, policyTypes defaulting, label selectors, ipBlocks with
// except, ports, endPort and named ports, and addresses several pods claim (claims.go). Values that passed (or predate) API validation but cannot be honoured
// make the peer, port or rule that holds them match nothing, and are reported as a Problem; the
// policy still isolates its targets, so bad input fails closed for that policy only.
//
// Translate indexes the whole cluster on every call (tens of milliseconds at 150,000 pods).
// Incremental (incremental.go) gives the same result from indexes it keeps between calls: it is
// told each pod, Namespace and NetworkPolicy that changed, as the watch delivers them, and
// translates again only the peer results and policies the change can affect. It is fed events
// rather than handed the whole state to compare with the last (object pointers would tell what
// changed too, since the informers replace objects on update), because finding what changed
// would then cost a pass over every pod of the cluster per recompute, which is what it exists to
// avoid. Translate stays the reference: a property test (incremental_test.go) asserts after
// every event of random sequences that both return the same rule set and problems, and the
// agent keeps Translate for `render`, `explain` and repairs.
package translate
