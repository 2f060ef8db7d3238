package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "k8s.io/apimachinery/pkg/util/json"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/yaml"
)

// location is where an object was read, for errors and warnings.
type location struct {
	source string // file path, or stdinName
	doc    int    // 1-based document number in source
	line   int    // 1-based line the document starts on
	item   string // path of a list item inside the document, e.g. "items[3].items[0]"; "" for the document itself
	// yaml says the document was written in YAML, whose implicit typing explains some errors.
	yaml bool
}

func (l location) String() string {
	s := fmt.Sprintf("%s (document %d, line %d", l.source, l.doc, l.line)
	if l.item != "" {
		s += ", " + l.item
	}
	return s + ")"
}

// itemAt is the location of the i-th item of the list read at l.
func (l location) itemAt(i int) location {
	item := fmt.Sprintf("items[%d]", i)
	if l.item != "" {
		item = l.item + "." + item
	}
	l.item = item
	return l
}

// objectKey identifies an object for duplicate detection.
type objectKey struct {
	kind, namespace, name string
}

func (k objectKey) String() string {
	if k.namespace == "" {
		return fmt.Sprintf("%s %q", k.kind, k.name)
	}
	return fmt.Sprintf("%s %q", k.kind, k.namespace+"/"+k.name)
}

// readAs maps each kind Load knows to the only apiVersion it reads that kind as, so one of these
// kinds under another apiVersion gets a warning that says which one was expected.
var readAs = map[string]string{
	"Namespace":         "v1",
	"Pod":               "v1",
	"Node":              "v1",
	"NetworkPolicy":     "networking.k8s.io/v1",
	"List":              "v1",
	"NamespaceList":     "v1",
	"PodList":           "v1",
	"NodeList":          "v1",
	"NetworkPolicyList": "networking.k8s.io/v1",
	// The version the agent reads (and the install's CRD serves).
	"ClusterNetworkPolicy":     "policy.networking.k8s.io/v1alpha2",
	"ClusterNetworkPolicyList": "policy.networking.k8s.io/v1alpha2",
}

// readKinds names the kinds Load keeps, for the warning about the others.
const readKinds = "Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies"

// loader accumulates the objects, and the problems, of one Load call.
type loader struct {
	objs    Objects
	seen    map[objectKey]location // where each kept object was read
	warn    func(string)
	errs    []error
	dropped int // errors beyond maxErrors
}

// fail records a problem and lets loading go on, so one run reports all of them.
func (l *loader) fail(err error) {
	if len(l.errs) == maxErrors {
		l.dropped++
		return
	}
	l.errs = append(l.errs, err)
}

func (l *loader) failAt(loc location, format string, args ...any) {
	l.fail(fmt.Errorf("%s: %s", loc, fmt.Sprintf(format, args...)))
}

// err is the combined error of every problem recorded, or nil.
func (l *loader) err() error {
	if l.dropped > 0 {
		return errors.Join(append(l.errs, fmt.Errorf("... and %d more errors", l.dropped))...)
	}
	return errors.Join(l.errs...)
}

// source reads every document of one file or of the standard input.
func (l *loader) source(name string, data []byte) {
	for _, d := range splitDocuments(data) {
		loc := location{source: name, doc: d.index, line: d.line, yaml: !d.isJSON}
		if d.err != nil {
			l.failAt(loc, "%v", d.err)
			continue
		}
		raw := d.data
		if !d.isJSON {
			var err error
			raw, err = yaml.YAMLToJSON(d.data)
			if err != nil {
				l.failAt(loc, "%s", absoluteYAMLLines(err, d.line))
				continue
			}
		}
		l.object(raw, loc, "", "")
	}
}

// yamlLineRE finds the line numbers in a YAML parser error.
var yamlLineRE = regexp.MustCompile(`\bline (\d+)`)

// absoluteYAMLLines rewrites the line numbers in a YAML error, which count from the start of the
// document, to count from the start of the file, where the operator's editor counts.
func absoluteYAMLLines(err error, firstLine int) string {
	msg := err.Error()
	if !strings.HasPrefix(msg, "yaml:") {
		return msg
	}
	return yamlLineRE.ReplaceAllStringFunc(msg, func(m string) string {
		n, convErr := strconv.Atoi(m[len("line "):])
		if convErr != nil {
			return m
		}
		return "line " + strconv.Itoa(firstLine+n-1)
	})
}

