package translate

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// peerResult is what one peer matches: addresses, and where its pods are (for named ports).
type peerResult struct {
	addrs ruleset.AddrSet
	// The pods are those of nss that podSel matches. They are listed again only for egress named
	// ports, so they are not kept: a broad peer matches a large part of the cluster.
	nss    []*nsView
	podSel labels.Selector
	// ports memoises, per port name and protocol, the endpoints of those pods (peerEndpoints):
	// listing the pods of a broad peer and their ports is most of translating an egress rule
	// with named ports, and a pod that joins or leaves the peer changes the list by its own
	// endpoints (Incremental.patchPeer edits it). Shared by the copies of the result; nil for an
	// ipBlock.
	ports map[portKey][]ruleset.Endpoint
}

type portKey struct {
	name  string
	proto ruleset.Protocol
}

// peerEndpoints returns the endpoints of the pods r matches for the port called name of proto,
// sorted and without duplicates; the caller must not modify them.
func (t *translator) peerEndpoints(r *peerResult, name string, proto ruleset.Protocol) []ruleset.Endpoint {
	k := portKey{name, proto}
	if eps, ok := r.ports[k]; ok {
		return eps
	}
	var eps []ruleset.Endpoint
	for _, p := range r.appendPods(nil) {
		eps = t.appendEndpoints(eps, p, name, proto, nil)
	}
	sortEndpoints(eps)
	eps = slices.Compact(eps)
	if r.ports != nil {
		r.ports[k] = eps
	}
	return eps
}

// sortEndpoints sorts endpoints as ruleset.CompareEndpoints orders them. The IPv4 ones, with
// their protocols and ports, are sorted as integers: a broad peer's named ports are tens of
// thousands of endpoints, and comparing them through a function was a tenth of a translation.
func sortEndpoints(eps []ruleset.Endpoint) {
	keys := make([]uint64, 0, len(eps))
	var v6 []ruleset.Endpoint
	for _, e := range eps {
		proto := slices.Index(endpointProtocols[:], e.Protocol)
		switch {
		case proto < 0: // a protocol no port entry gives: the general order
			slices.SortFunc(eps, ruleset.CompareEndpoints)
			return
		case e.Addr.Is4():
			a := e.Addr.As4()
			keys = append(keys, uint64(binary.BigEndian.Uint32(a[:]))<<18|uint64(proto)<<16|uint64(e.Port))
		case e.Addr.Is6():
			v6 = append(v6, e)
		default: // no address, which no pod has: the general order
			slices.SortFunc(eps, ruleset.CompareEndpoints)
			return
		}
	}
	slices.Sort(keys)
	slices.SortFunc(v6, ruleset.CompareEndpoints)
	for i, k := range keys {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(k>>18))
		eps[i] = ruleset.Endpoint{Addr: netip.AddrFrom4(a), Protocol: endpointProtocols[k>>16&3], Port: uint16(k)}
	}
	copy(eps[len(keys):], v6) // IPv6 after IPv4, as netip.Addr.Compare has them
}

// endpointProtocols are the protocols in the order CompareEndpoints gives them (as strings).
var endpointProtocols = [...]ruleset.Protocol{ruleset.SCTP, ruleset.TCP, ruleset.UDP}

// patchPorts edits the memoised endpoints of r for a pod that leaves it (gone) or joins it
// (added), either possibly nil, that claims its addresses alone (Incremental.patchPeer): its
// endpoints are its own, not also another pod's.
func (t *translator) patchPorts(r *peerResult, gone, added *indexedPod) {
	for k, eps := range r.ports {
		if gone != nil {
			for _, ep := range t.appendEndpoints(nil, gone, k.name, k.proto, nil) {
				if i, found := slices.BinarySearchFunc(eps, ep, ruleset.CompareEndpoints); found {
					eps = slices.Delete(slices.Clip(eps), i, i+1)
				}
			}
		}
		if added != nil {
			for _, ep := range t.appendEndpoints(nil, added, k.name, k.proto, nil) {
				if i, found := slices.BinarySearchFunc(eps, ep, ruleset.CompareEndpoints); !found {
					eps = slices.Insert(slices.Clip(eps), i, ep)
				}
			}
		}
		r.ports[k] = eps
	}
}

// isBlock reports whether the peer is an ipBlock: it matches addresses, not pods.
func (r *peerResult) isBlock() bool { return r.podSel == nil }

// appendPods appends the pods the peer matches; none for an ipBlock.
func (r *peerResult) appendPods(dst []*indexedPod) []*indexedPod {
	for _, ns := range r.nss {
		for _, p := range ns.pods {
			if r.podSel.Matches(p.labels()) {
				dst = append(dst, p)
			}
		}
	}
	return dst
}

