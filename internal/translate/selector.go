package translate

import (
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// asSelector is metav1.LabelSelectorAsSelector with a deterministic error. That function tests
// matchLabels in map order and returns the first error, so a selector with two bad matchLabels
// entries was reported with either message, and the problems changed from one recompute to the
// next (the agent logs problems when they change). On error the matchLabels entries are tested
// again in key order, and the first bad one is reported.
func asSelector(ps *metav1.LabelSelector) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(ps)
	if err == nil || len(ps.MatchLabels) < 2 {
		return sel, err
	}
	for _, k := range slices.Sorted(maps.Keys(ps.MatchLabels)) {
		if _, kerr := labels.NewRequirement(k, selection.Equals, []string{ps.MatchLabels[k]}); kerr != nil {
			return nil, kerr
		}
	}
	return nil, err // the matchLabels are fine: the error is an expression's, in list order
}
