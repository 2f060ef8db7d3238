//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/yaml"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
	"github.com/flock-net/flock-netpol/test/objects"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// cnpScenarioTimeout bounds one scenario (its API calls and every Enforce).
const cnpScenarioTimeout = 3 * time.Minute

// cnpSuite is the cluster of the ClusterNetworkPolicy conformance suite (topology in
// cnp_model_test.go). Unlike TestNetpol's, its namespaces and pods live as long as the suite, as
// upstream's base manifests do: a scenario creates policies, and its cleanup deletes every
// ClusterNetworkPolicy and NetworkPolicy and puts the namespace and pod labels back.
type cnpSuite struct {
	c   *cluster.Cluster
	eps []netns.Endpoint  // matrix order: pods, centaurs, the external host
	ids map[string]string // an endpoint's bed name -> its id (cnp_model_test.go)
}

// TestCNPConformance runs the upstream ClusterNetworkPolicy conformance scenarios
// (cnp_scenarios_test.go) on the two-node cluster with real traffic, one subtest per scenario.
func TestCNPConformance(t *testing.T) {
	start := time.Now()
	s := newCNPSuite(t)
	t.Logf("cluster and %d endpoints ready in %v", len(s.eps), time.Since(start).Round(time.Millisecond))

	names := make([]string, len(cnpScenarios))
	for i, sc := range cnpScenarios {
		names[i] = sc.name
	}
	runScenarios(t, start, names, func(t *testing.T, i int) { s.run(t, cnpScenarios[i]) })
}

