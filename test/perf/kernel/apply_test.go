//go:build linux

package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// applySizes are the synthetic clusters of test/synth's BenchmarkTranslateRender
// (synth.Sized: 50 pods per namespace, 110 pods per node, 110 of them on the local node).
var applySizes = []struct{ pods, policies int }{{10000, 1000}, {150000, 10000}}

// requireKernel skips (fails, when FLOCK_REQUIRE_KERNEL_TESTS is set) unless this process can
// build network namespaces and run ip, nft and nsenter, and returns the strict tb for the rest.
func requireKernel(tb testing.TB, what string) testing.TB {
	tb.Helper()
	tb = testenv.RequireKernel(tb, what)
	if _, err := exec.LookPath("nsenter"); err != nil {
		tb.Skipf("%s: skipping, `nsenter` is not in $PATH (apt-get install util-linux)", what)
	}
	return tb
}

// renderCluster translates and renders a synthetic cluster for its local node.
func renderCluster(tb testing.TB, cfg synth.Config) render.Script {
	tb.Helper()
	cl := synth.Generate(cfg)
	rs, problems := translate.Translate(translate.Input{Node: cl.LocalNode, Policies: cl.Policies, Namespaces: cl.Namespaces, Pods: compact.NewPods(cl.Pods)})
	if len(problems) > 0 {
		tb.Fatalf("%d translation problems, first: %v", len(problems), problems[0])
	}
	return render.Render(rs, render.Options{})
}

// BenchmarkApply times `nft -f -` of a rendered script replacing the table the previous
// iteration left behind, which is what the agent does on every recompute in steady state (the
// script starts with add table / delete table). The ",first" variants apply into a namespace
// without the table, as the very first apply after boot does.
func BenchmarkApply(b *testing.B) {
	for _, size := range applySizes {
		name := fmt.Sprintf("pods=%d,policies=%d", size.pods, size.policies)
		var script render.Script // rendered once per size, shared by the two variants
		for _, first := range []bool{false, true} {
			sub := name
			if first {
				sub += ",first"
			}
			b.Run(sub, func(b *testing.B) {
				tb := requireKernel(b, "perf/kernel apply benchmark")
				if size.pods > 10000 && testing.Short() {
					b.Skip("150k-pod cluster skipped in -short mode")
				}
				ns := netns.NewScratch(tb)
				if script.Text == nil {
					script = renderCluster(b, synth.Sized(size.pods, size.policies))
				}
				// The steady-state variant needs the table in place before the first timed apply.
				if err := applyScript(ns, script.Text); err != nil {
					b.Fatal(err)
				}
				emptyTable := func() {
					if err := applyScript(ns, render.DeleteTable(render.DefaultTable)); err != nil {
						b.Fatal(err)
					}
				}
				var peakKiB int64
				for b.Loop() {
					if first {
						b.StopTimer()
						emptyTable()
						b.StartTimer()
					}
					if err := applyScript(ns, script.Text); err != nil {
						b.Fatal(err)
					}
					// The same apply again, untimed, from a small helper process that can
					// see nft's real peak RSS (see measureNftRSS).
					b.StopTimer()
					if first {
						emptyTable()
					}
					rss, floor, err := measureNftRSS(ns, script.Text)
					if err != nil {
						b.Fatal(err)
					}
					if rss <= floor {
						// nft needed no more than the helper itself (small scripts since pod
						// addresses went into hash sets): the figure is an upper bound.
						b.Logf("nft's peak RSS (%d KiB) is not above the measuring helper's own (%d KiB): reporting the helper's as an upper bound", rss, floor)
						rss = floor
					}
					peakKiB = max(peakKiB, rss)
					b.StartTimer()
				}
				b.ReportMetric(float64(peakKiB)/1024, "nft-peak-MB")
				b.ReportMetric(float64(script.Stats.Bytes), "bytes/script")
				b.ReportMetric(float64(script.Stats.Elements), "elements")
			})
		}
	}
}

// nftCommand returns the command that runs nft with args inside network namespace ns.
//
// nsenter joins the namespace and then execs nft in the same process (no --fork), so the pid
// waited for is nft's. `ip netns exec` would exec in place as well, but it first unshares a mount
// namespace and remounts /sys, work that does not belong in the timed apply.
// TestMeasurementMachinery checks that the waited pid really runs nft.
func nftCommand(ns string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, ns), "nft"}, args...)...)
}

// netnsDir is where `ip netns add` pins named namespaces.
const netnsDir = "/run/netns"

// applyScript pipes script to `nft -f -` inside ns.
func applyScript(ns string, script []byte) error {
	_, err := runNft(nftCommand(ns, "-f", "-"), bytes.NewReader(script))
	return err
}

// runNft runs an nft command with the given stdin; a failure carries nft's output.
func runNft(cmd *exec.Cmd, stdin io.Reader) (*syscall.Rusage, error) {
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return nil, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, msg)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return nil, errors.New("no rusage for nft")
	}
	return ru, nil
}

// Peak RSS cannot be read from the rusage of a child that this process starts itself: Go starts
// children with CLONE_VM|CLONE_VFORK, so until its exec the child runs on the parent's address
// space, and at exec Linux folds that address space's high-water mark into the child's ru_maxrss.
// The benchmark process holds the whole synthetic cluster (hundreds of MB), so every nft it
// started directly would report at least that. Instead, a fresh copy of the test binary (small,
// it has done nothing yet) starts nft and reports nft's ru_maxrss back; the helper's own peak is
// then the floor of what can be measured, and it is reported too so that the caller can tell.
const (
	rssHelperEnv   = "FLOCK_PERF_NFT_RSS_NETNS" // set: run as the helper, applying stdin in this netns
	rssHelperFloor = "helper-hwm-kib"
)

// TestMain turns the test binary into the RSS helper when rssHelperEnv is set.
func TestMain(m *testing.M) {
	if ns := os.Getenv(rssHelperEnv); ns != "" {
		os.Exit(rssHelper(ns))
	}
	os.Exit(m.Run())
}

// rssHelper applies stdin with nft in ns and prints nft's ru_maxrss and its own VmHWM (KiB).
func rssHelper(ns string) int {
	hwm, err := ownHWM()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ru, err := runNft(nftCommand(ns, "-f", "-"), os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("maxrss-kib %d %s %d\n", ru.Maxrss, rssHelperFloor, hwm)
	return 0
}

// ownHWM returns this process's peak RSS (VmHWM) in KiB.
func ownHWM() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// measureNftRSS applies script in ns through the helper and returns nft's peak RSS and the
// helper's own, in KiB. The first is max(nft's peak, the helper's): when it is not above the
// helper's, it is only an upper bound of nft's.
func measureNftRSS(ns string, script []byte) (rss, floor int64, err error) {
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), rssHelperEnv+"="+ns)
	cmd.Stdin = bytes.NewReader(script)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("nft RSS helper: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var label string
	if _, err := fmt.Sscanf(stdout.String(), "maxrss-kib %d %s %d", &rss, &label, &floor); err != nil || label != rssHelperFloor {
		return 0, 0, fmt.Errorf("nft RSS helper: unexpected output %q: %v", stdout.String(), err)
	}
	return rss, floor, nil
}
