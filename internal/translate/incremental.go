package translate

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Incremental is a translator that keeps its indexes between recomputes and is told what changed:
// pods, Namespaces and NetworkPolicies one at a time, as the watch delivers them. RuleSet returns
// exactly what Translate returns for the same objects (the property test pins it), but
// recomputes only what the changes since the last call can affect:
//
//   - The pods are indexed once, by namespace (with the local ones apart) and by address (the
//     addresses several pods claim); a pod event moves one pod in and out of those lists.
//   - Each selector peer's result is memoised as in Translate, but across calls, and listed
//     under every namespace it reads (the one of a podSelector alone even before it exists). A
//     pod event edits the results listed under the pod's namespace whose podSelector matches the
//     pod before or after the event: the old pod's addresses leave, the new one's join
//     (ruleset.AddrSet.WithAddr, a copy without a sort). When the event changes which pods claim
//     an address, those results are computed again instead, from the pods of the namespaces they
//     select. A pod's namespace gaining its first pod or losing its last one, and a label change
//     of a Namespace that holds pods, invalidate every result with a namespaceSelector:
//     namespaces change rarely.
//   - Each NetworkPolicy's translation is memoised, with the peer results it read and the port
//     names it resolves on every pod of the cluster (egress rules to every destination or to an
//     ipBlock). It is translated again when it changes, when one of those peer results changes,
//     when a local pod of its namespace changes (its targets and their named ports),
//     or when a pod with one of those port names changes. Only the policies of namespaces with a
//     local pod are translated, as in Translate.
//   - An address several pods claim makes each claimant's result depend on the others: a change
//     of one claimant counts as a change of every pod that shares an address with it.
//   - The rest is assembled on every call from what is memoised, as Translate assembles it:
//     targets, claims, edges and local addresses grow with the local pods and the policies that
//     select them, not with the cluster. ClusterNetworkPolicies are translated in full on every
//     call (through the memoised peer results); they are few. They, the Nodes, the pod CIDRs
//     and the drop-log setting are plain settings read on every call, so setting them
//     invalidates nothing. The node is fixed: another node needs another Incremental.
//
// Objects are never modified and are kept until replaced or deleted; an object that is set
// again must be a new object (the informers replace objects on update), since an update with
// the same pointer is taken as no change. Pods and policies are known by namespace and name (a
// cache holds one of each), so of an Input listing the same one twice the last is kept. Unlike Translate, the returned rule sets share memory
// with each other and with the Incremental (policies translated once are returned again): they
// must not be modified. Not safe for concurrent use.
type Incremental struct {
	t        translator
	thisNode unique.Handle[string]
	// settings hold the node, the settings, the ClusterNetworkPolicies and the Nodes; never pods,
	// namespaces or policies.
	settings Input

	owners4 map[[4]byte]*indexedPod
	owners6 map[[16]byte]*indexedPod
	badIPs  map[podKey]*compact.Pod // pods that own addresses and list some that do not parse
	// policies are the NetworkPolicies by namespace.
	policies map[string]*nsPolicies
	// peersByNS lists the memoised peer results by the namespaces they read.
	peersByNS map[string]map[*peerEntry]struct{}
	// everywhere lists, by port name, the policies that resolve the name on every pod.
	everywhere map[string]map[*policyEntry]struct{}

	deps        *policyEntry // the policy being translated, whose dependencies are recorded
	round       uint64       // RuleSet calls so far
	nsDirty     bool         // the namespaces holding pods, or their labels, changed
	claimsDirty bool         // t.claims changed: t.conflicts is to be listed again
	orphans     []*peerEntry // peer results that lost their last user: dropped unless used again
	sweepAll    bool         // the ClusterNetworkPolicies changed: drop every unused peer result

	// What the rule set takes from the local pods alone is kept across calls: most events are
	// about remote pods. sortedLocal are the local pods by namespace and name (the Targets'
	// order); local and edges are the last rule set's Local and Edges, which share their memory.
	sortedLocal []*indexedPod
	memos       []*targetMemo // by indexedPod.slot - 1
	// translated is RuleSet's list of the policies that select local pods, kept for its memory:
	// what ruleSet keeps of it, it copies.
	translated []translatedPolicy
	// lastPolicies are the last rule set's Policies, returned again while no policy changed.
	lastPolicies []ruleset.Policy
	// lastTargets are the last Targets targets built, the lastID-th: returned again while every
	// target in it is.
	lastTargets []ruleset.Target
	lastID      uint64
	local       []ruleset.LocalAddr
	edges       ruleset.Edges
	// The local pods changed: sortedLocal, local and edges are to be computed again (the claims:
	// local only; the pod CIDRs: edges only).
	sortDirty, localDirty, edgesDirty bool
	// targetGen counts the changes of claims, which can change the addresses of any Target: a
	// pod's memoised Target (targetMemo) is valid only in the generation it was built in.
	targetGen uint64
}

