package controller_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/test/netns"
)

// table is the agent's table in every spec (each spec has its own network namespace).
const table = render.DefaultTable

func randomSuffix() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// kernel is where one spec's agent applies its scripts: a throwaway network namespace programmed
// with the real nft (as root), or a fake nft that remembers the last applied script. Either way
// every apply passes through rec, which records it and can hold or fail it.
type kernel struct {
	real    bool
	ns      string   // network namespace, when real
	command []string // the nft command the agent is configured with
	// run executes nft for real or in the fake; the specs' own `list table` calls go straight to it.
	run  nft.Executor
	fake *nft.FakeExecutor // the fake nft, when not real
	rec  *recorder
	list *nft.Client
}

// newKernel returns the spec's kernel. Create it before anything else in a spec, so that its
// cleanup (deleting the namespace) runs after the agent has stopped.
func newKernel() *kernel {
	k := &kernel{real: kernelReal}
	if k.real {
		k.ns = newNetns()
		k.command = []string{"ip", "netns", "exec", k.ns, "nft"}
		k.run = nft.NewExecutor()
	} else {
		k.command = []string{"nft"}
		fk := &fakeKernel{}
		k.fake = &nft.FakeExecutor{RunFunc: fk.run}
		k.run = k.fake
	}
	k.rec = &recorder{inner: k.run}
	var err error
	k.list, err = nft.New(nft.Config{Command: k.command, Executor: k.run, Timeout: 10 * time.Second})
	Expect(err).NotTo(HaveOccurred())
	return k
}

// newMissingNFTKernel is a kernel whose nft command does not exist: every apply fails the way a
// node without nftables would.
func newMissingNFTKernel(command string) *kernel {
	k := &kernel{command: []string{command}, run: nft.NewExecutor()}
	k.rec = &recorder{inner: k.run}
	return k
}

// nftFlag is the --nft value for the agent binary.
func (k *kernel) nftFlag() string { return strings.Join(k.command, " ") }

// newNetns creates a network namespace for one spec (netns.Scratch: its ruleset is empty) and
// deletes it when the spec ends.
func newNetns() string {
	GinkgoHelper()
	name, cleanup, err := netns.Scratch()
	Expect(err).NotTo(HaveOccurred(), "creating a scratch network namespace")
	DeferCleanup(cleanup) // fails the spec when the namespace cannot be deleted
	return name
}

// listing returns `nft list table inet flock-netpol` (the fake returns the applied script), or
// "" with found=false when there is no table.
func (k *kernel) listing() (text string, found bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := k.list.ListTable(ctx, "inet", table)
	if nft.IsNotFound(err) {
		return "", false, nil
	}
	return out, err == nil, err
}

// current returns the table as listed now, or "" when there is none.
func (k *kernel) current() string {
	GinkgoHelper()
	text, _, err := k.listing()
	Expect(err).NotTo(HaveOccurred())
	return text
}

// view parses what the kernel holds now; failures go to g, so it can be used inside Eventually.
func (k *kernel) view(g Gomega) tableView {
	text, found, err := k.listing()
	g.Expect(err).NotTo(HaveOccurred())
	if !found {
		return tableView{}
	}
	return parseTable(text)
}

// mustView is view outside Eventually.
func (k *kernel) mustView() tableView { return k.view(Default) }

// fakeKernel answers the nft invocations the agent and the specs make: `-f -` replaces the table
// (a script without chains deletes it), `list table`, `list chain` and `list set` return the
// last applied script.
type fakeKernel struct {
	mu    sync.Mutex
	table []byte
}

// fakeApplyLatency stands in for the time a real nft takes to apply a table (from a few ms for a
// small one to ~50ms for 500 pods), so that, as with the real one, events arriving during an apply
// queue up behind it.
const fakeApplyLatency = 20 * time.Millisecond

func (f *fakeKernel) run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	args := argv[1:]
	switch {
	case slices.Equal(args, []string{"-f", "-"}):
		select {
		case <-time.After(fakeApplyLatency):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if bytes.Contains(stdin, []byte("\nadd chain ")) {
			f.table = bytes.Clone(stdin)
		} else {
			f.table = nil
		}
		return nil, nil, nil
	case slices.Equal(args, []string{"-c", "-f", "-"}):
		return nil, nil, nil
	case (len(args) == 4 && args[0] == "list" && args[1] == "table") ||
		(len(args) == 5 && args[0] == "list" && (args[1] == "chain" || args[1] == "set")):
		// A chain or set listing is answered with the whole script: it carries the base chain's
		// epoch and the digest's set.
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.table == nil {
			r := nft.FakeNotFound()
			return r.Stdout, r.Stderr, r.Err
		}
		return bytes.Clone(f.table), nil, nil
	}
	return nil, []byte("Error: the fake nft does not support " + strings.Join(args, " ")), nft.FakeExitError{Code: 1}
}

