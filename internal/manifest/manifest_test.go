package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// Small manifests for the table. Each helper documents how many lines it writes, since several
// cases pin line numbers.

// nsYAML writes 4 lines.
func nsYAML(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

// podYAML writes 4 lines, 5 with a namespace.
func podYAML(ns, name string) string {
	s := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s
}

// policyYAML writes 4 lines, 5 with a namespace.
func policyYAML(ns, name string) string {
	s := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s
}

// cnpYAML writes 11 lines: an Admin-tier ClusterNetworkPolicy denying every pod's egress to the
// namespaces labelled team=db.
func cnpYAML(name string) string {
	return "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:\n  name: " + name + "\n" +
		"spec:\n  tier: Admin\n  priority: 10\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{namespaces: {matchLabels: {team: db}}}]\n"
}

// nodeYAML writes 4 lines.
func nodeYAML(name string) string {
	return "apiVersion: v1\nkind: Node\nmetadata:\n  name: " + name + "\n"
}

func docs(d ...string) string { return strings.Join(d, "---\n") }

// summary lists the objects as "Kind namespace/name" (or "Kind name"), by kind in the order of
// Objects' fields, each kind in output order.
func summary(o Objects) []string {
	var s []string
	for _, ns := range o.Namespaces {
		s = append(s, "Namespace "+ns.Name)
	}
	for _, p := range o.Pods {
		s = append(s, "Pod "+p.Namespace+"/"+p.Name)
	}
	for _, np := range o.Policies {
		s = append(s, "NetworkPolicy "+np.Namespace+"/"+np.Name)
	}
	for _, n := range o.Nodes {
		s = append(s, "Node "+n.Name)
	}
	for _, p := range o.ClusterPolicies {
		s = append(s, "ClusterNetworkPolicy "+p.Name)
	}
	return s
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // written under a fresh working directory; "x/" alone makes a directory
		paths []string
		stdin string
		// want is the summary of the objects; wantWarn and wantErr hold substrings: one per
		// warning, in order, and any number the error must contain (no error if empty).
		want     []string
		wantWarn []string
		wantErr  []string
	}{
		{
			name:  "multi-document YAML yields every object in read order",
			files: map[string]string{"all.yaml": docs(nsYAML("prod"), podYAML("prod", "b"), policyYAML("prod", "deny"), podYAML("prod", "a"))},
			paths: []string{"all.yaml"},
			want:  []string{"Namespace prod", "Pod prod/b", "Pod prod/a", "NetworkPolicy prod/deny"},
		},
		{
			name:     "a misspelt NetworkPolicy field is warned about, since it can widen the policy",
			files:    map[string]string{"np.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - frm: [{podSelector: {}}]\n"},
			paths:    []string{"np.yaml"},
			want:     []string{"NetworkPolicy x/p"},
			wantWarn: []string{`NetworkPolicy x/p in np.yaml (document 1, line 1): unknown field "spec.ingress[0].frm"`},
		},
		{
			name:  "ClusterNetworkPolicies and Nodes are kept, cluster-scoped, in read order",
			files: map[string]string{"cluster.yaml": docs(cnpYAML("b"), nodeYAML("n1"), policyYAML("x", "np"), cnpYAML("a"))},
			paths: []string{"cluster.yaml"},
			want:  []string{"NetworkPolicy x/np", "Node n1", "ClusterNetworkPolicy b", "ClusterNetworkPolicy a"},
		},
		{
			name: "a misspelt ClusterNetworkPolicy field is warned about, since it can widen the policy",
			files: map[string]string{"cnp.yaml": "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\n" +
				"spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Accept\n    form: [{namespaces: {}}]\n"},
			paths:    []string{"cnp.yaml"},
			want:     []string{"ClusterNetworkPolicy p"},
			wantWarn: []string{`ClusterNetworkPolicy p in cnp.yaml (document 1, line 1): unknown field "spec.ingress[0].form"`},
		},
		{
			name: "a ClusterNetworkPolicyList is expanded; its items without apiVersion and kind take its type",
			files: map[string]string{"cnps.json": `{"kind": "ClusterNetworkPolicyList", "apiVersion": "policy.networking.k8s.io/v1alpha2",
  "items": [{"metadata": {"name": "a"}, "spec": {"tier": "Baseline", "priority": 5, "subject": {"namespaces": {}}}},
            {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy", "metadata": {"name": "b"}}]}`},
			paths: []string{"cnps.json"},
			want:  []string{"ClusterNetworkPolicy a", "ClusterNetworkPolicy b"},
		},
		{
			name: "a ClusterNetworkPolicy in a v1 List is kept",
			files: map[string]string{"list.yaml": `apiVersion: v1
kind: List
items:
- ` + indent(cnpYAML("in-list")) + `
- ` + indent(nsYAML("x"))},
			paths: []string{"list.yaml"},
			want:  []string{"Namespace x", "ClusterNetworkPolicy in-list"},
		},
		{
			name: "a ClusterNetworkPolicy of another version, or the older AdminNetworkPolicy, is skipped with a warning",
			files: map[string]string{"old.yaml": docs(
				strings.Replace(cnpYAML("beta"), "v1alpha2", "v1beta1", 1),
				"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata:\n  name: anp\n")},
			paths: []string{"old.yaml"},
			wantWarn: []string{
				`skipping policy.networking.k8s.io/v1beta1 ClusterNetworkPolicy "beta" in old.yaml (document 1, line 1): flock-netpol reads ClusterNetworkPolicy only as policy.networking.k8s.io/v1alpha2`,
				`skipping policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy "anp" in old.yaml (document 2, line 13): flock-netpol reads only`,
			},
		},
		{
			name:    "a duplicate ClusterNetworkPolicy is an error naming both places",
			files:   map[string]string{"dup.yaml": docs(cnpYAML("p"), nsYAML("x"), cnpYAML("p"))},
			paths:   []string{"dup.yaml"},
			wantErr: []string{`dup.yaml (document 3, line 18): duplicate ClusterNetworkPolicy "p", first read at dup.yaml (document 1, line 1)`},
		},
		{
			name:    "a ClusterNetworkPolicy without a name is an error",
			files:   map[string]string{"cnp.yaml": "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nspec: {tier: Admin}\n"},
			paths:   []string{"cnp.yaml"},
			wantErr: []string{"cnp.yaml (document 1, line 1): ClusterNetworkPolicy has no metadata.name"},
		},
		{
			name:    "a ClusterNetworkPolicy type error names the field",
			files:   map[string]string{"cnp.yaml": "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec: {priority: high}\n"},
			paths:   []string{"cnp.yaml"},
			wantErr: []string{`cnp.yaml (document 1, line 1): ClusterNetworkPolicy "p": spec.priority: got string, want int32`},
		},
		{
			name: "a JSON file is one document",
			files: map[string]string{"pod.json": `{"apiVersion": "v1", "kind": "Pod",
				"metadata": {"name": "web", "namespace": "shop"}}`},
			paths: []string{"pod.json"},
			want:  []string{"Pod shop/web"},
		},
		{
			name: "a stream of concatenated JSON objects is one document each",
			files: map[string]string{"stream.json": `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}
{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "c"}}`},
			paths:    []string{"stream.json"},
			want:     []string{"Namespace a", "Namespace b"},
			wantWarn: []string{`Deployment "c" in stream.json (document 3, line 3)`},
		},
		{
			name:  "JSON and YAML documents mix in one multi-document file",
			files: map[string]string{"mixed.yaml": docs(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}`+"\n", nsYAML("b"))},
			paths: []string{"mixed.yaml"},
			want:  []string{"Namespace a", "Namespace b"},
		},
		{
			name:  "a YAML flow mapping that starts with a brace is read as YAML",
			files: map[string]string{"flow.yaml": "{apiVersion: v1, kind: Namespace, metadata: {name: flow}}\n"},
			paths: []string{"flow.yaml"},
			want:  []string{"Namespace flow"},
		},
		{
			name: "v1 List items are expanded in order",
			files: map[string]string{"list.yaml": `apiVersion: v1
kind: List
items:
- ` + indent(podYAML("x", "p1")) + `
- ` + indent(nsYAML("x")) + `
- ` + indent(policyYAML("x", "np")) + `
- ` + indent(podYAML("x", "p2"))},
			paths: []string{"list.yaml"},
			want:  []string{"Namespace x", "Pod x/p1", "Pod x/p2", "NetworkPolicy x/np"},
		},
		{
			name: "nested Lists are expanded recursively and item paths name the nesting",
			files: map[string]string{"nested.json": `{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "outer"}},
  {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "v1", "kind": "PodList", "items": [
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deep", "namespace": "outer"}}]},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}]}]}`},
			paths:    []string{"nested.json"},
			want:     []string{"Namespace outer", "Pod outer/deep"},
			wantWarn: []string{`skipping v1 Service "svc" in nested.json (document 1, line 1, items[1].items[1])`},
		},
		{
			name: "typed lists are expanded",
			files: map[string]string{"typed.yaml": docs(
				"apiVersion: v1\nkind: NamespaceList\nitems:\n- "+indent(nsYAML("shop")),
				"apiVersion: v1\nkind: PodList\nitems:\n- "+indent(podYAML("shop", "p")),
				"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nitems:\n- "+indent(policyYAML("shop", "np")))},
			paths: []string{"typed.yaml"},
			want:  []string{"Namespace shop", "Pod shop/p", "NetworkPolicy shop/np"},
		},
		{
			name: "typed list items without apiVersion and kind take the list's element type",
			files: map[string]string{"raw.json": `{"kind": "NetworkPolicyList", "apiVersion": "networking.k8s.io/v1",
  "items": [{"metadata": {"name": "a", "namespace": "x"}}, {"metadata": {"name": "b", "namespace": "x"}}]}`},
			paths: []string{"raw.json"},
			want:  []string{"NetworkPolicy x/a", "NetworkPolicy x/b"},
		},
		{
			name: "generic List items must carry apiVersion and kind",
			files: map[string]string{"list.json": `{"kind": "List", "apiVersion": "v1",
  "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}`},
			paths:   []string{"list.json"},
			wantErr: []string{"list.json (document 1, line 1, items[1]): missing apiVersion and kind"},
		},
		{
			name: "a directory yields its .yaml, .yml and .json files in name order, not recursively",
			files: map[string]string{
				"dir/b.yaml":      nsYAML("b"),
				"dir/a.yml":       nsYAML("a"),
				"dir/c.json":      `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}}`,
				"dir/README.md":   "not a manifest",
				"dir/d.yaml.orig": "not a manifest",
				"dir/sub/e.yaml":  nsYAML("e"),
				"dir/f.yaml/":     "", // a directory named like a manifest is not one
			},
			paths: []string{"dir"},
			want:  []string{"Namespace a", "Namespace b", "Namespace c"},
		},
		{
			name:    "a directory without manifest files is an error naming it",
			files:   map[string]string{"empty/notes.txt": "x", "empty/sub/a.yaml": nsYAML("a")},
			paths:   []string{"empty"},
			wantErr: []string{"empty: directory holds no .yaml, .yml, .json files"},
		},
		{
			name:    "a missing file is an error naming it",
			paths:   []string{"nope.yaml"},
			wantErr: []string{"nope.yaml", "no such file or directory"},
		},
		{
			name:    "an empty path is an error",
			files:   map[string]string{"ns.yaml": nsYAML("a")},
			paths:   []string{"ns.yaml", ""},
			wantErr: []string{"empty manifest path"},
		},
		{
			name:    "no path at all is an error",
			paths:   nil,
			wantErr: []string{"no manifest given"},
		},
		{
			name:  "- reads the standard input",
			paths: []string{"-"},
			stdin: docs(nsYAML("in"), podYAML("in", "p")),
			want:  []string{"Namespace in", "Pod in/p"},
		},
		{
			name:  "files and standard input are read in the order given",
			files: map[string]string{"first.yaml": podYAML("", "first"), "last.yaml": podYAML("", "last")},
			paths: []string{"first.yaml", "-", "last.yaml"},
			stdin: podYAML("", "middle"),
			want:  []string{"Pod default/first", "Pod default/middle", "Pod default/last"},
		},
		{
			name:    "standard input named twice is an error",
			paths:   []string{"-", "-"},
			stdin:   nsYAML("in"),
			wantErr: []string{"standard input can be named only once"},
		},
		{
			name:     "problems in standard input are reported against <stdin>",
			paths:    []string{"-"},
			stdin:    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
			wantWarn: []string{`skipping apps/v1 Deployment "web" in <stdin> (document 1, line 1)`},
		},
		{
			name: "other kinds are skipped with one warning each",
			files: map[string]string{"app.yaml": docs(
				"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n",
				"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
				"apiVersion: example.com/v1\nkind: Widget\nmetadata: {}\n",
				podYAML("shop", "web"))},
			paths: []string{"app.yaml"},
			want:  []string{"Pod shop/web"},
			wantWarn: []string{
				`skipping apps/v1 Deployment "shop/web" in app.yaml (document 1, line 1): flock-netpol reads only Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies`,
				`skipping v1 Service "web" in app.yaml (document 2, line 7): flock-netpol reads only Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies`,
				`skipping example.com/v1 Widget (no name) in app.yaml (document 3, line 12)`,
			},
		},
		{
			name: "a known kind under another apiVersion is skipped with a warning naming the one read",
			files: map[string]string{"old.yaml": docs(
				"apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata:\n  name: deny\n",
				"apiVersion: core/v1\nkind: Pod\nmetadata:\n  name: p\n",
				"apiVersion: v2\nkind: List\nitems: []\n")},
			paths: []string{"old.yaml"},
			wantWarn: []string{
				`skipping extensions/v1beta1 NetworkPolicy "deny" in old.yaml (document 1, line 1): flock-netpol reads NetworkPolicy only as networking.k8s.io/v1`,
				`skipping core/v1 Pod "p" in old.yaml (document 2, line 6): flock-netpol reads Pod only as v1`,
				`skipping v2 List (no name) in old.yaml (document 3, line 11): flock-netpol reads List only as v1`,
			},
		},
		{
			name:    "a document without apiVersion and kind is an error naming file and document",
			files:   map[string]string{"bare.yaml": docs(nsYAML("a"), "metadata:\n  name: b\n")},
			paths:   []string{"bare.yaml"},
			wantErr: []string{"bare.yaml (document 2, line 6): missing apiVersion and kind"},
		},
		{
			name:    "a document without kind is an error",
			files:   map[string]string{"nokind.yaml": "apiVersion: v1\nmetadata:\n  name: b\n"},
			paths:   []string{"nokind.yaml"},
			wantErr: []string{`nokind.yaml (document 1, line 1): missing kind (apiVersion is "v1")`},
		},
		{
			name:    "a document without apiVersion is an error",
			files:   map[string]string{"noversion.yaml": "kind: Pod\nmetadata:\n  name: b\n"},
			paths:   []string{"noversion.yaml"},
			wantErr: []string{`noversion.yaml (document 1, line 1): missing apiVersion (kind is "Pod")`},
		},
		{
			name:    "a kind that is not a string is an error",
			files:   map[string]string{"k.yaml": "apiVersion: v1\nkind: [Pod]\n"},
			paths:   []string{"k.yaml"},
			wantErr: []string{`k.yaml (document 1, line 1): kind must be a string, not ["Pod"]`},
		},
		{
			name:    "a document that is not a mapping is an error",
			files:   map[string]string{"scalar.yaml": docs("just text\n", "- a\n- b\n")},
			paths:   []string{"scalar.yaml"},
			wantErr: []string{"scalar.yaml (document 1, line 1): not a Kubernetes object", "got a string", "scalar.yaml (document 2, line 3)", "got a list"},
		},
		{
			name: "a type error names the file, the document, its line and the field",
			files: map[string]string{"np.yaml": docs(nsYAML("x"), `# policy for the web tier
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  ingress:
  - ports:
    - port: [1]
`)},
			paths:   []string{"np.yaml"},
			wantErr: []string{`np.yaml (document 2, line 7): NetworkPolicy "web": spec.ingress.ports.port: got array, want int32`},
		},
		{
			name:    "a type error in a list item names the item",
			files:   map[string]string{"l.yaml": "apiVersion: v1\nkind: PodList\nitems:\n- metadata:\n    name: p\n  spec:\n    hostNetwork: maybe\n"},
			paths:   []string{"l.yaml"},
			wantErr: []string{`l.yaml (document 1, line 1, items[0]): Pod "p": spec.hostNetwork: got string, want bool`},
		},
		{
			name: "an unquoted YAML 1.1 boolean or number where a string belongs is an error with a hint",
			files: map[string]string{"yes.yaml": docs("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: no\n",
				podYAML("x", "p")+"  labels:\n    version: 1.0\n")},
			paths: []string{"yes.yaml"},
			wantErr: []string{
				"yes.yaml (document 1, line 1): Namespace (no name): metadata.name: got bool, want string (YAML reads unquoted",
				`yes.yaml (document 2, line 6): Pod "x/p": metadata.labels: got number, want string (YAML reads unquoted`,
			},
		},
		{
			name:    "list items that are not a list are an error",
			files:   map[string]string{"l.yaml": "apiVersion: v1\nkind: List\nitems: 5\n"},
			paths:   []string{"l.yaml"},
			wantErr: []string{"l.yaml (document 1, line 1): List: items must be a list"},
		},
		{
			name:    "a YAML syntax error gives the line in the file, not in the document",
			files:   map[string]string{"bad.yaml": docs(nsYAML("a"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [b\n")},
			paths:   []string{"bad.yaml"},
			wantErr: []string{"bad.yaml (document 2, line 6): yaml: line 9:"},
		},
		{
			name:    "invalid JSON in the middle of a stream is reported at the value that broke",
			files:   map[string]string{"s.json": "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n\n{\"apiVersion\": \"v1\",\n \"kind\": }\n"},
			paths:   []string{"s.json"},
			wantErr: []string{"s.json (document 2, line 3): invalid JSON at line 4"},
		},
		{
			name: "comments after the last JSON value are allowed, as in YAML",
			files: map[string]string{"c.yaml": "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n# generated\n\n---\n" +
				"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n"},
			paths:    []string{"c.yaml"},
			want:     []string{"Namespace a"},
			wantWarn: []string{`Deployment "d" in c.yaml (document 2, line 5)`},
		},
		{
			name:    "content after a document separator is an error",
			files:   map[string]string{"sep.yaml": nsYAML("a") + "--- {b: 1}\n" + nsYAML("c")},
			paths:   []string{"sep.yaml"},
			wantErr: []string{`sep.yaml (document 2, line 5): unexpected "{b: 1}" after the --- document separator`},
		},
		{
			name: "a duplicate object is an error naming both places",
			files: map[string]string{
				"a.yaml": docs(nsYAML("x"), policyYAML("x", "deny")),
				"b.yaml": docs(podYAML("x", "p"), policyYAML("x", "deny")),
			},
			paths:   []string{"a.yaml", "b.yaml"},
			wantErr: []string{`b.yaml (document 2, line 7): duplicate NetworkPolicy "x/deny", first read at a.yaml (document 2, line 6)`},
		},
		{
			name:    "a duplicate is found after the namespace is defaulted",
			files:   map[string]string{"p.yaml": docs(podYAML("", "p"), podYAML("default", "p"))},
			paths:   []string{"p.yaml"},
			wantErr: []string{`p.yaml (document 2, line 6): duplicate Pod "default/p", first read at p.yaml (document 1, line 1)`},
		},
		{
			name:    "the same file named twice is a duplicate",
			files:   map[string]string{"ns.yaml": nsYAML("a")},
			paths:   []string{"ns.yaml", "ns.yaml"},
			wantErr: []string{`duplicate Namespace "a"`},
		},
		{
			name: "the same name in another namespace or of another kind is not a duplicate",
			files: map[string]string{"same.yaml": docs(
				nsYAML("web"), podYAML("a", "web"), podYAML("b", "web"), policyYAML("a", "web"))},
			paths: []string{"same.yaml"},
			want:  []string{"Namespace web", "Pod a/web", "Pod b/web", "NetworkPolicy a/web"},
		},
		{
			name: "empty and comment-only documents are skipped silently but keep their number",
			files: map[string]string{
				"gaps.yaml": "# Copyright header\n---\n\n---\n# only a comment\n---\n---\n" +
					"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n---\n",
				"empty.yaml": "",
				"blank.yaml": "\n\n# nothing\n",
			},
			paths:    []string{"gaps.yaml", "empty.yaml", "blank.yaml"},
			wantWarn: []string{`Deployment "d" in gaps.yaml (document 4, line 8)`},
		},
		{
			name:  "a document that is only null is empty",
			files: map[string]string{"null.yaml": docs("null\n", "~\n", nsYAML("a"))},
			paths: []string{"null.yaml"},
			want:  []string{"Namespace a"},
		},
		{
			name:  "a Pod or NetworkPolicy without namespace is put in default",
			files: map[string]string{"nons.yaml": docs(nsYAML("a"), podYAML("", "p"), policyYAML("", "np"), podYAML("kept", "q"))},
			paths: []string{"nons.yaml"},
			want:  []string{"Namespace a", "Pod default/p", "Pod kept/q", "NetworkPolicy default/np"},
		},
		{
			name:    "a Namespace without a name is an error",
			files:   map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n"},
			paths:   []string{"ns.yaml"},
			wantErr: []string{"ns.yaml (document 1, line 1): Namespace has no metadata.name"},
		},
		{
			name:    "a Pod with only generateName is an error",
			files:   map[string]string{"pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-\n"},
			paths:   []string{"pod.yaml"},
			wantErr: []string{"pod.yaml (document 1, line 1): Pod has no metadata.name"},
		},
		{
			name:    "a NetworkPolicy without a name is an error",
			files:   map[string]string{"np.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: {}\n"},
			paths:   []string{"np.yaml"},
			wantErr: []string{"np.yaml (document 1, line 1): NetworkPolicy has no metadata.name"},
		},
		{
			name:    "field names are case-sensitive, as in the API server",
			files:   map[string]string{"case.yaml": "apiVersion: v1\nkind: Pod\nMetadata:\n  name: p\n"},
			paths:   []string{"case.yaml"},
			wantErr: []string{"Pod has no metadata.name"},
		},
		{
			name: "unknown fields are ignored",
			files: map[string]string{"future.yaml": podYAML("x", "p") + "  futureMeta: 1\nspec:\n  futureSpec: {a: [1]}\n" +
				"  containers:\n  - name: c\n    futureContainer: true\n"},
			paths: []string{"future.yaml"},
			want:  []string{"Pod x/p"},
		},
		{
			name: "every problem is reported, not only the first",
			files: map[string]string{
				"one.yaml": "kind: Pod\n",
				"two.yaml": docs(nsYAML("ok"), "apiVersion: v1\nkind: Namespace\n"),
			},
			paths:   []string{"one.yaml", "missing.yaml", "two.yaml"},
			wantErr: []string{"one.yaml (document 1, line 1): missing apiVersion", "missing.yaml", "two.yaml (document 2, line 6): Namespace has no metadata.name"},
		},
		{
			name:    "the number of problems reported is capped",
			files:   map[string]string{"many.yaml": strings.Repeat("kind: Pod\n---\n", maxErrors+5)},
			paths:   []string{"many.yaml"},
			wantErr: []string{"many.yaml (document 20, line 39)", "... and 5 more errors"},
		},
		{
			name:  "a byte order mark and CRLF line endings are accepted",
			files: map[string]string{"win.yaml": "\xef\xbb\xbf" + strings.ReplaceAll(docs(nsYAML("a"), nsYAML("b")), "\n", "\r\n")},
			paths: []string{"win.yaml"},
			want:  []string{"Namespace a", "Namespace b"},
		},
		{
			name:  "a line that starts with --- but continues is not a separator",
			files: map[string]string{"dashes.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations:\n    note: |\n---not-a-separator\n"},
			paths: []string{"dashes.yaml"},
			// The block scalar ends at the unindented line, which is then bad YAML: what matters is
			// that it is reported as part of document 1, not split off as document 2.
			wantErr: []string{"dashes.yaml (document 1, line 1): yaml: line"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			for name, content := range tt.files {
				if strings.HasSuffix(name, "/") {
					if err := os.MkdirAll(name, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var warnings []string
			got, err := Load(tt.paths, strings.NewReader(tt.stdin), func(w string) { warnings = append(warnings, w) })

			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Load: unexpected error:\n%v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("Load: no error, want one containing %q", tt.wantErr)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Load error does not contain %q:\n%v", want, err)
					}
				}
				if s := summary(got); len(s) != 0 {
					t.Errorf("Load returned objects %q with an error, want none", s)
				}
			}
			if s := summary(got); !reflect.DeepEqual(s, tt.want) {
				t.Errorf("objects:\n got %q\nwant %q", s, tt.want)
			}
			if len(warnings) != len(tt.wantWarn) {
				t.Fatalf("got %d warnings, want %d:\n%s", len(warnings), len(tt.wantWarn), strings.Join(warnings, "\n"))
			}
			for i, want := range tt.wantWarn {
				if !strings.Contains(warnings[i], want) {
					t.Errorf("warning %d does not contain %q:\n%s", i, want, warnings[i])
				}
			}
		})
	}
}

// indent turns a manifest into a YAML list item body: every line after the first is indented
// by two spaces, to follow the "- " the caller writes.
func indent(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// JSON has no implicit typing, so the hint about quoting YAML values would only mislead there.
func TestLoadTypeErrorInJSONHasNoYAMLHint(t *testing.T) {
	in := `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": true}}`
	_, err := Load([]string{"-"}, strings.NewReader(in), nil)
	want := "<stdin> (document 1, line 1): Namespace (no name): metadata.name: got bool, want string"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
}

func TestLoadUnreadableFileIsAnErrorNamingIt(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret.yaml")
	if err := os.WriteFile(file, []byte(nsYAML("a")), 0o000); err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(file); err == nil {
		f.Close()
		t.Skip("file permissions are not enforced here (running as root?)")
	}
	_, err := Load([]string{dir}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Load error = %v, want one naming %s and the permission problem", err, file)
	}
}

func TestLoadBrokenSymlinkInDirectoryIsAnErrorNamingIt(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "gone.yaml")
	if err := os.Symlink(filepath.Join(dir, "missing"), link); err != nil {
		t.Skipf("cannot make a symbolic link: %v", err)
	}
	_, err := Load([]string{dir}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), link) {
		t.Fatalf("Load error = %v, want one naming %s", err, link)
	}
}

func TestLoadNilWarnAndNilStdinAreAllowed(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "d.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load([]string{file}, nil, nil); err != nil {
		t.Fatalf("Load with nil warn: %v", err)
	}
	if _, err := Load([]string{"-"}, nil, nil); err == nil || !strings.Contains(err.Error(), "no standard input") {
		t.Fatalf("Load of - with nil stdin: got %v, want an error saying there is no standard input", err)
	}
}

// A real `kubectl get pod -o yaml` dump, with managed fields, owner references, probes and
// fields from a newer API, loads, and the fields the translator reads come through unchanged.
func TestLoadRealisticPodDump(t *testing.T) {
	objs, err := Load([]string{filepath.Join("testdata", "pod-dump.yaml")}, nil, func(w string) { t.Errorf("unexpected warning: %s", w) })
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Pods) != 1 || len(objs.Namespaces) != 0 || len(objs.Policies) != 0 {
		t.Fatalf("got %q, want one pod", summary(objs))
	}
	pod := objs.Pods[0]
	if pod.Namespace != "shop" || pod.Name != "web-7d9c6b5f8d-x2k4q" {
		t.Errorf("pod is %s/%s", pod.Namespace, pod.Name)
	}
	if want := map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": "7d9c6b5f8d", "tier": "frontend"}; !reflect.DeepEqual(pod.Labels, want) {
		t.Errorf("labels = %v, want %v", pod.Labels, want)
	}
	if pod.Spec.NodeName != "node-a" || pod.Spec.HostNetwork {
		t.Errorf("nodeName = %q, hostNetwork = %v", pod.Spec.NodeName, pod.Spec.HostNetwork)
	}
	wantPorts := []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	}
	if len(pod.Spec.Containers) != 1 || !reflect.DeepEqual(pod.Spec.Containers[0].Ports, wantPorts) {
		t.Errorf("container ports = %+v, want %+v", pod.Spec.Containers, wantPorts)
	}
	wantInitPorts := []corev1.ContainerPort{
		{Name: "proxy", ContainerPort: 15001, Protocol: corev1.ProtocolTCP},
		{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
	}
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[0].Ports != nil ||
		!reflect.DeepEqual(pod.Spec.InitContainers[1].Ports, wantInitPorts) {
		t.Errorf("init containers = %+v, want the second with ports %+v", pod.Spec.InitContainers, wantInitPorts)
	}
	if rp := pod.Spec.InitContainers[1].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar restartPolicy = %v, want Always", rp)
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("phase = %q, want Running", pod.Status.Phase)
	}
	if want := []corev1.PodIP{{IP: "10.244.1.17"}, {IP: "fd00:10:244:1::17"}}; !reflect.DeepEqual(pod.Status.PodIPs, want) {
		t.Errorf("podIPs = %v, want %v", pod.Status.PodIPs, want)
	}
	if pod.Status.PodIP != "10.244.1.17" || pod.Status.HostIP != "192.168.10.21" {
		t.Errorf("podIP = %q, hostIP = %q", pod.Status.PodIP, pod.Status.HostIP)
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		t.Errorf("TypeMeta = %+v, want v1 Pod as written", pod.TypeMeta)
	}
}

// The output of `kubectl get ns,pods,deploy,netpol -A -o json` (a v1 List) loads, with the other
// kinds warned about, a host-network pod intact and the policy not defaulted.
func TestLoadKubectlListDump(t *testing.T) {
	var warnings []string
	objs, err := Load([]string{filepath.Join("testdata", "list-dump.json")}, nil, func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Namespace shop", "Pod monitoring/node-exporter-5xk2p", "NetworkPolicy shop/web-ingress"}; !reflect.DeepEqual(summary(objs), want) {
		t.Fatalf("got %q, want %q", summary(objs), want)
	}
	wantWarn := fmt.Sprintf(`skipping apps/v1 Deployment "shop/web" in %s (document 1, line 1, items[2]): flock-netpol reads only Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies`,
		filepath.Join("testdata", "list-dump.json"))
	if len(warnings) != 1 || warnings[0] != wantWarn {
		t.Errorf("warnings = %q, want [%q]", warnings, wantWarn)
	}

	pod := objs.Pods[0]
	if !pod.Spec.HostNetwork {
		t.Error("hostNetwork = false, want true")
	}
	if want := []corev1.PodIP{{IP: "192.168.10.21"}}; !reflect.DeepEqual(pod.Status.PodIPs, want) || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("status = %+v, want Running with podIPs %v", pod.Status, want)
	}
	if p := pod.Spec.Containers[0].Ports[0]; p.HostPort != 9100 || p.ContainerPort != 9100 {
		t.Errorf("port = %+v, want hostPort and containerPort 9100", p)
	}

	np := objs.Policies[0]
	if np.Spec.PolicyTypes != nil {
		t.Errorf("policyTypes = %v, want nil: Load must not default the policy", np.Spec.PolicyTypes)
	}
	wantPorts := []networkingv1.NetworkPolicyPort{
		{Port: ptr(intstr.FromString("http"))},
		{Port: ptr(intstr.FromInt32(9000)), EndPort: ptr(int32(9099))},
	}
	if got := np.Spec.Ingress[0].Ports; !reflect.DeepEqual(got, wantPorts) {
		t.Errorf("ports = %+v, want %+v (protocol left unset)", got, wantPorts)
	}
}