// targetMemo is the Target a local pod had in the last rule set, and what it was built from.
type targetMemo struct {
	// contrib are the policies that select the pod in this call, in the rule set's order;
	// scratch, filled on every call.
	contrib []contribution
	of      []contribution // what target was built from
	gen     uint64         // Incremental.targetGen when target was built; 0: none
	target  ruleset.Target
	// target is Incremental.lastTargets[pos] when inLast is Incremental.lastID.
	inLast uint64
	pos    int
}

// contribution is what a NetworkPolicy adds to the Target of a pod it selects.
type contribution struct {
	key                    ruleset.PolicyKey
	audit, ingress, egress bool
}

type podKey struct {
	ns   unique.Handle[string]
	name string
}

// nsPolicies are the NetworkPolicies of one namespace.
type nsPolicies struct {
	byName map[string]*policyEntry
	sorted []*policyEntry // by name: the rule set's order
}

// policyEntry is the memoised translation of one NetworkPolicy, with what it depends on.
type policyEntry struct {
	np       *networkingv1.NetworkPolicy
	dirty    bool
	ok       bool // the policy selects a local pod
	out      translatedPolicy
	problems []Problem
	// peers are the memoised peer results the translation read; everywhere the port names it
	// resolved on every pod.
	peers      []*peerEntry
	everywhere []string
}

// NewIncremental returns an Incremental holding the objects of in, for in.Node.
func NewIncremental(in Input) *Incremental {
	s := &Incremental{
		t:          *newTranslator(),
		thisNode:   compact.Intern(in.Node),
		settings:   Input{Node: in.Node, PodCIDRs: in.PodCIDRs, LogDrops: in.LogDrops, ClusterPolicies: in.ClusterPolicies, Nodes: in.Nodes},
		owners6:    map[[16]byte]*indexedPod{},
		badIPs:     map[podKey]*compact.Pod{},
		policies:   map[string]*nsPolicies{},
		peersByNS:  map[string]map[*peerEntry]struct{}{},
		everywhere: map[string]map[*policyEntry]struct{}{},
		sortDirty:  true, localDirty: true, edgesDirty: true,
		targetGen: 1,
	}
	s.t.claims = map[netip.Addr][]*indexedPod{}
	s.t.inc = s
	for _, ns := range in.Namespaces {
		s.SetNamespace(ns)
	}
	if !s.loadPods(in.Pods) {
		// The input lists a pod twice (a cache never does): one at a time, the last one wins.
		s.resetPods()
		for _, p := range in.Pods {
			s.SetPod(p)
		}
	}
	for _, np := range in.Policies {
		s.SetPolicy(np)
	}
	return s
}

// loadPods indexes the pods of a new Incremental. Each namespace's list is filled, then sorted
// once: inserting the pods one by one in name order would move n²/2 pointers for a namespace of
// n pods. It returns false, leaving the indexes to be reset, if two pods have the same name.
func (s *Incremental) loadPods(pods []*compact.Pod) bool {
	s.owners4 = make(map[[4]byte]*indexedPod, len(pods))
	var all []*indexedPod
	for _, p := range pods {
		if !p.OwnsAddresses() {
			continue
		}
		if len(p.BadIPs()) > 0 {
			s.badIPs[podKey{p.NamespaceHandle(), p.Name()}] = p
		}
		if p.NumIPs() == 0 {
			continue
		}
		x := &indexedPod{src: p, local: p.NodeHandle() == s.thisNode && s.settings.Node != ""}
		s.place(x, false)
		all = append(all, x)
	}
	for _, ns := range s.t.namespaces {
		slices.SortFunc(ns.pods, func(a, b *indexedPod) int { return strings.Compare(a.src.Name(), b.src.Name()) })
		for i := 1; i < len(ns.pods); i++ {
			if ns.pods[i].src.Name() == ns.pods[i-1].src.Name() {
				return false
			}
		}
	}
	for _, x := range all {
		s.addAddresses(x, nil)
	}
	s.nsDirty = true
	return true
}

