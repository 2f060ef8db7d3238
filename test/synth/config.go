package synth

import "fmt"

// Config sizes a synthetic cluster. Zero values of the optional fields take the defaults noted
// on each field; Generate panics on a Config that cannot be met, since it is test tooling and a
// wrong size is a bug in the caller.
type Config struct {
	// Seed selects the cluster; the same Config always gives the same objects.
	Seed uint64
	// Pods is the total number of pods in the cluster, on all nodes and in every phase.
	Pods int
	// Namespaces is the number of namespaces, system ones included. Default: Pods/50, at least 1.
	Namespaces int
	// Nodes is the number of nodes, the local one included. Default: Pods/110 rounded up, and at
	// least 2 when pods are left over for other nodes.
	Nodes int
	// Policies is the exact number of NetworkPolicies. Zero means none.
	Policies int
	// LocalNode names the node under test. Default: "node-local".
	LocalNode string
	// LocalPods is the exact number of pods scheduled on LocalNode, whatever their phase or
	// networking. Default: 110 (the kubelet's default max-pods), or Pods if that is fewer.
	LocalPods int
	// LocalNamespaces is roughly how many namespaces the local pods are drawn from: the local
	// pods are picked at random among the pods of this many randomly chosen namespaces (more
	// when those hold too few pods). Default: LocalPods/5 rounded up, at most Namespaces.
	LocalNamespaces int
}

// DefaultLocalNode is the local node's name when Config.LocalNode is empty.
const DefaultLocalNode = "node-local"

// withDefaults fills in the optional fields and checks that the sizes fit together.
func (c Config) withDefaults() Config {
	if c.Pods < 0 || c.Namespaces < 0 || c.Nodes < 0 || c.Policies < 0 || c.LocalPods < 0 || c.LocalNamespaces < 0 {
		panic(fmt.Sprintf("synth: negative size in %+v", c))
	}
	if c.Namespaces == 0 {
		c.Namespaces = max(1, c.Pods/50)
	}
	if c.LocalNode == "" {
		c.LocalNode = DefaultLocalNode
	}
	if c.LocalPods == 0 {
		c.LocalPods = min(110, c.Pods)
	}
	if c.LocalPods > c.Pods {
		panic(fmt.Sprintf("synth: LocalPods %d exceeds Pods %d", c.LocalPods, c.Pods))
	}
	if c.Nodes == 0 {
		c.Nodes = max(1, (c.Pods+109)/110)
		if c.Pods > c.LocalPods {
			c.Nodes = max(2, c.Nodes)
		}
	}
	if c.Nodes == 1 && c.Pods > c.LocalPods {
		panic(fmt.Sprintf("synth: %d pods do not fit on the local node alone (LocalPods %d, Nodes 1)", c.Pods, c.LocalPods))
	}
	if c.LocalNamespaces == 0 {
		c.LocalNamespaces = (c.LocalPods + 4) / 5
	}
	c.LocalNamespaces = max(1, min(c.LocalNamespaces, c.Namespaces))
	return c
}

// Sized is the cluster that a benchmark size stands for, shared by every benchmark so their
// figures describe the same clusters: seed 1, 50 pods per namespace, 110 pods per node (the
// kubelet default), 110 of them on the local node.
func Sized(pods, policies int) Config {
	return Config{
		Seed:       1,
		Pods:       pods,
		Namespaces: max(1, pods/50),
		Nodes:      (pods + 109) / 110,
		Policies:   policies,
		LocalPods:  min(110, pods),
	}
}
