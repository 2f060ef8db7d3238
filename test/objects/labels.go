package objects

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// LabelMap is a label map from key, value pairs; no pairs give nil.
func LabelMap(kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("objects: odd label list")
	}
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Selector is a matchLabels selector from key, value pairs; Selector() is `{}` (everything).
func Selector(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: LabelMap(kv...)}
}

// Expression is a selector with one matchExpressions requirement.
func Expression(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}
