// Package kernel benchmarks the agent's rulesets against the real nft and kernel, each in
// network namespaces of its own: how long `nft -f` takes to apply a large script and how much
// memory nft needs for it, and what the applied ruleset costs forwarded traffic.
//
// BenchmarkApply renders the synthetic clusters of test/synth's benchmarks
// (pods=10000,policies=1000 and pods=150000,policies=10000; 50 pods per namespace, 110 per node)
// with the real translate and render, and pipes the script to `nft -f -` in a throwaway
// namespace (netns.NewScratch). Each iteration replaces the table the previous one left, as the
// agent does on every recompute (the script itself starts with add table / delete table);
// ns/op is that apply. The ",first" variants apply into a namespace without the table, as the
// first apply after boot does. It reports nft-peak-MB, the largest peak RSS of nft over the
// iterations (MiB), bytes/script and elements (the script's element lines). nft runs through
// `nsenter --net=...`, which execs it in place; the peak RSS comes from a separate, untimed apply
// of the same script started by a small helper process, since a child of the benchmark process
// would inherit the benchmark's own high-water mark (see measureNftRSS).
//
// BenchmarkDatapath builds client, router and server (test/netns: one node and two pods, joined
// by routed veth pairs, IPv4) and an intruder pod. The router holds the agent's ruleset, rendered
// by the real translate and render, for a cluster in which the server is selected by a policy
// allowing TCP to its port from a namespace of n pods (peers=1000 ... peers=150000); the pods'
// addresses are spread out so that the peer set really has n entries, and the client owns one
// of them. The baseline is the same router with only a forward base chain
// `ct state established,related accept` (policy accept). The load runs continuously, from this
// process on threads moved into the client's namespace, while the router switches between
// baseline and ruleset every 150 ms (the switch swaps the base chain; sets, maps and the other
// chains stay loaded), so that neighbouring slices see the same machine:
//   - first many short connections (connect, one byte each way, close with a RST so that the
//     client keeps no TIME_WAIT) from 8 concurrent workers: conn/s and base-conn/s are the
//     medians over the ruleset and the baseline slices, conn-ratio their quotient;
//   - then one bulk TCP connection: Mbit/s, base-Mbit/s and tput-ratio likewise.
//
// Conntrack cannot hide the ruleset: every connection is new, so its first packet walks the whole
// ruleset (the forward chain, the pod verdict map, the pod chain, the policy chain with the peer
// set). Before and after measuring, a counter inserted at the head of the pod chain must count one
// packet per connection, the client must get through and the intruder must not.
// TestMeasurementMachinery checks the same in a few seconds, plus that the baseline lets the
// intruder in, and that the RSS figure is nft's own; it runs with the ordinary tests.
//
// BenchmarkEstablished measures what re-validating live connections (render.Revalidate) costs
// while the rules change every 100 ms, against render.Keep under the same changes: bulk TCP
// throughput through the router (tput-ratio, with per-cpu-ratio and the retransmissions of both
// modes), and the CPU of 10,000 long-lived flows sending one message a second each
// (reval-pct-core: the runtime of this process, of the flows' sink, a second copy of the test
// binary run as TestEstablishedFlowSink because 20,000 sockets exceed the file limit, and of
// ksoftirqd, median of per-pair differences). Every change narrows the server's ingress (one pod of
// its peer namespace goes, the one removed before comes back), so its epoch moves each time.
//
// Each datapath sub-benchmark measures once, whatever b.N, and takes about half a minute; run
// them all, as root, with
//
//	go test ./test/perf/kernel -run '^$' -bench . -benchtime 1x -timeout 30m
//
// Everything needs root, ip and nft (and nsenter, from util-linux), and skips with the reason
// otherwise; with FLOCK_REQUIRE_KERNEL_TESTS=1 a skip fails instead. Namespaces are removed when
// the benchmark ends, also on failure and on Ctrl-C (test/netns). On a shared machine the absolute
// figures move a lot between runs; the ratios, from interleaved slices, are what to compare.
package kernel
