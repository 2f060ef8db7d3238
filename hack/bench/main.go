// Command bench runs flock-netpol's scale benchmarks (`make bench`) and prints every figure next
// to its target. The measurements are ordinary Go benchmarks (go test -bench), so each one can
// also be run on its own; this program only runs them in a fixed order, keeps their raw output,
// takes the median of repeated runs and lays the figures out as a table.
//
// Benchmarks that need root, nft or the envtest binaries skip themselves when those are missing;
// their rows then read "skipped" with the reason in the raw output.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// run is one `go test -bench` invocation.
type run struct {
	pkg, bench string
	args       []string // -count, -benchtime
	long       bool     // skipped by -quick
}

// runs are the benchmarks, cheapest first, so that a quick look does not wait for the datapath.
var runs = []run{
	{pkg: "./test/synth", bench: "^BenchmarkTranslateRender$", args: []string{"-count", "5"}},
	{pkg: "./test/synth", bench: "^BenchmarkIncrementalTranslate$", args: []string{"-count", "3"}},
	{pkg: "./test/synth", bench: "^BenchmarkRecompute$", args: []string{"-count", "3"}},
	{pkg: "./test/perf/agent", bench: "^BenchmarkCacheMemory$", args: []string{"-benchtime", "1x", "-count", "1"}},
	{pkg: "./test/perf/agent", bench: "^BenchmarkAgentMemory$", args: []string{"-benchtime", "1x", "-count", "1"}},
	{pkg: "./test/perf/kernel", bench: "^BenchmarkApply$", args: []string{"-benchtime", "3x", "-count", "3"}},
	{pkg: "./test/perf/kernel", bench: "^BenchmarkCounterRead$", args: []string{"-benchtime", "20x", "-count", "3"}},
	{pkg: "./test/perf/kernel", bench: "^BenchmarkDatapath$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
	{pkg: "./test/perf/kernel", bench: "^BenchmarkEstablished$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
	{pkg: "./test/perf/agent", bench: "^BenchmarkEventToKernel$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
	{pkg: "./test/perf/agent", bench: "^BenchmarkEventStream$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
	{pkg: "./test/perf/agent", bench: "^BenchmarkPolicyChange$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
	{pkg: "./test/perf/agent", bench: "^BenchmarkPodEvent$", args: []string{"-benchtime", "1x", "-count", "1"}, long: true},
}

// row is one line of the table: a metric of one benchmark, scaled, with its target.
type row struct {
	label  string
	bench  string // benchmark name without the -GOMAXPROCS suffix
	unit   string // as reported by go test
	scale  float64
	format string // printf verb for the scaled value
	shown  string // unit shown in the table
	target target
}

// target is what a figure must reach; a zero target is informational.
type target struct {
	op    string // "<=" or ">="
	value float64
	text  string // how the target reads, when it is not just op value
}

func (t target) String() string {
	switch {
	case t.text != "":
		return t.text
	case t.op == "":
		return ""
	}
	return fmt.Sprintf("%s %g", map[string]string{"<=": "≤", ">=": "≥"}[t.op], t.value)
}

func (t target) met(v float64) string {
	switch t.op {
	case "<=":
		return verdict(v <= t.value)
	case ">=":
		return verdict(v >= t.value)
	}
	return ""
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

const (
	tr10k  = "BenchmarkTranslateRender/pods=10000,policies=1000"
	tr150k = "BenchmarkTranslateRender/pods=150000,policies=10000"
	// One pod event that changes a peer set, translated incrementally and (baseline) in full.
	incTr   = "BenchmarkIncrementalTranslate/pods=150000,policies=10000,incremental"
	incDC   = "BenchmarkIncrementalTranslate/pods=150000,policies=10000,incremental-delete-create"
	incBld  = "BenchmarkIncrementalTranslate/pods=150000,policies=10000,incremental-build"
	incFull = "BenchmarkIncrementalTranslate/pods=150000,policies=10000,full"
	// The same event rendered and diffed: with the render memo (the agent) and parsed (baseline).
	recMemo  = "BenchmarkRecompute/pods=150000,policies=10000,memo"
	recParse = "BenchmarkRecompute/pods=150000,policies=10000,parse"
	ap10k    = "BenchmarkApply/pods=10000,policies=1000"
	ap150k   = "BenchmarkApply/pods=150000,policies=10000"
	mem150   = "BenchmarkAgentMemory/pods=150000,policies=10000"
	event    = "BenchmarkEventToKernel/rate=50/s,duration=60s"
	// The event stream at cluster scale, applied in place and (baseline) replaced whole.
	streamInc  = "BenchmarkEventStream/pods=150000,policies=10000,rate=50/s,incremental"
	streamFT   = "BenchmarkEventStream/pods=150000,policies=10000,rate=50/s,full-translate"
	streamFull = "BenchmarkEventStream/pods=150000,policies=10000,rate=50/s,full"
	// One pod event changing a peer set, alone.
	podEv = "BenchmarkPodEvent/pods=150000,policies=10000"
	// A policy change selecting 1,000 local pods, applied in place and (baseline) replaced whole.
	polInc  = "BenchmarkPolicyChange/pods=150000,policies=10000,selected=1000,incremental"
	polFull = "BenchmarkPolicyChange/pods=150000,policies=10000,selected=1000,full"
	estBlk  = "BenchmarkEstablished/bulk,change=100ms"
	estFlw  = "BenchmarkEstablished/flows=10000,change=100ms"
)

func le(v float64) target { return target{op: "<=", value: v} }
func ge(v float64) target { return target{op: ">=", value: v} }

var rows = []row{
	{label: "translate+render, 10k pods / 1k policies", bench: tr10k, unit: "ns/op", scale: 1e-6, format: "%.1f", shown: "ms"},
	{label: "  allocations", bench: tr10k, unit: "allocs/op", scale: 1, format: "%.0f", shown: "allocs"},
	{label: "  script", bench: tr10k, unit: "bytes/script", scale: 1.0 / 1024, format: "%.0f", shown: "KiB"},
	{label: "  rules / sets and maps / elements", bench: tr10k, unit: "rules", scale: 1, format: "%.0f"},
	{bench: tr10k, unit: "sets", scale: 1, format: "%.0f"},
	{bench: tr10k, unit: "elements", scale: 1, format: "%.0f"},
	{label: "translate+render, 150k pods / 10k policies", bench: tr150k, unit: "ns/op", scale: 1e-6, format: "%.1f", shown: "ms", target: le(50)},
	{label: "  allocations", bench: tr150k, unit: "allocs/op", scale: 1, format: "%.0f", shown: "allocs"},
	{label: "  allocated", bench: tr150k, unit: "B/op", scale: 1.0 / (1 << 20), format: "%.1f", shown: "MiB"},
	{label: "  script", bench: tr150k, unit: "bytes/script", scale: 1.0 / 1024, format: "%.0f", shown: "KiB"},
	{label: "  rules / sets and maps / elements", bench: tr150k, unit: "rules", scale: 1, format: "%.0f"},
	{bench: tr150k, unit: "sets", scale: 1, format: "%.0f"},
	{bench: tr150k, unit: "elements", scale: 1, format: "%.0f"},
	{label: "translate one pod event changing a peer set (a relabel), 150k pods / 10k policies, incremental", bench: incTr, unit: "ns/op", scale: 1e-6, format: "%.2f", shown: "ms"},
	{label: "  allocations", bench: incTr, unit: "allocs/op", scale: 1, format: "%.0f", shown: "allocs"},
	{label: "  the same pod deleted or created again, incremental", bench: incDC, unit: "ns/op", scale: 1e-6, format: "%.2f", shown: "ms"},
	{label: "  the same events, full translation (baseline)", bench: incFull, unit: "ns/op", scale: 1e-6, format: "%.1f", shown: "ms"},
	{label: "  building the incremental state (start, or a rebuild after a mismatch)", bench: incBld, unit: "ns/op", scale: 1e-6, format: "%.0f", shown: "ms"},
	{label: "render + diff of the same event, 150k pods / 10k policies, render memo", bench: recMemo, unit: "ns/op", scale: 1e-6, format: "%.2f", shown: "ms"},
	{label: "  allocated", bench: recMemo, unit: "B/op", scale: 1.0 / (1 << 20), format: "%.1f", shown: "MiB"},
	{label: "  the same without the memo, the new script parsed back (baseline)", bench: recParse, unit: "ns/op", scale: 1e-6, format: "%.1f", shown: "ms"},
	{label: "cache: bytes per cached pod (after transform)", bench: "BenchmarkCacheMemory/pods=150000", unit: "B/cached-pod", scale: 1, format: "%.0f", shown: "B", target: le(1024)},
	{label: "  the same pods without the transform", bench: "BenchmarkCacheMemory/pods=150000", unit: "B/full-pod", scale: 1, format: "%.0f", shown: "B"},
	{label: "agent steady RSS (50 pod events/s after the start), 150k pods / 10k policies", bench: mem150, unit: "steady-rss-max-MB", scale: 1, format: "%.0f", shown: "MiB", target: target{text: "≤ budget"}},
	{label: "  budget: 1 KiB per pod + 50 MiB", bench: mem150, unit: "budget-MB", scale: 1, format: "%.0f", shown: "MiB"},
	{label: "  RSS right after the first apply", bench: mem150, unit: "rss-MB", scale: 1, format: "%.0f", shown: "MiB"},
	{label: "  of which this test binary's file pages", bench: mem150, unit: "rss-file-MB", scale: 1, format: "%.0f", shown: "MiB"},
	{label: "  Go heap (live), after the first apply / in the steady state", bench: mem150, unit: "heap-MB", scale: 1, format: "%.0f"},
	{bench: mem150, unit: "steady-heap-MB", scale: 1, format: "%.0f", shown: "MiB"},
	{label: "  peak RSS (initial sync and first recompute)", bench: mem150, unit: "hwm-MB", scale: 1, format: "%.0f", shown: "MiB"},
	{label: "nft apply, 10k pods", bench: ap10k, unit: "ns/op", scale: 1e-6, format: "%.0f", shown: "ms"},
	{label: "  nft peak RSS", bench: ap10k, unit: "nft-peak-MB", scale: 1, format: "%.0f", shown: "MiB", target: le(150)},
	{label: "counter read (netlink), 150k pods / 10k policies", bench: "BenchmarkCounterRead/pods=150000,policies=10000", unit: "ns/op", scale: 1e-6, format: "%.1f", shown: "ms"},
	{label: "  counters in the table", bench: "BenchmarkCounterRead/pods=150000,policies=10000", unit: "counters", scale: 1, format: "%.0f"},
	{label: "  the same read through `nft list counters`", bench: "BenchmarkCounterRead/pods=150000,policies=10000", unit: "nft-cli-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "nft apply, 150k pods", bench: ap150k, unit: "ns/op", scale: 1e-6, format: "%.0f", shown: "ms", target: le(1000)},
	{label: "  nft peak RSS", bench: ap150k, unit: "nft-peak-MB", scale: 1, format: "%.0f", shown: "MiB", target: le(150)},
	{label: "new connections, 1k peer entries", bench: "BenchmarkDatapath/peers=1000", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline"},
	{label: "new connections, 10k peer entries", bench: "BenchmarkDatapath/peers=10000", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline"},
	{label: "new connections, 50k peer entries (per-rule counters on)", bench: "BenchmarkDatapath/peers=50000", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline", target: ge(0.97)},
	{label: "  baseline (ct state established,related only)", bench: "BenchmarkDatapath/peers=50000", unit: "base-conn/s", scale: 1, format: "%.0f", shown: "conn/s"},
	{label: "new connections, 50k peer entries, 10 ClusterNetworkPolicies on the path", bench: "BenchmarkDatapath/peers=50000,clusterpolicies=10", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline"},
	{label: "new connections, 50k peer entries, 100 ClusterNetworkPolicies on the path", bench: "BenchmarkDatapath/peers=50000,clusterpolicies=100", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline", target: ge(0.97)},
	{label: "new connections, 150k peer entries", bench: "BenchmarkDatapath/peers=150000", unit: "conn-ratio", scale: 1, format: "%.3f", shown: "× baseline", target: ge(0.95)},
	{label: "bulk TCP throughput, 50k peer entries", bench: "BenchmarkDatapath/peers=50000", unit: "tput-ratio", scale: 1, format: "%.3f", shown: "× baseline", target: target{op: ">=", value: 0.95, text: "no measurable loss (≥ 0.95)"}},
	{label: "  baseline", bench: "BenchmarkDatapath/peers=50000", unit: "base-Mbit/s", scale: 1, format: "%.0f", shown: "Mbit/s"},
	{label: "bulk TCP throughput, 150k peer entries", bench: "BenchmarkDatapath/peers=150000", unit: "tput-ratio", scale: 1, format: "%.3f", shown: "× baseline", target: target{op: ">=", value: 0.95, text: "no measurable loss (≥ 0.95)"}},
	{label: "established bulk TCP, a narrowing change every 100 ms", bench: estBlk, unit: "tput-ratio", scale: 1, format: "%.3f", shown: "× keep", target: ge(0.97)},
	{label: "  keep (established accepted unconditionally), same changes", bench: estBlk, unit: "base-Mbit/s", scale: 1, format: "%.0f", shown: "Mbit/s"},
	{label: "  bytes per CPU second, revalidate ÷ keep", bench: estBlk, unit: "per-cpu-ratio", scale: 1, format: "%.3f"},
	{label: "  packets judged again per change", bench: estBlk, unit: "rejudged/change", scale: 1, format: "%.1f"},
	{label: "  client retransmissions, revalidate / keep", bench: estBlk, unit: "retrans/s", scale: 1, format: "%.0f"},
	{bench: estBlk, unit: "base-retrans/s", scale: 1, format: "%.0f", shown: "/s"},
	{label: "re-validation CPU, 10k flows × 1 msg/s, a narrowing change every 100 ms", bench: estFlw, unit: "reval-pct-core", scale: 1, format: "%.1f", shown: "% of a core", target: target{op: "<=", value: 5, text: "≤ 5 % of a core"}},
	{label: "  packets judged again", bench: estFlw, unit: "rejudged/s", scale: 1, format: "%.0f", shown: "/s"},
	{label: "  CPU per packet judged again", bench: estFlw, unit: "ns/rejudged", scale: 1, format: "%.0f", shown: "ns"},
	{label: "  client retransmissions, revalidate / keep", bench: estFlw, unit: "retrans/s", scale: 1, format: "%.0f"},
	{bench: estFlw, unit: "base-retrans/s", scale: 1, format: "%.0f", shown: "/s"},
	{label: "  machine-wide system+irq+softirq, revalidate − keep", bench: estFlw, unit: "machine-pct-core", scale: 1, format: "%.1f", shown: "% of a core"},
	{label: "  nft applies, revalidate − keep", bench: estFlw, unit: "apply-pct-core", scale: 1, format: "%.1f", shown: "% of a core"},
	{label: "event to kernel, 50 pod events/s for 60 s: p50", bench: event, unit: "p50-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  p99", bench: event, unit: "p99-ms", scale: 1, format: "%.0f", shown: "ms", target: le(1000)},
	{label: "  events / applies", bench: event, unit: "events", scale: 1, format: "%.0f"},
	{bench: event, unit: "applies", scale: 1, format: "%.0f", target: target{text: "coalesced: applies < events"}},
	{label: "  events never seen in the kernel", bench: event, unit: "unseen", scale: 1, format: "%.0f", target: le(0)},
	{label: "event stream, 150k pods / 10k policies, 50 relabels/s, incremental translation, in place: p50", bench: streamInc, unit: "p50-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  p99", bench: streamInc, unit: "p99-ms", scale: 1, format: "%.0f", shown: "ms", target: le(200)},
	{label: "  max (the coalescing bound: the recompute in progress plus the next)", bench: streamInc, unit: "max-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  agent + nft CPU", bench: streamInc, unit: "cpu-pct-core", scale: 1, format: "%.0f", shown: "% of a core", target: le(10)},
	{label: "  recomputes / applies", bench: streamInc, unit: "recomputes", scale: 1, format: "%.0f"},
	{bench: streamInc, unit: "applies", scale: 1, format: "%.0f"},
	{label: "event stream, same, whole cluster translated per recompute (--full-translate): p99", bench: streamFT, unit: "p99-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  agent + nft CPU", bench: streamFT, unit: "cpu-pct-core", scale: 1, format: "%.0f", shown: "% of a core"},
	{label: "event stream, same, every change a full replace (baseline): p99", bench: streamFull, unit: "p99-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  agent + nft CPU", bench: streamFull, unit: "cpu-pct-core", scale: 1, format: "%.0f", shown: "% of a core"},
	{label: "one pod event changing a peer set (a peer leaves), alone, to the kernel, 150k pods: p50", bench: podEv, unit: "p50-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  p99", bench: podEv, unit: "p99-ms", scale: 1, format: "%.0f", shown: "ms", target: le(20)},
	{label: "  a peer joins: p99", bench: podEv, unit: "widen-p99-ms", scale: 1, format: "%.0f", shown: "ms", target: le(20)},
	{label: "  the agent's part (outside nft or netlink): p50 / p99", bench: podEv, unit: "agent-p50-ms", scale: 1, format: "%.0f", shown: "ms"},
	{bench: podEv, unit: "agent-p99-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  updates sent over netlink", bench: podEv, unit: "netlink-pct", scale: 1, format: "%.0f", shown: "%"},
	{label: "  transaction (median): bytes / element lines", bench: podEv, unit: "bytes/update", scale: 1, format: "%.0f"},
	{bench: podEv, unit: "elements/update", scale: 1, format: "%.0f"},
	{label: "a policy selecting 1,000 local pods created, to the kernel (slowest of 10), in place", bench: polInc, unit: "create-ms", scale: 1, format: "%.0f", shown: "ms", target: le(200)},
	{label: "  the same policy deleted (their flows judged again)", bench: polInc, unit: "delete-ms", scale: 1, format: "%.0f", shown: "ms", target: le(200)},
	{label: "  transaction, created / deleted", bench: polInc, unit: "create-bytes", scale: 1.0 / 1024, format: "%.0f", shown: "KiB"},
	{bench: polInc, unit: "delete-bytes", scale: 1.0 / 1024, format: "%.0f", shown: "KiB"},
	{label: "  created, every change a full replace (baseline)", bench: polFull, unit: "create-ms", scale: 1, format: "%.0f", shown: "ms"},
	{label: "  deleted, full replace (baseline)", bench: polFull, unit: "delete-ms", scale: 1, format: "%.0f", shown: "ms"},
}

func main() {
	quick := flag.Bool("quick", false, "skip the long benchmarks (datapath, established flows, event to kernel)")
	rawPath := flag.String("raw", "bin/bench/raw.txt", "where to keep the raw go test output (empty: nowhere)")
	parse := flag.String("parse", "", "do not run anything: build the table from this raw go test output")
	markdown := flag.Bool("markdown", false, "print the table as Markdown")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./hack/bench [flags]\n\n"+
			"Runs the scale benchmarks (datapath and apply parts need root and nft, the event benchmark\n"+
			"needs KUBEBUILDER_ASSETS) and prints each figure, the median of its runs, next to its target.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	var raw []byte
	if *parse != "" {
		var err error
		if raw, err = os.ReadFile(*parse); err != nil {
			fail(err)
		}
	} else {
		raw = runAll(*quick)
		if *rawPath != "" {
			if err := writeRaw(*rawPath, raw); err != nil {
				fail(err)
			}
			fmt.Fprintf(os.Stderr, "raw output: %s\n", *rawPath)
		}
	}
	results, skips := parseBench(raw)
	fmt.Printf("\nflock-netpol scale benchmarks, %s, %d CPUs, %s; medians of the runs\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), memTotal())
	printTable(os.Stdout, results, skips, *markdown)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func writeRaw(path string, raw []byte) error {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		if err := os.MkdirAll(path[:i], 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, raw, 0o644)
}

// runAll runs every benchmark, echoing go test's output to stderr as it comes, and returns it.
func runAll(quick bool) []byte {
	var all bytes.Buffer
	for _, r := range runs {
		if quick && r.long {
			continue
		}
		args := append([]string{"test", r.pkg, "-run", "^$", "-bench", r.bench, "-benchmem", "-v", "-timeout", "60m"}, r.args...)
		fmt.Fprintf(os.Stderr, "$ go %s\n", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		cmd.Stdout = io.MultiWriter(&all, os.Stderr)
		cmd.Stderr = io.MultiWriter(&all, os.Stderr)
		if err := cmd.Run(); err != nil {
			// A failed benchmark leaves its rows empty; the others still count.
			fmt.Fprintf(&all, "bench: go test %s -bench %s: %v\n", r.pkg, r.bench, err)
		}
	}
	return all.Bytes()
}

var (
	benchLine  = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	skipLine   = regexp.MustCompile(`--- SKIP: (Benchmark\S+?)(?:-\d+)?$`)
	logMessage = regexp.MustCompile(`^\s*\S+\.go:\d+: `)
)

// parseBench collects every value of every (benchmark, unit) from go test -bench output, and the
// benchmarks that were skipped.
func parseBench(raw []byte) (map[string]map[string][]float64, map[string]string) {
	results := map[string]map[string][]float64{}
	skips := map[string]string{}
	var last string // the previous line: go test -v prints a skip's reason just before it
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := skipLine.FindStringSubmatch(line); m != nil {
			skips[m[1]] = logMessage.ReplaceAllString(last, "")
			continue
		}
		last = line
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			if results[m[1]] == nil {
				results[m[1]] = map[string][]float64{}
			}
			results[m[1]][f[i+1]] = append(results[m[1]][f[i+1]], v)
		}
	}
	return results, skips
}

func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func printTable(w io.Writer, results map[string]map[string][]float64, skips map[string]string, markdown bool) {
	type line struct{ figure, value, target, verdict string }
	var lines []line
	for i := 0; i < len(rows); i++ {
		r := rows[i]
		// Rows without a label continue the previous one: "a / b / c".
		group := []row{r}
		for i+1 < len(rows) && rows[i+1].label == "" {
			i++
			group = append(group, rows[i])
		}
		var vals []string
		verdictText, targetText := "", ""
		for _, g := range group {
			vs := results[g.bench][g.unit]
			if len(vs) == 0 {
				vals = append(vals, missing(g.bench, skips))
				continue
			}
			v := median(vs) * g.scale
			vals = append(vals, fmt.Sprintf(g.format, v))
			if t := g.target; t.op != "" || t.text != "" {
				targetText = t.String()
				verdictText = t.met(v)
			}
		}
		value := strings.Join(vals, " / ")
		if u := group[len(group)-1].shown; u != "" && !strings.Contains(value, "skipped") && !strings.Contains(value, "no result") {
			value += " " + u
		}
		// Targets that compare two figures of one benchmark.
		switch {
		case r.unit == "steady-rss-max-MB":
			if v, l := results[r.bench]["steady-rss-max-MB"], results[r.bench]["budget-MB"]; len(v) > 0 && len(l) > 0 {
				verdictText = verdict(median(v) <= median(l))
			}
		case group[len(group)-1].unit == "applies":
			ev, ap := results[event]["events"], results[event]["applies"]
			if len(ev) > 0 && len(ap) > 0 {
				verdictText = verdict(median(ap) < median(ev))
			}
		}
		lines = append(lines, line{r.label, value, targetText, verdictText})
	}
	// Linearity: apply time per MiB of script should not grow from 10k to 150k pods.
	lin := line{figure: "apply time per script MiB, 150k ÷ 10k", target: "≤ 1.5 (linear)"}
	if a, b := perMiB(results, ap150k), perMiB(results, ap10k); a > 0 && b > 0 {
		lin.value = fmt.Sprintf("%.2f", a/b)
		lin.verdict = verdict(a/b <= 1.5)
	} else {
		lin.value = missing(ap150k, skips)
	}
	lines = append(lines, lin)

	if markdown {
		fmt.Fprintln(w, "| figure | measured | target | |")
		fmt.Fprintln(w, "| --- | --- | --- | --- |")
		for _, l := range lines {
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", strings.TrimSpace(l.figure), l.value, l.target, l.verdict)
		}
		return
	}
	width := [3]int{}
	for _, l := range lines {
		width[0] = max(width[0], len([]rune(l.figure)))
		width[1] = max(width[1], len([]rune(l.value)))
		width[2] = max(width[2], len([]rune(l.target)))
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }
	fmt.Fprintf(w, "%s  %s  %s  %s\n", pad("figure", width[0]), pad("measured", width[1]), pad("target", width[2]), "")
	for _, l := range lines {
		fmt.Fprintf(w, "%s  %s  %s  %s\n", pad(l.figure, width[0]), pad(l.value, width[1]), pad(l.target, width[2]), l.verdict)
	}
}

// perMiB is a benchmark's apply time in ms per MiB of script, or 0 when it did not run.
func perMiB(results map[string]map[string][]float64, bench string) float64 {
	t, s := results[bench]["ns/op"], results[bench]["bytes/script"]
	if len(t) == 0 || len(s) == 0 || median(s) == 0 {
		return 0
	}
	return median(t) / 1e6 / (median(s) / (1 << 20))
}

func missing(bench string, skips map[string]string) string {
	for b := bench; b != ""; {
		if reason, ok := skips[b]; ok {
			return "skipped: " + reason
		}
		i := strings.LastIndexByte(b, '/')
		if i < 0 {
			break
		}
		b = b[:i]
	}
	return "no result"
}

// memTotal reads the machine's memory size for the table's heading.
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.0f GiB RAM", math.Round(kb/(1<<20)))
		}
	}
	return "memory unknown"
}
