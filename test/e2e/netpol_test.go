//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// scenarioTimeout bounds one scenario (its API calls and every WaitEnforced).
const scenarioTimeout = 2 * time.Minute

// suite is the cluster and the bed endpoints every scenario uses.
type suite struct {
	c    *cluster.Cluster
	pods map[string]*netns.Pod // by pod id
	eps  []netns.Endpoint      // matrix order: pods, then the external host
}

// env is one scenario's view: its namespace names.
type env struct {
	*suite
	run int
}

// ns maps a logical namespace (x, y, z) to the scenario's actual one (x-7, ...).
func (e *env) ns(logical string) string { return fmt.Sprintf("%s-%d", logical, e.run) }

func inNamespace(ns string) client.DeleteAllOfOption { return client.InNamespace(ns) }

// createPod creates the Pod object of a pod id, bound to its endpoint's node and addresses.
func (e *env) createPod(ctx context.Context, id string) error {
	ns, name, _ := strings.Cut(id, "/")
	_, err := e.c.CreatePod(ctx, cluster.PodObject{
		Namespace:  e.ns(ns),
		Name:       name,
		Labels:     map[string]string{"pod": name},
		Containers: containers(),
		Endpoint:   e.pods[id],
	})
	return err
}

func newSuite(t *testing.T) *suite {
	c := cluster.Start(t, cluster.Options{})
	s := &suite{c: c, pods: map[string]*netns.Pod{}}
	for _, id := range podIDs() {
		v4, v6 := podAddrs(id)
		p := c.AddPod(placement[id], endpointName(id), []netip.Addr{v4, v6}, servedPorts...)
		s.pods[id] = p
		s.eps = append(s.eps, p)
	}
	s.eps = append(s.eps, c.AddExternal(extID, extAddrs, servedPorts...))
	if err := c.Enforce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.WarmUp(s.eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Log(c.Bed.DumpState())
		t.Fatal(err)
	}
	return s
}

// TestNetpol runs every scenario on one cluster, one subtest per scenario.
func TestNetpol(t *testing.T) {
	start := time.Now()
	s := newSuite(t)
	t.Logf("cluster and %d endpoints ready in %v", len(s.eps), time.Since(start).Round(time.Millisecond))

	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.name
	}
	runScenarios(t, start, names, func(t *testing.T, i int) { s.runScenario(t, i+1, scenarios[i]) })
}

func (s *suite) runScenario(t *testing.T, run int, sc scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	e := &env{suite: s, run: run}
	if sc.upstream != "" {
		t.Logf("upstream: %q", sc.upstream)
	}
	for _, ns := range namespaces {
		if err := s.c.CreateNamespace(ctx, e.ns(ns), map[string]string{"ns": ns}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Frees the addresses for the next scenario's pods.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ns := range namespaces {
			if err := s.c.ClearNamespace(cctx, e.ns(ns)); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for _, id := range podIDs() {
		if err := e.createPod(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	j := judge{c: s.c, eps: s.eps, name: netns.Endpoint.Name,
		expect: func(r reach, from, to netns.Endpoint, k netns.Kind) bool {
			return r.verdict(idOf(from), idOf(to), k.IPv6())
		}}
	runSteps(ctx, t, j, sc.steps, e, e.policiesYAML)
}

// policiesYAML prints the scenario's policies as stored, for failure reports.
func (e *env) policiesYAML(ctx context.Context) string {
	var sb strings.Builder
	for _, ns := range namespaces {
		var l networkingv1.NetworkPolicyList
		if err := e.c.Client.List(ctx, &l, client.InNamespace(e.ns(ns))); err != nil {
			fmt.Fprintf(&sb, "# listing policies of %s: %v\n", e.ns(ns), err)
			continue
		}
		for i := range l.Items {
			np := l.Items[i].DeepCopy()
			np.ManagedFields = nil
			b, err := yaml.Marshal(np)
			if err != nil {
				fmt.Fprintf(&sb, "# %s/%s: %v\n", np.Namespace, np.Name, err)
				continue
			}
			sb.WriteString("---\n")
			sb.Write(b)
		}
	}
	return sb.String()
}
