package render

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Peer sets are most of a script: at 150,000 pods, 180,000 addresses formatted and summed, half
// of a render from scratch. Their elements depend on nothing but the rule's peers, so a render
// with text (the first apply, a full replace) formats them on the machine's other cores while it
// writes the rest, and takes each one when it reaches it; the text is the same as if it had
// formatted them in order, since each set's clause is formatted alone.

// parallelPeerElements is the number of elements to format below which a render formats its
// peer sets itself: starting goroutines costs more than it saves on a small table, and a render
// that reuses most sets from a Memo has few left to format.
var parallelPeerElements = 4096

// declaresPeers reports whether a rule that does not allow any peer declares a peer set of
// family f: when it has peers of that family and a port they could use.
func declaresPeers(r *ruleset.Rule, f family) bool {
	if r.Peers.Len(f.is4) == 0 {
		return false
	}
	if r.AnyPort || len(r.Ports) > 0 {
		return true
	}
	for _, e := range r.NamedPorts {
		if e.Addr.Is4() == f.is4 {
			return true
		}
	}
	return false
}

// formatPeerSet returns the elements of the peer set of peers of one family: addresses (addrs;
// see addressesOnly) or ranges, in order. It formats into scratch, which it keeps for the next
// call, and allocates only what it returns. It writes each element straight into the clause
// rather than through elements, whose writer copies each element once more into its buffer: 18 %
// slower on a set of 60,000 addresses.
func formatPeerSet(peers ruleset.AddrSet, is4, addrs bool, scratch *elemListBuilder) *memoSet {
	m := &memoSet{sum: new(elementsSum), peers: peers, is4: is4, addressesOnly: addrs}
	// Room for the longest elements (an address, or a range of two), so that nothing grows.
	width := 2*len("255.255.255.255") + 1
	if !is4 {
		width = 2*len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") + 1
	}
	if addrs {
		width /= 2
	}
	scratch.reset()
	scratch.grow(peerSetLen(peers, is4, addrs), width)
	if addrs {
		for a := range peers.Addresses(is4) {
			scratch.add(a.AppendTo(scratch.next()))
		}
	} else {
		for r := range peers.Ranges(is4) {
			scratch.add(r.AppendTo(scratch.next()))
		}
	}
	m.elems = scratch.list()
	return m
}

// peerSetLen returns the number of elements of the peer set of peers of one family: addresses
// (addrs; their ranges are narrow, so the count is not a saturated one) or ranges.
func peerSetLen(peers ruleset.AddrSet, is4, addrs bool) int {
	if addrs {
		return int(min(peers.Size(is4), 1<<24))
	}
	return peers.Len(is4)
}

// peerSetJob is one peer set formatted ahead of the render; m, or the value the formatting
// panicked with, is set when done is closed.
type peerSetJob struct {
	peers    ruleset.AddrSet
	is4      bool
	addrs    bool // see addressesOnly
	m        *memoSet
	panicked any
	done     chan struct{}
}

// peerSetJobs are the peer sets a render formats ahead, by key.
type peerSetJobs struct {
	jobs  map[memoKey]*peerSetJob
	order []*peerSetJob // in the order the render reaches them
	next  atomic.Int64  // the index in order of the next job to start
	wg    sync.WaitGroup
}

// startPeerSets starts formatting, on other goroutines, every peer set of rs that the Memo does
// not hold, when they are many. The render takes them with s.formattedPeerSet.
func (s *script) startPeerSets(rs *ruleset.RuleSet) {
	p := &peerSetJobs{jobs: map[memoKey]*peerSetJob{}}
	elements := 0
	add := func(r *ruleset.Rule) {
		if r.AnyPeer {
			return
		}
		for _, f := range families {
			key := memoKey{kind: memoPeers, is4: f.is4, id: r.Peers.Identity(f.is4)}
			if !declaresPeers(r, f) || p.jobs[key] != nil || s.memo.has(key) {
				continue
			}
			j := &peerSetJob{peers: r.Peers, is4: f.is4, addrs: addressesOnly(r.Peers, f.is4), done: make(chan struct{})}
			p.jobs[key] = j
			p.order = append(p.order, j)
			elements += peerSetLen(j.peers, j.is4, j.addrs)
		}
	}
	for i := range rs.Policies {
		for _, d := range []direction{ingress, egress} {
			rules := rulesOf(&rs.Policies[i], d)
			for j := range rules {
				add(&rules[j])
			}
		}
	}
	for i := range rs.ClusterPolicies {
		for _, d := range []direction{ingress, egress} {
			rules := clusterRulesOf(&rs.ClusterPolicies[i], d)
			for j := range rules {
				add(&rules[j].Rule)
			}
		}
	}
	if elements < parallelPeerElements {
		return
	}
	s.peerJobs = p
	for range max(1, runtime.GOMAXPROCS(0)) {
		p.wg.Go(p.work)
	}
}

// work formats and sums the jobs in order until none is left.
func (p *peerSetJobs) work() {
	d, scratch := newDigester(), &elemListBuilder{}
	for {
		i := int(p.next.Add(1)) - 1
		if i >= len(p.order) {
			return
		}
		p.order[i].run(d, scratch)
	}
}

// run formats and sums the job. A panic is kept for the render's goroutine to raise again when it
// takes the set, where the caller of Render can recover it as before, rather than ending the
// process from a goroutine nobody can recover.
func (j *peerSetJob) run(d *digester, scratch *elemListBuilder) {
	defer close(j.done)
	defer func() {
		if r := recover(); r != nil {
			j.panicked = r
		}
	}()
	m := formatPeerSet(j.peers, j.is4, j.addrs, scratch)
	m.sum.of(&m.elems, d)
	j.m = m
}

// wait returns once every job is done, so that no goroutine outlives the render.
func (p *peerSetJobs) wait() {
	if p != nil {
		p.wg.Wait()
	}
}

// formattedPeerSet returns the peer set of key, formatted ahead or now.
func (s *script) formattedPeerSet(key memoKey, peers ruleset.AddrSet, is4, addrs bool) *memoSet {
	if s.peerJobs != nil {
		if j := s.peerJobs.jobs[key]; j != nil {
			<-j.done
			if j.panicked != nil {
				panic(j.panicked)
			}
			return j.m
		}
	}
	return formatPeerSet(peers, is4, addrs, &s.peerScratch)
}
