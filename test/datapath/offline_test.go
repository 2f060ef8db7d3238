//go:build linux

package datapath

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/flock-net/flock-netpol/test/netns"
)

// The tests in this file need no privileges: they check the scenarios themselves (tables parse,
// spot checks name real endpoints, inputs are valid) and the model against the hand-written
// expectations, so a mistake there shows up on every machine, not only on kernel runners.

// fakeEndpoint stands in for a bed endpoint where no namespace exists.
type fakeEndpoint struct {
	name   string
	v4, v6 netip.Addr
}

func (f fakeEndpoint) Name() string      { return f.name }
func (f fakeEndpoint) Namespace() string { return "" }
func (f fakeEndpoint) Addrs() []netip.Addr {
	return []netip.Addr{f.v4, f.v6}
}
func (f fakeEndpoint) Addr(v6 bool) netip.Addr {
	if v6 {
		return f.v6
	}
	return f.v4
}
func (f fakeEndpoint) Serve(...uint16) {}

// offlineCluster is the cluster's bookkeeping without a bed.
func offlineCluster() *cluster {
	c := &cluster{pods: map[string]*podDef{}}
	for i := range podDefs {
		p := &podDefs[i]
		c.eps = append(c.eps, fakeEndpoint{p.endpoint(), p.addr(false), p.addr(true)})
		c.pods[p.endpoint()] = p
	}
	c.eps = append(c.eps, fakeEndpoint{"ext", ext4, ext6})
	return c
}

// emptyMatrix has the shape ProbeMatrix gives, with no cells, for Expect.
func emptyMatrix(c *cluster, port uint16) *netns.Matrix {
	return &netns.Matrix{Port: port, Kinds: netns.AllKinds, From: c.eps, To: c.eps}
}

func TestScenariosAgreeWithTheModelOffline(t *testing.T) {
	c := offlineCluster()
	for _, s := range specScenarios {
		t.Run("spec/"+s.name, func(t *testing.T) {
			a := translateAll(s.policies)
			for _, n := range nodeNames {
				for _, p := range a.problems[n] {
					t.Errorf("translate for %s reported a problem: %s", n, p)
				}
			}
			for _, port := range probePorts {
				m := emptyMatrix(c, port)
				pred, err := truthTable(c.eps, m.Kinds, s.want[port])
				if err != nil {
					t.Fatalf("port %d: bad hand-written table: %v", port, err)
				}
				if d := m.Expect(c.model(a, port)).Diff(m.Expect(pred)); d != "" {
					t.Errorf("port %d: the model disagrees with the hand-written expectation; here \"observed\" is the model:\n%s", port, d)
				}
			}
		})
	}
	for _, s := range modelScenarios {
		t.Run("model/"+s.name, func(t *testing.T) {
			a := translateAll(s.policies)
			for _, n := range nodeNames {
				for _, p := range a.problems[n] {
					t.Errorf("translate for %s reported a problem: %s", n, p)
				}
			}
			blocked := 0
			for _, port := range probePorts {
				_, b := emptyMatrix(c, port).Expect(c.model(a, port)).Count()
				blocked += b
			}
			if s.policies != nil && blocked == 0 {
				t.Errorf("the scenario blocks nothing; it does not exercise its policies")
			}
			for _, spot := range s.spots {
				sp, err := parseSpot(spot)
				if err != nil {
					t.Fatalf("bad spot check %q: %v", spot, err)
				}
				from, to := c.endpoint(sp.from), c.endpoint(sp.to)
				if from == nil || to == nil || from == to || !containsPort(sp.port) {
					t.Fatalf("bad spot check %q: unknown endpoint, self flow or unprobed port", spot)
				}
				for _, k := range sp.kinds {
					if got := c.model(a, sp.port)(from, to, k); got != sp.allow {
						t.Errorf("spot check %q (%s): the model says allowed=%v", spot, k, got)
					}
				}
			}
		})
	}
}

func containsPort(p uint16) bool {
	for _, q := range probePorts {
		if p == q {
			return true
		}
	}
	return false
}

func TestTruthTableParsing(t *testing.T) {
	eps := []netns.Endpoint{fakeEndpoint{name: "a"}, fakeEndpoint{name: "bb"}}
	kinds := []netns.Kind{netns.TCP4, netns.UDP4}
	pred, err := truthTable(eps, kinds, `
		from\to  bb  a    # columns in any order
		a        .X  --
		bb       --  X.
	`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to int
		k        netns.Kind
		want     bool
	}{{0, 1, netns.TCP4, true}, {0, 1, netns.UDP4, false}, {1, 0, netns.TCP4, false}, {1, 0, netns.UDP4, true}} {
		if got := pred(eps[c.from], eps[c.to], c.k); got != c.want {
			t.Errorf("%s -> %s %s = %v, want %v", eps[c.from].Name(), eps[c.to].Name(), c.k, got, c.want)
		}
	}
	for name, bad := range map[string]string{
		"no header":       "a .. --\n",
		"missing column":  "from\\to a\na --\nbb X.\n",
		"missing row":     "from\\to a bb\na -- ..\n",
		"short cell":      "from\\to a bb\na -- .\nbb .. --\n",
		"bad glyph":       "from\\to a bb\na -- .?\nbb .. --\n",
		"probed diagonal": "from\\to a bb\na .. ..\nbb .. --\n",
		"unknown name":    "from\\to a cc\na -- ..\ncc .. --\n",
	} {
		if _, err := truthTable(eps, kinds, bad); err == nil {
			t.Errorf("%s: accepted:\n%s", name, bad)
		}
	}
	for _, bad := range []string{"a -> b tcp/80", "a => b tcp/80 allow", "a -> b icmp/0 deny", "a -> b tcp5/80 deny", "a -> b tcp/x allow"} {
		if _, err := parseSpot(bad); err == nil {
			t.Errorf("spot %q accepted", bad)
		}
	}
	if sp, err := parseSpot("x-a -> ext udp/81 deny"); err != nil || !reflect.DeepEqual(sp, spot{"x-a", "ext", []netns.Kind{netns.UDP4, netns.UDP6}, 81, false}) {
		t.Errorf("parseSpot = %+v, %v", sp, err)
	}
	if sp, err := parseSpot("x-a -> ext tcp6/80 allow"); err != nil || !reflect.DeepEqual(sp, spot{"x-a", "ext", []netns.Kind{netns.TCP6}, 80, true}) {
		t.Errorf("parseSpot = %+v, %v", sp, err)
	}
}
