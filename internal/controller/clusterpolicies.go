package controller

import (
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// ClusterNetworkPolicyCRD is the name of the CustomResourceDefinition that serves
// ClusterNetworkPolicy (policy.networking.k8s.io), for messages and documentation.
const ClusterNetworkPolicyCRD = "clusternetworkpolicies." + v1alpha2.GroupName

// clusterNetworkPolicyKind is the kind the agent reads, in the one version it reads it as.
var clusterNetworkPolicyKind = schema.GroupVersionKind{Group: v1alpha2.GroupName, Version: v1alpha2.GroupVersion.Version, Kind: "ClusterNetworkPolicy"}

// ClusterPoliciesInstalled reports whether the API server serves ClusterNetworkPolicy in the
// version the agent reads (v1alpha2), as the mapper finds it in the server's discovery. A
// ClusterNetworkPolicy CRD that is absent, not yet established, or without v1alpha2 means false;
// so does a cluster with only the older AdminNetworkPolicy kinds of the same group. Any other
// failure (the API server unreachable, discovery refused) is an error: the agent cannot tell, and
// guessing either way would enforce the wrong thing.
//
// The agent asks once, at startup (see cli.NewAgent): what it caches and watches is fixed when
// its manager is built, so a CRD installed later takes effect when the agent restarts.
func ClusterPoliciesInstalled(mapper apimeta.RESTMapper) (bool, error) {
	gvk := clusterNetworkPolicyKind
	_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	switch {
	case err == nil:
		return true, nil
	case apimeta.IsNoMatchError(err):
		return false, nil
	}
	return false, fmt.Errorf("looking up ClusterNetworkPolicy (%s) in the API server's discovery: %w", gvk.GroupVersion(), err)
}
