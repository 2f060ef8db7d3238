// Package datapath is the end-to-end smoke test of the agent's rules with real packets on real
// kernels: rendered scripts applied with nft in network namespaces, and real TCP and UDP traffic.
//
// The tests build a two-node cluster out of network namespaces with test/netns: node-1 runs pods
// x/a, x/b and y/a, node-2 runs x/c, y/b and z/b, and one external host (10.200.0.10,
// fd00:200::10) sits outside the cluster. Every pod and the external host serve TCP and UDP on
// ports 80 and 81, dual-stack. The same pods exist as Kubernetes objects (Namespaces x, y, z with
// labels; Pods with spec.nodeName, labels, named container ports, status.podIPs), so the agent's
// pure stages can run on them: for each scenario the test translates and renders the policies for
// each node, applies every node's script with `nft -f -` inside that node's namespace, and probes
// the full reachability matrix (every pod and the external host as source and destination; TCP and
// UDP; IPv4 and IPv6; ports 80 and 81).
//
// Two kinds of expectation are checked:
//
//   - Specification smoke tests, written by hand from the NetworkPolicy specification as literal
//     truth tables (default deny ingress plus one allow rule; default deny egress plus a DNS-like
//     UDP rule). The reference evaluator is checked against the same tables.
//   - Model agreement: for a spread of scenarios the expected verdict of a flow is what the
//     reference evaluator (ruleset.RuleSet.Allows) says for the source's node and, when it is a
//     different node, the destination's node. The external host has no rules. Agreement shows that
//     the rendered rules behave in the kernel exactly like the model.
//
// Before each scenario the nodes' conntrack tables are flushed, so that no connection allowed by an
// earlier scenario passes as established. Flows that should pass but time out are probed once
// more with a long timeout before the test fails, so a loaded machine does not fail the test;
// flows that pass but should not are never retried. The scenario tables and spot checks are also
// checked against the model without a kernel (TestScenariosAgreeWithTheModelOffline), which needs
// no privileges.
//
// The kernel tests need root plus the `ip` and `nft` binaries and skip with the reason otherwise; with
// FLOCK_REQUIRE_KERNEL_TESTS=1 (as in CI) a missing prerequisite fails the test instead.
//
// Run them with
//
//	sudo go test ./test/datapath/ -v -count=1
//
// and select one scenario with e.g. -run 'TestDatapath/model/ipBlock'.
package datapath
