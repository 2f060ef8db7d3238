package translate

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// An address claimed by more than one live pod (not finished, not hostNetwork; local or remote)
// is a broken cluster state: a pod's address leaked to another, a stale status, a CNI bug. It is
// enforced with the stricter result of its claimants, whatever their names:
//
//   - it joins a selector peer's set only if every claimant matches the peer (ipBlock peers are
//     about addresses and are unaffected);
//   - a named port resolves at it only if every claimant resolves the name to the same protocol
//     and number;
//   - on this node, when several local pods claim it, it is isolated for a direction if any of
//     them is, and a packet must pass one policy of every isolating claimant (ruleset.Claim).
//
// Each conflict is reported as a Problem naming the claimants.
//
// Finding conflicts runs over every pod on every recompute, so it costs a few linear passes and
// no map unless there is a conflict: the addresses are reduced to 32-bit keys packed with their
// pod's index; the keys that share a bucket of a hash with another (about one in seven) are
// radix-sorted, and only runs of equal keys are looked at.

// findClaims fills t.claims with the addresses more than one pod claims, marks those pods shared,
// and reports each conflict. keys hold every address of t.pods as addrKey(address)<<32 | the
// pod's index in t.pods; findClaims reorders them.
func (t *translator) findClaims(keys []uint64) {
	keys = claimCandidates(keys)
	keys, _ = sortByKey(keys, make([]uint64, len(keys)))
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j]>>32 == keys[i]>>32 {
			j++
		}
		if j-i > 1 {
			t.claimRun(keys[i:j])
		}
		i = j
	}
	slices.SortFunc(t.conflicts, netip.Addr.Compare)
	for _, a := range t.conflicts {
		t.reportClaim(a, t.claims[a])
	}
}

// candidatesMin is the number of keys below which claimCandidates keeps them all: sorting a few
// thousand costs less than its bitmaps.
const candidatesMin = 4096

// claimCandidates returns, in their order and in keys' memory, the keys that another key may
// equal: those whose bucket of a multiplicative hash of the key holds another key too. Equal
// keys share a bucket, so every run findClaims looks for is among them; with four buckets per
// key, about one key in seven is, and the rest need no sorting (nor the scratch a sort of them
// all takes: 1.35 MB at 150,000 pods).
func claimCandidates(keys []uint64) []uint64 {
	if len(keys) < candidatesMin {
		return keys
	}
	width := min(bits.Len(uint(4*len(keys)-1)), 30) // buckets: the power of two of at least 4 per key
	seen, twice := make([]uint64, 1<<width/64), make([]uint64, 1<<width/64)
	bucket := func(k uint64) uint32 { return uint32(k>>32) * 0x9e3779b1 >> (32 - width) }
	for _, k := range keys {
		b := bucket(k)
		w, m := b/64, uint64(1)<<(b%64)
		twice[w] |= seen[w] & m
		seen[w] |= m
	}
	out := keys[:0]
	for _, k := range keys {
		if b := bucket(k); twice[b/64]&(1<<(b%64)) != 0 {
			out = append(out, k)
		}
	}
	return out
}

// addrKey reduces an address to 32 bits (compact.AddrKey, which a pod holds for its first
// addresses: compact.Pod.IPKey). Equal keys are only candidates: claimRun compares addresses.
func addrKey(a netip.Addr) uint32 { return compact.AddrKey(a) }

// The radix sort's digits: the key's 32 bits in three digits of 11, 11 and 10 bits.
const (
	digitBits = 11
	digits    = (32 + digitBits - 1) / digitBits
)

// sortByKey orders packed key<<32|index values by key, stably: an LSD radix sort, whose counts
// for every digit are taken in one sweep and which skips the digits all keys share (a comparison
// sort, which also orders by index, for small inputs). tmp is scratch space as long as keys; the
// sorted keys are in one of the two, returned first, and the other is returned second.
func sortByKey(keys, tmp []uint64) (sorted, other []uint64) {
	if len(keys) < 256 {
		slices.Sort(keys)
		return keys, tmp
	}
	var count [digits][1 << digitBits]uint32
	for _, k := range keys {
		for d := range digits {
			count[d][uint32(k>>(32+d*digitBits))&(1<<digitBits-1)]++
		}
	}
	for d := range digits {
		// Turn the counts into start positions, unless every key has the same digit.
		c := &count[d]
		if slices.Contains(c[:], uint32(len(keys))) {
			continue
		}
		var pos uint32
		for i, n := range c {
			c[i] = pos
			pos += n
		}
		shift := 32 + d*digitBits
		for _, k := range keys {
			i := uint32(k>>shift) & (1<<digitBits - 1)
			tmp[c[i]] = k
			c[i]++
		}
		keys, tmp = tmp, keys
	}
	return keys, tmp
}

