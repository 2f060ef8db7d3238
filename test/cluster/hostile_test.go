//go:build linux

package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/flock-net/flock-netpol/test/cluster"
	"github.com/flock-net/flock-netpol/test/netns"
)

// etcdPut writes obj under /registry/<resource>/<namespace>/<name> the way the API server
// stores it (its default storage media type, protobuf: "k8s\x00" and a runtime.Unknown), through
// etcd's JSON gateway, bypassing every validation. The API server's watch on etcd delivers it to
// the agents like any other change.
func etcdPut(ctx context.Context, c *cluster.Cluster, resource string, obj runtime.Object, meta *metav1.ObjectMeta) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	meta.UID = types.UID(fmt.Sprintf("hostile-%s-%s-%d", meta.Namespace, meta.Name, time.Now().UnixNano()))
	meta.CreationTimestamp = metav1.Now()
	var value bytes.Buffer
	if err := protobuf.NewSerializer(scheme, scheme).Encode(obj, &value); err != nil {
		return err
	}
	key := fmt.Sprintf("/registry/%s/%s/%s", resource, meta.Namespace, meta.Name)
	body, _ := json.Marshal(map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString(value.Bytes()),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.EtcdURL()+"/v3/kv/put", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd put %s: %w", key, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd put %s: %s: %s", key, resp.Status, out)
	}
	return nil
}

// hostilePolicies are NetworkPolicies of namespace x that the API server rejects, each selecting
// x/a (app=a) for ingress, each bad in one way: none may allow anything, all isolate x/a.
func hostilePolicies() []*networkingv1.NetworkPolicy {
	tcp, icmp := corev1.ProtocolTCP, corev1.Protocol("ICMP")
	port := func(n int32) *intstr.IntOrString { p := intstr.FromInt32(n); return &p }
	end := int32(70)
	pol := func(name string, rule networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{rule},
			},
		}
	}
	block := func(cidr string, except ...string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}}
	}
	return []*networkingv1.NetworkPolicy{
		pol("leading-zeros", networkingv1.NetworkPolicyIngressRule{From: block("010.001.002.000/24")}),
		pol("except-outside", networkingv1.NetworkPolicyIngressRule{From: block("10.1.2.0/24", "10.1.3.0/24")}),
		pol("except-equal", networkingv1.NetworkPolicyIngressRule{From: block("10.1.2.0/24", "10.1.2.0/24")}),
		pol("bad-selector", networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y!"}},
		}}}),
		pol("unknown-protocol", networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &icmp}}}),
		pol("port-zero", networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(0)}}}),
		pol("endport-below-port", networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(80), EndPort: &end}}}),
		pol(`bad "name"; {}`, networkingv1.NetworkPolicyIngressRule{From: block("10.1.2.1/32", "::ffff:10.1.2.1/128")}),
	}
}

// TestHostileObjectsFailClosed writes objects that the API server would reject straight into
// etcd (issue 16; DESIGN.md, "Faults and bad input") and pins, with the real agents and real
// packets, that each bad policy fails closed for its own targets only: the agents stay ready and
// apply (WaitEnforced: the kernel holds the script the current state demands), x/a is isolated
// and allowed nothing, and the good policy of namespace y keeps working.
//
//	node-1  x/a 10.1.1.1, fd00:1:1::1 (app=a, the bad policies' target)
//	        y/g 10.1.1.2, fd00:1:1::2 (app=g, guarded: only y's app=b on tcp/80)
//	node-2  y/b 10.1.2.1, fd00:1:2::1 (app=b)   z/c 10.1.2.2, fd00:1:2::2 (app=c)
//
// Also written straight into etcd: a pod of x whose podIPs hold leading zeros, junk and
// duplicates.
func TestHostileObjectsFailClosed(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr := netip.MustParseAddr
	a := c.AddPod("node-1", "a", []netip.Addr{addr("10.1.1.1"), addr("fd00:1:1::1")}, 80)
	g := c.AddPod("node-1", "g", []netip.Addr{addr("10.1.1.2"), addr("fd00:1:1::2")}, 80)
	b := c.AddPod("node-2", "b", []netip.Addr{addr("10.1.2.1"), addr("fd00:1:2::1")}, 80)
	z := c.AddPod("node-2", "c", []netip.Addr{addr("10.1.2.2"), addr("fd00:1:2::2")}, 80)
	eps := []netns.Endpoint{a, g, b, z}
	for _, ns := range []string{"x", "y", "z"} {
		if err := c.CreateNamespace(ctx, ns, map[string]string{"team": ns}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []cluster.PodObject{
		{Namespace: "x", Name: "a", Endpoint: a, Labels: map[string]string{"app": "a"}},
		{Namespace: "y", Name: "g", Endpoint: g, Labels: map[string]string{"app": "g"}},
		{Namespace: "y", Name: "b", Endpoint: b, Labels: map[string]string{"app": "b"}},
		{Namespace: "z", Name: "c", Endpoint: z, Labels: map[string]string{"app": "c"}},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WarmUp(eps, func(netns.Endpoint) uint16 { return 80 }); err != nil {
		t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	p80 := intstr.FromInt32(80)
	if err := c.ApplyPolicy(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "guard"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "g"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}},
			}},
		},
	}); err != nil {
		t.Fatal(err)
	}

	for _, np := range hostilePolicies() {
		if err := c.Client.Create(ctx, np.DeepCopy()); err == nil {
			t.Errorf("the API server accepted NetworkPolicy %q: it is no hostile input", np.Name)
		}
		if err := etcdPut(ctx, c, "networkpolicies", np, &np.ObjectMeta); err != nil {
			t.Fatal(err)
		}
	}
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "bad-ips", Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/x:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "010.001.001.009",
			PodIPs: []corev1.PodIP{{IP: "010.001.001.009"}, {IP: "not-an-ip"}, {IP: "fd00:1:1::9%eth0"}, {IP: "not-an-ip"}}},
	}
	if err := etcdPut(ctx, c, "pods", bad, &bad.ObjectMeta); err != nil {
		t.Fatal(err)
	}
	var got networkingv1.NetworkPolicyList
	if err := c.Client.List(ctx, &got); err != nil || len(got.Items) != len(hostilePolicies())+1 {
		t.Fatalf("the API server lists %d policies (err %v), want the %d written into etcd and the guard", len(got.Items), err, len(hostilePolicies()))
	}

	if err := c.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if !n.AgentRunning() {
			t.Errorf("the agent of %s is not running", n.Name)
		}
	}
	_, problems, err := c.Expected(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems["node-1"]) < len(hostilePolicies())-1 {
		t.Errorf("node-1's translation reports %d problems, want one per bad policy at least:\n%v", len(problems["node-1"]), problems["node-1"])
	}
	want := func(from, to netns.Endpoint, k netns.Kind) bool {
		switch to {
		case a:
			return false // isolated by every bad policy, allowed nothing
		case g:
			return from == b && k.Proto() == "tcp"
		}
		return true
	}
	got80 := c.Probe(80, eps, eps)
	d := got80.Diff(got80.Expect(want))
	if d != "" {
		// One more, slower, look before failing: a loaded machine can delay the first packets.
		c.Bed.ProbeTimeout = 3 * time.Second
		got80 = c.Probe(80, eps, eps)
		d = got80.Diff(got80.Expect(want))
	}
	if d != "" {
		t.Errorf("with the hostile objects in place:\n%s", d)
	} else {
		t.Logf("with the hostile objects in place:\n%s", got80)
	}
}