// header is the part of every object read before its kind is known.
type header struct {
	APIVersion json.RawMessage `json:"apiVersion"`
	Kind       json.RawMessage `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
}

// object handles one JSON value: a document or a list item. impliedKind and impliedAPIVersion are
// the element type of the typed list it is an item of, or "".
func (l *loader) object(raw []byte, loc location, impliedKind, impliedAPIVersion string) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		// A document of nothing but comments converts to null: an empty document.
		return
	case raw[0] != '{':
		l.failAt(loc, "not a Kubernetes object: want a mapping with apiVersion and kind, got %s", jsonType(raw[0]))
		return
	}

	var h header
	if err := kjson.Unmarshal(raw, &h); err != nil {
		l.failAt(loc, "%v", err)
		return
	}
	apiVersion, err := stringField(h.APIVersion, "apiVersion")
	if err != nil {
		l.failAt(loc, "%v", err)
		return
	}
	kind, err := stringField(h.Kind, "kind")
	if err != nil {
		l.failAt(loc, "%v", err)
		return
	}
	// The raw API output of a typed list leaves its items' type implicit.
	inferred := false
	if kind == "" && apiVersion == "" && impliedKind != "" {
		kind, apiVersion, inferred = impliedKind, impliedAPIVersion, true
	}
	switch {
	case kind == "" && apiVersion == "":
		l.failAt(loc, "missing apiVersion and kind: every document must be a Kubernetes object")
		return
	case kind == "":
		l.failAt(loc, "missing kind (apiVersion is %q)", apiVersion)
		return
	case apiVersion == "":
		l.failAt(loc, "missing apiVersion (kind is %q)", kind)
		return
	}

	want, known := readAs[kind]
	if !known {
		l.warn(fmt.Sprintf("skipping %s %s %s in %s: flock-netpol reads only %s",
			apiVersion, kind, describeName(h.Metadata), loc, readKinds))
		return
	}
	if apiVersion != want {
		l.warn(fmt.Sprintf("skipping %s %s %s in %s: flock-netpol reads %s only as %s",
			apiVersion, kind, describeName(h.Metadata), loc, kind, want))
		return
	}
	typeMeta := metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}

	switch kind {
	case "List", "NamespaceList", "PodList", "NodeList", "NetworkPolicyList", "ClusterNetworkPolicyList":
		l.list(raw, loc, kind, apiVersion)

	case "Namespace":
		ns := &corev1.Namespace{}
		if !l.decode(raw, ns, loc, kind, h.Metadata) {
			return
		}
		if inferred {
			ns.TypeMeta = typeMeta
		}
		if l.keep(objectKey{kind: kind, name: ns.Name}, loc) {
			l.objs.Namespaces = append(l.objs.Namespaces, ns)
		}

	case "Pod":
		pod := &corev1.Pod{}
		if !l.decode(raw, pod, loc, kind, h.Metadata) {
			return
		}
		if inferred {
			pod.TypeMeta = typeMeta
		}
		defaultNamespace(&pod.ObjectMeta)
		if l.keep(objectKey{kind: kind, namespace: pod.Namespace, name: pod.Name}, loc) {
			l.objs.Pods = append(l.objs.Pods, pod)
		}

	case "Node":
		node := &corev1.Node{}
		if !l.decode(raw, node, loc, kind, h.Metadata) {
			return
		}
		if inferred {
			node.TypeMeta = typeMeta
		}
		if l.keep(objectKey{kind: kind, name: node.Name}, loc) {
			l.objs.Nodes = append(l.objs.Nodes, node)
		}

	case "NetworkPolicy":
		np := &networkingv1.NetworkPolicy{}
		if !l.decode(raw, np, loc, kind, h.Metadata) {
			return
		}
		if inferred {
			np.TypeMeta = typeMeta
		}
		defaultNamespace(&np.ObjectMeta)
		l.warnUnknownFields(raw, &networkingv1.NetworkPolicy{}, loc, kind, np.Namespace+"/"+np.Name)
		if l.keep(objectKey{kind: kind, namespace: np.Namespace, name: np.Name}, loc) {
			l.objs.Policies = append(l.objs.Policies, np)
		}

	case "ClusterNetworkPolicy":
		// Cluster-scoped: a namespace written in its metadata is kept as written and ignored.
		cnp := &v1alpha2.ClusterNetworkPolicy{}
		if !l.decode(raw, cnp, loc, kind, h.Metadata) {
			return
		}
		if inferred {
			cnp.TypeMeta = typeMeta
		}
		l.warnUnknownFields(raw, &v1alpha2.ClusterNetworkPolicy{}, loc, kind, cnp.Name)
		if l.keep(objectKey{kind: kind, name: cnp.Name}, loc) {
			l.objs.ClusterPolicies = append(l.objs.ClusterPolicies, cnp)
		}
	}
}

// list expands the items of a List or typed list, in order.
func (l *loader) list(raw []byte, loc location, kind, apiVersion string) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := kjson.Unmarshal(raw, &list); err != nil {
		l.failAt(loc, "%s: items must be a list", kind)
		return
	}
	// A generic List says nothing about its items, so they must carry their own type.
	elemKind, elemAPIVersion := "", ""
	if kind != "List" {
		elemKind, elemAPIVersion = strings.TrimSuffix(kind, "List"), apiVersion
	}
	for i, item := range list.Items {
		l.object(item, loc.itemAt(i), elemKind, elemAPIVersion)
	}
}

// named is what decode needs of the typed objects it fills.
type named interface {
	GetName() string
}

// decode fills obj from raw with the API server's JSON rules (case-sensitive field names, unknown
// fields ignored), then checks it has a name. It reports false, after recording the problem, if
// obj is unusable.
func (l *loader) decode(raw []byte, obj named, loc location, kind string, meta json.RawMessage) bool {
	if err := kjson.Unmarshal(raw, obj); err != nil {
		l.failAt(loc, "%s %s: %s", kind, describeName(meta), describeDecodeError(err, loc.yaml))
		return false
	}
	if obj.GetName() == "" {
		// Without a name the object cannot be told apart from others, nor named in the rules.
		l.failAt(loc, "%s has no metadata.name", kind)
		return false
	}
	return true
}

// warnUnknownFields warns about fields a policy's schema (into, a new object of its type) does not
// have. They are ignored, as the API server ignores (or prunes) them, but in a policy a misspelt
// field changes its meaning: a rule whose "from" is misspelt allows every source. Pods,
// Namespaces and Nodes are not checked, since dumps from newer clusters legitimately carry fields
// this version does not know.
func (l *loader) warnUnknownFields(raw []byte, into any, loc location, kind, name string) {
	strict, err := sigsjson.UnmarshalStrict(raw, into, sigsjson.DisallowUnknownFields)
	if err != nil {
		return // decode already reported it
	}
	for _, e := range strict {
		l.warn(fmt.Sprintf("%s %s in %s: %v (ignored; check the spelling)", kind, name, loc, e))
	}
}

// keep records that key was read at loc, and reports false, after recording the problem, if it
// was read before.
func (l *loader) keep(key objectKey, loc location) bool {
	if first, dup := l.seen[key]; dup {
		l.failAt(loc, "duplicate %s, first read at %s: remove one of the two", key, first)
		return false
	}
	l.seen[key] = loc
	return true
}

// describeDecodeError words a decoding error for someone who wrote YAML or JSON, not Go: a type
// error names the field by its path in the manifest, without the Go struct it belongs to.
func describeDecodeError(err error, fromYAML bool) string {
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) || typeErr.Type == nil {
		return err.Error()
	}
	what := fmt.Sprintf("got %s, want %s", typeErr.Value, typeErr.Type)
	if typeErr.Field != "" {
		what = typeErr.Field + ": " + what
	}
	// YAML 1.1, which kubectl reads too, turns unquoted yes/no/on/off/y/n into booleans and digits
	// into numbers; a label value or a name like "no" or "1.0" then fails here, which is baffling
	// without the hint.
	if fromYAML && typeErr.Type.Kind() == reflect.String &&
		(typeErr.Value == "bool" || strings.HasPrefix(typeErr.Value, "number")) {
		what += " (YAML reads unquoted true/false, yes/no, on/off, y/n and numbers as such: quote the value)"
	}
	return what
}

// defaultNamespace puts a namespaced object that names no namespace in "default", where kubectl
// would create it.
func defaultNamespace(meta *metav1.ObjectMeta) {
	if meta.Namespace == "" {
		meta.Namespace = metav1.NamespaceDefault
	}
}

// stringField decodes an apiVersion or kind, which must be a string if present.
func stringField(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s must be a string, not %s", field, raw)
	}
	return s, nil
}

// describeName quotes an object's namespace/name for messages, reading its metadata leniently:
// it only decorates a message, so a malformed metadata must not cause an error of its own.
func describeName(meta json.RawMessage) string {
	var m struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	_ = json.Unmarshal(meta, &m)
	switch {
	case m.Name == "":
		return "(no name)"
	case m.Namespace == "":
		return strconv.Quote(m.Name)
	default:
		return strconv.Quote(m.Namespace + "/" + m.Name)
	}
}

// jsonType names the JSON type a value starting with c has.
func jsonType(c byte) string {
	switch {
	case c == '[':
		return "a list"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	default:
		return "a number"
	}
}
