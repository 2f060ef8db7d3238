package translate

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/fuzzbytes"
)

// The property the incremental translator rests on: after every event, whatever came before it,
// Incremental.RuleSet returns exactly (reflect.DeepEqual) what Translate returns for the same
// objects. The events are drawn from a small vocabulary (fuzz_test.go's: namespaces x, y, z and
// w, a few labels, addresses that collide) so that selectors, claimed addresses and named ports
// meet often: pods created, relabelled, readdressed, moved between phases and nodes, turned
// hostNetwork, given other ports, deleted; Namespaces created, relabelled, annotated and deleted;
// NetworkPolicies (audit ones included) created, replaced and deleted; now and then new
// ClusterNetworkPolicies, Nodes, pod CIDRs or drop-log setting.

// incNamespaces are the namespaces events draw from: w has no Namespace object until one is
// created.
var incNamespaces = []string{"x", "y", "z", "w"}

// incAddrs are the addresses pods draw: fuzzAddrs, which collide often (claimed addresses) or do
// not parse, and ten times as many that collide rarely, so that most pods own their addresses
// alone (the cheaper paths of Incremental: relabels and edits of peer results).
var incAddrs = func() []string {
	out := slices.Clone(fuzzAddrs)
	for i := range 80 {
		out = append(out, fmt.Sprintf("10.0.2.%d", i+1))
	}
	for i := range 30 {
		out = append(out, fmt.Sprintf("fd00::2:%x", i+1))
	}
	return out
}()

// incCluster is the cluster state the events change, as the cache would hold it.
type incCluster struct {
	namespaces map[string]*corev1.Namespace
	pods       map[string]*compact.Pod // by namespace/name
	source     map[string]*corev1.Pod  // the API objects of pods, for updates
	policies   map[string]*networkingv1.NetworkPolicy
	settings   Input // node, pod CIDRs, drop logs, ClusterNetworkPolicies, Nodes
}

func newIncCluster() *incCluster {
	return &incCluster{
		namespaces: map[string]*corev1.Namespace{},
		pods:       map[string]*compact.Pod{},
		source:     map[string]*corev1.Pod{},
		policies:   map[string]*networkingv1.NetworkPolicy{},
		settings:   Input{Node: localNode},
	}
}

// input is the whole state, as Translate reads it.
func (c *incCluster) input() Input {
	in := c.settings
	for _, k := range slices.Sorted(maps.Keys(c.namespaces)) {
		in.Namespaces = append(in.Namespaces, c.namespaces[k])
	}
	for _, k := range slices.Sorted(maps.Keys(c.pods)) {
		in.Pods = append(in.Pods, c.pods[k])
	}
	for _, k := range slices.Sorted(maps.Keys(c.policies)) {
		in.Policies = append(in.Policies, c.policies[k])
	}
	return in
}

// incPod draws a pod: labels, node, phase, hostNetwork, addresses (which other pods may draw
// too) and named ports.
func (r *fuzzBytes) incPod(ns, name string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: r.labelMap()}}
	if r.Bool() {
		p.Labels[fuzzbytes.Pick(r.Reader, "app", "tier")] = fuzzbytes.Pick(r.Reader, "a", "b", "x") // what incPolicy's one-label peers select
	}
	p.Spec.NodeName = fuzzbytes.Pick(r.Reader, localNode, localNode, remoteNode)
	p.Status.Phase = fuzzbytes.Pick(r.Reader, corev1.PodRunning, corev1.PodRunning, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodPending)
	p.Spec.HostNetwork = r.N(10) == 0
	if p.Status.Phase != corev1.PodPending {
		r.addresses(p)
	}
	r.ports(p)
	return p
}

func (r *fuzzBytes) addresses(p *corev1.Pod) {
	p.Status.PodIPs = nil
	for range 1 + r.N(2) {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: fuzzbytes.Pick(r.Reader, incAddrs...)})
	}
}

func (r *fuzzBytes) ports(p *corev1.Pod) {
	c := corev1.Container{Name: "main"}
	for range r.N(3) {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: fuzzbytes.Pick(r.Reader, fuzzPortNames...), Protocol: fuzzbytes.Pick(r.Reader, fuzzProtocols...), ContainerPort: fuzzbytes.Pick[int32](r.Reader, 53, 80, 8080, 9090, 0)})
	}
	if r.N(3) == 0 {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: fuzzbytes.Pick(r.Reader, "http", "dns"), Protocol: corev1.ProtocolTCP, ContainerPort: fuzzbytes.Pick[int32](r.Reader, 53, 80, 8080)})
	}
	p.Spec.Containers = []corev1.Container{c}
}

