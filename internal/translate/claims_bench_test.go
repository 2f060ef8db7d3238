package translate

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/test/objects"
)

// BenchmarkLoadPods measures the indexing of 150,000 dual-stack pods in random order with no
// conflict, which includes the search for addresses several pods claim.
func BenchmarkLoadPods(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	pods := make([]*corev1.Pod, 0, 150000)
	for i := range 150000 {
		node, k := i/110, i%110
		v4 := netip.AddrFrom4([4]byte{10, byte(node >> 8), byte(node), byte(k + 2)})
		v6 := netip.AddrFrom16([16]byte{0: 0xfd, 2: 0x10, 6: byte(node >> 8), 7: byte(node), 15: byte(k + 2)})
		pods = append(pods, objects.Pod(fmt.Sprintf("ns-%d/p-%d", i%500, i), objects.OnNode(fmt.Sprintf("node-%d", node)),
			objects.Phase(corev1.PodRunning), objects.IPs(v4.String(), v6.String())))
	}
	rng.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
	in := compact.NewPods(pods)
	b.ReportAllocs()
	for b.Loop() {
		t := &translator{namespaces: map[string]*nsView{}}
		t.loadPods(in, "node-1")
	}
}
