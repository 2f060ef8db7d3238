package translate

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/ruleset"
	"github.com/flock-net/flock-netpol/test/fuzzbytes"
	"github.com/flock-net/flock-netpol/test/nftcheck"
)

// The ClusterNetworkPolicy vocabulary, values API validation would refuse included.
var (
	fuzzTiers   = []v1alpha2.Tier{v1alpha2.AdminTier, v1alpha2.BaselineTier, v1alpha2.AdminTier, "Bogus"}
	fuzzActions = []v1alpha2.ClusterNetworkPolicyRuleAction{accept, deny, pass, "Drop"}
)

func (r *fuzzBytes) clusterPeer() v1alpha2.ClusterNetworkPolicyEgressPeer {
	var p v1alpha2.ClusterNetworkPolicyEgressPeer
	for range 1 + r.N(2) { // sometimes two peer types: invalid
		switch r.N(7) {
		case 0:
			p.Namespaces = r.selector()
		case 1:
			p.Pods = &v1alpha2.NamespacedPod{NamespaceSelector: *r.selector(), PodSelector: *r.selector()}
		case 2, 3:
			for range 1 + r.N(3) {
				p.Networks = append(p.Networks, v1alpha2.CIDR(fuzzbytes.Pick(r.Reader, fuzzCIDRs...)))
			}
		case 4:
			p.Nodes = r.selector()
		case 5:
			p.DomainNames = []v1alpha2.DomainName{"example.com"}
		}
	}
	return p
}

func (r *fuzzBytes) clusterProtocol() v1alpha2.ClusterNetworkPolicyProtocol {
	var p v1alpha2.ClusterNetworkPolicyProtocol
	port := func() *v1alpha2.Port {
		switch r.N(4) {
		case 0:
			return nil
		case 1:
			return &v1alpha2.Port{Range: &v1alpha2.PortRange{Start: fuzzbytes.Pick[int32](r.Reader, 0, 53, 80, 90), End: fuzzbytes.Pick[int32](r.Reader, 53, 81, 8080, 70000)}}
		}
		return &v1alpha2.Port{Number: fuzzbytes.Pick[int32](r.Reader, 53, 80, 8080, 0, 70000)}
	}
	for range 1 + r.N(2) {
		switch r.N(5) {
		case 0:
			p.TCP = &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: port()}
		case 1:
			p.UDP = &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: port()}
		case 2:
			p.SCTP = &v1alpha2.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port()}
		case 3:
			p.DestinationNamedPort = fuzzbytes.Pick(r.Reader, fuzzPortNames...)
		}
	}
	return p
}

// fuzzClusterInput is fuzzInput's cluster plus two Nodes (the local one with an address a pod
// may draw too) and up to four ClusterNetworkPolicies built from the rest of the bytes.
func fuzzClusterInput(data []byte) Input {
	in := fuzzInput(data)
	r := &fuzzBytes{fuzzbytes.New(data)}
	for range 64 { // move past what fuzzInput read, roughly: the streams need not line up
		r.N(2)
	}
	in.Nodes = []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: localNode, Labels: r.labelMap()}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.3"}, {Type: corev1.NodeHostName, Address: localNode}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: remoteNode, Labels: r.labelMap()}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fuzzbytes.Pick(r.Reader, fuzzAddrs...)}}}},
	}
	for i := range 1 + r.N(4) {
		p := &v1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
		p.Spec.Tier = fuzzbytes.Pick(r.Reader, fuzzTiers...)
		p.Spec.Priority = fuzzbytes.Pick[int32](r.Reader, 0, 1, 1, 1000, -5)
		switch r.N(4) {
		case 0:
			p.Spec.Subject.Namespaces = r.selector()
		case 1:
			p.Spec.Subject.Pods = &v1alpha2.NamespacedPod{NamespaceSelector: *r.selector(), PodSelector: *r.selector()}
		case 2:
			p.Spec.Subject.Namespaces = &metav1.LabelSelector{}
		} // 3: no subject (invalid)
		for range r.N(3) {
			rule := v1alpha2.ClusterNetworkPolicyIngressRule{Action: fuzzbytes.Pick(r.Reader, fuzzActions...)}
			for range r.N(3) {
				peer := r.clusterPeer()
				rule.From = append(rule.From, v1alpha2.ClusterNetworkPolicyIngressPeer{Namespaces: peer.Namespaces, Pods: peer.Pods})
			}
			for range r.N(3) {
				rule.Protocols = append(rule.Protocols, r.clusterProtocol())
			}
			p.Spec.Ingress = append(p.Spec.Ingress, rule)
		}
		for range r.N(3) {
			rule := v1alpha2.ClusterNetworkPolicyEgressRule{Action: fuzzbytes.Pick(r.Reader, fuzzActions...)}
			for range r.N(3) {
				rule.To = append(rule.To, r.clusterPeer())
			}
			for range r.N(3) {
				rule.Protocols = append(rule.Protocols, r.clusterProtocol())
			}
			p.Spec.Egress = append(p.Spec.Egress, rule)
		}
		in.ClusterPolicies = append(in.ClusterPolicies, p)
	}
	return in
}

// FuzzTranslateClusterPolicies translates random clusters with ClusterNetworkPolicies, values
// that never pass API validation included: the translator never panics, gives the same rule set
// for the same input whatever the order of the policies, judges every flow without panicking,
// and renders a script `nft -c -f -` accepts (as root).
func FuzzTranslateClusterPolicies(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0x02, 0x07, 0x01, 0x03, 0x04, 0x00, 0x05, 0x03}, 60))
	f.Add(bytes.Repeat([]byte{0x04, 0x01, 0x03, 0x02, 0x00, 0x06, 0x01, 0x05, 0x02}, 80))
	f.Add(bytes.Repeat([]byte{0x01, 0x00, 0x02, 0x05, 0x03, 0x04}, 100))
	checker := nftcheck.Client(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzClusterInput(data)
		rs, _ := Translate(in)
		shuffled := in
		shuffled.ClusterPolicies = slices.Clone(in.ClusterPolicies)
		rand.New(rand.NewPCG(uint64(len(data)), 1)).Shuffle(len(shuffled.ClusterPolicies), func(i, j int) {
			shuffled.ClusterPolicies[i], shuffled.ClusterPolicies[j] = shuffled.ClusterPolicies[j], shuffled.ClusterPolicies[i]
		})
		if again, _ := Translate(shuffled); !equalRuleSets(rs, again) {
			t.Fatal("the order of the ClusterNetworkPolicies changed the rule set")
		}
		for _, src := range fuzzFlowAddrs {
			for _, dst := range fuzzFlowAddrs {
				for _, fl := range []ruleset.Flow{{Protocol: ruleset.TCP, Port: 80}, {Protocol: ruleset.UDP, Port: 53}, {Protocol: "icmp"}} {
					fl.Src, fl.Dst = netip.MustParseAddr(src), netip.MustParseAddr(dst)
					rs.Explain(fl)
				}
			}
		}
		if checker != nil {
			if err := checker.Check(context.Background(), render.Render(rs, render.Options{}).Text); err != nil {
				t.Fatalf("nft -c rejects the script: %v", err)
			}
		}
	})
}