func newCNPSuite(t *testing.T) *cnpSuite {
	tb := testenv.RequireKernel(t, "ClusterNetworkPolicy conformance")
	if _, err := testenv.Assets(""); err != nil {
		tb.Skipf("ClusterNetworkPolicy conformance: skipping: %v", err)
	}
	c := cluster.Start(t, cluster.Options{ClusterNetworkPolicies: true})
	s := &cnpSuite{c: c, ids: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// What a kubelet registers: the OS label and the node's addresses, which node peers select.
	for _, n := range c.Nodes() {
		if err := s.registerNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, house := range append(slices.Clone(houses), hostHouse) {
		if err := c.CreateNamespace(ctx, nsName(house), map[string]string{houseLabel: house}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(id string, e interface {
		netns.Endpoint
		ServeSCTP(...uint16)
	}) {
		e.Serve(tcpUDPPorts...)
		e.ServeSCTP(sctpPorts...)
		s.eps = append(s.eps, e)
		s.ids[e.Name()] = id
	}
	for _, id := range cnpPodIDs() {
		v4, v6 := cnpPodAddrs(id)
		p := c.AddPod(cnpNodeOf(id), cnpEndpointName(id), []netip.Addr{v4, v6})
		add(id, p)
		house, name, _ := strings.Cut(id, "/")
		if _, err := c.CreatePod(ctx, cluster.PodObject{
			Namespace: nsName(house), Name: name, Labels: cnpPodLabels(id),
			Containers: cnpContainers(statefulSets[house]), Endpoint: p,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range hostIDs {
		h := c.Bed.AddHostNet(c.Node(cnpNodeOf(id)).NS, cnpEndpointName(id))
		add(id, h)
		if err := s.createHostPod(ctx, id, h); err != nil {
			t.Fatal(err)
		}
	}
	add(extID, c.AddExternal(extID, extAddrs))

	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WarmUp(s.eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Log(c.Bed.DumpState())
		t.Fatal(err)
	}
	// The first matrices probed at full concurrency lose flows to the start-up of the probes'
	// threads on a small machine; get that over with before the first step.
	j := judge{c: c, eps: s.eps}
	j.probe(checks(tcp(80, allowed()), udp(80, allowed())))
	return s
}

// cnpPodLabels are a pod's labels as its StatefulSet gives them, plus kv.
func cnpPodLabels(id string, kv ...string) map[string]string {
	house, name, _ := strings.Cut(id, "/")
	return withPairs(map[string]string{houseLabel: house, podNameLabel: name}, kv)
}

// registerNode labels the Node object of n as a Linux node and writes the node's addresses to its
// status, as a kubelet would.
func (s *cnpSuite) registerNode(ctx context.Context, n *cluster.Node) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var node corev1.Node
		if err := s.c.Client.Get(ctx, types.NamespacedName{Name: n.Name}, &node); err != nil {
			return err
		}
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		node.Labels[osLabel], node.Labels["kubernetes.io/hostname"] = "linux", n.Name
		if err := s.c.Client.Update(ctx, &node); err != nil {
			return err
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.Name}}
		for _, a := range n.NS.UnderlayAddrs() {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
		}
		return s.c.Client.Status().Update(ctx, &node)
	})
}

// createHostPod creates the hostNetwork Pod of a centaur: on its node, with the node's addresses.
func (s *cnpSuite) createHostPod(ctx context.Context, id string, h *netns.HostNet) error {
	_, name, _ := strings.Cut(id, "/")
	pod := objects.Pod(nsName(hostHouse)+"/"+name, objects.OnNode(h.Node().Name()), objects.HostNetwork(),
		objects.Labels(houseLabel, hostHouse, podNameLabel, name),
		objects.Containers(corev1.Container{Name: "centaur", Image: "registry.invalid/flock-e2e:1"}))
	if err := s.c.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating pod %s: %w", id, err)
	}
	pod.Status.Phase = corev1.PodRunning
	for _, a := range h.Addrs() {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	pod.Status.PodIP = pod.Status.PodIPs[0].IP
	pod.Status.HostIP = pod.Status.PodIP
	if err := s.c.Client.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("writing the status of pod %s: %w", id, err)
	}
	return nil
}

func (s *cnpSuite) run(t *testing.T, sc cnpScenario) {
	ctx, cancel := context.WithTimeout(context.Background(), cnpScenarioTimeout)
	defer cancel()
	t.Logf("upstream: %s", sc.upstream)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.reset(cctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	j := judge{c: s.c, eps: s.eps, expect: s.want, name: func(e netns.Endpoint) string { return s.ids[e.Name()] }}
	runSteps(ctx, t, j, sc.steps, s, s.policiesYAML)
}

// want is the expected verdict of one cell: reachable for the flows no policy can see (unpoliced),
// else what the check's table says.
func (s *cnpSuite) want(r reach, from, to netns.Endpoint, k netns.Kind) bool {
	f, d := s.ids[from.Name()], s.ids[to.Name()]
	return unpoliced(f, d) || r.verdict(f, d, k.IPv6())
}

// reset deletes every ClusterNetworkPolicy and NetworkPolicy and gives the namespaces and pods
// their labels back.
func (s *cnpSuite) reset(ctx context.Context) error {
	var errs []error
	errs = append(errs, s.c.Client.DeleteAllOf(ctx, &v1alpha2.ClusterNetworkPolicy{}))
	for _, house := range append(slices.Clone(houses), hostHouse) {
		errs = append(errs,
			s.c.Client.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, client.InNamespace(nsName(house))),
			s.c.SetNamespaceLabels(ctx, nsName(house), map[string]string{houseLabel: house}))
	}
	for _, id := range cnpPodIDs() {
		house, name, _ := strings.Cut(id, "/")
		errs = append(errs, s.c.SetPodLabels(ctx, nsName(house), name, cnpPodLabels(id)))
	}
	return errors.Join(errs...)
}

// policiesYAML prints the ClusterNetworkPolicies and NetworkPolicies as stored, for failure
// reports.
func (s *cnpSuite) policiesYAML(ctx context.Context) string {
	var sb strings.Builder
	print := func(o client.Object) {
		o.SetManagedFields(nil)
		b, err := yaml.Marshal(o)
		if err != nil {
			fmt.Fprintf(&sb, "# %s: %v\n", o.GetName(), err)
			return
		}
		sb.WriteString("---\n")
		sb.Write(b)
	}
	var cnps v1alpha2.ClusterNetworkPolicyList
	if err := s.c.Client.List(ctx, &cnps); err != nil {
		fmt.Fprintf(&sb, "# listing ClusterNetworkPolicies: %v\n", err)
	}
	for i := range cnps.Items {
		print(&cnps.Items[i])
	}
	var nps networkingv1.NetworkPolicyList
	if err := s.c.Client.List(ctx, &nps); err != nil {
		fmt.Fprintf(&sb, "# listing NetworkPolicies: %v\n", err)
	}
	for i := range nps.Items {
		print(&nps.Items[i])
	}
	return sb.String()
}

// Scenario data.

type cnpScenario struct {
	name string
	// upstream names the conformance test ported, "<ShortName>: <Description>" (with the subtests
	// when only some are ported), or says "ours" and why.
	upstream string
	steps    []cnpStep
}

type (
	cnpStep   = stepOf[*cnpSuite]
	cnpAction = actionOf[*cnpSuite]
)

func sctp(port uint16, want reach) check { return check{"sctp", port, want} }

func do(as ...cnpAction) []cnpAction { return as }

// apply creates or updates ClusterNetworkPolicies and NetworkPolicies (namespaces by full name).
func apply(objs ...client.Object) cnpAction {
	var names []string
	for _, o := range objs {
		kind := "NetworkPolicy"
		if _, ok := o.(*v1alpha2.ClusterNetworkPolicy); ok {
			kind = "ClusterNetworkPolicy"
		}
		names = append(names, fmt.Sprintf("%s %s", kind, client.ObjectKeyFromObject(o)))
	}
	return cnpAction{desc: "apply " + strings.Join(names, ", "), run: func(ctx context.Context, s *cnpSuite) error {
		for _, o := range objs {
			if err := s.c.Apply(ctx, o); err != nil {
				return fmt.Errorf("applying %s: %w", client.ObjectKeyFromObject(o), err)
			}
		}
		return nil
	}}
}

// mutate changes the stored ClusterNetworkPolicy name with fn, as upstream's tests patch the
// policy they read back.
func mutate(name, desc string, fn func(*v1alpha2.ClusterNetworkPolicy)) cnpAction {
	return cnpAction{desc: fmt.Sprintf("%s: %s", name, desc), run: func(ctx context.Context, s *cnpSuite) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			var p v1alpha2.ClusterNetworkPolicy
			if err := s.c.Client.Get(ctx, types.NamespacedName{Name: name}, &p); err != nil {
				return err
			}
			fn(&p)
			return s.c.Client.Update(ctx, &p)
		})
	}}
}

