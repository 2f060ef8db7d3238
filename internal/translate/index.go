package translate

import (
	"cmp"
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/flock-net/flock-netpol/internal/compact"
)

// Translate indexes its input once per call, in one pass over the pods, so that selectors are
// not tested against every pod of the cluster: pods are grouped by namespace (a policy's
// podSelector tests only the local pods of its namespace, a peer's podSelector only the pods of
// the namespaces the peer selects), the namespaces a namespaceSelector matches are computed once
// per distinct selector, and a selector with a matchLabels or In requirement tests only the
// namespaces that the index of namespace labels gives for it. At 150,000 pods this is what keeps
// one recompute within tens of milliseconds.

// indexedPod is the translator's view of one input pod that owns at least one address: the pod,
// its namespace's view and whether it is local. There is one per pod of the cluster, per
// recompute, so it is kept small.
type indexedPod struct {
	ns *nsView
	// src is the input, read again for addresses, labels, the names of local pods and named
	// ports. (Not a copy of its addresses: the cluster's pods are many.)
	src   *compact.Pod
	local bool
	// shared is true when another pod claims one of its addresses too (see claims.go).
	shared bool
	// slot is 1 + the index of a local pod in Incremental.sortedLocal and Incremental.memos; 0
	// before the pod's first rule set. (An index, not a pointer, to fit in the padding: the
	// cluster's pods are many.)
	slot int32
}

// labels returns the pod's labels for a selector to match.
func (p *indexedPod) labels() *compact.Labels { return p.src.LabelSet() }

// nsView is one namespace: its labels and the pods in it that own an address.
type nsView struct {
	name string
	// labels are the Namespace object's labels, nil when there is no object; the name label is
	// answered from name (see Lookup).
	labels   map[string]string
	dropLogs bool          // the Namespace asks for drop logs (DropLogAnnotation)
	pods     []*indexedPod // pods that own an address, in input order
	size     int           // len(pods), counted before pods is filled
	local    []*indexedPod // the local ones among them, in input order
	position int           // index in translator.nsNames, when the namespace holds pods
	// addrs4 and addrs6 are how many IPv4 and IPv6 addresses its pods own: the most a peer's
	// set can take from the namespace, which its builder is sized by.
	addrs4, addrs6 int
}

// nsView is the label set of the namespace: its labels plus kubernetes.io/metadata.name, which
// the API server sets on every Namespace and which objects read from files may lack. The name
// wins over a label of the same key, as on the API server.
var _ labels.Labels = (*nsView)(nil)

func (n *nsView) Has(key string) bool {
	_, ok := n.Lookup(key)
	return ok
}

func (n *nsView) Get(key string) string {
	v, _ := n.Lookup(key)
	return v
}

func (n *nsView) Lookup(key string) (string, bool) {
	if key == namespaceNameLabel {
		return n.name, true
	}
	v, ok := n.labels[key]
	return v, ok
}

// countAddrs adds the addresses of p to the namespace's counts sign times (1 or -1).
func (n *nsView) countAddrs(p *compact.Pod, sign int) {
	n4 := p.IPv4Count()
	n.addrs4 += sign * n4
	n.addrs6 += sign * (p.NumIPs() - n4)
}

// namespace returns the view of ns, creating an empty one for a namespace we have no object for
// (a render input that lists only pods, or an event that raced the Namespace's).
func (t *translator) namespace(ns string) *nsView {
	v := t.namespaces[ns]
	if v == nil {
		v = &nsView{name: ns}
		t.namespaces[ns] = v
	}
	return v
}

func (t *translator) loadNamespaces(nss []*corev1.Namespace) {
	for _, ns := range nss {
		v := t.namespace(ns.Name) // a later duplicate wins, as a map insert would
		v.labels, v.dropLogs = ns.Labels, dropLogs(ns)
	}
}

