// Package synth generates synthetic but realistic Kubernetes clusters (namespaces, pods and
// NetworkPolicies) for benchmarks and scale tests of the translate → render pipeline.
//
// Generation is deterministic: the same Config always yields deeply equal objects, and so
// byte-identical scripts downstream. Randomness comes only from math/rand/v2 PCG generators
// seeded from Config.Seed, and no output is built by ranging over a map. Each phase (namespaces
// and apps, pods, placement, policies) draws from its own stream, so changing one knob that only
// a later phase reads (say, Policies) leaves the earlier objects untouched and benchmark runs of
// different policy counts compare the same pods.
//
// # Shape of a generated cluster
//
// The first namespaces are the system ones every real cluster has and that policies point at:
// kube-system (CoreDNS, with UDP and TCP "dns" ports), monitoring (Prometheus) and ingress-nginx
// (the ingress controller). The rest are team namespaces named <team>-<env>, labelled team, env
// and kubernetes.io/metadata.name. Namespace sizes vary by up to ±75% around the mean, and each
// namespace holds a few apps (Deployments, in effect) of 4 to 36 replicas. Pods carry app, tier,
// version and pod-template-hash labels and named container ports that depend on the tier: http
// 8080 and metrics 9090 on most, grpc on a port number that varies between apps, postgres,
// mysql or redis on data tiers; some apps run a restartable (sidecar) init container with its
// own named port.
//
// Pod lifecycle and networking follow what the translator has to cope with:
//   - about 3% of apps are hostNetwork agents, whose pods report their node's address;
//   - about 3% of pods are finished (Succeeded, or Failed as evicted). They keep an address, as
//     the API shows it, but never one that a live pod holds;
//   - about a quarter of pods are dual-stack. Every node owns a pod CIDR carved from 10.0.0.0/8
//     (at least a /24) and a /64 from fd00::/8, and addresses are handed out per node, so no two
//     pods ever share one;
//   - the local node (Config.LocalNode) gets exactly Config.LocalPods pods, drawn from a handful
//     of namespaces; all other pods are spread evenly over the remaining nodes.
//
// Policies are placed in namespaces uniformly at random and take one of a dozen and a half
// shapes seen in real clusters: default-deny (ingress, or both directions), allow from the same
// tier, from namespaces by label, from pod+namespace selectors (Prometheus scraping named
// "metrics" ports), ipBlocks with excepts (10.0.0.0/8 minus a /16, 0.0.0.0/0 minus the cloud
// metadata address and private ranges), numeric ports, port ranges (endPort), named ports,
// egress to CoreDNS, egress to CIDRs, matchExpressions (In, NotIn, Exists, DoesNotExist) and an
// allow-all rule. Every generated value is valid, so translating a cluster reports no problems.
package synth
