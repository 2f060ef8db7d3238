//go:build linux

package cluster

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flock-net/flock-netpol/test/netns"
)

// A continuous prober, for fault tests: it probes a fixed set of flows, each in a loop of its own,
// with a new connection per probe (so that every probe is judged by the rules in force when it
// starts, not by an earlier connection's conntrack entry), and records every probe. A scenario
// then reads, from those records alone, how many probes of denied flows passed, how many of
// allowed flows failed, and the longest run of failures of an allowed flow.

// ProbeFlow is one flow the prober probes, and whether the policies allow it.
type ProbeFlow struct {
	netns.Flow
	Allowed bool
	// What is a short description for reports, e.g. "same node".
	What string
}

func (f ProbeFlow) String() string {
	verdict := "denied"
	if f.Allowed {
		verdict = "allowed"
	}
	if f.What == "" {
		return fmt.Sprintf("%v (%s)", f.Flow, verdict)
	}
	return fmt.Sprintf("%v (%s, %s)", f.Flow, f.What, verdict)
}

// ProbeRecord is one probe.
type ProbeRecord struct {
	Flow int // index into the prober's flows
	At   time.Time
	Took time.Duration
	OK   bool
	Err  string // why it failed
}

// End is when the probe ended.
func (r ProbeRecord) End() time.Time { return r.At.Add(r.Took) }

// Prober probes flows continuously until Stop. Create it with Cluster.StartProber.
type Prober struct {
	bed      *netns.Bed
	flows    []ProbeFlow
	interval time.Duration

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu      sync.Mutex
	records []ProbeRecord
}

// StartProber starts probing flows, each at most once per interval (a probe that fails takes the
// bed's ProbeTimeout, so a denied flow is probed about once per ProbeTimeout). Do not change
// Bed.ProbeTimeout (WarmUp does) while it runs. Stop it when done; the cluster does not.
func (c *Cluster) StartProber(flows []ProbeFlow, interval time.Duration) *Prober {
	p := &Prober{bed: c.Bed, flows: slices.Clone(flows), interval: interval, stop: make(chan struct{})}
	for i := range p.flows {
		p.wg.Go(func() { p.loop(i) })
	}
	return p
}

func (p *Prober) loop(i int) {
	flow := []netns.Flow{p.flows[i].Flow}
	// Spread the flows' first probes over one interval.
	next := time.Now().Add(time.Duration(i) * p.interval / time.Duration(len(p.flows)))
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(time.Until(next)):
		}
		start := time.Now()
		r := p.bed.Probe(flow)[0]
		rec := ProbeRecord{Flow: i, At: start, Took: time.Since(start), OK: r.OK}
		if r.Err != nil {
			rec.Err = r.Err.Error()
		}
		p.mu.Lock()
		p.records = append(p.records, rec)
		p.mu.Unlock()
		next = start.Add(p.interval)
	}
}

// Stop stops probing and waits for the probes in flight. Idempotent.
func (p *Prober) Stop() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}

// Flows returns the prober's flows.
func (p *Prober) Flows() []ProbeFlow { return slices.Clone(p.flows) }

// Records returns the probes that started in [from, to), in the order they ended.
func (p *Prober) Records(from, to time.Time) []ProbeRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ProbeRecord
	for _, r := range p.records {
		if !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// ProbeReport sums up the probes of a period.
type ProbeReport struct {
	From, To time.Time
	Probes   int
	// LetIn are the probes of denied flows that passed; Lost those of allowed flows that failed.
	LetIn, Lost []ProbeRecord
	// LongestGap is the longest run of failures of one allowed flow: from the start of its first
	// failing probe to the start of the next passing one (or to the end of the last failing one
	// when none passed in the period). GapFlow is that flow's index, -1 when there was none.
	LongestGap time.Duration
	GapFlow    int
	GapAt      time.Time
}

// Report sums up the probes that started in [from, to).
func (p *Prober) Report(from, to time.Time) ProbeReport {
	recs := p.Records(from, to)
	rep := ProbeReport{From: from, To: to, Probes: len(recs), GapFlow: -1}
	byFlow := map[int][]ProbeRecord{}
	for _, r := range recs {
		f := p.flows[r.Flow]
		switch {
		case f.Allowed && !r.OK:
			rep.Lost = append(rep.Lost, r)
		case !f.Allowed && r.OK:
			rep.LetIn = append(rep.LetIn, r)
		}
		if f.Allowed {
			byFlow[r.Flow] = append(byFlow[r.Flow], r)
		}
	}
	for i, rs := range byFlow {
		slices.SortFunc(rs, func(a, b ProbeRecord) int { return a.At.Compare(b.At) })
		var failStart time.Time
		for _, r := range rs {
			switch {
			case !r.OK && failStart.IsZero():
				failStart = r.At
			case r.OK && !failStart.IsZero():
				if d := r.At.Sub(failStart); d > rep.LongestGap {
					rep.LongestGap, rep.GapFlow, rep.GapAt = d, i, failStart
				}
				failStart = time.Time{}
			}
		}
		if !failStart.IsZero() {
			if d := rs[len(rs)-1].End().Sub(failStart); d > rep.LongestGap {
				rep.LongestGap, rep.GapFlow, rep.GapAt = d, i, failStart
			}
		}
	}
	return rep
}

// Describe lists up to max records with their flows, times relative to base, and errors.
func (p *Prober) Describe(recs []ProbeRecord, base time.Time, limit int) string {
	var s string
	for i, r := range recs {
		if i == limit {
			s += fmt.Sprintf("\n  ... and %d more", len(recs)-limit)
			break
		}
		s += fmt.Sprintf("\n  %v at %+v (%s), took %v: ok=%v %s", p.flows[r.Flow], r.At.Sub(base).Round(time.Millisecond),
			r.At.UTC().Format("15:04:05.000"), r.Took.Round(time.Millisecond), r.OK, r.Err)
	}
	return s
}
