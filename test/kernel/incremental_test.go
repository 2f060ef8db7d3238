//go:build linux

package kernel

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os/exec"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/compact"
	"github.com/flock-net/flock-netpol/internal/epoch"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/internal/translate"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
	"github.com/flock-net/flock-netpol/test/synth"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// TestIncrementalUpdatesEqualFullApplies drives a generated cluster through random events (pods
// deleted, created again, relabelled; policies deleted, switched between audit and enforce mode;
// namespaces' drop logs turned on and off; ClusterNetworkPolicies added and removed) and applies each new script two ways: in one namespace as the incremental update from the previous script (render.Diff;
// a full apply where it says one is needed), in another as a full replace. After every step the
// two tables must be the same (`nft -j list table`, set elements as sets, handles aside).
func TestIncrementalUpdatesEqualFullApplies(t *testing.T) {
	incNS, fullNS := netns.NewScratch(t), netns.NewScratch(t)
	inc, full := scratchClient(t, incNS), scratchClient(t, fullNS)
	ctx := context.Background()
	cfg := synth.Sized(300, 30)
	cfg.Nodes, cfg.LocalPods = 3, 80
	cl := synth.Generate(cfg)
	pods, policies, namespaces := slices.Clone(cl.Pods), slices.Clone(cl.Policies), slices.Clone(cl.Namespaces)
	rng := rand.New(rand.NewPCG(3, 4))
	// ClusterNetworkPolicies come and go: Admin and Baseline chains, the pass maps, and the
	// input hook chain with its maps (a Baseline egress policy on local pods) appear and go.
	nsSel := func(i int) *metav1.LabelSelector {
		return objects.Selector("kubernetes.io/metadata.name", cl.Namespaces[i%len(cl.Namespaces)].Name)
	}
	cnpPool := []*v1alpha2.ClusterNetworkPolicy{
		objects.AdminPolicy("deny-and-pass", 1, nsSel(0), objects.ClusterIngress(objects.Deny, objects.NamespacesPeer(nsSel(1))),
			objects.ClusterEgress(objects.Pass, objects.NamespacesPeer(nsSel(2)), objects.TCPPort(80))),
		objects.AdminPolicy("accept-cluster", 2, objects.Selector(), objects.ClusterEgress(objects.Accept, objects.NetworksPeer("10.0.0.0/8"))),
		objects.BaselinePolicy("baseline", 1, objects.Selector(), objects.ClusterIngress(objects.Deny, objects.NamespacesPeer(objects.Selector())),
			objects.ClusterEgress(objects.Deny, objects.NetworksPeer("0.0.0.0/0", "::/0"))),
		objects.AdminPolicy("named", 3, nsSel(2), objects.ClusterIngress(objects.Deny, objects.NamespacesPeer(objects.Selector()), objects.NamedDestination("http"))),
	}
	var cnps []*v1alpha2.ClusterNetworkPolicy
	withInputHook := 0 // steps whose table has the input hook chain

	var prevRS ruleset.RuleSet
	var st epoch.State
	var prev []byte
	incremental, elementsOnly, fallbacks, refilled, deleted := 0, 0, 0, 0, 0
	incElements := netlinkElements(t, incNS)
	for step := range 40 {
		if step > 0 {
			switch i := rng.IntN(len(pods)); rng.IntN(8) {
			case 0: // a pod goes
				pods = slices.Delete(pods, i, i+1)
			case 1: // and comes back (the generator's pod, maybe already there: then relabelled)
				p := cl.Pods[rng.IntN(len(cl.Pods))].DeepCopy()
				p.Name += "-again"
				pods = append(pods, p)
			case 2: // relabelled
				p := pods[i].DeepCopy()
				p.Labels = map[string]string{"app": "moved"}
				pods[i] = p
			case 3: // a policy goes
				if len(policies) > 1 {
					j := rng.IntN(len(policies))
					policies = slices.Delete(policies, j, j+1)
				}
			case 4: // a policy switches between audit and enforce mode: report chains and
				// counters come and go
				j := rng.IntN(len(policies))
				np := policies[j].DeepCopy()
				mode := translate.ModeAudit
				if np.Annotations[translate.ModeAnnotation] == mode {
					mode = translate.ModeEnforce
				}
				np.Annotations = map[string]string{translate.ModeAnnotation: mode}
				policies[j] = np
			case 5: // a namespace turns drop logs on or off: the limit and the dynamic sets
				j := rng.IntN(len(namespaces))
				ns := namespaces[j].DeepCopy()
				on := "true"
				if ns.Annotations[translate.DropLogAnnotation] == on {
					on = "false"
				}
				ns.Annotations = map[string]string{translate.DropLogAnnotation: on}
				namespaces[j] = ns
			case 6, 7: // a ClusterNetworkPolicy comes or goes
				p := cnpPool[rng.IntN(len(cnpPool))]
				if k := slices.Index(cnps, p); k >= 0 {
					cnps = slices.Delete(cnps, k, k+1)
				} else {
					cnps = append(cnps, p)
				}
			}
		}
		rs, _ := translate.Translate(translate.Input{Node: cl.LocalNode, Policies: policies, Namespaces: namespaces, Pods: compact.NewPods(pods), ClusterPolicies: cnps})
		st = epoch.Next(st, &prevRS, &rs)
		script := render.Render(rs, render.Options{Epochs: st, AntiSpoofing: true}).Text
		if bytes.Contains(script, []byte(" filter-input ")) {
			withInputHook++
		}
		if err := full.Apply(ctx, script); err != nil {
			t.Fatalf("step %d: full apply: %v", step, err)
		}
		if prev == nil {
			if err := inc.Apply(ctx, script); err != nil {
				t.Fatal(err)
			}
		} else {
			// Sets that lose elements are declared again with all of them (refilled), or, on
			// odd steps, lose them by `delete element` (what a set larger than
			// render.DefaultMaxRefill does): both must give the same table.
			maxRefill := 0
			if step%2 == 1 {
				maxRefill = -1
			}
			u, err := diffScripts(prev, script, maxRefill)
			if err == nil {
				refilled += bytes.Count(u.Text, []byte("\nflush set ")) + bytes.Count(u.Text, []byte("\nflush map "))
				deleted += bytes.Count(u.Text, []byte("\ndelete element "))
			}
			switch {
			case errors.Is(err, render.ErrNeedsFullApply):
				fallbacks++
				if err := inc.Apply(ctx, script); err != nil {
					t.Fatal(err)
				}
			case err != nil:
				t.Fatalf("step %d: %v", step, err)
			case u.ElementsOnly && len(u.Changes) > 0:
				// What the agent sends over netlink (the digest's element among the changes).
				elementsOnly++
				if err := incElements.UpdateElements(ctx, "inet", render.DefaultTable, setChanges(u.Changes)); err != nil {
					t.Fatalf("step %d: the element update was rejected: %v\n%s", step, err, u.Text)
				}
			default:
				incremental++
				if err := inc.Apply(ctx, u.Text); err != nil {
					t.Fatalf("step %d: the incremental update was rejected: %v\n%s", step, err, u.Text)
				}
			}
		}
		a, b := listing(t, incNS), listing(t, fullNS)
		if a != b {
			t.Fatalf("step %d: the incrementally updated table differs from the fully applied one\nincremental:\n%s\nfull:\n%s", step, a, b)
		}
		// The update carried the digest (an element of render.DigestSet), as the periodic check
		// reads it.
		out, err := exec.Command("ip", "netns", "exec", incNS, "nft", "list", "set", "inet", render.DefaultTable, render.DigestSet).CombinedOutput()
		if err != nil {
			t.Fatalf("step %d: %v: %s", step, err, out)
		}
		if want, _ := render.Digest(script); !bytes.Contains(out, []byte(`comment "ruleset `+want+`"`)) {
			t.Fatalf("step %d: the kernel's %s does not carry the script's digest %s:\n%s", step, render.DigestSet, want, out)
		}
		prev, prevRS = script, rs
	}
	t.Logf("%d incremental updates through nft, %d over netlink (elements only), %d full applies needed; %d steps with ClusterNetworkPolicies' input hook",
		incremental, elementsOnly, fallbacks, withInputHook)
	t.Logf("%d sets and maps refilled, %d delete element commands", refilled, deleted)
	if incremental == 0 || elementsOnly == 0 || refilled == 0 || deleted == 0 {
		t.Error("no step was applied incrementally through nft or over netlink, or none refilled a set, or none deleted an element")
	}
	if withInputHook == 0 || withInputHook == 40 {
		t.Error("the input hook chain never came or never went: the steps do not exercise ClusterNetworkPolicies")
	}
}

