package compact

import (
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// TestNewPodKeepsWhatTheTranslatorReads pins the compact pod the agent caches: named ports of
// containers and of restartable init containers only, ports that can never match dropped,
// labels sorted, status.podIP as the fallback address, and the two flags that take a pod out of
// policy.
func TestNewPodKeepsWhatTheTranslatorReads(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", Labels: map[string]string{"tier": "front", "app": "web"},
			Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{
			{Name: "c", Image: "img", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80},
				{ContainerPort: 81}, // unnamed: a policy cannot name it
				{Name: "dns", Protocol: corev1.ProtocolUDP, ContainerPort: 53},
				{Name: "bad", ContainerPort: 70000},                // out of range: matches nothing
				{Name: "icmp", Protocol: "ICMP", ContainerPort: 1}, // unknown protocol: matches nothing
			}},
		}, InitContainers: []corev1.Container{
			{Name: "sidecar", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
			{Name: "setup", Ports: []corev1.ContainerPort{{Name: "setup", ContainerPort: 9}}}, // runs to completion first
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	got := NewPod(p)
	if got.Name() != "a" || got.Namespace() != "x" || value(got.node) != "n1" || !got.OwnsAddresses() {
		t.Errorf("identity = %s/%s on %s, owns=%v", got.Namespace(), got.Name(), value(got.node), got.OwnsAddresses())
	}
	if !reflect.DeepEqual(got.GetLabels(), p.Labels) || (*got.LabelSet())[0].key.Value() != "app" {
		t.Errorf("labels = %v, want %v sorted by key", *got.LabelSet(), p.Labels)
	}
	if ips := got.AppendIPs(nil); !reflect.DeepEqual(ips, []netip.Addr{netip.MustParseAddr("10.0.0.1")}) {
		t.Errorf("ips = %v, want status.podIP when status.podIPs is empty", ips)
	}
	q := p.DeepCopy()
	q.Status.PodIPs = []corev1.PodIP{{IP: "fd00::1"}, {IP: "::ffff:10.0.0.2"}, {IP: "bogus"}, {IP: "10.0.0.2"}, {IP: "fe80::1%eth0"}}
	dual := NewPod(q)
	if want, ips := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::1")}, dual.AppendIPs(nil); !reflect.DeepEqual(ips, want) {
		t.Errorf("ips = %v, want %v: parsed, unmapped, without duplicates, IPv4 first", ips, want)
	}
	if want := []string{"bogus", "fe80::1%eth0"}; !reflect.DeepEqual(dual.BadIPs(), want) {
		t.Errorf("badIPs = %v, want %v", dual.BadIPs(), want)
	}
	want := []NamedPort{
		{Intern("http"), 80, protocolIndex(ruleset.TCP)}, {Intern("dns"), 53, protocolIndex(ruleset.UDP)}, {Intern("proxy"), 15001, protocolIndex(ruleset.TCP)},
	}
	if !reflect.DeepEqual(got.Ports(), want) {
		t.Errorf("ports = %v, want %v", got.Ports(), want)
	}
	if !got.Equal(NewPod(p.DeepCopy())) {
		t.Error("two pods built from equal objects are not Equal")
	}

	for _, c := range []struct {
		name   string
		change func(*corev1.Pod)
	}{
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }},
		{"Succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }},
		{"Failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }},
	} {
		q := p.DeepCopy()
		c.change(q)
		if NewPod(q).OwnsAddresses() {
			t.Errorf("a %s pod owns its addresses", c.name)
		}
	}
	if (&Pod{}).Namespace() != "" {
		t.Error("the zero Pod has a namespace")
	}
}