// loadPods indexes the pods that own addresses by namespace. It runs over every pod of the
// cluster on every recompute, so it allocates per call, not per pod: one array of pods and one
// of pointers to them for the namespaces' lists. The addresses are the input's, parsed when the
// Pod was built.
func (t *translator) loadPods(pods []*compact.Pod, node string) {
	t.pods = make([]indexedPod, 0, len(pods))
	// Every address's key with its pod's index, for finding addresses several pods claim
	// (claims.go), collected here while the pod is at hand rather than in another pass. The keys
	// are read from the pod, which holds them, not computed from its addresses (another cache
	// miss per pod).
	keys := make([]uint64, 0, 2*len(pods))
	thisNode := compact.Intern(node)
	var (
		last   *nsView
		lastNS unique.Handle[string]
	)
	for _, p := range pods {
		if !p.OwnsAddresses() {
			continue
		}
		for _, bad := range p.BadIPs() {
			t.report("Pod "+p.Namespace()+"/"+p.Name(), "ignoring unparsable pod IP %q", bad)
		}
		if p.NumIPs() == 0 {
			continue
		}
		if last == nil || lastNS != p.NamespaceHandle() {
			last, lastNS = t.namespace(p.Namespace()), p.NamespaceHandle()
		}
		last.size++
		last.countAddrs(p, 1)
		for i := range p.NumIPs() {
			keys = append(keys, uint64(p.IPKey(i))<<32|uint64(len(t.pods)))
		}
		t.pods = append(t.pods, indexedPod{ns: last, src: p, local: p.NodeHandle() == thisNode && node != ""})
	}

	// Namespaces that hold pods, sorted by name: the order in which selectors visit them.
	for _, ns := range t.namespaces {
		if ns.size > 0 {
			t.nsNames = append(t.nsNames, ns)
		}
	}
	slices.SortFunc(t.nsNames, func(a, b *nsView) int { return strings.Compare(a.name, b.name) }) // one string comparison, not cmp.Compare's two

	// Carve every namespace's list out of one array, then fill them in input order.
	all := make([]*indexedPod, len(t.pods))
	for i, ns := range t.nsNames {
		ns.position = i
		ns.pods, all = all[:0:ns.size], all[ns.size:]
	}
	for i := range t.pods {
		p := &t.pods[i]
		p.ns.pods = append(p.ns.pods, p)
		if p.local {
			p.ns.local = append(p.ns.local, p)
			t.local = append(t.local, p)
		}
	}

	t.findClaims(keys)
}

// everyPod yields every pod that owns an address, namespace by namespace (the order does not
// matter to its callers, which sort what they build).
func (t *translator) everyPod(yield func(*indexedPod) bool) {
	for _, ns := range t.nsNames {
		for _, p := range ns.pods {
			if !yield(p) {
				return
			}
		}
	}
}

// selectNamespaces returns, in name order, the namespaces holding pods that sel matches.
// Results are memoised per selector, and equality requirements (matchLabels, In) narrow the
// candidates through the label index before the whole selector is tested.
func (t *translator) selectNamespaces(sel labels.Selector) []*nsView {
	key := sel.String()
	if nss, ok := t.nsSelected[key]; ok {
		return nss
	}
	candidates := t.nsNames
	if reqs, ok := sel.Requirements(); ok {
		for i := range reqs {
			if c, ok := t.nsCandidates(&reqs[i]); ok && len(c) < len(candidates) {
				candidates = c
			}
		}
	}
	var nss []*nsView
	for _, ns := range candidates {
		if sel.Matches(ns) {
			nss = append(nss, ns)
		}
	}
	t.nsSelected[key] = nss
	return nss
}

// nsCandidates returns, in name order, the namespaces holding pods that can satisfy an equality
// requirement (key=value or key in (values)); ok is false for other operators.
func (t *translator) nsCandidates(r *labels.Requirement) ([]*nsView, bool) {
	switch r.Operator() {
	case selection.Equals, selection.DoubleEquals, selection.In:
	default:
		return nil, false
	}
	byValue := t.nsLabelIndex(r.Key())
	values := r.ValuesUnsorted()
	if len(values) == 1 {
		return byValue[values[0]], true
	}
	var out []*nsView
	for _, v := range values {
		out = append(out, byValue[v]...)
	}
	slices.SortFunc(out, func(a, b *nsView) int { return cmp.Compare(a.position, b.position) })
	return slices.Compact(out), true
}

// nsLabelIndex returns the namespaces holding pods by their value of the label key, each list in
// name order. It is built on first use of the key: selectors name only a few keys.
func (t *translator) nsLabelIndex(key string) map[string][]*nsView {
	if idx, ok := t.nsByLabel[key]; ok {
		return idx
	}
	idx := map[string][]*nsView{}
	for _, ns := range t.nsNames {
		if v, ok := ns.Lookup(key); ok {
			idx[v] = append(idx[v], ns)
		}
	}
	t.nsByLabel[key] = idx
	return idx
}
