package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flock-net/flock-netpol/internal/controller"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/synth"
)

// podSource serialises pods as the API server would send them, one at a time, so that only the
// pod being decoded exists in its full form besides what the cache keeps.
func podSource(pods []*corev1.Pod) source {
	return func(yield func([]byte) bool) {
		for i, p := range pods {
			if !yield(mustJSON(realisticPod(p, i))) {
				return
			}
		}
	}
}

// measureCache returns the live bytes per pod of a pod cache filled with pods, with or without
// the agent's transform.
func measureCache(pods []*corev1.Pod, transform bool) (float64, error) {
	n, cached, err := cacheBytes(podKind, podSource(pods), transform)
	if err != nil {
		return 0, err
	}
	if cached != len(pods) {
		return 0, fmt.Errorf("the cache holds %d pods, want %d", cached, len(pods))
	}
	return float64(n) / float64(len(pods)), nil
}

// BenchmarkCacheMemory reports the live heap per pod in the agent's pod cache (B/cached-pod) and,
// for comparison, in the same cache without the transform (B/full-pod), plus the average size
// of a pod as serialised JSON (json-B/pod). It measures once, whatever b.N.
func BenchmarkCacheMemory(b *testing.B) {
	for _, n := range []int{10000, 150000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			if n > 10000 && testing.Short() {
				b.Skip("150k pods skipped in -short mode")
			}
			pods := synth.Generate(synth.Sized(n, 0)).Pods
			stripped, err := measureCache(pods, true)
			if err != nil {
				b.Fatal(err)
			}
			full, err := measureCache(pods, false)
			if err != nil {
				b.Fatal(err)
			}
			var jsonBytes int
			sample := pods[:min(len(pods), 1000)]
			for i, p := range sample {
				jsonBytes += len(mustJSON(realisticPod(p, i)))
			}
			b.ReportMetric(stripped, "B/cached-pod")
			b.ReportMetric(full, "B/full-pod")
			b.ReportMetric(float64(jsonBytes)/float64(len(sample)), "json-B/pod")
			// pods stayed alive across both measurements, so they cancel out of each.
			runtime.KeepAlive(pods)
		})
	}
}

// The child process of BenchmarkAgentMemory is this test binary run with -test.run of
// TestAgentMemoryChild and childDirEnv naming the directory with the serialised cluster.
const (
	childDirEnv  = "FLOCK_PERF_AGENT_MEMORY_DIR"
	childNodeEnv = "FLOCK_PERF_AGENT_MEMORY_NODE"
	resultMarker = "FLOCK-PERF-RESULT "
	// heapProfileEnv, when set, names the file the child writes a heap profile to once the steady
	// state ends (go tool pprof reads it), to tell what the live heap is made of.
	heapProfileEnv = "FLOCK_PERF_HEAP_PROFILE"
)

// agentMemory is what the child reports.
type agentMemory struct {
	Pods, Namespaces, Policies int
	RSSBytes, HWMBytes         int64  // VmRSS, VmHWM after the recompute and a collection
	AnonBytes, FileBytes       int64  // VmRSS's anonymous and file pages (see memStatus)
	SyncHWMBytes               int64  // VmHWM once the caches synced, before the recompute
	RecomputeAllocBytes        uint64 // heap allocated by the recompute
	HeapAlloc, HeapSys         uint64 // live heap after the recompute and a collection
	ScriptBytes                int
	Churn                      churnResult // the steady state that follows (see churn)
	ChurnHWMBytes              int64       // VmHWM at its end
	ChurnHeap                  uint64      // live heap at its end
	SyncSeconds                float64
	RecomputeSeconds           float64
	Lists                      int32 // plain lists the informers fell back to (want 0)
}