// Items of a typed list from the raw API carry no type; they get the list's, so every object Load
// returns says what it is.
func TestLoadSetsTypeOfImplicitListItems(t *testing.T) {
	in := `{"kind": "PodList", "apiVersion": "v1", "items": [{"metadata": {"name": "p"}}]}`
	objs, err := Load([]string{"-"}, strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Pods) != 1 || objs.Pods[0].Kind != "Pod" || objs.Pods[0].APIVersion != "v1" {
		t.Fatalf("got %+v, want one pod with TypeMeta v1 Pod", objs.Pods)
	}
}

// The fields of a ClusterNetworkPolicy come through as written, with nothing defaulted.
func TestLoadClusterNetworkPolicyFields(t *testing.T) {
	in := `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: deny-db
  labels: {owner: sec}
  namespace: ignored
spec:
  tier: Admin
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {team: web}}
      podSelector: {}
  egress:
  - name: no-db
    action: Deny
    to:
    - namespaces: {matchLabels: {team: db}}
    - networks: [10.9.0.0/16]
    protocols:
    - tcp: {destinationPort: {number: 5432}}
    - udp: {destinationPort: {range: {start: 53, end: 54}}}
    - destinationNamedPort: dns
status:
  conditions: []
`
	objs, err := Load([]string{"-"}, strings.NewReader(in), func(w string) { t.Errorf("unexpected warning: %s", w) })
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.ClusterPolicies) != 1 {
		t.Fatalf("got %q, want one ClusterNetworkPolicy", summary(objs))
	}
	p := objs.ClusterPolicies[0]
	want := v1alpha2.ClusterNetworkPolicySpec{
		Tier:     v1alpha2.AdminTier,
		Priority: 10,
		Subject: v1alpha2.ClusterNetworkPolicySubject{Pods: &v1alpha2.NamespacedPod{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "web"}},
		}},
		Egress: []v1alpha2.ClusterNetworkPolicyEgressRule{{
			Name:   "no-db",
			Action: v1alpha2.ClusterNetworkPolicyRuleActionDeny,
			To: []v1alpha2.ClusterNetworkPolicyEgressPeer{
				{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "db"}}},
				{Networks: []v1alpha2.CIDR{"10.9.0.0/16"}},
			},
			Protocols: []v1alpha2.ClusterNetworkPolicyProtocol{
				{TCP: &v1alpha2.ClusterNetworkPolicyProtocolTCP{DestinationPort: &v1alpha2.Port{Number: 5432}}},
				{UDP: &v1alpha2.ClusterNetworkPolicyProtocolUDP{DestinationPort: &v1alpha2.Port{Range: &v1alpha2.PortRange{Start: 53, End: 54}}}},
				{DestinationNamedPort: "dns"},
			},
		}},
	}
	if !reflect.DeepEqual(p.Spec, want) {
		t.Errorf("spec:\n got %+v\nwant %+v", p.Spec, want)
	}
	if p.Name != "deny-db" || p.Labels["owner"] != "sec" || p.Namespace != "ignored" {
		t.Errorf("metadata = %+v, want it as written", p.ObjectMeta)
	}
	if p.Kind != "ClusterNetworkPolicy" || p.APIVersion != "policy.networking.k8s.io/v1alpha2" {
		t.Errorf("TypeMeta = %+v, want it as written", p.TypeMeta)
	}
}

func ptr[T any](v T) *T { return &v }