func scratchClient(t *testing.T, ns string) *nft.Client {
	t.Helper()
	c, err := nft.New(nft.Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listing returns the table of the namespace in canonical form (testenv.CanonicalTable).
func listing(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", render.DefaultTable).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	canon, err := testenv.CanonicalTable(out)
	if err != nil {
		t.Fatal(err)
	}
	return canon
}

// netnsFD opens a namespace for netlink, for the test's duration.
// netlinkElements is the agent's element updater for the namespace ns, closed when t ends.
func netlinkElements(t *testing.T, ns string) *nft.NetlinkElements {
	t.Helper()
	el := &nft.NetlinkElements{NetNS: netns.OpenFD(t, ns)}
	t.Cleanup(func() { _ = el.Close() })
	return el
}

func diffScripts(from, to []byte, maxRefill int) (render.Update, error) {
	a, err := render.ParseTable(from)
	if err != nil {
		return render.Update{}, err
	}
	b, err := render.ParseTable(to)
	if err != nil {
		return render.Update{}, err
	}
	return render.Diff(a, b, render.DiffOptions{Table: render.DefaultTable, MaxShare: 1, MaxRefill: maxRefill})
}

// setChanges are an update's element changes as nft takes them.
func setChanges(changes []render.ElementChange) []nft.SetChange {
	out := make([]nft.SetChange, len(changes))
	for i, c := range changes {
		out[i] = nft.SetChange(c)
	}
	return out
}