// peerEntry is the memo of one selector peer.
type peerEntry struct {
	key string // in translator.peers
	res peerResult
	// nsSelector is true for a peer with a namespaceSelector: the namespaces it selects change
	// when any namespace's labels, or the set of namespaces holding pods, change.
	nsSelector bool

	// The rest is the bookkeeping of Incremental; Translate leaves it unset.

	// dirty asks for the result to be computed again before its next use.
	dirty bool
	// indexed are the namespaces under which Incremental.peersByNS lists the entry: those of
	// res.nss, or the policy's namespace for a podSelector alone (even before it exists).
	indexed []string
	// users are the memoised NetworkPolicies that read the result.
	users map[*policyEntry]struct{}
	// round is the last Incremental.RuleSet call that read the result.
	round uint64
}

// used records that the policy being translated (Incremental only) reads e.
func (t *translator) used(e *peerEntry) {
	if t.inc != nil {
		t.inc.usedPeer(e)
	}
}

// peer translates one peer of a rule in namespace ns. Results of selector peers are memoised (for
// the duration of one Translate call, or until an event invalidates them in Incremental), since
// many policies share the same peers.
func (t *translator) peer(ns string, peer *networkingv1.NetworkPolicyPeer) (peerResult, error) {
	if peer.IPBlock != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			return peerResult{}, fmt.Errorf("ipBlock cannot be combined with a selector")
		}
		set, err := ipBlock(peer.IPBlock)
		return peerResult{addrs: set}, err
	}
	q, err := selectorPeer(ns, peer)
	if err != nil {
		return peerResult{}, err
	}
	e := t.peers[q.key]
	if e == nil || e.dirty {
		res := t.peerPods(q)
		res.addrs = t.peerAddrs(&res, &t.builder)
		e = t.storePeer(q, res)
	}
	t.used(e)
	return e.res, nil
}

// peerQuery is a selector peer of a rule in namespace ns, with its key in translator.peers.
type peerQuery struct {
	key, ns       string
	podSel, nsSel labels.Selector // nsSel is nil for a podSelector alone
}

// selectorPeer returns the query of a peer with a podSelector, a namespaceSelector or both.
func selectorPeer(ns string, peer *networkingv1.NetworkPolicyPeer) (peerQuery, error) {
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return peerQuery{}, fmt.Errorf("peer names no podSelector, namespaceSelector or ipBlock")
	}
	q := peerQuery{ns: ns, podSel: labels.Everything()}
	if peer.PodSelector != nil {
		s, err := asSelector(peer.PodSelector)
		if err != nil {
			return peerQuery{}, fmt.Errorf("invalid podSelector: %w", err)
		}
		q.podSel = s
	}
	var key strings.Builder
	if peer.NamespaceSelector != nil {
		s, err := asSelector(peer.NamespaceSelector)
		if err != nil {
			return peerQuery{}, fmt.Errorf("invalid namespaceSelector: %w", err)
		}
		q.nsSel = s
		key.WriteString("ns:" + s.String())
	} else {
		// A podSelector alone means the policy's own namespace.
		key.WriteString("in:" + ns)
	}
	key.WriteString("\x00" + q.podSel.String())
	q.key = key.String()
	return q, nil
}

// peerPods returns the result of q without its addresses: the namespaces it selects.
func (t *translator) peerPods(q peerQuery) peerResult {
	res := peerResult{podSel: q.podSel, ports: map[portKey][]ruleset.Endpoint{}}
	if q.nsSel == nil {
		if v := t.namespaces[q.ns]; v != nil {
			res.nss = []*nsView{v}
		}
	} else {
		res.nss = t.selectNamespaces(q.nsSel)
	}
	return res
}

// peerAddrs returns the addresses of the pods of res.nss that res.podSel matches, built with b.
// It only reads the translator, so several can run at once (see resolvePeersAhead).
func (t *translator) peerAddrs(res *peerResult, b *ruleset.Builder) ruleset.AddrSet {
	b.Reset()
	b.Grow(res.addrsBound())
	everyPod := res.podSel.Empty()
	for _, n := range res.nss {
		for _, p := range n.pods {
			if everyPod || res.podSel.Matches(p.labels()) {
				for a := range p.src.IPs() {
					// An address other pods claim too joins only if they all match.
					if !p.shared || t.everyClaimantIn(res, a) {
						b.AddAddr(a)
					}
				}
			}
		}
	}
	return b.Set()
}

// addrsBound returns how many IPv4 and IPv6 addresses the pods of res.nss own: the most res can
// select.
func (res *peerResult) addrsBound() (n4, n6 int) {
	for _, n := range res.nss {
		n4, n6 = n4+n.addrs4, n6+n.addrs6
	}
	return n4, n6
}

// storePeer memoises res as the result of q.
func (t *translator) storePeer(q peerQuery, res peerResult) *peerEntry {
	e := t.peers[q.key]
	if e == nil {
		e = &peerEntry{key: q.key, nsSelector: q.nsSel != nil}
		t.peers[q.key] = e
	}
	e.res, e.dirty = res, false
	if t.inc != nil {
		t.inc.indexPeer(e, q.ns)
	}
	return e
}