// BenchmarkAgentMemory runs a fresh process holding the agent's caches of a 150k-pod, 10k-policy
// cluster after one recompute, and reports its memory: rss-MB (VmRSS), hwm-MB (VmHWM, the peak),
// rss-anon-MB and rss-file-MB (VmRSS's anonymous pages and this test binary's own: the agent's
// binary touches fewer), heap-MB (live Go heap) and budget-MB, the target of 1 KiB per pod plus
// 50 MiB; also the peak before the recompute (sync-hwm-MB) and what the recompute allocated
// (recompute-alloc-MB). Then the steady state: 50 pod events a second for FLOCK_PERF_DURATION
// (60 s; see churn), with VmRSS sampled every second (steady-rss-max-MB, steady-rss-end-MB), the
// peak (steady-hwm-MB) and the live heap (steady-heap-MB) at the end; FLOCK_PERF_HEAP_PROFILE
// names a file for the heap profile at that point. A fresh process so that nothing else this
// binary did (generating the cluster, other benchmarks) counts.
func BenchmarkAgentMemory(b *testing.B) {
	const pods, policies = 150000, 10000
	b.Run(fmt.Sprintf("pods=%d,policies=%d", pods, policies), func(b *testing.B) {
		if testing.Short() {
			b.Skip("150k-pod agent skipped in -short mode")
		}
		dir := b.TempDir()
		node, err := writeCluster(dir, synth.Sized(pods, policies))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		res, err := runChild(dir, node)
		if err != nil {
			b.Fatal(err)
		}
		if res.Pods != pods || res.Policies != policies {
			b.Fatalf("the child cached %d pods and %d policies, want %d and %d", res.Pods, res.Policies, pods, policies)
		}
		const mib = 1 << 20
		b.ReportMetric(float64(res.RSSBytes)/mib, "rss-MB")
		b.ReportMetric(float64(res.HWMBytes)/mib, "hwm-MB")
		b.ReportMetric(float64(res.AnonBytes)/mib, "rss-anon-MB")
		b.ReportMetric(float64(res.FileBytes)/mib, "rss-file-MB")
		b.ReportMetric(float64(res.HeapAlloc)/mib, "heap-MB")
		b.ReportMetric(float64(pods*1024+50*mib)/mib, "budget-MB")
		b.ReportMetric(float64(res.SyncHWMBytes)/mib, "sync-hwm-MB")
		b.ReportMetric(float64(res.Churn.MaxRSS)/mib, "steady-rss-max-MB")
		b.ReportMetric(float64(res.Churn.EndRSS)/mib, "steady-rss-end-MB")
		b.ReportMetric(float64(res.ChurnHWMBytes)/mib, "steady-hwm-MB")
		b.ReportMetric(float64(res.ChurnHeap)/mib, "steady-heap-MB")
		b.ReportMetric(float64(res.Churn.Events), "steady-events")
		b.ReportMetric(float64(res.Churn.Recomputes), "steady-recomputes")
		b.ReportMetric(float64(res.RecomputeAllocBytes)/mib, "recompute-alloc-MB")
		b.ReportMetric(float64(res.ScriptBytes)/1024, "script-KB")
		b.ReportMetric(res.RecomputeSeconds*1000, "recompute-ms")
		b.ReportMetric(res.SyncSeconds, "sync-s")
	})
}

// File names of the serialised cluster, one JSON object per line.
const (
	podsFile       = "pods.jsonl"
	namespacesFile = "namespaces.jsonl"
	policiesFile   = "policies.jsonl"
)

// writeCluster generates the cluster of cfg and writes its objects, dressed as the API server
// returns them, into dir. It returns the local node's name.
func writeCluster(dir string, cfg synth.Config) (string, error) {
	cl := synth.Generate(cfg)
	write := func(name string, n int, obj func(i int) any) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for i := range n {
			w.Write(mustJSON(obj(i)))
			w.WriteByte('\n')
		}
		return errors.Join(w.Flush(), f.Close())
	}
	err := errors.Join(
		write(podsFile, len(cl.Pods), func(i int) any { return realisticPod(cl.Pods[i], i) }),
		write(namespacesFile, len(cl.Namespaces), func(i int) any { return realisticNamespace(cl.Namespaces[i], i) }),
		write(policiesFile, len(cl.Policies), func(i int) any { return realisticPolicy(cl.Policies[i], i) }),
	)
	return cl.LocalNode, err
}

// fileSource streams the objects of a file written by writeCluster. Each object is read into a
// fresh buffer, as a client reads a watch frame.
func fileSource(path string) source {
	return func(yield func([]byte) bool) {
		f, err := os.Open(path)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		r := bufio.NewReaderSize(f, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 && !yield(line) {
				return
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				panic(err)
			}
		}
	}
}

// runChild runs the child process and returns what it reported. The child dies with the parent
// (Pdeathsig) and is killed at its timeout.
func runChild(dir, node string) (agentMemory, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestAgentMemoryChild$", "-test.count", "1", "-test.timeout", "20m")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childNodeEnv+"="+node)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	for line := range strings.SplitSeq(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, resultMarker); ok && err == nil {
			var res agentMemory
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				return agentMemory{}, fmt.Errorf("child result %q: %w", rest, err)
			}
			return res, nil
		}
	}
	return agentMemory{}, fmt.Errorf("child process (%v) reported no result:\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
}

// countingApplier stands in for nft: the child measures memory, not the kernel.
type countingApplier struct {
	mu      sync.Mutex
	applies int
	bytes   int
}

func (a *countingApplier) Apply(_ context.Context, script []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applies++
	a.bytes = len(script)
	return nil
}

