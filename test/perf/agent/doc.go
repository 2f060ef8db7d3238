// Package agent holds benchmarks of the whole agent: how much memory its cache and one recompute
// take on a large cluster, and how quickly a pod event reaches the kernel.
//
// BenchmarkCacheMemory measures the bytes one pod costs in the agent's pod cache: synthetic pods
// (test/synth) are dressed up with what the API server really returns (managed fields,
// annotations, owner references, full container specs, conditions and container statuses),
// serialised to JSON and streamed as a watch-list into a client-go SharedIndexInformer built the
// way controller-runtime builds it (namespace index, the agent's transform from
// controller.CacheOptions). The live heap before and after gives B/cached-pod; the same without
// the transform gives B/full-pod.
//
// BenchmarkAgentMemory re-executes the test binary as a fresh child process that streams a
// 150k-pod, 10k-policy synthetic cluster (pods, namespaces and policies, each with its transform)
// into informers, runs one recompute through the real controller.Reconciler over those caches
// (with an Applier that only counts), and reports VmRSS, VmHWM and the live Go heap against the
// budget of 1 KiB per pod plus 50 MiB, plus the peak before the recompute (sync-hwm-MB) and what
// the recompute allocated (recompute-alloc-MB). It then keeps the agent in its steady state for
// the drive's duration (below): 50 relabels of remote pods a second, stored in the pod
// informer's indexer and observed as the watch would deliver them, a recompute every 100 ms as
// the agent coalesces them, and VmRSS sampled every second (steady-rss-max-MB). The garbage of
// that stream, between collections, is what the RSS right after the first apply does not show.
//
// BenchmarkEventStream drives 50 events/s through the real reconciler at 150k pods / 10k policies
// from an in-process event source (see stream_test.go), in place and with full replaces.
//
// BenchmarkEventToKernel runs the real agent (cli.NewAgent, the real nft in a throwaway network
// namespace) against envtest with a 2,000-pod, 200-policy background cluster, drives 50 pod
// creates and deletes per second, and reports percentiles over events of the time from the API
// write (for a create, the status write that gives the pod its address) to the return of the
// first `nft -f` whose script reflects it (p50-ms, p99-ms, max-ms), the number of events and of
// applies, events no apply reflected before the pod was deleted again (unseen, counted as
// infinitely slow), and nft's own time per apply (nft-p50-ms, nft-p99-ms). At the end the table
// is read back from the kernel and checked against the last applied script. It needs root, nft,
// ip and the envtest binaries, and skips otherwise (fails when FLOCK_REQUIRE_KERNEL_TESTS is
// set). FLOCK_PERF_DURATION (e.g. 10s) or -short shortens the 60 s drive.
//
// Each benchmark measures once, whatever b.N; run them with -benchtime 1x (about five minutes on
// two cores; -short skips the 150k-pod sizes and drives events for 10 s):
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s/1.37.2 go test ./test/perf/agent -run '^$' -bench . -benchtime 1x -timeout 30m
//
// The machine's load shows in every figure, the latencies most: compare runs on the same machine.
//
// TestMeasurementMachinery checks the measuring code itself in a few seconds and runs with the
// ordinary tests.
package agent
