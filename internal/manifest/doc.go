// Package manifest loads Kubernetes manifests for the offline `flock-netpol render` command, which
// translates the Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies found in
// files into a node's rule set without talking to a cluster.
//
// # Inputs
//
// Load takes a list of paths, each one of:
//
//   - a file, read whatever its name ends with (the operator named it explicitly);
//   - a directory: the regular files directly in it (not recursively) whose names end in ".yaml",
//     ".yml" or ".json" (case-sensitively), in name order, the same set `kubectl apply -f DIR`
//     reads without -R. Symbolic links are followed (a broken one is an error); subdirectories are
//     ignored. A directory with no such file is an error, since it is most likely the wrong one;
//   - "-": the standard input, passed to Load as a reader. It can be named only once.
//
// # Format
//
// A source holds YAML or JSON. YAML may hold several documents separated by "---" lines (a comment
// may follow the "---"; any other text after it is an error, as with kubectl). A JSON source, or a
// YAML document written as JSON, may hold a stream of concatenated objects, each one a document. A
// document with nothing but blanks and comments, or only null, is skipped silently, as is an empty
// file.
//
// Documents are numbered from 1 in the order they appear in their source, counting empty ones
// between separators too, so the count matches the "---" lines; blank and comment lines before the
// first "---" are not a document. Every error and warning names the source, the document number
// and the line its content starts on, and for a list item its index, e.g.
// "pods.yaml (document 2, line 14, items[3])". Line numbers inside YAML syntax errors count from
// the start of the file too.
//
// Every document must carry apiVersion and kind, except the items of a typed list (PodList,
// NamespaceList, NodeList, NetworkPolicyList, ClusterNetworkPolicyList) that carry neither, as in the raw API output
// (`kubectl get --raw /api/v1/pods`): they take the list's element kind and apiVersion.
//
// # Kinds
//
// Load keeps:
//
//   - v1 Namespace
//   - v1 Pod
//   - v1 Node
//   - networking.k8s.io/v1 NetworkPolicy
//   - policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy
//
// and expands, recursively, v1 List, v1 NamespaceList, v1 PodList, v1 NodeList,
// networking.k8s.io/v1 NetworkPolicyList and policy.networking.k8s.io/v1alpha2
// ClusterNetworkPolicyList (so the output of `kubectl get -o yaml|json` loads as is). Any other
// kind is skipped with one warning line; so is one of these kinds under another apiVersion (for
// example extensions/v1beta1 NetworkPolicy, or a ClusterNetworkPolicy of another version), with a
// warning naming the apiVersion read.
//
// # Decoding
//
// YAML is converted to JSON (YAML 1.1 rules, as kubectl does) and decoded into the typed objects
// of k8s.io/api with the API server's rules: field names are case-sensitive and unknown fields are
// ignored, so a dump from a newer cluster still loads. A value of the wrong type (a list where a
// port is expected, a number as a label value) is an error naming the field. Beware that YAML 1.1
// reads unquoted yes/no/on/off/y/n as booleans: `name: no` is an error, with a hint to quote it.
//
// A NetworkPolicy or ClusterNetworkPolicy field its schema does not have (a misspelling, which
// can widen a policy) is warned about, once per field; other kinds are not checked.
//
// The objects are returned as written, with two exceptions: a Pod or NetworkPolicy without
// metadata.namespace is put in "default", as kubectl does when no namespace is given, and the
// items of a typed list that lacked apiVersion and kind get them set. Nothing else is defaulted
// (the translator applies NetworkPolicy defaulting itself). Objects are returned in input order.
//
// # Errors
//
// An object of a kind Load keeps without metadata.name is an error. Two objects of the same
// kind with the same namespace and name are an error naming both places, rather than the last one
// silently winning: such a duplicate is usually two versions of one object concatenated by mistake,
// and rendering either one could show rules that are not what the operator meant to check.
//
// Load does not stop at the first bad document: it reports every problem it finds (up to a limit),
// one per line, and returns no objects if there was any. Warnings are sent as documents are read,
// so some may come before such an error.
package manifest
