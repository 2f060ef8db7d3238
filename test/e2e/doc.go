// Package e2e is the NetworkPolicy conformance suite of flock-netpol: the scenarios of the
// upstream Kubernetes `Netpol` e2e suite (test/e2e/network/netpol), plus a few of our own, run
// against the real agent on a local cluster (test/cluster: envtest control plane, network
// namespaces as nodes and pods, one `flock-netpol run` per node) with real TCP and UDP packets.
//
// Every scenario is data: the policies to create (or update, delete, relabel) step by step, and
// for each step the expected reachability written from the NetworkPolicy specification in the
// upstream style (start from all allowed, then expect or deny per peer). Nothing is computed by our
// own translator: the harness only uses it to know when an agent has applied the current state.
//
// The topology is the upstream one: namespaces x, y and z (fresh names x-<n>, y-<n>, z-<n> per
// scenario, labelled ns=x, ns=y, ns=z), pods a, b and c in each (labelled pod=a ...) with the
// upstream named container ports (serve-80-tcp, serve-81-udp, ...), plus one external host outside
// the cluster. Pods are dual-stack and spread over two nodes, so every scenario exercises
// same-node and cross-node flows, IPv4 and IPv6:
//
//	node-1: x/a x/c y/b z/a z/c      node-2: x/b y/a y/c z/b      ext: outside both
//
// TestCNPConformance is the same for ClusterNetworkPolicy: the conformance tests of
// sigs.k8s.io/network-policy-api (cnp_scenarios_test.go, which lists what each ports) on that
// module's topology (namespaces network-policy-conformance-<house>, two pods each, hostNetwork pods
// on both nodes; cnp_model_test.go), with TCP, UDP and SCTP probes (SCTP over raw sockets, so no
// SCTP stack is needed).
//
// Run with
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s/1.37.2 go test ./test/e2e/ -count=1 -v
//
// as root; `-run 'TestNetpol/default-deny'` or `-run 'TestCNPConformance/CNPAdminTierIngressTCP'`
// selects scenarios. Without root, ip or nft the tests
// skip with the reason (FLOCK_REQUIRE_KERNEL_TESTS=1 turns that into a failure).
package e2e
