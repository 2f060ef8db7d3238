package compact

import (
	"unique"

	"k8s.io/apimachinery/pkg/labels"
)

type label struct{ key, value unique.Handle[string] }

// Labels is a pod's label set sorted by key. *Labels is a labels.Labels, so selectors match it
// directly (a pointer, unlike a slice, goes into the interface without an allocation).
type Labels []label

var _ labels.Labels = (*Labels)(nil)

func (l *Labels) Lookup(key string) (string, bool) {
	for _, kv := range *l {
		if kv.key.Value() == key {
			return kv.value.Value(), true
		}
	}
	return "", false
}

func (l *Labels) Has(key string) bool {
	_, ok := l.Lookup(key)
	return ok
}

func (l *Labels) Get(key string) string {
	v, _ := l.Lookup(key)
	return v
}

// Map returns a copy of the labels as a map; nil when there are none.
func (l Labels) Map() map[string]string {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]string, len(l))
	for _, kv := range l {
		m[kv.key.Value()] = kv.value.Value()
	}
	return m
}
