package objects

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace is the Namespace name with the labels kv (nothing else: the API server's
// kubernetes.io/metadata.name label is added only when kv names it).
func Namespace(name string, kv ...string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: LabelMap(kv...)}}
}
