package objects

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodOption changes a Pod under construction.
type PodOption func(*corev1.Pod)

// Pod is the Pod "namespace/name" with opts applied in order. Without options it has nothing but
// its namespace and name: no labels, node, containers, phase or addresses.
func Pod(id string, opts ...PodOption) *corev1.Pod {
	ns, name := split(id)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// split cuts an object id "namespace/name".
func split(id string) (ns, name string) {
	ns, name, ok := strings.Cut(id, "/")
	if !ok {
		panic("objects: id must be namespace/name: " + id)
	}
	return ns, name
}

// Labels replaces the pod's labels.
func Labels(kv ...string) PodOption {
	return func(p *corev1.Pod) { p.Labels = LabelMap(kv...) }
}

// OnNode sets spec.nodeName.
func OnNode(node string) PodOption { return func(p *corev1.Pod) { p.Spec.NodeName = node } }

// Phase sets status.phase.
func Phase(phase corev1.PodPhase) PodOption { return func(p *corev1.Pod) { p.Status.Phase = phase } }

// HostNetwork sets spec.hostNetwork.
func HostNetwork() PodOption { return func(p *corev1.Pod) { p.Spec.HostNetwork = true } }

// IPs replaces status.podIPs; IPs() leaves the pod without any. status.podIP is left alone (see
// PodIP).
func IPs(ips ...string) PodOption {
	return func(p *corev1.Pod) {
		p.Status.PodIPs = nil
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

// PodIP sets the single-address field status.podIP.
func PodIP(ip string) PodOption { return func(p *corev1.Pod) { p.Status.PodIP = ip } }

// ContainerPort is a named container port; an empty proto leaves the protocol out.
func ContainerPort(name string, proto corev1.Protocol, number int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: number}
}

// Container appends a container with the given ports (no image).
func Container(name string, ports ...corev1.ContainerPort) PodOption {
	return Containers(corev1.Container{Name: name, Ports: slices.Clone(ports)})
}

// Containers appends the given containers as they are.
func Containers(cs ...corev1.Container) PodOption {
	return func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, cs...) }
}

// NamedPort appends a named port to the pod's first container, adding a container "main" first
// when the pod has none. An empty proto leaves the protocol out.
func NamedPort(name string, proto corev1.Protocol, number int32) PodOption {
	return func(p *corev1.Pod) {
		if len(p.Spec.Containers) == 0 {
			p.Spec.Containers = []corev1.Container{{Name: "main"}}
		}
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, ContainerPort(name, proto, number))
	}
}

// InitContainer appends an init container (one that runs to completion before the others) with
// the given ports.
func InitContainer(name string, ports ...corev1.ContainerPort) PodOption {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Ports: slices.Clone(ports)})
	}
}

// Sidecar appends a sidecar: an init container with restartPolicy Always, which keeps running
// beside the others, with the given ports.
func Sidecar(name string, ports ...corev1.ContainerPort) PodOption {
	return func(p *corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, RestartPolicy: &always, Ports: slices.Clone(ports)})
	}
}
