package translate

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// The annotations the agent reads. Every other annotation is dropped when objects are cached.
const (
	// AnnotationPrefix starts every annotation of the agent's; the cache keeps only these.
	AnnotationPrefix = "flock-netpol.io/"
	// ModeAnnotation on a NetworkPolicy is "enforce" (the default) or "audit": an audit policy
	// isolates nothing; its rules count, and log when drop logs are on, what they would allow
	// and drop (see ruleset.Policy.Audit).
	ModeAnnotation = AnnotationPrefix + "mode"
	// DropLogAnnotation on a Namespace, "true", turns on drop logs for its pods (see
	// ruleset.Target.LogDrops); "false" or absence leaves them to the agent's flag.
	DropLogAnnotation = AnnotationPrefix + "drop-log"
)

// Values of ModeAnnotation.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// auditMode reads a policy's mode. An unknown value is reported and the policy enforced: a typo
// must not turn a policy that should isolate into one that only reports.
func (t *translator) auditMode(obj string, np *networkingv1.NetworkPolicy) bool {
	v, ok := np.Annotations[ModeAnnotation]
	switch v = strings.TrimSpace(v); {
	case !ok || v == ModeEnforce:
		return false
	case v == ModeAudit:
		return true
	}
	t.report(obj, "unknown %s %q (want %q or %q), enforcing the policy", ModeAnnotation, v, ModeEnforce, ModeAudit)
	return false
}

// dropLogs reads a namespace's drop-log annotation; anything but "true" leaves drop logs off.
func dropLogs(ns *corev1.Namespace) bool {
	return strings.TrimSpace(ns.Annotations[DropLogAnnotation]) == "true"
}