// TestAgentMemoryChild is the child process of BenchmarkAgentMemory; run on its own it skips.
func TestAgentMemoryChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("helper process of BenchmarkAgentMemory; runs only when it sets " + childDirEnv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The three informers start together, as the manager starts its cache.
	start := time.Now()
	files := map[string]string{podKind.name: podsFile, nsKind.name: namespacesFile, policyKind.name: policiesFile}
	informers := map[string]*cachedInformer{}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, k := range []kind{podKind, nsKind, policyKind} {
		wg.Go(func() {
			ci, err := startInformer(ctx, k, fileSource(filepath.Join(dir, files[k.name])), true)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			informers[k.name] = ci
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	synced := time.Since(start)
	syncMem, err := procStatus()
	if err != nil {
		t.Fatal(err)
	}

	indexers := map[string]toolscache.Indexer{}
	getter := informerGetter{}
	var lists int32
	for name, ci := range informers {
		indexers[name] = ci.informer.GetIndexer()
		getter[name] = ci.informer
		lists += ci.lw.lists.Load()
	}
	// The agent also caches its own Node (one object, watched by name): an indexer holding it.
	nodeInformer := toolscache.NewSharedIndexInformer(&toolscache.ListWatch{}, &corev1.Node{}, 0, toolscache.Indexers{})
	if err := nodeInformer.GetIndexer().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: os.Getenv(childNodeEnv)}}); err != nil {
		t.Fatal(err)
	}
	getter[fmt.Sprintf("%T", &corev1.Node{})] = nodeInformer
	applier := &countingApplier{}
	r := &controller.Reconciler{
		Source:  controller.CacheSource{Informers: getter},
		Node:    os.Getenv(childNodeEnv),
		Table:   render.DefaultTable,
		Applier: applier,
		Metrics: controller.NewMetrics(nil),
		Log:     logr.Discard(),
	}
	// As the agent runs (SetupWithManager turns it on): the incremental translation's state,
	// built by the first recompute, is part of the steady memory.
	r.TranslateIncrementally()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start = time.Now()
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "node-ruleset"}}); err != nil {
		t.Fatal(err)
	}
	recompute := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if applier.applies != 1 {
		t.Fatalf("%d applies, want 1", applier.applies)
	}

	// Steady state: collect, then give the runtime's background scavenger a moment to return
	// freed pages, as it would between events in a running agent.
	heap := liveHeap()
	time.Sleep(3 * time.Second)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mem, err := procStatus()
	if err != nil {
		t.Fatal(err)
	}
	firstScript := applier.bytes
	d, err := driveDuration()
	if err != nil {
		t.Fatal(err)
	}
	steady, err := churn(ctx, r, indexers[podKind.name], os.Getenv(childNodeEnv), d, 50)
	if err != nil {
		t.Fatal(err)
	}
	end, err := procStatus()
	if err != nil {
		t.Fatal(err)
	}
	steadyHeap := liveHeap()
	if path := os.Getenv(heapProfileEnv); path != "" {
		if err := writeHeapProfile(path); err != nil {
			t.Fatal(err)
		}
	}
	res := agentMemory{
		Pods:                len(indexers[podKind.name].ListKeys()),
		Namespaces:          len(indexers[nsKind.name].ListKeys()),
		Policies:            len(indexers[policyKind.name].ListKeys()),
		RSSBytes:            mem.RSS,
		HWMBytes:            mem.HWM,
		AnonBytes:           mem.Anon,
		FileBytes:           mem.File,
		SyncHWMBytes:        syncMem.HWM,
		RecomputeAllocBytes: after.TotalAlloc - before.TotalAlloc,
		HeapAlloc:           heap,
		HeapSys:             ms.HeapSys,
		ScriptBytes:         firstScript,
		Churn:               steady,
		ChurnHWMBytes:       end.HWM,
		ChurnHeap:           steadyHeap,
		SyncSeconds:         synced.Seconds(),
		RecomputeSeconds:    recompute.Seconds(),
		Lists:               lists,
	}
	out, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(resultMarker + string(out))
	runtime.KeepAlive(informers)
	runtime.KeepAlive(r) // its incremental state is part of what the agent keeps
}

// writeHeapProfile writes the heap profile of this process to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
}

// memStatus is what /proc/self/status says of this process's memory, in bytes.
type memStatus struct {
	RSS, HWM int64 // VmRSS, VmHWM
	// The resident pages by kind: anonymous (the Go heap, stacks, the runtime's own), and those
	// of files (this binary's code and data that were touched, much of it by package inits).
	Anon, File int64
}

// procStatus returns the memory of this process.
func procStatus() (memStatus, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return memStatus{}, err
	}
	var m memStatus
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon, "RssFile": &m.File}
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || fields[key] == nil {
			continue
		}
		f := strings.Fields(val) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return memStatus{}, fmt.Errorf("unexpected /proc/self/status line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memStatus{}, err
		}
		*fields[key] = kb * 1024
	}
	if m.RSS == 0 || m.HWM == 0 || m.Anon == 0 || m.File == 0 {
		return memStatus{}, errors.New("VmRSS, VmHWM, RssAnon or RssFile missing from /proc/self/status")
	}
	return m, nil
}
