//go:build linux

package kernel

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/netns"
)

// TestMeasurementMachinery checks, in a few seconds, that the benchmarks measure what they
// claim: that the router enforces the rendered ruleset (an allowed client passes, an address
// outside the peer set is dropped, each new connection is evaluated by the pod chain), that
// the baseline really is the baseline, and that the RSS figure is nft's own.
func TestMeasurementMachinery(t *testing.T) {
	t.Run("datapath", func(t *testing.T) {
		b := newBench(t, 1000)
		counted, err := b.checkEnforced(50)
		if err != nil {
			t.Fatal(err)
		}
		if counted > 50+5 {
			t.Errorf("the pod chain counted %d packets for 50 connections: more than their first packets reach it", counted)
		}
		// The baseline must let the intruder in (or the measurement would compare two
		// rulesets), and switching back must restore the enforcement.
		b.setMode(false)
		dst := sockaddr(serverAddr)
		if err := b.intruder.Do(func() error { return dialOnce(dst, time.Second) }); err != nil {
			t.Errorf("the baseline drops the intruder: %v", err)
		}
		b.setMode(true)
		if _, err := b.checkEnforced(10); err != nil {
			t.Errorf("after switching back from the baseline: %v", err)
		}
		// The load generator itself, briefly, on both sides.
		for _, ruleset := range []bool{false, true} {
			b.setMode(ruleset)
			conns := startConnLoad(b.client.Namespace(), serverAddr, 2)
			rate := rateOver(conns.ok.Load, 200*time.Millisecond)
			err := conns.Stop()
			if err != nil || conns.failed.Load() > 0 || rate <= 0 {
				t.Errorf("ruleset=%v: connection rate %.0f/s, %d failed, err %v", ruleset, rate, conns.failed.Load(), err)
			}
			bulk, err := startBulkLoad(b.client.Namespace(), serverAddr)
			if err != nil {
				t.Fatal(err)
			}
			bytesPerSec := rateOver(b.srv.bulk.Load, 200*time.Millisecond)
			if err := bulk.Stop(); err != nil || bytesPerSec <= 0 {
				t.Errorf("ruleset=%v: bulk rate %.0f B/s, err %v", ruleset, bytesPerSec, err)
			}
		}
	})

	t.Run("nft-rss", func(t *testing.T) {
		tb := requireKernel(t, "perf/kernel apply")
		ns := netns.NewScratch(tb)
		nftPath, err := exec.LookPath("nft")
		if err != nil {
			t.Fatal(err)
		}
		nftPath, _ = filepath.EvalSymlinks(nftPath)

		// The pid that applyScript waits for must be nft itself (nsenter execs in place).
		cmd := nftCommand(ns, "-f", "-")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exe := ""
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if exe, _ = os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); exe == nftPath {
				break
			}
		}
		_, _ = stdin.Write(render.DeleteTable(render.DefaultTable))
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if exe != nftPath {
			t.Errorf("the waited pid runs %q, not nft (%s)", exe, nftPath)
		}

		// Hold a few hundred MB in this process, as a benchmark holding a 150k-pod cluster
		// does: the measured peak of a trivial apply must stay nft's few MB, not this
		// process's (see measureNftRSS).
		ballast := make([]byte, 256<<20)
		for i := range ballast {
			ballast[i] = 1
		}
		kib, floor, err := measureNftRSS(ns, render.DeleteTable(render.DefaultTable))
		if err != nil {
			t.Fatal(err)
		}
		if kib > 64<<10 {
			t.Errorf("a trivial nft apply peaked at %d KiB: the figure includes more than nft", kib)
		}
		t.Logf("trivial apply: nft peak at most %d KiB (helper's own %d KiB; ballast %d MiB)", kib, floor, len(ballast)>>20)
	})
}