// applyRecord is one `nft -f -` the agent ran.
type applyRecord struct {
	At     time.Time // when the agent called nft
	Script []byte
	Err    error
}

// recorder is the agent's nft.Executor: it records every apply and passes it on, unless the spec
// holds applies (they wait) or makes them fail with a scripted result (nft is then not run, so
// the kernel keeps what it had). Other invocations pass straight through.
type recorder struct {
	inner nft.Executor

	mu      sync.Mutex
	applies []applyRecord
	waiting int
	gate    chan struct{} // non-nil: applies wait for it to close
	fail    *nft.FakeResult
}

func (r *recorder) Run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	if !nft.IsApply(argv) {
		return r.inner.Run(ctx, argv, stdin)
	}
	at := time.Now()
	r.mu.Lock()
	gate := r.gate
	r.waiting++
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	r.mu.Lock()
	r.waiting--
	fail := r.fail
	r.mu.Unlock()

	var stdout, stderr []byte
	var err error
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case fail != nil:
		stdout, stderr, err = fail.Stdout, fail.Stderr, fail.Err
	default:
		stdout, stderr, err = r.inner.Run(ctx, argv, stdin)
	}
	r.mu.Lock()
	r.applies = append(r.applies, applyRecord{At: at, Script: bytes.Clone(stdin), Err: err})
	r.mu.Unlock()
	return stdout, stderr, err
}

// Stream passes a streamed command (the drift monitor) to the inner executor, unrecorded.
func (r *recorder) Stream(ctx context.Context, argv []string, line func(string)) error {
	st, ok := r.inner.(nft.Streamer)
	if !ok {
		return fmt.Errorf("%T cannot stream", r.inner)
	}
	return st.Stream(ctx, argv, line)
}

// Applies returns the applies so far, oldest first.
func (r *recorder) Applies() []applyRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applies)
}

// Count returns how many applies ran (or failed) so far.
func (r *recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applies)
}

// Hold makes applies wait until Release.
func (r *recorder) Hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gate == nil {
		r.gate = make(chan struct{})
	}
}

// Release lets held applies (and later ones) run.
func (r *recorder) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gate != nil {
		close(r.gate)
		r.gate = nil
	}
}

// Waiting returns how many applies are being held.
func (r *recorder) Waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waiting
}

// FailWith makes every apply return res without running nft; nil restores normal applies.
func (r *recorder) FailWith(res *nft.FakeResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = res
}

// LastGood returns the script of the last successful apply, or nil.
func (r *recorder) LastGood() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.applies) - 1; i >= 0; i-- {
		if r.applies[i].Err == nil {
			return r.applies[i].Script
		}
	}
	return nil
}

// tableView is the content of the agent's table, parsed from `nft list table` output or from a
// script (what the fake holds, or what the recorder saw), which name the same objects.
type tableView struct {
	Exists bool
	Chains map[string][]string // chain name -> its rules
	Sets   map[string][]string // set or map name -> its elements
	Text   string
}

