package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
	slices.SortFunc(eps, ruleset.CompareEndpoints)
	eps = slices.Compact(eps)
	if r.ports != nil {
		r.ports[k] = eps
	}
	return eps
}

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
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return peerResult{}, fmt.Errorf("peer names no podSelector, namespaceSelector or ipBlock")
	}

	var key strings.Builder
	podSel, nsSel := labels.Everything(), labels.Selector(nil)
	if peer.PodSelector != nil {
		s, err := asSelector(peer.PodSelector)
		if err != nil {
			return peerResult{}, fmt.Errorf("invalid podSelector: %w", err)
		}
		podSel = s
	}
	if peer.NamespaceSelector != nil {
		s, err := asSelector(peer.NamespaceSelector)
		if err != nil {
			return peerResult{}, fmt.Errorf("invalid namespaceSelector: %w", err)
		}
		nsSel = s
		key.WriteString("ns:" + s.String())
	} else {
		// A podSelector alone means the policy's own namespace.
		key.WriteString("in:" + ns)
	}
	key.WriteString("\x00" + podSel.String())
	k := key.String()
	e := t.peers[k]
	if e != nil && !e.dirty {
		t.used(e)
		return e.res, nil
	}

	res := peerResult{podSel: podSel, ports: map[portKey][]ruleset.Endpoint{}}
	if nsSel == nil {
		if v := t.namespaces[ns]; v != nil {
			res.nss = []*nsView{v}
		}
	} else {
		res.nss = t.selectNamespaces(nsSel)
	}
	b := &t.builder
	b.Reset()
	everyPod := podSel.Empty()
	for _, n := range res.nss {
		for _, p := range n.pods {
			if everyPod || podSel.Matches(p.labels()) {
				for _, a := range p.src.IPs() {
					// An address other pods claim too joins only if they all match.
					if !p.shared || t.everyClaimantIn(&res, a) {
						b.AddAddr(a)
					}
				}
			}
		}
	}
	res.addrs = b.Set()
	if e == nil {
		e = &peerEntry{key: k, nsSelector: nsSel != nil}
		t.peers[k] = e
	}
	e.res, e.dirty = res, false
	if t.inc != nil {
		t.inc.indexPeer(e, ns)
	}
	t.used(e)
	return res, nil
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
