// Package epoch decides which established flows must be judged again after a change.
//
// Every flow the rules accept is stamped with the current epoch in the high bits of its conntrack
// mark (Mask). The fast path accepts an established or related packet whose stamp is still valid
// for both ends of its connection: for each local pod address and direction, State keeps Since,
// the oldest epoch whose verdicts still hold there. A stamp s is valid for an address while
// Since <= s <= Current; a packet with a stamp outside the window of either end is judged again by
// the policy chains, on its connection's tuple, and then re-stamped or dropped.
//
// Epochs are scoped per local address and direction, because that is the unit at which the
// rules change: a pod's ingress (or egress) verdicts are those of its own policies. Next moves an
// address's Since forward only when the change can have narrowed what that address allows in
// that direction (a policy or rule removed, a peer or port dropped, isolation gained, another pod
// now owning the address); a change that only widens (a pod joins a peer set, a rule or policy is
// added, isolation ends) moves nothing, so no flow is judged again for it, and the flows of a pod
// whose rules did not change are never re-judged because another pod's did.
//
// The package is pure: the reconciler keeps the State of its last successful apply and the
// renderer writes it into the table.
package epoch

import (
	"cmp"
	"encoding/binary"
	"math"
	"net/netip"
	"reflect"
	"slices"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// The stamp occupies the high 20 bits of the 32-bit conntrack mark; the low 12 bits are left to
// others, and every write keeps them (ct mark set ct mark and LowMask or stamp).
const (
	Shift   = 12
	Mask    = uint32(0xfffff000)
	LowMask = ^Mask
	// Max is the largest epoch. Epochs count 1..Max and wrap to 1; 0 is never used, so an
	// unstamped flow (mark 0 in these bits) is never current.
	Max = Mask >> Shift
)

// Mark returns the mark bits that stamp epoch e.
func Mark(e uint32) uint32 { return e << Shift }

// Direction indexes Since.
const (
	Ingress = 0
	Egress  = 1
)

// State is the epoch bookkeeping of one applied rule set.
type State struct {
	// Current is the epoch new stamps carry; 1..Max, 0 only in the zero State.
	Current uint32
	// Addrs holds every local address of the rule set (RuleSet.Local), sorted by address.
	Addrs []Addr
	// Kept are the Sinces older than Current's block (see BlockOf) that addresses held when the
	// block began, sorted: the table keeps their windows until the block ends, even once no
	// address holds them any more, so that a change within a block never deletes a window
	// chain (see Windowed).
	Kept []uint32
}

// Addr is one local address and the oldest valid stamp per direction.
type Addr struct {
	Addr  netip.Addr
	Owner string    // who owned it (RuleSet.Local's Pod); another owner re-validates everything
	Since [2]uint32 // by Ingress / Egress
}

// Start returns the State of a first apply at epoch e (1..Max): no stamp older than e is trusted,
// so every flow that predates the agent is judged once more at its next packet.
func Start(e uint32, rs *ruleset.RuleSet) State {
	e = normal(e)
	st := State{Current: e, Addrs: make([]Addr, 0, len(rs.Local))}
	for _, l := range rs.Local {
		st.Addrs = append(st.Addrs, Addr{Addr: l.Addr, Owner: l.Pod, Since: [2]uint32{e, e}})
	}
	return st
}

// After returns the epoch that follows e.
func After(e uint32) uint32 { return normal(e%Max + 1) }

func normal(e uint32) uint32 {
	if e == 0 || e > Max {
		return 1
	}
	return e
}

// Next returns the State for applying rs after old was applied with prev. A zero prev means no
// history: Start(1, rs). Equal rule sets give prev unchanged, so a re-apply (a repair) changes
// nothing.
func Next(prev State, old, rs *ruleset.RuleSet) State {
	if prev.Current == 0 {
		return Start(1, rs)
	}
	c := newComparison(old, rs)
	next := State{Current: prev.Current, Addrs: make([]Addr, 0, len(rs.Local)), Kept: prev.Kept}
	var narrowed []int // indexes into next.Addrs/directions packed as 2*i+d
	hint := 0          // where the next address is in prev.Addrs, both being sorted
	for li, l := range rs.Local {
		a := Addr{Addr: l.Addr, Owner: l.Pod}
		i, found := hint, hint < len(prev.Addrs) && prev.Addrs[hint].Addr == l.Addr && (hint == 0 || prev.Addrs[hint-1].Addr != l.Addr)
		if !found {
			i, found = slices.BinarySearchFunc(prev.Addrs, l.Addr, func(x Addr, t netip.Addr) int { return x.Addr.Compare(t) })
		}
		hint = i + btoi(found)
		if found && prev.Addrs[i].Owner == l.Pod {
			a.Since = prev.Addrs[i].Since
			k := c.index.of(li, l.Addr)
			was, is := c.old.refs[k], c.cur.refs[k]
			for d := range 2 {
				if c.narrowed(l.Addr, d, was, is) {
					narrowed = append(narrowed, 2*len(next.Addrs)+d)
				}
			}
		} else {
			// A new address, or one another pod owned: no flow stamped before is this pod's.
			narrowed = append(narrowed, 2*len(next.Addrs), 2*len(next.Addrs)+1)
		}
		next.Addrs = append(next.Addrs, a)
	}
	if len(narrowed) == 0 {
		return next
	}
	next.Current = After(prev.Current)
	for _, k := range narrowed {
		next.Addrs[k/2].Since[k%2] = next.Current
	}
	// A window may only span half the epochs, so that the epochs of a wrap-around are never
	// mistaken for recent ones: an address untouched for that long is judged again once.
	for i := range next.Addrs {
		for d := range 2 {
			if age(next.Addrs[i].Since[d], next.Current) >= Max/2 {
				next.Addrs[i].Since[d] = next.Current
			}
		}
	}
	if !inBlock(prev.Current, next.Current) {
		// A new block: the windows change anyway (their newer end moves, see Horizon); from
		// now on the table keeps those of the older Sinces still held.
		next.Kept = nil
		for _, a := range next.Addrs {
			for _, since := range a.Since {
				if !inBlock(since, next.Current) {
					next.Kept = append(next.Kept, since)
				}
			}
		}
		slices.Sort(next.Kept)
		next.Kept = slices.Compact(next.Kept)
	}
	return next
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BlockOf returns the first and last epochs of cur's block: the Block epochs (fewer for the
// last) that end at Horizon(cur).
func BlockOf(cur uint32) (first, last uint32) {
	cur = normal(cur)
	return (cur-1)/Block*Block + 1, Horizon(cur)
}

func inBlock(e, cur uint32) bool {
	first, last := BlockOf(cur)
	return first <= e && e <= last
}

// Windowed returns, sorted, the Sinces whose windows the table holds at st: every epoch of
// Current's block (so that a narrowing change, which moves addresses to the window of the next
// epoch, finds its chain there already), the Kept ones, and any other an address holds. Within a
// block, this set never changes, so a change there edits map elements only.
func (st *State) Windowed() []uint32 {
	first, last := BlockOf(st.Current)
	out := make([]uint32, 0, int(last-first+1)+len(st.Kept))
	for e := first; e <= last; e++ {
		out = append(out, e)
	}
	out = append(out, st.Kept...)
	for _, a := range st.Addrs {
		for _, since := range a.Since {
			if !inBlock(since, st.Current) {
				out = append(out, since)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// age is how many epochs lie between since and cur, counting the wrap.
func age(since, cur uint32) uint32 {
	if since <= cur {
		return cur - since
	}
	return Max - since + cur
}

// Block is how many epochs the windows' newer end moves at once (see Horizon).
const Block = 64

// Horizon returns the newer end of the windows at epoch cur: cur rounded up to the end of
// its block of Block epochs, at most Max. A stamp is never newer than the epoch in force when it
// was made, so a window may end after cur without trusting any stamp of this run or of a run
// whose epoch the next one continued (see render.Epoch). What it costs: a stamp that a run left
// behind when the next could not read its epoch (and started at a random one) is trusted with a
// chance of Block in Max more. What it buys: a window changes when its address's oldest valid
// stamp moves, or once every Block epochs, not with every narrowing change anywhere on the node,
// so an update applied in place moves the addresses whose Since moved to the window of their new
// Since instead of rewriting every window (issue 17: about 490 of 500 elements per event at 150k
// pods, when the windows were set elements).
func Horizon(cur uint32) uint32 {
	cur = normal(cur)
	return min((cur+Block-1)/Block*Block, Max)
}

// Windows returns the stamp ranges valid for an address whose oldest valid stamp is since, as
// inclusive ranges of the whole 32-bit mark (whatever the low bits hold): one range, or two when
// the window wraps.
func Windows(since, cur uint32) [][2]uint32 {
	since, cur = normal(since), normal(cur)
	if since <= cur {
		return [][2]uint32{{Mark(since), Mark(cur) | LowMask}}
	}
	return [][2]uint32{{Mark(1), Mark(cur) | LowMask}, {Mark(since), Mark(Max) | LowMask}}
}

// Lookup returns the Addr of a, if State lists it.
func (s *State) Lookup(a netip.Addr) (Addr, bool) {
	i, found := slices.BinarySearchFunc(s.Addrs, a, func(x Addr, t netip.Addr) int { return x.Addr.Compare(t) })
	if !found {
		return Addr{}, false
	}
	return s.Addrs[i], true
}

// comparison answers, per local address and direction, whether rs can allow less than old did.
// It is built on every Next from both rule sets, so it allocates a few maps and slices, never
// one per address or per policy.
type comparison struct {
	old, cur *view
	index    *addrIndex // of the addresses of the views
	// policy indexes pols by key: a policy of either rule set, with whether it narrowed.
	policy map[ruleset.PolicyKey]int32
	pols   []policyPair
	// ClusterNetworkPolicies, when either rule set has some.
	oldTiers, curTiers     tiers
	oldCluster, curCluster map[string]*ruleset.ClusterPolicy
}

// tiers is, per address, the ClusterNetworkPolicies that judge it per direction.
type tiers map[netip.Addr]*[2]tierLists

// tierLists are the names of the policies of each tier, in evaluation order.
type tierLists struct{ admin, baseline []string }

func (l tierLists) empty() bool { return len(l.admin)+len(l.baseline) == 0 }

func (l tierLists) equal(m tierLists) bool {
	return slices.Equal(l.admin, m.admin) && slices.Equal(l.baseline, m.baseline)
}

func tiersOf(rs *ruleset.RuleSet) (tiers, map[string]*ruleset.ClusterPolicy) {
	if len(rs.ClusterPolicies) == 0 {
		return nil, nil
	}
	byName := make(map[string]*ruleset.ClusterPolicy, len(rs.ClusterPolicies))
	for i := range rs.ClusterPolicies {
		byName[rs.ClusterPolicies[i].Name] = &rs.ClusterPolicies[i]
	}
	v := tiers{}
	for i := range rs.Targets {
		t := &rs.Targets[i]
		e := &[2]tierLists{{t.AdminIngress, t.BaselineIngress}, {t.AdminEgress, t.BaselineEgress}}
		if !e[Ingress].empty() || !e[Egress].empty() {
			for _, a := range t.IPs {
				v[a] = e
			}
		}
	}
	return v, byName
}

// clusterNarrowed reports whether a's verdicts in direction d can be stricter where
// ClusterNetworkPolicies judge it, under the old rules or the new: since a Deny can override
// any allow, any change to what judges the address there counts (the tiers that select it, the
// rules of those policies, the NetworkPolicies between the tiers). ok is false when no
// ClusterNetworkPolicy judged or judges a in d: the caller decides.
func (c *comparison) clusterNarrowed(a netip.Addr, d int, was, is []ruleset.ClaimantPolicies) (narrowed, ok bool) {
	var wasT, isT tierLists
	if e := c.oldTiers[a]; e != nil {
		wasT = e[d]
	}
	if e := c.curTiers[a]; e != nil {
		isT = e[d]
	}
	if wasT.empty() && isT.empty() {
		return false, false
	}
	if !wasT.equal(isT) || !reflect.DeepEqual(was, is) {
		return true, true
	}
	for _, name := range slices.Concat(isT.admin, isT.baseline) {
		if o, n := c.oldCluster[name], c.curCluster[name]; o != nil && n != nil &&
			(o.Tier != n.Tier || o.Priority != n.Priority || !reflect.DeepEqual(clusterRulesOf(o, d), clusterRulesOf(n, d))) {
			return true, true
		}
	}
	for _, cl := range is {
		for _, key := range cl.Policies {
			if p := c.pairOf(key); !reflect.DeepEqual(rulesOf(p.old, d), rulesOf(p.cur, d)) {
				return true, true
			}
		}
	}
	return false, true
}

func clusterRulesOf(p *ruleset.ClusterPolicy, d int) []ruleset.ClusterRule {
	if d == Ingress {
		return p.Ingress
	}
	return p.Egress
}

// policyPair is one policy in the old and the new rule set (nil where it is not), and whether it
// narrowed per direction: 0 not known yet, 1 no, 2 yes.
type policyPair struct {
	old, cur *ruleset.Policy
	narrowed [2]uint8
}

// view is, per address, what isolates it: the Target (ref i >= 0) or the Claim (ref ^i) of rs
// that holds it. The policies of each isolated claimant, per direction (one claimant for a
// Target's address, several for a Claim), are read from there. Only the addresses Next looks at
// are kept, the new rule set's Local ones: refs[k] is the ref of the k-th address of the
// comparison's index.
type view struct {
	rs   *ruleset.RuleSet
	refs []int32
}

// noRef is the ref of an address that nothing isolates.
const noRef = int32(math.MaxInt32)

// viewOf returns the view of rs for the addresses of index. An address a Claim holds is the
// Claim's, else the last Target's that holds it.
func viewOf(rs *ruleset.RuleSet, index *addrIndex) *view {
	v := &view{rs: rs, refs: make([]int32, index.len())}
	for k := range v.refs {
		v.refs[k] = noRef
	}
	for i := range rs.Targets {
		for _, a := range rs.Targets[i].IPs {
			if k, ok := index.find(a); ok {
				v.refs[k] = int32(i)
			}
		}
	}
	for i := range rs.Claims {
		if k, ok := index.find(rs.Claims[i].Addr); ok {
			v.refs[k] = ^int32(i)
		}
	}
	return v
}

// addrIndex numbers the local addresses of the new rule set: by their place in Local, which is
// sorted with each address once, or (should it not be) in a sorted copy of their addresses.
type addrIndex struct {
	local []ruleset.LocalAddr // Local, when sorted with each address once
	addrs []netip.Addr        // otherwise
	// keys are the same addresses as plain numbers, searched faster (netip.Addr.Compare in a
	// search is no inlined comparison); nil if one has a zone, which they cannot hold.
	keys []addrKey
}

func newAddrIndex(local []ruleset.LocalAddr) *addrIndex {
	x := &addrIndex{local: local}
	for i := 1; i < len(local); i++ {
		if local[i-1].Addr.Compare(local[i].Addr) >= 0 {
			addrs := make([]netip.Addr, len(local))
			for j, l := range local {
				addrs[j] = l.Addr
			}
			slices.SortFunc(addrs, netip.Addr.Compare)
			x = &addrIndex{addrs: slices.Compact(addrs)}
			break
		}
	}
	x.keys = make([]addrKey, x.len())
	for k := range x.keys {
		a := x.addr(k)
		if a.Zone() != "" {
			x.keys = nil
			break
		}
		x.keys[k] = keyOf(a)
	}
	return x
}

func (x *addrIndex) len() int {
	if x.addrs != nil {
		return len(x.addrs)
	}
	return len(x.local)
}

func (x *addrIndex) addr(k int) netip.Addr {
	if x.addrs != nil {
		return x.addrs[k]
	}
	return x.local[k].Addr
}

// find returns the number of a, if it is one of the addresses.
func (x *addrIndex) find(a netip.Addr) (int, bool) {
	if x.keys != nil && a.Zone() == "" {
		return slices.BinarySearchFunc(x.keys, keyOf(a), compareKeys)
	}
	if x.addrs != nil {
		return slices.BinarySearchFunc(x.addrs, a, netip.Addr.Compare)
	}
	return slices.BinarySearchFunc(x.local, a, func(l ruleset.LocalAddr, a netip.Addr) int { return l.Addr.Compare(a) })
}

// of returns the number of a, the i-th address of Local.
func (x *addrIndex) of(i int, a netip.Addr) int {
	if x.addrs == nil {
		return i
	}
	k, _ := x.find(a)
	return k
}

// addrKey is an address without a zone, ordered as netip.Addr.Compare orders them: by family
// (none, IPv4, IPv6), then by value.
type addrKey struct {
	family uint8
	hi, lo uint64
}

func keyOf(a netip.Addr) addrKey {
	switch {
	case a.Is4():
		b := a.As4()
		return addrKey{family: 1, lo: uint64(binary.BigEndian.Uint32(b[:]))}
	case a.Is6():
		b := a.As16()
		return addrKey{family: 2, hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
	}
	return addrKey{}
}

func compareKeys(x, y addrKey) int {
	return cmp.Or(cmp.Compare(x.family, y.family), cmp.Compare(x.hi, y.hi), cmp.Compare(x.lo, y.lo))
}

// claimants returns the isolated claimants in direction d of an address whose ref is i.
func (v *view) claimants(i int32, d int) claimants {
	switch {
	case i == noRef:
		return claimants{}
	case i < 0:
		c := &v.rs.Claims[^i]
		if d == Ingress {
			return claimants{list: c.Ingress}
		}
		return claimants{list: c.Egress}
	}
	t := &v.rs.Targets[i]
	pols := t.IngressPolicies
	if d == Egress {
		pols = t.EgressPolicies
	}
	if len(pols) == 0 {
		return claimants{}
	}
	return claimants{target: t, pols: pols}
}

// claimants are the isolated claimants of an address in one direction: a Target's pod, with its
// policies there, or a Claim's list. Read as a list, a Target's pod is the one claimant
// {Pod: namespace/name, Policies: pols}.
type claimants struct {
	target *ruleset.Target
	pols   []ruleset.PolicyKey
	list   []ruleset.ClaimantPolicies
}

func (c claimants) len() int {
	if c.target != nil {
		return 1
	}
	return len(c.list)
}

// policies returns the policies of the k-th claimant.
func (c claimants) policies(k int) []ruleset.PolicyKey {
	if c.target != nil {
		return c.pols
	}
	return c.list[k].Policies
}

// asList returns the claimants as a list (nil when there are none), which allocates for a Target.
func (c claimants) asList() []ruleset.ClaimantPolicies {
	if c.target != nil {
		return []ruleset.ClaimantPolicies{{Pod: c.target.Namespace + "/" + c.target.Name, Policies: c.pols}}
	}
	return c.list
}

// samePod reports whether the k-th claimants of c and o are the same pod (namespace/name).
func samePod(c, o claimants, k int) bool {
	switch {
	case c.target != nil && o.target != nil:
		if c.target.Namespace == o.target.Namespace && c.target.Name == o.target.Name {
			return true
		}
		return c.target.Namespace+"/"+c.target.Name == o.target.Namespace+"/"+o.target.Name
	case c.target != nil:
		return isPod(c.target, o.list[k].Pod)
	case o.target != nil:
		return isPod(o.target, c.list[k].Pod)
	}
	return c.list[k].Pod == o.list[k].Pod
}

// isPod reports whether id is t's namespace/name.
func isPod(t *ruleset.Target, id string) bool {
	n := len(t.Namespace)
	return len(id) == n+1+len(t.Name) && id[:n] == t.Namespace && id[n] == '/' && id[n+1:] == t.Name
}

func newComparison(old, cur *ruleset.RuleSet) *comparison {
	index := newAddrIndex(cur.Local)
	c := &comparison{
		index: index,
		old:   viewOf(old, index), cur: viewOf(cur, index),
		policy: make(map[ruleset.PolicyKey]int32, max(len(old.Policies), len(cur.Policies))),
		pols:   make([]policyPair, 0, max(len(old.Policies), len(cur.Policies))),
	}
	for i := range old.Policies {
		c.pairOf(old.Policies[i].Key).old = &old.Policies[i]
	}
	for i := range cur.Policies {
		c.pairOf(cur.Policies[i].Key).cur = &cur.Policies[i]
	}
	c.oldTiers, c.oldCluster = tiersOf(old)
	c.curTiers, c.curCluster = tiersOf(cur)
	return c
}

// pairOf returns the policyPair of k, added if there is none (a key of neither rule set: the
// policy is in neither, and did not narrow).
func (c *comparison) pairOf(k ruleset.PolicyKey) *policyPair {
	i, ok := c.policy[k]
	if !ok {
		i = int32(len(c.pols))
		c.policy[k] = i
		c.pols = append(c.pols, policyPair{})
	}
	return &c.pols[i]
}

// narrowed reports whether a's verdicts in direction d can be stricter under the new rules;
// wasRef and isRef are a's refs in the old and the new view.
func (c *comparison) narrowed(a netip.Addr, d int, wasRef, isRef int32) bool {
	was, is := c.old.claimants(wasRef, d), c.cur.claimants(isRef, d)
	if c.oldTiers != nil || c.curTiers != nil {
		if narrowed, ok := c.clusterNarrowed(a, d, was.asList(), is.asList()); ok {
			return narrowed
		}
	}
	switch {
	case is.len() == 0:
		return false // not isolated: everything is allowed
	case was.len() == 0:
		return true // isolation gained
	case was.len() != is.len():
		return true // claimants came or went: an AND of more (or other) terms
	}
	for k := range is.len() {
		if !samePod(was, is, k) {
			return true
		}
		wasPols, isPols := was.policies(k), is.policies(k)
		// The same memory: the incremental translation hands out the previous rule set's
		// Target for a pod whose policies an event left alone, and never modifies it. (The
		// lists are sorted, as every slice of a RuleSet, so each key would be found.)
		same := len(wasPols) == len(isPols) && len(wasPols) > 0 && &wasPols[0] == &isPols[0]
		for _, key := range wasPols {
			if !same {
				if _, kept := slices.BinarySearchFunc(isPols, key, comparePolicyKey); !kept {
					return true // a policy no longer allows anything here
				}
			}
			if c.policyNarrowed(key, d) {
				return true
			}
		}
	}
	return false
}

func comparePolicyKey(a, b ruleset.PolicyKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// policyNarrowed reports whether some flow the policy allowed in direction d under the old rules
// is not allowed by it under the new ones: some old rule is not covered by a new rule.
func (c *comparison) policyNarrowed(k ruleset.PolicyKey, d int) bool {
	p := c.pairOf(k)
	if v := p.narrowed[d]; v != 0 {
		return v == 2
	}
	was, is := rulesOf(p.old, d), rulesOf(p.cur, d)
	narrowed := false
	if len(was) > 0 && len(was) == len(is) && &was[0] == &is[0] {
		// The same memory: the incremental translation hands out the previous rule set's rules
		// for a policy an event left alone, and rules are never modified once built.
		p.narrowed[d] = 1
		return false
	}
	for i := range was {
		covered := i < len(is) && covers(&is[i], &was[i])
		for j := 0; !covered && j < len(is); j++ {
			covered = j != i && covers(&is[j], &was[i])
		}
		if !covered {
			narrowed = true
			break
		}
	}
	p.narrowed[d] = 1
	if narrowed {
		p.narrowed[d] = 2
	}
	return narrowed
}

func rulesOf(p *ruleset.Policy, d int) []ruleset.Rule {
	if p == nil {
		return nil
	}
	if d == Ingress {
		return p.Ingress
	}
	return p.Egress
}

// covers reports whether rule r allows every flow rule o allows (sufficient, not necessary: a
// false answer only costs a re-validation).
func covers(r, o *ruleset.Rule) bool {
	if !r.AnyPeer && (o.AnyPeer || !r.Peers.Covers(o.Peers)) {
		return false
	}
	if r.AnyPort {
		return true
	}
	if o.AnyPort {
		return false
	}
	for _, p := range o.Ports {
		if !slices.ContainsFunc(r.Ports, func(q ruleset.PortRange) bool { return portCovers(q, p) }) {
			return false
		}
	}
	for _, e := range o.NamedPorts {
		if _, found := slices.BinarySearchFunc(r.NamedPorts, e, ruleset.CompareEndpoints); !found {
			return false
		}
	}
	return true
}

func portCovers(q, p ruleset.PortRange) bool {
	if q.Protocol != p.Protocol {
		return false
	}
	if q.First == 0 {
		return true
	}
	return p.First != 0 && q.First <= p.First && p.Last <= q.Last
}