// TestPodsShareInternedLabelsAndPorts pins the interning of labels and named ports: pods with
// the same share one copy (the cache holds one per workload, not one per pod), pods that differ
// in any label or port do not, and a set no pod holds any more leaves the table.
func TestPodsShareInternedLabelsAndPorts(t *testing.T) {
	pod := func(labels map[string]string, ports ...corev1.ContainerPort) *Pod {
		return NewPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Ports: ports}}},
		})
	}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 80}
	a := pod(map[string]string{"app": "interned-web", "tier": "front"}, http)
	b := pod(map[string]string{"tier": "front", "app": "interned-web"}, http)
	if a.labels != b.labels || a.ports != b.ports || !a.Equal(b) {
		t.Fatal("two pods with the same labels and ports hold copies of their own")
	}
	for name, other := range map[string]*Pod{
		"a value":                 pod(map[string]string{"app": "interned-web", "tier": "back"}, http),
		"a key":                   pod(map[string]string{"app": "interned-web", "layer": "front"}, http),
		"one label fewer":         pod(map[string]string{"app": "interned-web"}, http),
		"a key and value swapped": pod(map[string]string{"app": "interned-web", "front": "tier"}, http),
		"a label's boundary":      pod(map[string]string{"app": "interned-webtier", "": "front"}, http),
	} {
		if other.labels == a.labels || a.Equal(other) || reflect.DeepEqual(other.GetLabels(), a.GetLabels()) {
			t.Errorf("labels differing in %s share a's: %v", name, other.GetLabels())
		}
	}
	for name, ports := range map[string][]corev1.ContainerPort{
		"a number":   {{Name: "http", ContainerPort: 81}},
		"a name":     {{Name: "web", ContainerPort: 80}},
		"a protocol": {{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolUDP}},
		"one more":   {http, {Name: "metrics", ContainerPort: 9090}},
		"none":       nil,
	} {
		other := pod(map[string]string{"app": "interned-web", "tier": "front"}, ports...)
		if other.ports == a.ports || a.Equal(other) {
			t.Errorf("ports differing in %s share a's: %v", name, other.Ports())
		}
	}
	if none := pod(nil); none.labels != nil || len(*none.LabelSet()) != 0 || none.Ports() != nil {
		t.Errorf("a pod without labels or ports holds %v, %v", none.LabelSet(), none.Ports())
	}

	// Once no pod holds them, the sets are collected and their entries dropped.
	before := labelSets.len()
	for i := range 100 {
		pod(map[string]string{"app": "gone", "i": strconv.Itoa(i)})
	}
	for try := 0; labelSets.len() > before && try < 100; try++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if after := labelSets.len(); after > before {
		t.Errorf("the table holds %d label sets, %d before 100 pods that are gone", after, before)
	}
	runtime.KeepAlive(a)
}

// TestIPKeyIsTheAddrKeyOfEveryAddress checks the keys a pod holds for its first addresses, and
// those IPKey computes for the others.
func TestIPKeyIsTheAddrKeyOfEveryAddress(t *testing.T) {
	p := NewPod(&corev1.Pod{Status: corev1.PodStatus{PodIPs: []corev1.PodIP{
		{IP: "fd00::2"}, {IP: "10.1.2.3"}, {IP: "fd00::1"}, {IP: "10.0.0.9"},
	}}})
	if p.NumIPs() != 4 {
		t.Fatalf("ips = %v", p.AppendIPs(nil))
	}
	for i := range p.NumIPs() {
		a := p.IP(i)
		if got, want := p.IPKey(i), AddrKey(a); got != want {
			t.Errorf("IPKey(%d) = %#x, want AddrKey(%s) = %#x", i, got, a, want)
		}
	}
	if got := AddrKey(netip.MustParseAddr("10.1.2.3")); got != 0x0a010203 {
		t.Errorf("AddrKey(10.1.2.3) = %#x, want the address", got)
	}
	if AddrKey(netip.MustParseAddr("fd00::1")) == AddrKey(netip.MustParseAddr("fd00::2")) {
		t.Error("fd00::1 and fd00::2 have the same key")
	}
}

// IPv4Count, which sizes the translator's address sets, counts a pod's IPv4 addresses as the
// translator sees them: IPv4-mapped IPv6 ones unmapped, duplicates once, unparsable ones not.
func TestIPv4CountCountsThePodsIPv4Addresses(t *testing.T) {
	for _, tc := range []struct {
		ips  []string
		want int
	}{
		{nil, 0},
		{[]string{"10.0.0.1"}, 1},
		{[]string{"fd00::1"}, 0},
		{[]string{"fd00::1", "10.0.0.1"}, 1},
		{[]string{"::ffff:10.0.0.2", "fd00::1"}, 1},
		{[]string{"10.0.0.1", "10.0.0.1", "not-an-ip"}, 1},
		{[]string{"10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"}, 2},
	} {
		var podIPs []corev1.PodIP
		for _, ip := range tc.ips {
			podIPs = append(podIPs, corev1.PodIP{IP: ip})
		}
		p := NewPod(&corev1.Pod{Status: corev1.PodStatus{PodIPs: podIPs}})
		if got := p.IPv4Count(); got != tc.want {
			t.Errorf("%v: IPv4Count() = %d, want %d (IPs %v)", tc.ips, got, tc.want, p.AppendIPs(nil))
		}
	}
}

// A NamedPort keeps its protocol in one byte (every cluster pod keeps its named ports) and gives
// back each protocol it was built with.
func TestNamedPortKeepsItsProtocolInOneByte(t *testing.T) {
	if size := unsafe.Sizeof(NamedPort{}); size != 16 {
		t.Errorf("a NamedPort takes %d bytes, want 16", size)
	}
	for _, p := range []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		want, _ := ProtocolOf(p)
		ports := appendNamedPorts(nil, []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "x", ContainerPort: 9, Protocol: p}}}}, false)
		if len(ports) != 1 || ports[0].Protocol() != want {
			t.Errorf("protocol %q: ports %v, want one of protocol %s", p, ports, want)
		}
	}
}

