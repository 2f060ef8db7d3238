package compact

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A Pod stands in for the *corev1.Pod in the agent's cache: the metadata getters answer from what
// it keeps, and every setter is a no-op, because a cached object is never modified. The
// manager's client is told not to read Pods from the cache (see the controller's CacheOptions and
// ClientOptions), so nothing expects a *corev1.Pod from it.
var _ client.Object = (*Pod)(nil)

// GetObjectKind implements runtime.Object: a cached pod carries no type metadata.
func (p *Pod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. A Pod is immutable, so a copy may share its slices.
func (p *Pod) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

func (p *Pod) GetNamespace() string                          { return p.Namespace() }
func (p *Pod) GetName() string                               { return p.Name() }
func (p *Pod) GetResourceVersion() string                    { return p.nameVersion[p.nameLen:] }
func (p *Pod) GetLabels() map[string]string                  { return p.LabelSet().Map() }
func (p *Pod) GetGenerateName() string                       { return "" }
func (p *Pod) GetUID() types.UID                             { return "" }
func (p *Pod) GetGeneration() int64                          { return 0 }
func (p *Pod) GetSelfLink() string                           { return "" }
func (p *Pod) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (p *Pod) GetDeletionTimestamp() *metav1.Time            { return nil }
func (p *Pod) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (p *Pod) GetAnnotations() map[string]string             { return nil }
func (p *Pod) GetFinalizers() []string                       { return nil }
func (p *Pod) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (p *Pod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

func (p *Pod) SetNamespace(string)                          {}
func (p *Pod) SetName(string)                               {}
func (p *Pod) SetGenerateName(string)                       {}
func (p *Pod) SetUID(types.UID)                             {}
func (p *Pod) SetResourceVersion(string)                    {}
func (p *Pod) SetGeneration(int64)                          {}
func (p *Pod) SetSelfLink(string)                           {}
func (p *Pod) SetCreationTimestamp(metav1.Time)             {}
func (p *Pod) SetDeletionTimestamp(*metav1.Time)            {}
func (p *Pod) SetDeletionGracePeriodSeconds(*int64)         {}
func (p *Pod) SetLabels(map[string]string)                  {}
func (p *Pod) SetAnnotations(map[string]string)             {}
func (p *Pod) SetFinalizers([]string)                       {}
func (p *Pod) SetOwnerReferences([]metav1.OwnerReference)   {}
func (p *Pod) SetManagedFields([]metav1.ManagedFieldsEntry) {}
