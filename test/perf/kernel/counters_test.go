//go:build linux

package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/synth"
)

// BenchmarkCounterRead times one read of the table's named counters, as the agent takes it every
// --counter-interval (a netlink dump of the table's counter objects, nft.NetlinkCounters), with
// the table of a synthetic cluster in place; and, for comparison, the same read through the nft
// command (`nft -j list counters table`), which loads every set of the namespace first.
func BenchmarkCounterRead(b *testing.B) {
	for _, size := range applySizes {
		b.Run(fmt.Sprintf("pods=%d,policies=%d", size.pods, size.policies), func(b *testing.B) {
			tb := requireKernel(b, "perf/kernel counter read benchmark")
			if size.pods > 10000 && testing.Short() {
				b.Skip("150k-pod cluster skipped in -short mode")
			}
			ns := netns.NewScratch(tb)
			script := renderCluster(b, synth.Sized(size.pods, size.policies))
			if err := applyScript(ns, script.Text); err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(filepath.Join(netnsDir, ns))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			c := nft.NetlinkCounters{NetNS: int(f.Fd())}
			var n int
			for b.Loop() {
				got, err := c.Counters(context.Background(), "inet", render.DefaultTable)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			if n != len(script.Counters) {
				b.Fatalf("read %d counters, the table declares %d", n, len(script.Counters))
			}
			b.ReportMetric(float64(n), "counters")
			// The nft command's way, once, for the comparison.
			start := time.Now()
			if out, err := nftCommand(ns, "-j", "list", "counters", "table", "inet", render.DefaultTable).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "nft-cli-ms")
		})
	}
}