// claimRun looks at the pods of a run of equal keys and records the addresses that more than
// one of them claims.
func (t *translator) claimRun(run []uint64) {
	type claim struct {
		addr netip.Addr
		pod  *indexedPod
	}
	key := uint32(run[0] >> 32)
	var claims []claim
	for _, k := range run {
		p := &t.pods[uint32(k)]
		for a := range p.src.IPs() {
			if addrKey(a) == key {
				claims = append(claims, claim{a, p})
			}
		}
	}
	slices.SortFunc(claims, func(a, b claim) int {
		return cmp.Or(a.addr.Compare(b.addr), comparePods(a.pod, b.pod))
	})
	claims = slices.CompactFunc(claims, func(a, b claim) bool { return a == b })
	for i := 0; i < len(claims); {
		j := i + 1
		for j < len(claims) && claims[j].addr == claims[i].addr {
			j++
		}
		if j-i > 1 {
			if t.claims == nil {
				t.claims = map[netip.Addr][]*indexedPod{}
			}
			pods := make([]*indexedPod, 0, j-i)
			for _, c := range claims[i:j] {
				c.pod.shared = true
				pods = append(pods, c.pod)
			}
			t.claims[claims[i].addr] = pods
			t.conflicts = append(t.conflicts, claims[i].addr)
		}
		i = j
	}
}

// comparePods orders pods by namespace, then name.
func comparePods(a, b *indexedPod) int {
	return cmp.Or(strings.Compare(a.ns.name, b.ns.name), strings.Compare(a.src.Name(), b.src.Name()))
}

func podName(p *indexedPod) string { return p.ns.name + "/" + p.src.Name() }

func (t *translator) reportClaim(a netip.Addr, claimants []*indexedPod) {
	names := make([]string, len(claimants))
	for i, p := range claimants {
		where := "remote"
		if p.local {
			where = "local"
		}
		names[i] = podName(p) + " (" + where + ")"
	}
	t.report("Pod "+podName(claimants[0]),
		"address %s is claimed by %d live pods: %s; it is enforced with the stricter result of its claimants (isolated if any is, allowed only what every isolating claimant allows, in a peer set or named port only if every claimant agrees)",
		a, len(claimants), strings.Join(names, ", "))
}

// localClaimants returns the local pods among the claimants of a (nil unless a is conflicted).
func (t *translator) localClaimants(a netip.Addr) []*indexedPod {
	var local []*indexedPod
	for _, p := range t.claims[a] {
		if p.local {
			local = append(local, p)
		}
	}
	return local
}

// ownIPs returns a copy of the addresses of a local pod that no other local pod claims.
func (t *translator) ownIPs(p *indexedPod) []netip.Addr {
	if !p.shared {
		return p.src.AppendIPs(nil)
	}
	var own []netip.Addr
	for a := range p.src.IPs() {
		if len(t.localClaimants(a)) < 2 {
			own = append(own, a)
		}
	}
	return own
}

// everyClaimantIn reports whether every claimant of a is among the pods the selector peer res
// matches (true when a is not conflicted).
func (t *translator) everyClaimantIn(res *peerResult, a netip.Addr) bool {
	for _, q := range t.claims[a] {
		_, inNS := slices.BinarySearchFunc(res.nss, q.ns.position, func(n *nsView, pos int) int { return cmp.Compare(n.position, pos) })
		if !inNS || !res.podSel.Matches(q.labels()) {
			return false
		}
	}
	return true
}

// claimantsAgree reports whether every claimant of a resolves the port name for proto to number
// and to nothing else (true when a is not conflicted).
func (t *translator) claimantsAgree(a netip.Addr, name string, proto ruleset.Protocol, number uint16) bool {
	for _, q := range t.claims[a] {
		found := false
		for _, np := range q.src.Ports() {
			if np.Protocol() == proto && np.Name.Value() == name {
				if np.Number != number {
					return false
				}
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ruleSetClaims returns the rule set's Claims: the local addresses that several local pods claim, with
// the policies of the claimants that are isolated.
func (t *translator) ruleSetClaims(isolated map[*indexedPod]*ruleset.Target) []ruleset.Claim {
	var out []ruleset.Claim
	for _, a := range t.conflicts {
		local := t.localClaimants(a)
		if len(local) < 2 {
			continue
		}
		c := ruleset.Claim{Addr: a}
		for _, p := range local {
			id := podName(p)
			c.Claimants = append(c.Claimants, id)
			if rp := isolated[p]; rp != nil {
				// A claimant that ClusterNetworkPolicies select in a direction allows nothing
				// there: their tiers cannot be told apart per claimant on one address, and the
				// closed reading of a broken state is to refuse.
				in, out := slices.Clone(rp.IngressPolicies), slices.Clone(rp.EgressPolicies)
				if len(rp.AdminIngress)+len(rp.BaselineIngress) > 0 {
					in = []ruleset.PolicyKey{}
				}
				if len(rp.AdminEgress)+len(rp.BaselineEgress) > 0 {
					out = []ruleset.PolicyKey{}
				}
				if in != nil {
					c.Ingress = append(c.Ingress, ruleset.ClaimantPolicies{Pod: id, Policies: in})
				}
				if out != nil {
					c.Egress = append(c.Egress, ruleset.ClaimantPolicies{Pod: id, Policies: out})
				}
			}
		}
		out = append(out, c)
	}
	return out
}
