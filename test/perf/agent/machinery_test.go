package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/test/synth"
)

// TestMeasurementMachinery checks the measuring code on small inputs, in a few seconds: a wrong
// benchmark figure would otherwise pass for a property of the agent.
func TestMeasurementMachinery(t *testing.T) {
	t.Run("address matching is exact", func(t *testing.T) {
		// Shaped like the renderer's output (internal/render/testdata), and like nft's listing.
		script := []byte("# header\n" +
			"add set inet flock-netpol peers-AAAAAAAA-perf-target/allow-churn/in0-v4 { type ipv4_addr; flags interval; comment \"x\"; elements = {\n" +
			"\t10.0.0.10,\n\t10.0.2.7-10.0.2.9,\n\t10.9.0.0/16,\n}; }\n" +
			"add set inet flock-netpol peers-DDDDDDDD-perf-target/allow-churn/in1-v4 { type ipv4_addr; flags interval; comment \"empty\"; }\n" +
			"add set inet flock-netpol peers-BBBBBBBB-other/policy/in0-v4 { type ipv4_addr; flags interval; comment \"y\"; elements = {\n\t10.0.0.1,\n}; }\n" +
			"add map inet flock-netpol ingress-pods-v4 { type ipv4_addr : verdict; comment \"z\"; elements = {\n\t10.0.0.2 : jump pod-in-CCCCCCCC-perf-target/target,\n}; }\n")
		listing := "table inet flock-netpol {\n" +
			"\tset peers-AAAAAAAA-perf-target/allow-churn/in0-v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n" +
			"\t\telements = { 10.0.0.10, 10.0.2.7-10.0.2.9,\n\t\t\t     10.9.0.0/16 }\n\t}\n" +
			"\tset peers-BBBBBBBB-other/policy/in0-v4 {\n\t\telements = { 10.0.0.1 }\n\t}\n}\n"
		for name, set := range map[string]addrSet{
			"script":  scriptSetAddrs(script, peerSetFragment),
			"listing": listingSetAddrs(listing, peerSetFragment),
		} {
			for addr, want := range map[string]bool{
				"10.0.0.10":    true,
				"10.0.0.1":     false, // a prefix of 10.0.0.10 as text, and in another policy's set
				"10.0.0.100":   false,
				"10.0.0.2":     false, // in a map, not in the peer set
				"10.0.2.7":     true,
				"10.0.2.8":     true, // inside a range
				"10.0.2.80":    false,
				"10.0.2.10":    false,
				"10.9.255.255": true, // inside a prefix
				"10.10.0.0":    false,
				"fd00::a":      false,
			} {
				if got := set.contains(netip.MustParseAddr(addr)); got != want {
					t.Errorf("%s: contains(%s) = %v, want %v (set %v)", name, addr, got, want, set)
				}
			}
		}
		if got := scriptSetAddrs(script, "no-such-policy/"); len(got) != 0 {
			t.Errorf("a script without the set holds %v", got)
		}
	})

	t.Run("churn addresses are distinct", func(t *testing.T) {
		seen := map[netip.Addr]bool{}
		for n := range 20000 {
			a := churnAddr(n)
			if seen[a] || !netip.MustParsePrefix("10.253.0.0/16").Contains(a) {
				t.Fatalf("churn pod %d: address %s reused or outside 10.253.0.0/16", n, a)
			}
			seen[a] = true
		}
	})

	t.Run("latencies", func(t *testing.T) {
		t0 := time.Now()
		a0, a1 := churnAddr(0), churnAddr(1)
		applies := []applyRecord{
			{done: t0, peers: addrSet{{a0, a0}}},
			{done: t0.Add(30 * time.Millisecond), peers: addrSet{{a0, a1}}}, // a1 appears
			{done: t0.Add(90 * time.Millisecond), peers: addrSet{{a1, a1}}}, // a0 disappears
		}
		events := []*event{
			{create: true, n: 1, addr: a1, written: t0.Add(10 * time.Millisecond)},
			{create: false, n: 0, addr: a0, written: t0.Add(40 * time.Millisecond)},
			{create: true, n: 2, addr: churnAddr(2), written: t0.Add(50 * time.Millisecond)}, // never applied
		}
		samples, unseen := latencies(events, applies)
		if unseen != 1 || len(samples) != 2 ||
			samples[0].lat != 20*time.Millisecond || samples[0].apply != 1 ||
			samples[1].lat != 50*time.Millisecond || samples[1].apply != 2 {
			t.Errorf("latencies = %+v, unseen %d; want 20ms (apply 1), 50ms (apply 2), 1 unseen", samples, unseen)
		}
		if p := percentile([]time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99); p != 10 {
			t.Errorf("p99 of 1..10 = %d, want 10", p)
		}
		if p := percentile([]time.Duration{1, 2, 3, 4}, 50); p != 2 {
			t.Errorf("p50 of 1..4 = %d, want 2", p)
		}
	})

	t.Run("cache heap", func(t *testing.T) {
		pods := synth.Generate(synth.Sized(2000, 0)).Pods
		stripped, err := measureCache(pods, true)
		if err != nil {
			t.Fatal(err)
		}
		full, err := measureCache(pods, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%.0f B/cached-pod, %.0f B/full-pod", stripped, full)
		// A stripped pod still has a name, labels and addresses: some hundreds of bytes. A full
		// one carries kilobytes of managed fields and status. Anything outside these bounds
		// means the measurement, not the cache, is broken.
		if stripped < 200 || stripped > 20000 {
			t.Errorf("%.0f B/cached-pod is implausible", stripped)
		}
		if full < 2*stripped {
			t.Errorf("%.0f B/full-pod is not well above %.0f B/cached-pod: is the transform applied, are the pods dressed?", full, stripped)
		}
	})

	// The steady state's events (churn) change a pod's tier label and nothing else the
	// translator reads: two of them give the pod back.
	t.Run("steady-state relabels", func(t *testing.T) {
		for _, pod := range synth.Generate(synth.Sized(2000, 0)).Pods[:200] {
			p := compact.NewPod(pod)
			if !p.OwnsAddresses() || !p.LabelSet().Has("tier") { // as churn picks them
				continue
			}
			once := compact.NewPod(relabelled(p))
			if once.Equal(p) || once.LabelSet().Get("tier") != p.LabelSet().Get("tier")+"-moved" {
				t.Fatalf("%s/%s: relabelled tier %q from %q", p.Namespace(), p.Name(), once.LabelSet().Get("tier"), p.LabelSet().Get("tier"))
			}
			if twice := compact.NewPod(relabelled(once)); !twice.Equal(p) {
				t.Fatalf("%s/%s: relabelled twice is not the pod: %v, ports %v, ips %v; want %v, %v, %v", p.Namespace(), p.Name(),
					twice.GetLabels(), twice.Ports(), twice.AppendIPs(nil), p.GetLabels(), p.Ports(), p.AppendIPs(nil))
			}
		}
	})
}
