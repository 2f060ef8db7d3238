//go:build linux

package datapath

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/explain"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/test/netns"
)

// explained returns, for one probed port, the verdict `flock-netpol explain` gives each probe of
// the matrix: the scenarios check it against what the kernel did, so explain cannot drift from
// enforcement. Endpoints are named by address, as an operator would with an address from a log
// (explain names the pod that owns it).
func (c *cluster) explained(t *testing.T, policies []*networkingv1.NetworkPolicy, cluster []*v1alpha2.ClusterNetworkPolicy, port uint16) func(from, to netns.Endpoint, k netns.Kind) bool {
	var pods []*corev1.Pod
	for i := range podDefs {
		pods = append(pods, podDefs[i].object())
	}
	objs := manifest.Objects{Namespaces: namespaceObjects(), Pods: pods, Policies: policies, ClusterPolicies: cluster}
	return func(from, to netns.Endpoint, k netns.Kind) bool {
		q := explain.Query{From: from.Addr(k.IPv6()).String(), To: to.Addr(k.IPv6()).String(), Port: fmt.Sprintf("%d/%s", port, k.Proto())}
		r, err := explain.Explain(objs, q)
		if err != nil {
			t.Errorf("explain %+v: %v", q, err)
			return false
		}
		return r.Allowed
	}
}

// checkExplained compares explain's verdicts with the observed matrix of one port.
func (c *cluster) checkExplained(t *testing.T, policies []*networkingv1.NetworkPolicy, cluster []*v1alpha2.ClusterNetworkPolicy, port uint16, observed *netns.Matrix) bool {
	t.Helper()
	if d := observed.Diff(observed.Expect(c.explained(t, policies, cluster, port))); d != "" {
		t.Errorf("port %d: `flock-netpol explain` disagrees with what the kernel did; here \"want\" is explain's verdict:\n%s", port, d)
		return false
	}
	return true
}