// incPolicy draws a NetworkPolicy as fuzzInput does, sometimes in audit mode.
func (r *fuzzBytes) incPolicy(ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	switch r.N(6) {
	case 0:
		np.Annotations = map[string]string{ModeAnnotation: ModeAudit}
	case 1:
		np.Annotations = map[string]string{ModeAnnotation: "bogus"}
	}
	np.Spec.PodSelector = *r.selector()
	if r.N(3) == 0 {
		np.Spec.PodSelector = metav1.LabelSelector{} // every pod: the common default-deny
	}
	r.rules(np)
	if r.N(2) == 0 {
		// A peer with one label, which relabelled pods enter and leave often (the peers of
		// fuzzInput's policies hardly ever match a pod).
		peer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
			fuzzbytes.Pick(r.Reader, "app", "tier"): fuzzbytes.Pick(r.Reader, "a", "b", "x")}}}
		if r.Bool() {
			peer.NamespaceSelector = &metav1.LabelSelector{}
		}
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{peer}})
	}
	if r.N(3) == 0 {
		// A named port resolved on every pod of the cluster (no peer) or on those of an ipBlock,
		// which fuzzInput's policies draw too rarely.
		rule := networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromString(fuzzbytes.Pick(r.Reader, "http", "dns")))}}}
		if r.Bool() {
			rule.To = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: fuzzbytes.Pick(r.Reader, "10.0.0.0/24", "fd00::/16", "0.0.0.0/0")}}}
		}
		np.Spec.Egress = append(np.Spec.Egress, rule)
	}
	return np
}

// event applies one event, drawn from r, to both the cluster and the Incremental, and says what
// it was.
func (c *incCluster) event(r *fuzzBytes, inc *Incremental) string {
	ns := fuzzbytes.Pick(r.Reader, incNamespaces...)
	switch kind := r.N(20); {
	case kind < 10: // a pod created or updated
		name := fmt.Sprintf("p%d", r.N(6))
		id := ns + "/" + name
		old := c.source[id]
		var p *corev1.Pod
		what := "create"
		if old == nil || r.N(4) == 0 {
			p = r.incPod(ns, name)
		} else {
			p = old.DeepCopy()
			switch r.N(10) {
			case 0:
				what = "relabel"
				p.Labels = r.labelMap()
			case 1, 8, 9:
				what = "set one label"
				if p.Labels == nil {
					p.Labels = map[string]string{}
				}
				// Mostly the labels incPolicy's one-label peers select.
				p.Labels[fuzzbytes.Pick(r.Reader, "app", "tier", "app", "tier", "-bad", namespaceNameLabel)] = fuzzbytes.Pick(r.Reader, fuzzValues...)
			case 2:
				what = "readdress"
				r.addresses(p)
			case 3:
				what = "phase"
				p.Status.Phase = fuzzbytes.Pick(r.Reader, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed)
			case 4:
				what = "move node"
				p.Spec.NodeName = fuzzbytes.Pick(r.Reader, localNode, remoteNode)
			case 5:
				what = "hostNetwork"
				p.Spec.HostNetwork = !p.Spec.HostNetwork
			case 6:
				what = "ports"
				r.ports(p)
			default:
				what = "no change" // a new object with the same values (a status heartbeat)
			}
		}
		c.source[id] = p
		cp := compact.NewPod(p)
		c.pods[id] = cp
		inc.SetPod(cp)
		return fmt.Sprintf("pod %s %s: labels=%v node=%s phase=%s hostNetwork=%v ips=%v ports=%v", id, what, p.Labels, p.Spec.NodeName, p.Status.Phase, p.Spec.HostNetwork, p.Status.PodIPs, p.Spec.Containers[0].Ports)
	case kind < 12:
		name := fmt.Sprintf("p%d", r.N(6))
		id := ns + "/" + name
		delete(c.pods, id)
		delete(c.source, id)
		inc.DeletePod(ns, name)
		return "pod " + id + " deleted"
	case kind < 14:
		if r.N(4) == 0 {
			delete(c.namespaces, ns)
			inc.DeleteNamespace(ns)
			return "namespace " + ns + " deleted"
		}
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: r.labelMap()}}
		if r.N(3) == 0 {
			n.Annotations = map[string]string{DropLogAnnotation: "true"}
		}
		c.namespaces[ns] = n
		inc.SetNamespace(n)
		return fmt.Sprintf("namespace %s set: labels=%v annotations=%v", ns, n.Labels, n.Annotations)
	case kind < 18:
		name := fmt.Sprintf("np%d", r.N(4))
		id := ns + "/" + name
		if r.N(4) == 0 {
			delete(c.policies, id)
			inc.DeletePolicy(ns, name)
			return "policy " + id + " deleted"
		}
		np := r.incPolicy(ns, name)
		c.policies[id] = np
		inc.SetPolicy(np)
		return fmt.Sprintf("policy %s set: %+v", id, np.Spec)
	case kind < 19:
		// ClusterNetworkPolicies and Nodes, drawn by fuzzClusterInput from the next bytes.
		b := make([]byte, 256)
		for i := range b {
			b[i] = r.Byte()
		}
		other := fuzzClusterInput(b)
		cnps := other.ClusterPolicies
		if r.N(3) == 0 {
			cnps = nil
		}
		c.settings.ClusterPolicies, c.settings.Nodes = cnps, other.Nodes
		inc.SetClusterPolicies(cnps)
		inc.SetNodes(other.Nodes)
		return fmt.Sprintf("%d ClusterNetworkPolicies and the Nodes set", len(cnps))
	default:
		if r.Bool() {
			c.settings.LogDrops = !c.settings.LogDrops
			inc.SetLogDrops(c.settings.LogDrops)
			return fmt.Sprintf("log drops %v", c.settings.LogDrops)
		}
		cidrs := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30"), netip.MustParsePrefix("fd00::/126")}
		if c.settings.PodCIDRs != nil {
			cidrs = nil
		}
		c.settings.PodCIDRs = cidrs
		inc.SetPodCIDRs(cidrs)
		return fmt.Sprintf("pod CIDRs %v", cidrs)
	}
}

