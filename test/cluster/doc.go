// Package cluster runs a small but real flock-netpol cluster on one machine, for end-to-end tests
// and the demo: a local control plane (kube-apiserver and etcd from envtest), nodes, pods and
// external hosts made of network namespaces (test/netns), and one real `flock-netpol run` process
// per node, each programming its node's namespace with the real nft.
//
//	kube-apiserver + etcd (envtest, 127.0.0.1)
//	      ▲ watch                          ▲ create/update/delete (Client)
//	flock-netpol run --node-name node-1 ... ── ip netns exec <node-1 ns> nft -f -
//	flock-netpol run --node-name node-2 ... ── ip netns exec <node-2 ns> nft -f -
//
// envtest has no scheduler and no kubelet, so the harness plays both: CreatePod writes a Pod with
// spec.nodeName set and then, through the status subresource, phase Running and status.podIPs
// copied from a network-namespace pod of the bed. The namespace pod and the API object are
// separate on purpose: tests may delete and recreate the API objects (new namespaces, new labels)
// while the namespaces, their addresses and servers stay.
//
// # Knowing that a state is enforced
//
// WaitEnforced waits, without sleeps chosen by guess, until every node's kernel enforces the
// cluster state currently stored in the API server: it runs the agent's own computation
// (controller.Reconciler.Desired, over Nodes, Namespaces, Pods, NetworkPolicies and, when
// installed, ClusterNetworkPolicies read from the API server) for each node, takes the digest the
// rendered script carries in the element of its digest set (render.DigestSet), and polls `nft
// list set inet flock-netpol digest` in each node's namespace until the kernel shows the same
// digest. Since the digest covers the whole script but the epochs of established connections (which depend on the
// agent's history of applies), a match means the agent applied exactly the rules the current
// state demands. Probe right after, and flush conntrack first (FlushConntrack) so that no entry of an
// earlier state lets a flow pass as established.
//
// With Options.ClusterNetworkPolicies the control plane serves ClusterNetworkPolicy
// (policy.networking.k8s.io, the experimental channel's CRD of the network-policy-api module this
// module requires), so the agents watch ClusterNetworkPolicies and every Node, and Expected reads
// them too; Client's scheme knows the type either way.
//
// # Pod ranges, agents stopped and started, fresh nodes
//
// Options.PodCIDRs gives the Node objects spec.podCIDRs, as the node IPAM controller would; the
// agents then close the addresses of those ranges that no known local pod owns, and Expected
// computes the same (the ranges come from the API server like everything else). Without it nodes
// have no pod ranges and nothing is closed. A bed pod without a Pod object (or whose Pod has no
// status.podIPs yet) is what a pod looks like between its start and the agent seeing its address.
//
// StopAgent ends a node's agent with SIGTERM, as a rollout would: the table stays in the kernel,
// enforcing the last applied state, and WaitEnforced fails until StartAgent has started a new
// agent for the node (same flags; it waits until the agent is ready). Node.DeleteTable removes the
// table: with the agent stopped the node is then a fresh one, and the next agent installs the
// bootstrap table first; with the agent running it is a change by another process, which the
// agent repairs. StartAgentHeld starts the agent under an identity that may read Nodes and nothing
// else (envtest's API server authorizes with RBAC), so it installs its bootstrap table but its
// caches cannot sync and no full apply follows until the test calls release, which grants the
// rest of an agent's read access: the bootstrap window lasts as long as the test wants.
// Each agent a node had logs to a file of its own (Node.LogPath, Node.AgentLog: the current one).
//
// # Lifetime and cleanup
//
// New returns a running cluster and its caller runs Close: agents are stopped (SIGTERM, then
// SIGKILL after a grace period, by PID), then the bed's namespaces are deleted, then envtest is
// stopped and the temporary directory (agent binary, kubeconfig, logs, etcd data) removed. Start,
// the form for tests, registers Close with tb.Cleanup; when the test failed, the tail of each
// agent's log is printed first. On SIGINT or SIGTERM (Ctrl-C) a process-wide
// handler kills the agents, the agent build and the envtest processes by PID and removes the
// temporary directories, while test/netns's own handler deletes the namespaces. Agents are
// started with a parent death signal, so even a SIGKILLed test process does not leave them
// running; for the rest, each cluster records its owner, envtest PIDs and directories beside its
// directory, and the next Start (SweepStale) finishes the job for owners that are gone, as
// test/netns does for namespaces.
//
// # Requirements
//
// Root, `ip` and `nft` (testenv.CheckKernel); without them New returns an error wrapping
// netns.ErrUnavailable, and Start skips the test, or fails it when FLOCK_REQUIRE_KERNEL_TESTS is
// set (as in CI). The envtest binaries come from KUBEBUILDER_ASSETS (absolute path; `make envtest`
// builds them and `make test` sets it); when it is missing New fails with a message saying how to
// provide them.
//
// # Main programs
//
// A main program (the demo) needs no testing.TB: it calls New, defers Close, and adds pods and
// external hosts with the bed's error-returning methods (Bed.NewPod, Bed.NewExternal,
// Endpoint Listen). The Must-style AddPod and AddExternal are for clusters from Start. The signal
// handlers of this package and of test/netns clean up on Ctrl-C either way.
package cluster
