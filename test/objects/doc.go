// Package objects builds the Kubernetes objects tests feed to the agent: Pods, Namespaces and
// NetworkPolicies, with functional options in the style of the kube-network-policies tests.
//
//	objects.Namespace("x", "ns", "x")
//	objects.Pod("x/a", objects.Labels("pod", "a"), objects.OnNode("n1"), objects.Phase(corev1.PodRunning),
//		objects.IPs("10.0.0.1", "fd00::1"), objects.NamedPort("http", corev1.ProtocolTCP, 80))
//	objects.Policy("x/allow-b", objects.Selecting("pod", "a"), objects.Types(networkingv1.PolicyTypeIngress),
//		objects.Ingress(objects.From(objects.PodsLabelled("pod", "b")), objects.Ports(objects.Port(corev1.ProtocolTCP, 80))))
//
// Nothing is defaulted: a Pod starts with only its namespace and name, a Namespace with only its
// name and labels, a Policy as the API would store a minimal manifest (podSelector {}, no
// policyTypes, no rules). Options only add what the call site names, so each test package keeps
// its address plan and its default labels, phase and node in a thin wrapper of its own.
//
// Label lists are key, value pairs; an odd list panics. The package imports only Kubernetes API
// packages, so any test of the module may use it.
package objects