// parseTable understands the two forms nft content takes here: `nft list table` output
// ("chain NAME {", "elements = { ... }") and the agent's scripts ("add chain inet T NAME",
// "add set inet T NAME { ...; elements = {" ... "}; }", "add rule inet T CHAIN RULE").
func parseTable(text string) tableView {
	v := tableView{Exists: true, Chains: map[string][]string{}, Sets: map[string][]string{}, Text: text}
	var (
		block, kind string // the listing block we are in: "chain" or "set"
		elemTarget  string // the set whose elements are being collected
		elems       strings.Builder
		collecting  bool
	)
	finish := func() {
		s := strings.TrimPrefix(strings.TrimSpace(elems.String()), "{")
		s, _, _ = strings.Cut(s, "}") // "a, b }" in a listing, "a, b, }; }" in a script
		for e := range strings.SplitSeq(s, ",") {
			if e = strings.Join(strings.Fields(e), " "); e != "" {
				v.Sets[elemTarget] = append(v.Sets[elemTarget], e)
			}
		}
		collecting = false
		elems.Reset()
	}
	for raw := range strings.SplitSeq(text, "\n") {
		l := strings.TrimSpace(raw)
		if collecting {
			elems.WriteString(" " + l)
			if strings.HasSuffix(l, "}") {
				finish()
			}
			continue
		}
		f := strings.Fields(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		// Script form.
		case strings.HasPrefix(l, "add chain ") && len(f) >= 5:
			ensure(v.Chains, f[4])
		case (strings.HasPrefix(l, "add set ") || strings.HasPrefix(l, "add map ")) && len(f) >= 5:
			ensure(v.Sets, f[4])
			if i := strings.Index(l, "elements = {"); i >= 0 {
				elemTarget, collecting = f[4], true
				elems.WriteString(l[i+len("elements = "):])
				if strings.HasSuffix(l, "}") {
					finish()
				}
			}
		case strings.HasPrefix(l, "add rule ") && len(f) >= 6:
			v.Chains[f[4]] = append(v.Chains[f[4]], strings.Join(f[5:], " "))
		case strings.HasPrefix(l, "add table ") || strings.HasPrefix(l, "delete table "):
		// Listing form.
		case strings.HasPrefix(l, "table "):
		case (f[0] == "chain" || f[0] == "set" || f[0] == "map") && len(f) == 3 && f[2] == "{":
			block, kind = f[1], f[0]
			if kind == "chain" {
				ensure(v.Chains, block)
			} else {
				kind = "set"
				ensure(v.Sets, block)
			}
		case l == "}":
			block, kind = "", ""
		case kind == "set" && strings.HasPrefix(l, "elements = {"):
			elemTarget, collecting = block, true
			elems.WriteString(l[strings.Index(l, "{"):])
			if strings.HasSuffix(l, "}") {
				finish()
			}
		case kind == "chain" && !strings.HasPrefix(l, "comment ") && !strings.HasPrefix(l, "type "):
			v.Chains[block] = append(v.Chains[block], l)
		}
	}
	return v
}

func ensure(m map[string][]string, k string) {
	if _, ok := m[k]; !ok {
		m[k] = nil
	}
}

// Generated names are <prefix>-<8 base32 characters>-<readable part><suffix>.
const hashPattern = `-[A-Z2-7]{8}-`

// find returns the name in names generated from prefix and readable, or "".
func (v tableView) find(names map[string][]string, prefix, readable string) string {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + hashPattern + regexp.QuoteMeta(readable) + "$")
	for n := range names {
		if re.MatchString(n) {
			return n
		}
	}
	return ""
}

// PodChain returns the chain of pod ns/name for direction "in" or "out", or "".
func (v tableView) PodChain(dir, ns, name string) string {
	return v.find(v.Chains, "pod-"+dir, ns+"/"+name)
}

// PolicyChain returns the chain of NetworkPolicy ns/name for direction "in" or "out", or "".
func (v tableView) PolicyChain(dir, ns, name string) string {
	return v.find(v.Chains, "pol-"+dir, ns+"/"+name)
}

// PodChains lists the per-pod chains.
func (v tableView) PodChains() []string {
	var out []string
	for n := range v.Chains {
		if strings.HasPrefix(n, "pod-") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Peers returns the elements of the peer set of rule idx of policy ns/pol ("in" or "out"), for
// family "v4" or "v6"; nil when the set does not exist (no peer matched).
func (v tableView) Peers(ns, pol, dir string, idx int, fam string) []string {
	if name := v.find(v.Sets, "peers", fmt.Sprintf("%s/%s/%s%d-%s", ns, pol, dir, idx, fam)); name != "" {
		return v.Sets[name]
	}
	return nil
}

// MapTarget returns the chain the verdict map sends address ip to, or "".
func (v tableView) MapTarget(mapName, ip string) string {
	for _, e := range v.Sets[mapName] {
		if rest, ok := strings.CutPrefix(e, ip+" : "); ok {
			f := strings.Fields(rest)
			return f[len(f)-1]
		}
	}
	return ""
}

// contains reports whether an interval set's elements (addresses, prefixes, first-last ranges)
// cover ip.
func contains(elems []string, ip string) bool {
	a := netip.MustParseAddr(ip)
	for _, e := range elems {
		if first, last, ok := strings.Cut(e, "-"); ok {
			f, err1 := netip.ParseAddr(strings.TrimSpace(first))
			l, err2 := netip.ParseAddr(strings.TrimSpace(last))
			if err1 == nil && err2 == nil && f.Compare(a) <= 0 && a.Compare(l) <= 0 {
				return true
			}
			continue
		}
		if p, err := netip.ParsePrefix(e); err == nil && p.Contains(a) {
			return true
		}
		if b, err := netip.ParseAddr(e); err == nil && b == a {
			return true
		}
	}
	return false
}

// The fixed names of the rendered table.
const (
	ingressMapV4 = "ingress-pods-v4"
	egressMapV4  = "egress-pods-v4"
)