// checkIncremental runs the events r draws (until it runs out, at most maxEvents) and compares
// the incremental rule set with Translate's after each one. A failure lists the events so far.
func checkIncremental(t *testing.T, r *fuzzBytes, maxEvents int, exhausted func() bool) {
	t.Helper()
	c := newIncCluster()
	// Some sequences start from a cluster that exists already, which NewIncremental loads at
	// once (as the agent does at its start) rather than one event at a time.
	var events []string
	scratch := NewIncremental(Input{Node: localNode})
	for range r.N(3) * 20 {
		events = append(events, c.event(r, scratch)+" (before the start)")
	}
	inc := NewIncremental(c.input())
	for i := 0; i < maxEvents && !exhausted(); i++ {
		events = append(events, c.event(r, inc))
		got, gotProblems := inc.RuleSet()
		restore := setPeersAhead(math.MaxInt) // the reference resolves its peers one by one
		want, wantProblems := Translate(c.input())
		restore()
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotProblems, wantProblems) {
			t.Fatalf("after event %d the incremental rule set differs from Translate's\n%s\nevents:\n  %s",
				i, ruleSetDiff(got, want, gotProblems, wantProblems), strings.Join(events, "\n  "))
		}
		if err := checkAddrCounts(inc); err != nil {
			t.Fatalf("after event %d: %v\nevents:\n  %s", i, err, strings.Join(events, "\n  "))
		}
	}
}

// checkAddrCounts reports a namespace whose address counts, which size the builders of the
// peers that select it, are not those of its pods.
func checkAddrCounts(inc *Incremental) error {
	for _, ns := range inc.t.namespaces {
		var n4, n6 int
		for _, p := range ns.pods {
			n4 += p.src.IPv4Count()
			n6 += p.src.NumIPs() - p.src.IPv4Count()
		}
		if ns.addrs4 != n4 || ns.addrs6 != n6 {
			return fmt.Errorf("namespace %s counts %d IPv4 and %d IPv6 addresses, its pods own %d and %d", ns.name, ns.addrs4, ns.addrs6, n4, n6)
		}
	}
	return nil
}

// ruleSetDiff names the fields of the rule sets that differ and, for lists, the first elements
// that differ, with both values.
func ruleSetDiff(got, want ruleset.RuleSet, gotProblems, wantProblems []Problem) string {
	var b strings.Builder
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		gf, wf := g.Field(i), w.Field(i)
		if reflect.DeepEqual(gf.Interface(), wf.Interface()) {
			continue
		}
		name := g.Type().Field(i).Name
		if gf.Kind() != reflect.Slice {
			fmt.Fprintf(&b, "%s:\n  incremental: %+v\n  Translate:   %+v\n", name, gf.Interface(), wf.Interface())
			continue
		}
		fmt.Fprintf(&b, "%s (incremental %d, Translate %d):\n", name, gf.Len(), wf.Len())
		for j := range max(gf.Len(), wf.Len()) {
			var ge, we any = "(none)", "(none)"
			if j < gf.Len() {
				ge = gf.Index(j).Interface()
			}
			if j < wf.Len() {
				we = wf.Index(j).Interface()
			}
			if !reflect.DeepEqual(ge, we) {
				fmt.Fprintf(&b, "  [%d] incremental: %s\n  [%d] Translate:   %s\n", j, readable(ge), j, readable(we))
				break
			}
		}
	}
	if !reflect.DeepEqual(gotProblems, wantProblems) {
		fmt.Fprintf(&b, "problems:\n  incremental: %v\n  Translate:   %v\n", gotProblems, wantProblems)
	}
	return b.String()
}

