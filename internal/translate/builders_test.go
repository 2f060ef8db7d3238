package translate

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flock-net/flock-netpol/test/objects"
)

// Address plan for these tests (all inside 10.0.0.0/8 and fd00::/8):
//
//	pods:     namespace x, y, z -> 10.0.1.n, 10.0.2.n, 10.0.3.n and fd00::1:n, fd00::2:n, fd00::3:n
//	          where n is 1, 2, 3 for pods a, b, c
//	nodes:    pods x/a, x/b, y/a are on localNode; every other pod on remoteNode
//	outside:  10.200.0.1 and fd00:200::1 belong to no pod
//
// The objects themselves come from package test/objects.
const (
	localNode  = "node-a"
	remoteNode = "node-b"
)

var (
	outside4 = netip.MustParseAddr("10.200.0.1")
	outside6 = netip.MustParseAddr("fd00:200::1")
)

// addr returns the planned address of pod "ns/name" ("x/a") in one family.
func addr(id string, v6 bool) netip.Addr {
	ns, name, _ := strings.Cut(id, "/")
	nsN := map[string]int{"x": 1, "y": 2, "z": 3}[ns]
	podN := int(name[0]-'a') + 1
	if nsN == 0 || podN < 1 || podN > 3 {
		panic("no planned address for " + id)
	}
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", nsN, podN))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", nsN, podN))
}

// standardNamespaces are x, y and z, each labelled ns=<name>.
func standardNamespaces() []*corev1.Namespace {
	return []*corev1.Namespace{objects.Namespace("x", "ns", "x"), objects.Namespace("y", "ns", "y"), objects.Namespace("z", "ns", "z")}
}

// standardPods are the nine pods of the plan, labelled pod=<name>, dual-stack, running.
func standardPods() []*corev1.Pod {
	var pods []*corev1.Pod
	for _, ns := range []string{"x", "y", "z"} {
		for _, name := range []string{"a", "b", "c"} {
			pods = append(pods, makePod(ns+"/"+name))
		}
	}
	return pods
}

// makePod returns the pod of the plan: running, dual-stack with the planned addresses, on its
// planned node, labelled pod=<name>, with one container "main" and no ports; opts change it.
func makePod(id string, opts ...objects.PodOption) *corev1.Pod {
	_, name, _ := strings.Cut(id, "/")
	node := remoteNode
	if id == "x/a" || id == "x/b" || id == "y/a" {
		node = localNode
	}
	plan := []objects.PodOption{
		objects.Labels("pod", name),
		objects.OnNode(node),
		objects.Container("main"),
		objects.Phase(corev1.PodRunning),
		objects.IPs(addr(id, false).String(), addr(id, true).String()),
	}
	return objects.Pod(id, append(plan, opts...)...)
}