// resetPods forgets every pod.
func (s *Incremental) resetPods() {
	for _, ns := range s.t.namespaces {
		ns.pods, ns.local, ns.size, ns.addrs4, ns.addrs6 = nil, nil, 0, 0, 0
	}
	s.t.local = nil
	s.t.claims = map[netip.Addr][]*indexedPod{}
	s.owners4, s.owners6 = map[[4]byte]*indexedPod{}, map[[16]byte]*indexedPod{}
	s.badIPs = map[podKey]*compact.Pod{}
	s.nsDirty, s.claimsDirty = true, true
	s.localChanged()
}

// localChanged records that the local pods changed.
func (s *Incremental) localChanged() {
	s.sortDirty, s.localDirty, s.edgesDirty = true, true, true
}

// SetPodCIDRs sets Input.PodCIDRs.
func (s *Incremental) SetPodCIDRs(cidrs []netip.Prefix) {
	s.settings.PodCIDRs = cidrs
	s.edgesDirty = true
}

// SetLogDrops sets Input.LogDrops.
func (s *Incremental) SetLogDrops(on bool) { s.settings.LogDrops = on }

// SetNodes sets Input.Nodes.
func (s *Incremental) SetNodes(nodes []*corev1.Node) { s.settings.Nodes = nodes }

// SetClusterPolicies sets Input.ClusterPolicies.
func (s *Incremental) SetClusterPolicies(cnps []*v1alpha2.ClusterNetworkPolicy) {
	s.settings.ClusterPolicies = cnps
	s.sweepAll = true // the peer results only the old ones read are dropped at the next call
}

// SetNamespace adds or replaces a Namespace.
func (s *Incremental) SetNamespace(ns *corev1.Namespace) {
	if ns == nil {
		return
	}
	v := s.t.namespace(ns.Name)
	if v.size > 0 && !maps.Equal(v.labels, ns.Labels) {
		s.nsDirty = true // only namespaces that hold pods are ever selected
	}
	v.labels, v.dropLogs = ns.Labels, dropLogs(ns)
}

// DeleteNamespace removes the Namespace called name. Its pods, if any are left, stay: they are
// in a namespace without labels (but its name), as in Translate.
func (s *Incremental) DeleteNamespace(name string) {
	v := s.t.namespaces[name]
	if v == nil {
		return
	}
	if v.size > 0 && len(v.labels) > 0 {
		s.nsDirty = true
	}
	v.labels, v.dropLogs = nil, false
}

// SetPolicy adds or replaces a NetworkPolicy.
func (s *Incremental) SetPolicy(np *networkingv1.NetworkPolicy) {
	if np == nil {
		return
	}
	nsp := s.policies[np.Namespace]
	if nsp == nil {
		nsp = &nsPolicies{byName: map[string]*policyEntry{}}
		s.policies[np.Namespace] = nsp
	}
	pe := nsp.byName[np.Name]
	switch {
	case pe == nil:
		pe = &policyEntry{}
		nsp.byName[np.Name] = pe
		i, _ := slices.BinarySearchFunc(nsp.sorted, np.Name, func(e *policyEntry, name string) int { return strings.Compare(e.np.Name, name) })
		nsp.sorted = slices.Insert(nsp.sorted, i, pe)
	case pe.np == np:
		return
	}
	pe.np, pe.dirty = np, true
}

// DeletePolicy removes a NetworkPolicy.
func (s *Incremental) DeletePolicy(namespace, name string) {
	nsp := s.policies[namespace]
	if nsp == nil || nsp.byName[name] == nil {
		return
	}
	pe := nsp.byName[name]
	s.forget(pe)
	delete(nsp.byName, name)
	nsp.sorted = slices.DeleteFunc(nsp.sorted, func(e *policyEntry) bool { return e == pe })
	if len(nsp.sorted) == 0 {
		delete(s.policies, namespace)
	}
}

// SetPod adds or replaces a pod.
func (s *Incremental) SetPod(p *compact.Pod) {
	if p == nil {
		return
	}
	s.changePod(p.Namespace(), p.Name(), p)
}

// DeletePod removes a pod.
func (s *Incremental) DeletePod(namespace, name string) {
	s.changePod(namespace, name, nil)
}

