//go:build linux

package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flock-net/flock-netpol/test/netns"
)

// AddPod creates a network-namespace pod on node with the given addresses and starts TCP and UDP
// servers on serve (see netns.Endpoint.Serve). It makes no API object: see CreatePod.
func (c *Cluster) AddPod(node, name string, addrs []netip.Addr, serve ...uint16) *netns.Pod {
	c.tb.Helper()
	n := c.Node(node)
	if n == nil {
		c.tb.Fatalf("cluster: AddPod(%q): no node %q", name, node)
	}
	p := c.Bed.AddPod(n.NS, name, addrs...)
	if len(serve) > 0 {
		p.Serve(serve...)
	}
	return p
}

// AddExternal creates an external host (outside every node) with the given addresses and servers.
func (c *Cluster) AddExternal(name string, addrs []netip.Addr, serve ...uint16) *netns.Host {
	c.tb.Helper()
	h := c.Bed.AddExternal(name, addrs...)
	if len(serve) > 0 {
		h.Serve(serve...)
	}
	return h
}

// CreateNamespace creates a Namespace with labels (the API server adds
// kubernetes.io/metadata.name).
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: maps.Clone(labels)}}
	if err := c.Client.Create(ctx, ns); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// SetNamespaceLabels replaces a Namespace's labels (kubernetes.io/metadata.name is kept by the
// API server).
func (c *Cluster) SetNamespaceLabels(ctx context.Context, name string, labels map[string]string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ns corev1.Namespace
		if err := c.Client.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
			return err
		}
		ns.Labels = maps.Clone(labels)
		return c.Client.Update(ctx, &ns)
	})
}

// PodObject is a Pod as the API server should hold it. The node and addresses come from
// Endpoint when set (a pod of the bed), else from Node and IPs.
type PodObject struct {
	Namespace, Name string
	Labels          map[string]string
	// Containers of the pod; their named ports are what named-port rules resolve. Empty: one
	// container "app" without ports. Images are placeholders: nothing runs them.
	Containers []corev1.Container
	Endpoint   *netns.Pod
	Node       string
	IPs        []netip.Addr
	// Phase defaults to Running.
	Phase corev1.PodPhase
}

// placeholderImage is the image of every container: envtest has no kubelet to pull it.
const placeholderImage = "registry.invalid/flock-e2e:1"

// CreatePod creates the Pod bound to its node and then writes its status as a kubelet would:
// phase and status.podIPs (the endpoint's addresses, one per family).
func (c *Cluster) CreatePod(ctx context.Context, p PodObject) (*corev1.Pod, error) {
	node, ips := p.Node, p.IPs
	if p.Endpoint != nil {
		node, ips = p.Endpoint.Node().Name(), p.Endpoint.Addrs()
	}
	containers := p.Containers
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "app"}}
	}
	containers = append([]corev1.Container(nil), containers...)
	for i := range containers {
		if containers[i].Image == "" {
			containers[i].Image = placeholderImage
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: maps.Clone(p.Labels)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: containers},
	}
	if err := c.Client.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	pod.Status.Phase = p.Phase
	if pod.Status.Phase == "" {
		pod.Status.Phase = corev1.PodRunning
	}
	for _, a := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0].String()
	}
	if err := c.Client.Status().Update(ctx, pod); err != nil {
		return nil, fmt.Errorf("writing the status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return pod, nil
}

// SetPodIPs writes a Pod's status as a kubelet does once the pod's sandbox has its addresses:
// phase Running and status.podIPs (status.podIP the first of them).
func (c *Cluster) SetPodIPs(ctx context.Context, namespace, name string, ips []netip.Addr) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pod corev1.Pod
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &pod); err != nil {
			return err
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP, pod.Status.PodIPs = "", nil
		for _, a := range ips {
			pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: a.String()})
		}
		if len(ips) > 0 {
			pod.Status.PodIP = ips[0].String()
		}
		return c.Client.Status().Update(ctx, &pod)
	})
}

// SetPodLabels replaces a Pod's labels.
func (c *Cluster) SetPodLabels(ctx context.Context, namespace, name string, labels map[string]string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pod corev1.Pod
		if err := c.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &pod); err != nil {
			return err
		}
		pod.Labels = maps.Clone(labels)
		return c.Client.Update(ctx, &pod)
	})
}

// DeletePod deletes a Pod at once (grace period 0: there is no kubelet to confirm a graceful
// deletion, and a Pod without finalizers is then removed immediately).
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	return client.IgnoreNotFound(c.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)))
}

// Apply creates obj, or updates it (spec, labels) when it exists. obj is not modified.
func (c *Cluster) Apply(ctx context.Context, obj client.Object) error {
	obj = obj.DeepCopyObject().(client.Object)
	err := c.Client.Create(ctx, obj)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := obj.DeepCopyObject().(client.Object)
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		return c.Client.Update(ctx, obj)
	})
}

// ApplyPolicy is Apply for a NetworkPolicy.
func (c *Cluster) ApplyPolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	if err := c.Apply(ctx, np); err != nil {
		return fmt.Errorf("applying NetworkPolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
	return nil
}

// DeletePolicy deletes a NetworkPolicy (absent is fine).
func (c *Cluster) DeletePolicy(ctx context.Context, namespace, name string) error {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	return client.IgnoreNotFound(c.Client.Delete(ctx, np))
}

// ClearNamespace deletes every Pod (at once) and NetworkPolicy of a namespace, then the namespace
// itself. envtest has no namespace controller, so the Namespace stays Terminating for good; that
// is harmless, but its name cannot be used again.
func (c *Cluster) ClearNamespace(ctx context.Context, name string) error {
	if err := c.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(name), client.GracePeriodSeconds(0)); err != nil {
		return fmt.Errorf("deleting the pods of %s: %w", name, err)
	}
	if err := c.Client.DeleteAllOf(ctx, &networkingv1.NetworkPolicy{}, client.InNamespace(name)); err != nil {
		return fmt.Errorf("deleting the policies of %s: %w", name, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	return client.IgnoreNotFound(c.Client.Delete(ctx, ns))
}