// readable prints a value with its address sets as ranges.
func readable(v any) string {
	s := fmt.Sprintf("%+v", v)
	if p, ok := v.(ruleset.Policy); ok {
		var rules []string
		for _, r := range append(slices.Clone(p.Ingress), p.Egress...) {
			var peers []string
			for _, is4 := range []bool{true, false} {
				for ar := range r.Peers.Ranges(is4) {
					peers = append(peers, fmt.Sprint(ar))
				}
			}
			rules = append(rules, fmt.Sprintf("{rule %d anyPeer=%v peers=%v anyPort=%v ports=%v named=%v}", r.Index, r.AnyPeer, peers, r.AnyPort, r.Ports, r.NamedPorts))
		}
		s = fmt.Sprintf("%s ingress=%d egress=%d audit=%v rules=%v", p.Key, len(p.Ingress), len(p.Egress), p.Audit, rules)
	}
	return s
}

// randomBytes returns a reader of n bytes from a seeded generator.
func randomBytes(seed uint64, n int) *fuzzBytes {
	rng := rand.New(rand.NewPCG(seed, 17))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return &fuzzBytes{fuzzbytes.New(b)}
}

func TestIncrementalEqualsTranslateAfterEveryEvent(t *testing.T) {
	// A few sequences of a few hundred events each: every one starts from an empty cluster, so
	// that early events (first pods, first namespaces) are exercised more than once.
	seeds, events := 12, 300
	if testing.Short() {
		seeds = 3
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if seed%2 == 1 {
				// Every dirty peer resolved ahead, as a recompute of a large cluster does.
				defer setPeersAhead(0)()
			}
			r := randomBytes(uint64(seed), 200*events)
			checkIncremental(t, r, events, func() bool { return false })
		})
	}
}

// setPeersAhead sets the number of pods from which peers are resolved ahead (see
// resolvePeersAhead) and returns what restores it.
func setPeersAhead(pods int) (restore func()) {
	old := peersAheadPods
	peersAheadPods = pods
	return func() { peersAheadPods = old }
}

// TestNewIncrementalKeepsTheLastOfAPodListedTwice pins what an Input listing the same pod twice
// (which no cache holds) gives: the later one, as if the pods had been set one after the other.
func TestNewIncrementalKeepsTheLastOfAPodListedTwice(t *testing.T) {
	in := Input{Node: localNode, Namespaces: standardNamespaces(), Policies: []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "from-b"}, Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}}}}}},
		}},
	}}
	for _, p := range standardPods() {
		in.Pods = append(in.Pods, compact.NewPod(p))
	}
	moved := makePod("x/b") // local, and in the peer of x/from-b
	moved.Status.PodIPs = []corev1.PodIP{{IP: "10.0.9.9"}}
	twice := in
	twice.Pods = append(slices.Clone(in.Pods), compact.NewPod(moved))
	want := in
	want.Pods = slices.Clone(twice.Pods)
	want.Pods = slices.DeleteFunc(want.Pods[:len(want.Pods)-1], func(p *compact.Pod) bool { return p.Namespace() == "x" && p.Name() == "b" })
	want.Pods = append(want.Pods, compact.NewPod(moved))
	got, gotProblems := NewIncremental(twice).RuleSet()
	wantRS, wantProblems := Translate(want)
	if !reflect.DeepEqual(got, wantRS) || !reflect.DeepEqual(gotProblems, wantProblems) {
		t.Fatalf("differs from Translate of the input without the first x/b\n%s", ruleSetDiff(got, wantRS, gotProblems, wantProblems))
	}
}

// FuzzIncremental is the long form of TestIncrementalEqualsTranslateAfterEveryEvent: the
// fuzzer's bytes are the events.
func FuzzIncremental(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0x00, 0x03, 0x01, 0x02, 0x05, 0x07, 0x01, 0x04, 0x0e, 0x02}, 200))
	f.Add(randomBytes(99, 4000).rest())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzBytes{fuzzbytes.New(data)}
		checkIncremental(t, r, 500, func() bool { return r.Len() == 0 })
	})
}

// rest returns the bytes the reader has not handed out.
func (r *fuzzBytes) rest() []byte {
	var out []byte
	for r.Len() > 0 {
		out = append(out, r.Byte())
	}
	return out
}
