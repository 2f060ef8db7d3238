package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flock-net/flock-netpol/internal/translate"
)

// CachedPod is what the agent's cache holds for a Pod: the translator's compact translate.Pod
// and the resourceVersion, instead of a *corev1.Pod. A Pod struct alone is 1,240 bytes, more
// than the whole budget of 1 KiB per cluster pod; a CachedPod with its strings, labels,
// addresses and ports is a few hundred bytes (docs/performance.md has the measured figure).
//
// It is a client.Object so that the informer can key, index and deliver it like the object it
// replaces: the metadata getters answer from what it keeps, and every setter is a no-op,
// because a cached object is never modified. The manager's client is told not to read Pods from
// the cache (see CacheOptions and ClientOptions), so nothing expects a *corev1.Pod from it.
type CachedPod struct {
	translate.Pod
	resourceVersion string
}

var _ client.Object = (*CachedPod)(nil)

// NewCachedPod returns the cached form of p.
func NewCachedPod(p *corev1.Pod) *CachedPod {
	return &CachedPod{Pod: *translate.NewPod(p), resourceVersion: p.ResourceVersion}
}

// GetObjectKind implements runtime.Object: a cached pod carries no type metadata.
func (p *CachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. A CachedPod is immutable, so a copy may share its
// slices.
func (p *CachedPod) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

func (p *CachedPod) GetNamespace() string                          { return p.Namespace() }
func (p *CachedPod) GetName() string                               { return p.Name() }
func (p *CachedPod) GetResourceVersion() string                    { return p.resourceVersion }
func (p *CachedPod) GetLabels() map[string]string                  { return p.Labels() }
func (p *CachedPod) GetGenerateName() string                       { return "" }
func (p *CachedPod) GetUID() types.UID                             { return "" }
func (p *CachedPod) GetGeneration() int64                          { return 0 }
func (p *CachedPod) GetSelfLink() string                           { return "" }
func (p *CachedPod) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (p *CachedPod) GetDeletionTimestamp() *metav1.Time            { return nil }
func (p *CachedPod) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (p *CachedPod) GetAnnotations() map[string]string             { return nil }
func (p *CachedPod) GetFinalizers() []string                       { return nil }
func (p *CachedPod) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (p *CachedPod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

func (p *CachedPod) SetNamespace(string)                          {}
func (p *CachedPod) SetName(string)                               {}
func (p *CachedPod) SetGenerateName(string)                       {}
func (p *CachedPod) SetUID(types.UID)                             {}
func (p *CachedPod) SetResourceVersion(string)                    {}
func (p *CachedPod) SetGeneration(int64)                          {}
func (p *CachedPod) SetSelfLink(string)                           {}
func (p *CachedPod) SetCreationTimestamp(metav1.Time)             {}
func (p *CachedPod) SetDeletionTimestamp(*metav1.Time)            {}
func (p *CachedPod) SetDeletionGracePeriodSeconds(*int64)         {}
func (p *CachedPod) SetLabels(map[string]string)                  {}
func (p *CachedPod) SetAnnotations(map[string]string)             {}
func (p *CachedPod) SetFinalizers([]string)                       {}
func (p *CachedPod) SetOwnerReferences([]metav1.OwnerReference)   {}
func (p *CachedPod) SetManagedFields([]metav1.ManagedFieldsEntry) {}