// A Pod fits the 80-byte size class (every cluster pod is cached as one): the rare fields are
// behind pointers, the name and resourceVersion share a string, and a pod's one IPv4 address is
// its first key. A field more moves it to the 96-byte class, 2.3 MiB more at 150,000 pods.
func TestPodFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(Pod{}); size > 80 {
		t.Errorf("a Pod takes %d bytes, want at most 80", size)
	}
	p := NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web-1", ResourceVersion: "12345"}})
	if p.Name() != "web-1" || p.GetResourceVersion() != "12345" || p.GetName() != "web-1" {
		t.Errorf("name %q, resourceVersion %q from one string %q", p.Name(), p.GetResourceVersion(), p.nameVersion)
	}
	long := strings.Repeat("n", 70000)
	if q := NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: long, ResourceVersion: "7"}}); q.Name() != long[:65535] || q.GetResourceVersion() != "7" {
		t.Errorf("a name too long for the API: kept %d bytes and resourceVersion %q", len(q.Name()), q.GetResourceVersion())
	}
}

// TestAddressesOfEveryShape pins how a Pod keeps its addresses: one IPv4 address in its first key,
// with no array of its own (most pods), any other set in an array; each shape gives back its
// addresses in order through NumIPs, IP, IPs and AppendIPs, answers HasIP, compares with SameIPs,
// and counts its IPv4 ones.
func TestAddressesOfEveryShape(t *testing.T) {
	for _, c := range []struct {
		name   string
		ips    []string
		want   []string
		inline bool // no array: the one IPv4 address is the first key
	}{
		{"none", nil, nil, true},
		{"one IPv4", []string{"10.1.2.3"}, []string{"10.1.2.3"}, true},
		{"one IPv4, mapped", []string{"::ffff:10.1.2.3"}, []string{"10.1.2.3"}, true},
		{"one IPv4, twice", []string{"10.1.2.3", "10.1.2.3"}, []string{"10.1.2.3"}, true},
		{"0.0.0.0", []string{"0.0.0.0"}, []string{"0.0.0.0"}, true},
		{"one IPv6", []string{"fd00::1"}, []string{"fd00::1"}, false},
		{"dual stack", []string{"fd00::1", "10.1.2.3"}, []string{"10.1.2.3", "fd00::1"}, false},
		{"two IPv4", []string{"10.1.2.4", "10.1.2.3"}, []string{"10.1.2.3", "10.1.2.4"}, false},
		{"one IPv4 and a bad one", []string{"bogus", "10.1.2.3"}, []string{"10.1.2.3"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var podIPs []corev1.PodIP
			for _, ip := range c.ips {
				podIPs = append(podIPs, corev1.PodIP{IP: ip})
			}
			p := NewPod(&corev1.Pod{Status: corev1.PodStatus{PodIPs: podIPs}})
			var want []netip.Addr
			for _, w := range c.want {
				want = append(want, netip.MustParseAddr(w))
			}
			if got := p.AppendIPs(nil); !slices.Equal(got, want) || p.NumIPs() != len(want) {
				t.Fatalf("addresses %v (NumIPs %d), want %v", got, p.NumIPs(), want)
			}
			if got := slices.Collect(p.IPs()); !slices.Equal(got, want) {
				t.Errorf("IPs yields %v, want %v", got, want)
			}
			v4 := 0
			for i, a := range want {
				if p.IP(i) != a || !p.HasIP(a) || p.IPKey(i) != AddrKey(a) {
					t.Errorf("address %d: IP %v, HasIP %v, IPKey %#x; want %v", i, p.IP(i), p.HasIP(a), p.IPKey(i), a)
				}
				if a.Is4() {
					v4++
				}
			}
			if p.IPv4Count() != v4 {
				t.Errorf("IPv4Count %d, want %d", p.IPv4Count(), v4)
			}
			if p.HasIP(netip.MustParseAddr("10.9.9.9")) {
				t.Error("HasIP answers true for an address the pod lacks")
			}
			if inline := p.ips == nil; inline != c.inline {
				t.Errorf("kept without an array: %v, want %v", inline, c.inline)
			}
			if !p.SameIPs(NewPod(&corev1.Pod{Status: corev1.PodStatus{PodIPs: podIPs}})) {
				t.Error("SameIPs is false for a pod built from the same addresses")
			}
			other := NewPod(&corev1.Pod{Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.1.2.5"}}}})
			if p.SameIPs(other) {
				t.Errorf("SameIPs is true against %v", other.AppendIPs(nil))
			}
			func() {
				defer func() { _ = recover() }()
				a := p.IP(len(want))
				t.Errorf("IP(%d) of a pod with %d addresses gave %v, want a panic", len(want), len(want), a)
			}()
		})
	}
}