// find returns the indexed pod of that namespace and name, nil when there is none (it does not
// exist, or owns no address), and where it is, or would be, in its namespace's list.
func (s *Incremental) find(namespace, name string) (*indexedPod, int) {
	v := s.t.namespaces[namespace]
	if v == nil {
		return nil, 0
	}
	i, found := slices.BinarySearchFunc(v.pods, name, func(p *indexedPod, name string) int { return strings.Compare(p.src.Name(), name) })
	if !found {
		return nil, i
	}
	return v.pods[i], i
}

// changePod replaces the pod namespace/name by p (nil: deletes it). An update is the old pod's
// removal followed by the new one's addition, each with what it invalidates. Only the pods that
// own an address are kept (in their namespace's list, by name), and those that list addresses
// that do not parse (for the problems); the others affect nothing.
func (s *Incremental) changePod(namespace, name string, p *compact.Pod) {
	old, _ := s.find(namespace, name)
	if old != nil && p != nil && old.src.Equal(p) {
		// Nothing the translator reads changed; keep the new object, not the old one.
		old.src = p
		if s.badIPs[podKey{p.NamespaceHandle(), name}] != nil {
			s.badIPs[podKey{p.NamespaceHandle(), name}] = p
		}
		return
	}
	if old != nil && p != nil && !old.shared && p.OwnsAddresses() && p.NodeHandle() == old.src.NodeHandle() &&
		p.SameIPs(old.src) && slices.Equal(p.BadIPs(), old.src.BadIPs()) && slices.Equal(p.Ports(), old.src.Ports()) {
		s.relabel(old, p)
		return
	}
	k := podKey{compact.Intern(namespace), name}
	delete(s.badIPs, k)
	var (
		changed []*indexedPod
		x       *indexedPod // the new pod, if it owns an address
	)
	if old != nil {
		changed = s.unindex(old, append(changed, old))
	}
	if p != nil && p.OwnsAddresses() {
		if len(p.BadIPs()) > 0 {
			s.badIPs[k] = p
		}
		if p.NumIPs() > 0 {
			x = &indexedPod{src: p, local: p.NodeHandle() == s.thisNode && s.settings.Node != ""}
			changed = s.index(x, append(changed, x))
		}
	}
	if len(changed) == btoi(old != nil)+btoi(x != nil) {
		// No claim changed: the pod alone leaves the peer results the old one was in and joins
		// those the new one is in, which are edited rather than computed again.
		for e := range s.peersByNS[namespace] {
			if e.dirty {
				continue
			}
			inOld := old != nil && e.res.podSel.Matches(old.labels())
			inNew := x != nil && e.res.podSel.Matches(x.labels())
			switch {
			case inOld && inNew:
				s.patchPeer(e, old, x) // the named ports may have changed too
			case inOld:
				s.patchPeer(e, old, nil)
			case inNew:
				s.patchPeer(e, nil, x)
			}
		}
		for _, y := range changed {
			s.invalidatePolicies(y)
		}
		return
	}
	for _, y := range changed {
		s.invalidate(y)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// patchPeer edits the clean peer result e for a pod that claims its addresses alone: the
// addresses gone leave it, those added join it, and the policies that read it are invalidated.
// A result of a podSelector alone computed before its namespace existed has no namespace to
// list the pods of (named ports): it is computed again instead.
func (s *Incremental) patchPeer(e *peerEntry, gone, added *indexedPod) {
	if !e.nsSelector && e.res.nss == nil {
		s.dirtyPeer(e)
		return
	}
	addrs := e.res.addrs
	if gone != nil {
		for a := range gone.src.IPs() {
			addrs = addrs.WithoutAddr(a)
		}
	}
	if added != nil {
		for a := range added.src.IPs() {
			addrs = addrs.WithAddr(a)
		}
	}
	e.res.addrs = addrs
	s.t.patchPorts(&e.res, gone, added)
	for pe := range e.users {
		pe.dirty = true
	}
}

// relabel replaces x, a pod that owns addresses no other pod claims, by p, which differs from it
// in its labels only (the commonest update of all): the pod stays where it is in the indexes, and
// only the peer results it enters or leaves are invalidated, since what it adds to a result (its
// addresses, its named ports) is unchanged.
func (s *Incremental) relabel(x *indexedPod, p *compact.Pod) {
	old := x.src
	x.src = p
	if k := (podKey{p.NamespaceHandle(), p.Name()}); s.badIPs[k] != nil {
		s.badIPs[k] = p
	}
	for e := range s.peersByNS[x.ns.name] {
		if e.dirty {
			continue
		}
		switch inOld, inNew := e.res.podSel.Matches(old.LabelSet()), e.res.podSel.Matches(p.LabelSet()); {
		case inOld && !inNew:
			s.patchPeer(e, x, nil)
		case inNew && !inOld:
			s.patchPeer(e, nil, x)
		}
	}
	if x.local {
		s.dirtyPolicies(x.ns.name) // their targets
	}
}

// index adds x to the namespace and address indexes. It returns changed with the pods whose
// claims changed appended.
func (s *Incremental) index(x *indexedPod, changed []*indexedPod) []*indexedPod {
	s.place(x, true)
	return s.addAddresses(x, changed)
}

// place adds x to its namespace's lists, in name order when sorted is set.
func (s *Incremental) place(x *indexedPod, sorted bool) {
	ns := s.t.namespace(x.src.Namespace())
	x.ns = ns
	if ns.size == 0 {
		s.nsDirty = true
	}
	if sorted {
		_, i := s.find(ns.name, x.src.Name())
		ns.pods = slices.Insert(ns.pods, i, x)
	} else {
		ns.pods = append(ns.pods, x)
	}
	ns.size++
	ns.countAddrs(x.src, 1)
	if x.local {
		ns.local = append(ns.local, x)
		s.t.local = append(s.t.local, x)
		s.localChanged()
	}
}

// addAddresses records x as a claimant of its addresses, as index does.
func (s *Incremental) addAddresses(x *indexedPod, changed []*indexedPod) []*indexedPod {
	for a := range x.src.IPs() {
		if c := s.t.claims[a]; c != nil {
			i, _ := slices.BinarySearchFunc(c, x, comparePods)
			changed = s.claimChanged(a, slices.Insert(c, i, x), changed)
		} else if q := s.owner(a); q != nil {
			c := []*indexedPod{q, x}
			slices.SortFunc(c, comparePods)
			changed = s.claimChanged(a, c, changed)
		} else {
			s.setOwner(a, x)
		}
	}
	return changed
}

// unindex removes x from the namespace and address indexes, as index does.
func (s *Incremental) unindex(x *indexedPod, changed []*indexedPod) []*indexedPod {
	ns := x.ns
	ns.pods = deletePod(ns.pods, x)
	ns.size--
	ns.countAddrs(x.src, -1)
	if ns.size == 0 {
		s.nsDirty = true
	}
	if x.local {
		ns.local = deletePod(ns.local, x)
		s.t.local = deletePod(s.t.local, x)
		s.localChanged()
	}
	for a := range x.src.IPs() {
		if c := s.t.claims[a]; c != nil {
			changed = s.claimChanged(a, deletePod(c, x), changed)
		} else {
			s.setOwner(a, nil)
		}
	}
	return changed
}

// The owner of each address, the one pod that claims it or one of its claimants (the others are
// in t.claims), in a map per family: an IPv4 address is its own 32-bit key, which keeps the
// largest index of the agent small.
func (s *Incremental) owner(a netip.Addr) *indexedPod {
	if a.Is4() {
		return s.owners4[a.As4()]
	}
	return s.owners6[a.As16()]
}

// setOwner sets the owner of a; nil forgets a.
func (s *Incremental) setOwner(a netip.Addr, x *indexedPod) {
	switch {
	case a.Is4() && x == nil:
		delete(s.owners4, a.As4())
	case a.Is4():
		s.owners4[a.As4()] = x
	case x == nil:
		delete(s.owners6, a.As16())
	default:
		s.owners6[a.As16()] = x
	}
}

// claimChanged records that the claimants of a are now o (at least one), and appends them to
// changed: whether an address of theirs joins a peer set or a named port depends on every
// claimant.
func (s *Incremental) claimChanged(a netip.Addr, o []*indexedPod, changed []*indexedPod) []*indexedPod {
	if len(o) > 1 {
		s.t.claims[a] = o
	} else {
		delete(s.t.claims, a)
	}
	s.setOwner(a, o[0])
	s.claimsDirty = true
	for _, q := range o {
		q.shared = false
		for b := range q.src.IPs() {
			if s.t.claims[b] != nil {
				q.shared = true
				break
			}
		}
		changed = append(changed, q)
	}
	return changed
}

func deletePod(pods []*indexedPod, x *indexedPod) []*indexedPod {
	if i := slices.Index(pods, x); i >= 0 {
		return slices.Delete(pods, i, i+1)
	}
	return pods
}

// invalidate marks what a change of x (its state before or after the event) can affect.
func (s *Incremental) invalidate(x *indexedPod) {
	for e := range s.peersByNS[x.ns.name] {
		// A dirty result's users are dirty already (see dirtyPeer).
		if !e.dirty && e.res.podSel.Matches(x.labels()) {
			s.dirtyPeer(e)
		}
	}
	s.invalidatePolicies(x)
}

// invalidatePolicies marks the policies a change of x can affect other than through peer results.
func (s *Incremental) invalidatePolicies(x *indexedPod) {
	if x.local {
		s.dirtyPolicies(x.ns.name)
	}
	for _, np := range x.src.Ports() {
		for pe := range s.everywhere[np.Name.Value()] {
			pe.dirty = true
		}
	}
}

// dirtyPolicies invalidates the policies of namespace ns.
func (s *Incremental) dirtyPolicies(ns string) {
	if nsp := s.policies[ns]; nsp != nil {
		for _, pe := range nsp.sorted {
			pe.dirty = true
		}
	}
}

// dirtyPeer invalidates a peer result and the policies that read it.
func (s *Incremental) dirtyPeer(e *peerEntry) {
	e.dirty = true
	for pe := range e.users {
		pe.dirty = true
	}
}

// usedPeer records that e is read now, by the policy being translated if any.
func (s *Incremental) usedPeer(e *peerEntry) {
	e.round = s.round
	pe := s.deps
	if pe == nil {
		return
	}
	if _, ok := e.users[pe]; ok {
		return
	}
	if e.users == nil {
		e.users = map[*policyEntry]struct{}{}
	}
	e.users[pe] = struct{}{}
	pe.peers = append(pe.peers, e)
}

// resolvesEverywhere records that the policy being translated resolves the port name on every
// pod.
func (s *Incremental) resolvesEverywhere(name string) {
	pe := s.deps
	if pe == nil || slices.Contains(pe.everywhere, name) {
		return
	}
	pe.everywhere = append(pe.everywhere, name)
	m := s.everywhere[name]
	if m == nil {
		m = map[*policyEntry]struct{}{}
		s.everywhere[name] = m
	}
	m[pe] = struct{}{}
}

// forget drops the dependencies recorded for pe.
func (s *Incremental) forget(pe *policyEntry) {
	for _, e := range pe.peers {
		delete(e.users, pe)
		if len(e.users) == 0 {
			s.orphans = append(s.orphans, e)
		}
	}
	for _, name := range pe.everywhere {
		m := s.everywhere[name]
		delete(m, pe)
		if len(m) == 0 {
			delete(s.everywhere, name)
		}
	}
	pe.peers, pe.everywhere = nil, nil
}

// indexPeer lists a freshly computed peer result under the namespaces it read: those it selects,
// or ns, the namespace of a podSelector alone.
func (s *Incremental) indexPeer(e *peerEntry, ns string) {
	if e.nsSelector {
		if len(e.indexed) == len(e.res.nss) && !slices.ContainsFunc(e.res.nss, func(v *nsView) bool { return !slices.Contains(e.indexed, v.name) }) {
			return
		}
	} else if len(e.indexed) == 1 && e.indexed[0] == ns {
		return
	}
	s.unindexPeer(e)
	if e.nsSelector {
		for _, v := range e.res.nss {
			e.indexed = append(e.indexed, v.name)
		}
	} else {
		e.indexed = append(e.indexed, ns)
	}
	for _, n := range e.indexed {
		m := s.peersByNS[n]
		if m == nil {
			m = map[*peerEntry]struct{}{}
			s.peersByNS[n] = m
		}
		m[e] = struct{}{}
	}
}

func (s *Incremental) unindexPeer(e *peerEntry) {
	for _, n := range e.indexed {
		m := s.peersByNS[n]
		delete(m, e)
		if len(m) == 0 {
			delete(s.peersByNS, n)
		}
	}
	e.indexed = nil
}

// RuleSet returns the rule set and the problems, exactly as Translate would return them for the
// objects held now.
func (s *Incremental) RuleSet() (ruleset.RuleSet, []Problem) {
	t := &s.t
	s.round++
	if s.nsDirty {
		s.reindexNamespaces()
	}
	if s.claimsDirty {
		t.conflicts = slices.SortedFunc(maps.Keys(t.claims), netip.Addr.Compare)
		s.claimsDirty = false
		s.localDirty = true // the owners of claimed addresses
		s.targetGen++       // the addresses of targets that share one
	}
	if s.sortDirty {
		s.sortLocal()
	}
	t.problems = nil // a new slice: the last call returned the old one
	for _, p := range s.badIPs {
		for _, bad := range p.BadIPs() {
			t.report("Pod "+p.Namespace()+"/"+p.Name(), "ignoring unparsable pod IP %q", bad)
		}
	}
	for _, a := range t.conflicts {
		t.reportClaim(a, t.claims[a])
	}

	// The policies of the namespaces that hold local pods, by namespace, then name.
	var dirty []*networkingv1.NetworkPolicy
	s.eachLocalPolicy(func(pe *policyEntry) {
		if pe.dirty {
			dirty = append(dirty, pe.np)
		}
	})
	t.resolvePeersAhead(dirty)
	translated := s.translated[:0]
	s.eachLocalPolicy(func(pe *policyEntry) {
		if pe.dirty {
			s.translatePolicy(pe)
		}
		t.problems = append(t.problems, pe.problems...)
		if pe.ok {
			translated = append(translated, pe.out)
		}
	})
	in := s.settings
	rs, problems := t.ruleSet(translated, &in)
	clear(translated) // nothing to keep alive
	s.translated = translated[:0]
	s.sweep()
	return rs, problems
}

// eachLocalPolicy calls f with every policy of the namespaces that hold local pods, by namespace,
// then name.
func (s *Incremental) eachLocalPolicy(f func(*policyEntry)) {
	for i, p := range s.sortedLocal {
		if i > 0 && s.sortedLocal[i-1].ns == p.ns {
			continue
		}
		if nsp := s.policies[p.ns.name]; nsp != nil {
			for _, pe := range nsp.sorted {
				f(pe)
			}
		}
	}
}

// sortLocal sorts the local pods again and moves their memos along.
func (s *Incremental) sortLocal() {
	s.sortedLocal = append(s.sortedLocal[:0], s.t.local...)
	slices.SortFunc(s.sortedLocal, comparePods)
	memos := make([]*targetMemo, len(s.sortedLocal))
	for i, p := range s.sortedLocal {
		if p.slot > 0 {
			memos[i] = s.memos[p.slot-1]
		} else {
			memos[i] = &targetMemo{}
		}
	}
	for i, p := range s.sortedLocal {
		p.slot = int32(i + 1)
	}
	s.memos = memos
	s.sortDirty = false
}

// targets returns the rule set's Targets, sorted by namespace and name, for the translated
// NetworkPolicies when there are no ClusterNetworkPolicies. A local pod selected by the same
// policies, in the same directions, with the same addresses and drop-log setting as in the last
// call gets the Target of the last call again: it is equal, and shares its slices with the last
// rule set. It is built as translator.isolate builds it otherwise.
func (s *Incremental) targets(policies []translatedPolicy, logDrops bool) []ruleset.Target {
	for _, m := range s.memos {
		m.contrib = m.contrib[:0]
	}
	n := 0
	for _, tp := range policies {
		c := contribution{key: tp.pol.Key, audit: tp.pol.Audit, ingress: tp.pol.Ingress != nil, egress: tp.pol.Egress != nil}
		for _, p := range tp.targets {
			m := s.memos[p.slot-1]
			if len(m.contrib) == 0 {
				n++
			}
			m.contrib = append(m.contrib, c)
		}
	}
	if n == 0 {
		return nil
	}
	same := n == len(s.lastTargets) // every Target is where it was in the last slice
	k := 0
	for i, p := range s.sortedLocal {
		m := s.memos[i]
		if len(m.contrib) == 0 {
			continue
		}
		ld := logDrops || p.ns.dropLogs
		if m.gen != s.targetGen || m.target.LogDrops != ld || !slices.Equal(m.of, m.contrib) {
			m.target = ruleset.Target{Namespace: p.ns.name, Name: p.src.Name(), IPs: s.t.ownIPs(p), LogDrops: ld}
			for _, c := range m.contrib {
				addPolicy(&m.target, c.key, c.audit, c.ingress, c.egress)
			}
			m.of = append(m.of[:0], m.contrib...)
			m.gen = s.targetGen
			same = false
		}
		same = same && m.inLast == s.lastID && m.pos == k
		k++
	}
	if same {
		return s.lastTargets
	}
	out := make([]ruleset.Target, 0, n)
	s.lastID++
	for _, m := range s.memos {
		if len(m.contrib) > 0 {
			m.inLast, m.pos = s.lastID, len(out)
			out = append(out, m.target)
		}
	}
	s.lastTargets = out
	return out
}

// policyList returns the rule set's Policies: those of the last call when they are the same
// translations (rules are never modified once built, so the same memory is the same rules).
func (s *Incremental) policyList(policies []translatedPolicy) []ruleset.Policy {
	if len(policies) == 0 {
		return nil
	}
	same := len(policies) == len(s.lastPolicies)
	for i := 0; same && i < len(policies); i++ {
		a, b := &policies[i].pol, &s.lastPolicies[i]
		same = a.Key == b.Key && a.Audit == b.Audit && sameRules(a.Ingress, b.Ingress) && sameRules(a.Egress, b.Egress)
	}
	if !same {
		s.lastPolicies = policyList(policies)
	}
	return s.lastPolicies
}

// sameRules reports whether a and b are the same memory (or both nil, or both empty).
func sameRules(a, b []ruleset.Rule) bool {
	return len(a) == len(b) && (a == nil) == (b == nil) && (len(a) == 0 || &a[0] == &b[0])
}

// isolated returns the Targets by pod, for the claims.
func (s *Incremental) isolated(targets []ruleset.Target) map[*indexedPod]*ruleset.Target {
	m := make(map[*indexedPod]*ruleset.Target, len(targets))
	i := 0
	for _, p := range s.sortedLocal {
		if i < len(targets) && targets[i].Namespace == p.ns.name && targets[i].Name == p.src.Name() {
			m[p] = &targets[i]
			i++
		}
	}
	return m
}

// localParts returns the rule set's Edges and Local, computed again only when what they are
// built from changed.
func (s *Incremental) localParts(cidrs []netip.Prefix) (ruleset.Edges, []ruleset.LocalAddr) {
	if s.edgesDirty {
		s.edges = s.t.edges(cidrs)
		s.edgesDirty = false
	}
	if s.localDirty {
		s.local = s.t.localAddrs()
		s.localDirty = false
	}
	return s.edges, s.local
}

// translatePolicy translates pe's policy again, recording what it reads.
func (s *Incremental) translatePolicy(pe *policyEntry) {
	t := &s.t
	s.forget(pe)
	saved := t.problems
	t.problems = nil
	s.deps = pe
	pol, targets, ok := t.policy(pe.np)
	s.deps = nil
	pe.out, pe.ok, pe.problems, pe.dirty = translatedPolicy{pol, targets}, ok, t.problems, false
	t.problems = saved
}

// reindexNamespaces lists the namespaces that hold pods again, drops the namespace selections
// and invalidates every peer result with a namespaceSelector.
func (s *Incremental) reindexNamespaces() {
	t := &s.t
	t.nsNames = nil // a new slice: nothing else holds the old one, but nothing need rely on it
	for _, ns := range t.namespaces {
		if ns.size > 0 {
			t.nsNames = append(t.nsNames, ns)
		}
	}
	slices.SortFunc(t.nsNames, func(a, b *nsView) int { return strings.Compare(a.name, b.name) })
	for i, ns := range t.nsNames {
		ns.position = i
	}
	clear(t.nsSelected)
	clear(t.nsByLabel)
	for _, e := range t.peers {
		if e.nsSelector {
			s.dirtyPeer(e)
		}
	}
	s.nsDirty = false
}

// sweep drops the memoised peer results no policy reads any more and that this call did not
// read (a ClusterNetworkPolicy's), so that the memo does not grow with every selector ever seen.
func (s *Incremental) sweep() {
	if s.sweepAll {
		for _, e := range s.t.peers {
			s.orphans = append(s.orphans, e)
		}
		s.sweepAll = false
	}
	for _, e := range s.orphans {
		if len(e.users) == 0 && e.round != s.round && s.t.peers[e.key] == e {
			s.unindexPeer(e)
			delete(s.t.peers, e.key)
		}
	}
	s.orphans = s.orphans[:0]
}
