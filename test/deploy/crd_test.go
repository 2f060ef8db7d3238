package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The optional ClusterNetworkPolicy CRD: config/components/clusternetworkpolicy holds a copy of
// the CRD shipped in the Go module sigs.k8s.io/network-policy-api, which `make sync-crds` makes.

const (
	cnpComponent = "config/components/clusternetworkpolicy"
	cnpCRDFile   = "policy.networking.k8s.io_clusternetworkpolicies.yaml"
	cnpCRDName   = "clusternetworkpolicies.policy.networking.k8s.io"
	cnpModule    = "sigs.k8s.io/network-policy-api"
)

// moduleDir is the directory of module m, at the version go.mod requires, in the module cache.
// It is there whenever this package builds: the agent imports the module's API types.
func moduleDir(t *testing.T, root, m string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", m)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v\n%s", m, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("module %s is not in the module cache: run `go mod download %s`", m, m)
	}
	return dir
}

// The vendored CRD is the module's, byte for byte: a copy edited by hand, or left behind by a
// version bump of the module, would install a schema the agent's types do not match.
func TestClusterNetworkPolicyCRDIsTheModulesFile(t *testing.T) {
	root := repoRoot(t)
	want, err := os.ReadFile(filepath.Join(moduleDir(t, root, cnpModule), "config", "crd", "standard", cnpCRDFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, cnpComponent, cnpCRDFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s/%s differs from the file of %s (the go.mod version): run `make sync-crds`", cnpComponent, cnpCRDFile, cnpModule)
	}
}

// withClusterNetworkPolicyCRD renders the install as `make build-installer INSTALL_CNP_CRD=true`
// does: on a copy of config/, `kustomize edit add component` in config/default, then the build.
func withClusterNetworkPolicyCRD(t *testing.T) []object {
	t.Helper()
	root := repoRoot(t)
	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "config"), os.DirFS(filepath.Join(root, "config"))); err != nil {
		t.Fatal(err)
	}
	kustomize(t, filepath.Join(tmp, "config", "default"), "edit", "add", "component", "../components/clusternetworkpolicy")
	return decodeAll(t, kustomize(t, tmp, "build", filepath.Join("config", "default")))
}

// With the component, the install is the default install plus the CRD, unchanged by the
// install's namespace and name prefix; the agent's role reads ClusterNetworkPolicies (it does
// without the component too: see TestManagerRoleGrantsOnlyReadOfWhatTheAgentWatches).
func TestInstallWithTheClusterNetworkPolicyComponent(t *testing.T) {
	objs := withClusterNetworkPolicyCRD(t)
	var got, want []string
	for _, o := range objs {
		got = append(got, o.String())
	}
	for _, o := range install(t) {
		want = append(want, o.String())
	}
	want = append(want, "CustomResourceDefinition/"+cnpCRDName)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("objects of the install with the component:\n got  %v\n want %v", got, want)
	}
	if objs[0].Kind != "Namespace" {
		t.Errorf("first object is %s, want the Namespace", objs[0])
	}

	crd := find(t, objs, "CustomResourceDefinition", cnpCRDName)
	if crd.Metadata.Namespace != "" {
		t.Errorf("the CRD got namespace %q; it is cluster-scoped", crd.Metadata.Namespace)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot(t), cnpComponent, cnpCRDFile))
	if err != nil {
		t.Fatal(err)
	}
	var rendered, original map[string]any
	if err := yaml.Unmarshal(crd.raw, &rendered); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(src, &original); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rendered, original) {
		t.Errorf("kustomize changed the CRD (labels, names or namespace added?)")
	}
	var spec struct {
		Spec struct {
			Group    string       `json:"group"`
			Scope    string       `json:"scope"`
			Versions []crdVersion `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(crd.raw, &spec); err != nil {
		t.Fatal(err)
	}
	served := slices.Contains(spec.Spec.Versions, crdVersion{Name: "v1alpha2", Served: true})
	if spec.Spec.Group != "policy.networking.k8s.io" || spec.Spec.Scope != "Cluster" || !served {
		t.Errorf("the CRD serves %+v, want policy.networking.k8s.io v1alpha2, cluster-scoped (the version the agent reads)", spec.Spec)
	}

	role := typed[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", managerRole))
	gs := grants(t, managerRole, role.Rules)
	for _, g := range readOnly("policy.networking.k8s.io", "clusternetworkpolicies") {
		if !slices.Contains(gs, g) {
			t.Errorf("%s lacks %s", managerRole, g)
		}
	}
}

// crdVersion is what the test reads of a CRD's version.
type crdVersion struct {
	Name   string `json:"name"`
	Served bool   `json:"served"`
}
