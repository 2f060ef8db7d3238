//go:build linux

package cluster

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// networkPolicyAPICRD is the ClusterNetworkPolicy CRD of the network-policy-api module this
// module requires, experimental channel: a superset of the standard one, with the fields the
// experimental conformance scenarios use (nodes and domainNames peers, destinationNamedPort).
// envtest installs it before anything starts (Options.ClusterNetworkPolicies).
func networkPolicyAPICRD() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		return "", fmt.Errorf("locating the sigs.k8s.io/network-policy-api module for its CRD: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "experimental",
		"policy.networking.k8s.io_clusternetworkpolicies.yaml"), nil
}
