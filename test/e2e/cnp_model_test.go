//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/flock-net/flock-netpol/test/objects"
)

// The topology of the ClusterNetworkPolicy conformance suite: the upstream one
// (conformance/base/manifests.yaml of sigs.k8s.io/network-policy-api). Four namespaces
// network-policy-conformance-<house> labelled conformance-house=<house>, each with the two pods of
// one StatefulSet (labelled conformance-house=<house> and statefulset.kubernetes.io/pod-name), and
// the hostNetwork pods centaur-0 and centaur-1 of network-policy-conformance-forbidden-forrest,
// one per node. A pod's id is "<house>/<pod>", a centaur's "forbidden-forrest/centaur-<n>"; the
// external host is extID.
//
//	node-1: gryffindor/harry-potter-0 slytherin/draco-malfoy-1 hufflepuff/cedric-diggory-0
//	        ravenclaw/luna-lovegood-1 forbidden-forrest/centaur-0 (the node's own address)
//	node-2: gryffindor/harry-potter-1 slytherin/draco-malfoy-0 hufflepuff/cedric-diggory-1
//	        ravenclaw/luna-lovegood-0 forbidden-forrest/centaur-1 (the node's own address)
//	ext:    outside both nodes
//
// Pods are dual-stack: 10.3.<house>.<10+n> and fd00:3::<house>:<10+n> (houses numbered 1-4 in
// the order of houses, n the StatefulSet ordinal). A centaur answers on its node's addresses (the
// bed's underlay), which are also its Node object's status.addresses.

// houses are the upstream namespaces' houses, in order; statefulSets their StatefulSets.
var (
	houses       = []string{"gryffindor", "slytherin", "hufflepuff", "ravenclaw"}
	statefulSets = map[string]string{
		"gryffindor": "harry-potter", "slytherin": "draco-malfoy",
		"hufflepuff": "cedric-diggory", "ravenclaw": "luna-lovegood",
	}
)

const (
	// hostHouse is the house of the hostNetwork pods.
	hostHouse = "forbidden-forrest"
	// houseLabel is the upstream namespaces' and pods' label.
	houseLabel = "conformance-house"
	// podNameLabel is the label a StatefulSet gives each of its pods.
	podNameLabel = "statefulset.kubernetes.io/pod-name"
	// roleLabel is the label upstream sets and clears on pods in the pod-selector tests.
	roleLabel = "conformance-role"
	// osLabel selects the nodes of node peers.
	osLabel = "kubernetes.io/os"
)

// nsName is the namespace of a house.
func nsName(house string) string { return "network-policy-conformance-" + house }

// cnpPodIDs lists the pods (not the hostNetwork ones) in matrix order.
func cnpPodIDs() []string {
	var out []string
	for _, h := range houses {
		for n := range 2 {
			out = append(out, fmt.Sprintf("%s/%s-%d", h, statefulSets[h], n))
		}
	}
	return out
}

// hostIDs lists the hostNetwork pods, node-1's first.
var hostIDs = []string{hostHouse + "/centaur-0", hostHouse + "/centaur-1"}

// cnpNodeOf places a pod: ordinals alternate between the nodes from one house to the next, so
// every pair of houses has pods on one node and across nodes, and so has every pair of ordinals.
func cnpNodeOf(id string) string {
	house, name, _ := strings.Cut(id, "/")
	n := int(name[len(name)-1] - '0')
	if house == hostHouse {
		return cnpNodes[n]
	}
	return cnpNodes[(n+slices.Index(houses, house))%2]
}

var cnpNodes = []string{"node-1", "node-2"}

// cnpPodAddrs returns the IPv4 and IPv6 address of a pod id.
func cnpPodAddrs(id string) (v4, v6 netip.Addr) {
	house, name, _ := strings.Cut(id, "/")
	h, n := slices.Index(houses, house)+1, int(name[len(name)-1]-'0')+10
	return netip.MustParseAddr(fmt.Sprintf("10.3.%d.%d", h, n)), netip.MustParseAddr(fmt.Sprintf("fd00:3::%d:%d", h, n))
}

// cnpEndpointName is the bed name of an id (the bed allows 20 characters): the house's initial and
// the pod's name, "g-harry-potter-0".
func cnpEndpointName(id string) string {
	if id == extID {
		return extID
	}
	house, name, _ := strings.Cut(id, "/")
	return house[:1] + "-" + name
}

// The ports. Every pod, centaur and the external host serves TCP and UDP on tcpUDPPorts and SCTP
// on sctpPorts. Upstream serves TCP 80 and 8080, UDP 53 and 5353, SCTP 9003 and 9005; every port
// here is served over every protocol, so that a rule for one protocol can be seen not to touch
// another on the same port, and the range scenarios probe ports inside and outside each range.
var (
	tcpUDPPorts = []uint16{53, 80, 5353, 8080, 9003, 9005}
	sctpPorts   = []uint16{80, 9003, 9005}
)

// cnpContainers are a pod's containers as upstream declares them: one per server, and named
// ports "web" (TCP 80) and "dns" (UDP 53) only.
func cnpContainers(statefulSet string) []corev1.Container {
	named := map[int32]corev1.ContainerPort{
		80: objects.ContainerPort("web", corev1.ProtocolTCP, 80),
		53: objects.ContainerPort("dns", corev1.ProtocolUDP, 53),
	}
	out := []corev1.Container{{Name: statefulSet + "-client"}}
	for _, port := range []int32{80, 8080, 5353, 53, 9003, 9005} {
		c := corev1.Container{Name: fmt.Sprintf("%s-%d", statefulSet, port)}
		if p, ok := named[port]; ok {
			c.Ports = []corev1.ContainerPort{p}
		}
		out = append(out, c)
	}
	return out
}

// Selectors of endpoint ids for the expectations (see reach). inNS(house) selects a house's two
// pods.
var (
	gryffindor = inNS("gryffindor")
	slytherin  = inNS("slytherin")
	hufflepuff = inNS("hufflepuff")
	ravenclaw  = inNS("ravenclaw")
	// housePods is the eight pods, the hostNetwork ones excluded.
	housePods sel = func(id string) bool { return id != extID && !strings.HasPrefix(id, hostHouse+"/") }
	// nodeHosts is the two hostNetwork pods: the nodes' own addresses.
	nodeHosts = inNS(hostHouse)
)

// unpoliced reports whether a flow crosses no hook that policy can see, so that no policy can
// affect it: between the two nodes, between a node and the external host (the underlay), and from
// a node to its own pods (the node's output hook). Every expectation holds "reachable" for these;
// the scenarios' tables describe the rest. A pod's traffic to its own node (the node's input hook)
// is policed, by the pod's ClusterNetworkPolicy egress tiers only: NetworkPolicy always allows a
// pod its own node (allowOwnNode).
func unpoliced(from, to string) bool {
	isHost := func(id string) bool { return strings.HasPrefix(id, hostHouse+"/") }
	switch {
	case isHost(from) && isHost(to), isHost(from) && to == extID, from == extID && isHost(to):
		return true
	case isHost(from):
		return cnpNodeOf(from) == cnpNodeOf(to)
	}
	return false
}

// allowOwnNode allows the pods that from selects to reach their own node's address, which
// NetworkPolicy never denies: for pods whose egress a NetworkPolicy isolates.
func (r reach) allowOwnNode(from sel) reach {
	for i, node := range cnpNodes {
		r = r.allow(func(id string) bool { return from(id) && cnpNodeOf(id) == node }, pod(hostIDs[i]))
	}
	return r
}

// The tiers, short.
const (
	admin = v1alpha2.AdminTier
	base  = v1alpha2.BaselineTier
)