// peerPanic holds what a goroutine of resolvePeersAhead panicked with (atomic.Value needs one
// concrete type).
type peerPanic struct{ value any }

// peersAheadPods is the number of pods to test below which resolvePeersAhead leaves the peers to
// be resolved one by one: an event's few peers are not worth a goroutine.
var peersAheadPods = 20000

// resolvePeersAhead resolves the selector peers of the rules of policies that are not memoised,
// the pod matching of each on one of the machine's cores, and memoises them, so that translating
// the policies finds them. A recompute from scratch tests every pod of the cluster against some
// peer; the results are the same as one by one, since each peer is resolved alone and stored in
// the order the policies name them. Peers that do not parse are left to peer, which reports them.
func (t *translator) resolvePeersAhead(policies []*networkingv1.NetworkPolicy) {
	type job struct {
		q   peerQuery
		res peerResult
		// size is the most memory its addresses can take, in IPv4 addresses (an IPv6 range
		// takes four times one's memory): the order in which the workers take the jobs.
		size int
	}
	var (
		jobs []*job
		seen = map[string]bool{}
		pods = 0
	)
	add := func(ns string, peers []networkingv1.NetworkPolicyPeer) {
		for i := range peers {
			if peers[i].IPBlock != nil {
				continue
			}
			q, err := selectorPeer(ns, &peers[i])
			if err != nil || seen[q.key] {
				continue
			}
			seen[q.key] = true
			if e := t.peers[q.key]; e != nil && !e.dirty {
				continue
			}
			j := &job{q: q, res: t.peerPods(q)} // selectNamespaces memoises: here, not in a worker
			for _, n := range j.res.nss {
				pods += len(n.pods)
				j.size += n.addrs4 + 4*n.addrs6
			}
			jobs = append(jobs, j)
		}
	}
	for _, np := range policies {
		if targets, err := t.policyTargets(np); err != nil || len(targets) == 0 {
			continue // translating it reads no peer
		}
		ingress, egress, _ := policyTypes(np)
		for _, r := range np.Spec.Ingress {
			if ingress {
				add(np.Namespace, r.From)
			}
		}
		for _, r := range np.Spec.Egress {
			if egress {
				add(np.Namespace, r.To)
			}
		}
	}
	if pods < peersAheadPods {
		return
	}
	// The largest first: a worker's builder then grows once, to the first job it takes, and the
	// last jobs to finish are small ones.
	order := slices.Clone(jobs)
	slices.SortStableFunc(order, func(a, b *job) int { return cmp.Compare(b.size, a.size) })
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		panicked atomic.Value
	)
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			// A panic is raised again on the translating goroutine, where the caller can recover
			// it as before, rather than ending the process from this one.
			defer func() {
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, peerPanic{r})
				}
			}()
			var b ruleset.Builder
			for {
				i := int(next.Add(1)) - 1
				if i >= len(order) {
					return
				}
				order[i].res.addrs = t.peerAddrs(&order[i].res, &b)
			}
		})
	}
	wg.Wait()
	if p, ok := panicked.Load().(peerPanic); ok {
		panic(p.value)
	}
	for _, j := range jobs {
		t.storePeer(j.q, j.res)
	}
}

// ipBlock returns the addresses of cidr minus its excepts. Host bits are masked. An except that
// does not parse, or that lies outside its cidr, makes the whole peer match nothing: guessing
// what it meant could widen the allowance.
func ipBlock(b *networkingv1.IPBlock) (ruleset.AddrSet, error) {
	cidr, err := netip.ParsePrefix(strings.TrimSpace(b.CIDR))
	if err != nil {
		return ruleset.AddrSet{}, fmt.Errorf("invalid ipBlock.cidr %q: %w", b.CIDR, err)
	}
	cidr = unmapPrefix(cidr).Masked()
	whole := ruleset.PrefixRange(cidr)
	var holes []ruleset.AddrRange
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(strings.TrimSpace(e))
		if err != nil {
			return ruleset.AddrSet{}, fmt.Errorf("invalid ipBlock.except %q: %w", e, err)
		}
		ex = unmapPrefix(ex).Masked()
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() < cidr.Bits() || !cidr.Contains(ex.Addr()) {
			return ruleset.AddrSet{}, fmt.Errorf("ipBlock.except %q is not inside cidr %q", e, b.CIDR)
		}
		holes = append(holes, ruleset.PrefixRange(ex))
	}
	var bld ruleset.Builder
	for _, r := range ruleset.Subtract(whole, holes) {
		bld.AddRange(r)
	}
	return bld.Set(), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96), the way pod addresses are
// compared; other prefixes are returned as they are.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