// swapIngress and swapEgress swap two rules of a stored policy.
func swapIngress(name string, i, j int) cnpAction {
	return mutate(name, fmt.Sprintf("swap ingress rules %d and %d", i, j), func(p *v1alpha2.ClusterNetworkPolicy) {
		p.Spec.Ingress[i], p.Spec.Ingress[j] = p.Spec.Ingress[j], p.Spec.Ingress[i]
	})
}

func swapEgress(name string, i, j int) cnpAction {
	return mutate(name, fmt.Sprintf("swap egress rules %d and %d", i, j), func(p *v1alpha2.ClusterNetworkPolicy) {
		p.Spec.Egress[i], p.Spec.Egress[j] = p.Spec.Egress[j], p.Spec.Egress[i]
	})
}

// deleteObject deletes a ClusterNetworkPolicy (namespace "") or a NetworkPolicy.
func deleteObject(obj client.Object) cnpAction {
	return cnpAction{desc: fmt.Sprintf("delete %T %s", obj, client.ObjectKeyFromObject(obj)), run: func(ctx context.Context, s *cnpSuite) error {
		return s.c.Client.Delete(ctx, obj.DeepCopyObject().(client.Object))
	}}
}

// labelNamespace replaces a house's namespace labels with kv, as upstream's PatchNamespace does
// (the API server keeps kubernetes.io/metadata.name).
func labelNamespace(house string, kv ...string) cnpAction {
	return cnpAction{desc: fmt.Sprintf("namespace %s labels %v", house, kv), run: func(ctx context.Context, s *cnpSuite) error {
		return s.c.SetNamespaceLabels(ctx, nsName(house), objects.LabelMap(kv...))
	}}
}

// labelPods gives pods their StatefulSet labels plus kv (none: just their own).
func labelPods(kv []string, ids ...string) cnpAction {
	return cnpAction{desc: fmt.Sprintf("pods %v labels +%v", ids, kv), run: func(ctx context.Context, s *cnpSuite) error {
		for _, id := range ids {
			house, name, _ := strings.Cut(id, "/")
			if err := s.c.SetPodLabels(ctx, nsName(house), name, cnpPodLabels(id, kv...)); err != nil {
				return err
			}
		}
		return nil
	}}
}

// Selector shorthands for the policies: a house's namespace by name (upstream's usual subject),
// by label, and the pods of a house by label.
func nsNamed(house string) *metav1.LabelSelector  { return objects.Selector(nameLabel, nsName(house)) }
func houseSel(house string) *metav1.LabelSelector { return objects.Selector(houseLabel, house) }
