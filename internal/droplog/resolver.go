package droplog

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// RuleSetResolver is the agent's Resolver: the local pods and the policies that judged them come
// from the rule set the kernel holds (that of the last apply), the other end's pod from the
// cluster's pods. Finding an address among every pod of a large cluster is a scan, so the answer
// for an address is remembered for memoTTL, and at most memoMax addresses are (then the memory
// starts over): the reader, which calls it once per logged packet, stays cheap under the kernel's
// rate limit without an index that would cost memory per pod.
type RuleSetResolver struct {
	// RuleSet returns the rule set of the last apply (nil before the first); it must not be
	// modified.
	RuleSet func() *ruleset.RuleSet
	// Pods returns the cluster's pods (read-only), or an error.
	Pods func() ([]*compact.Pod, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex
	memo map[netip.Addr]memo
}

type memo struct {
	pod     string
	expires time.Time
}

const (
	memoTTL = time.Minute
	memoMax = 4096
)

var _ Resolver = (*RuleSetResolver)(nil)

// Pod implements Resolver.
func (r *RuleSetResolver) Pod(addr netip.Addr) string {
	if rs := r.RuleSet(); rs != nil {
		if i, ok := slices.BinarySearchFunc(rs.Local, addr, func(l ruleset.LocalAddr, a netip.Addr) int { return l.Addr.Compare(a) }); ok {
			return rs.Local[i].Pod
		}
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	t := now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.memo[addr]; ok && t.Before(m.expires) {
		return m.pod
	}
	pod := ""
	if pods, err := r.Pods(); err == nil {
		for _, p := range pods {
			if p.OwnsAddresses() && p.HasIP(addr) {
				pod = p.Namespace() + "/" + p.Name()
				break
			}
		}
	}
	if r.memo == nil || len(r.memo) >= memoMax {
		r.memo = map[netip.Addr]memo{}
	}
	r.memo[addr] = memo{pod, t.Add(memoTTL)}
	return pod
}

// Isolation implements Resolver, from the rule set: a pod whose own address addr is, or the
// claimants of an address several local pods claim (their names joined with ", ", and every
// policy of theirs).
func (r *RuleSetResolver) Isolation(addr netip.Addr, egress, audit bool) (string, []string, bool) {
	rs := r.RuleSet()
	if rs == nil {
		return "", nil, false
	}
	for i := range rs.Targets {
		t := &rs.Targets[i]
		if !slices.Contains(t.IPs, addr) {
			continue
		}
		keys := map[[2]bool][]ruleset.PolicyKey{
			{false, false}: t.IngressPolicies, {true, false}: t.EgressPolicies,
			{false, true}: t.AuditIngress, {true, true}: t.AuditEgress,
		}[[2]bool{egress, audit}]
		if len(keys) == 0 {
			return "", nil, false
		}
		return t.Namespace + "/" + t.Name, names(keys), true
	}
	if audit {
		return "", nil, false // claimed addresses have no audit rules
	}
	for i := range rs.Claims {
		c := &rs.Claims[i]
		if c.Addr != addr {
			continue
		}
		claimants := c.Ingress
		if egress {
			claimants = c.Egress
		}
		var pods, policies []string
		for _, cl := range claimants {
			pods = append(pods, cl.Pod)
			policies = append(policies, names(cl.Policies)...)
		}
		if len(pods) == 0 {
			return "", nil, false
		}
		slices.Sort(policies)
		return strings.Join(pods, ", "), slices.Compact(policies), true
	}
	return "", nil, false
}

func names(keys []ruleset.PolicyKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.String()
	}
	return out
}
