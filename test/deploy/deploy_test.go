package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/flock-net/flock-netpol/internal/cli"
	"github.com/flock-net/flock-netpol/test/testenv"
)

// Names as rendered by config/default (namespace and namePrefix applied).
const (
	namespace      = "flock-netpol-system"
	daemonSetName  = "flock-netpol-agent"
	serviceAccount = "flock-netpol-agent"
	managerRole    = "flock-netpol-manager-role"
	metricsAuth    = "flock-netpol-metrics-auth-role"
	metricsReader  = "flock-netpol-metrics-reader"
	metricsService = "flock-netpol-agent-metrics-service"
	// The placeholder image name in config/manager/manager.yaml that the Makefile's
	// `kustomize edit set image controller=$(IMG)` replaces.
	imagePlaceholder = "controller"
)

// ---------------------------------------------------------------------------------------------
// Rendering and decoding

// repoRoot is testenv.RepoRoot, failing the test when there is none.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// kustomizeBinary returns $KUSTOMIZE, or bin/kustomize in the repository root, and fails the
// test when neither is an executable file.
func kustomizeBinary(t *testing.T) string {
	t.Helper()
	path, source := os.Getenv("KUSTOMIZE"), "$KUSTOMIZE"
	if path == "" {
		path, source = filepath.Join(repoRoot(t), "bin", "kustomize"), "bin/kustomize"
	}
	info, err := os.Stat(path)
	if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("kustomize is needed to render config/ but %s (%s) is not an executable file: "+
			"run `make kustomize` (installs it into bin/), or set KUSTOMIZE to a kustomize v5 binary", source, path)
	}
	return path
}

// kustomize runs the kustomize binary in dir and returns its stdout. It is offline: the
// kustomizations reference local directories only.
func kustomize(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(kustomizeBinary(t), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return stdout.Bytes()
}

// object is one document of a kustomize build.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	raw []byte
}

func (o object) String() string { return o.Kind + "/" + o.Metadata.Name }

// decodeAll splits a multi-document YAML stream into objects.
func decodeAll(t *testing.T, stream []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("splitting the kustomize output: %v", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("decoding a document of the kustomize output: %v\n%s", err, doc)
		}
		o.raw = doc
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Fatal("kustomize produced no objects")
	}
	return objs
}

// typed decodes o into T the way the API server does, case-sensitively, and fails the test on
// any field T does not have or any duplicate field. (encoding/json, under sigs.k8s.io/yaml's
// UnmarshalStrict, matches names case-insensitively and would accept readOnlyRootFileSystem,
// which the API server drops.)
func typed[T any](t *testing.T, o object) *T {
	t.Helper()
	v := new(T)
	if err := unmarshalStrict(o.raw, v); err != nil {
		t.Fatalf("%s does not decode strictly as %T: %v", o, v, err)
	}
	return v
}

func unmarshalStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

var (
	installMu  sync.Mutex
	installOut []byte
)

// install returns the objects of `kustomize build config/default`, built once per test binary.
// A failed build is not cached: every test that needs the output reports it.
func install(t *testing.T) []object {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	if installOut == nil {
		installOut = kustomize(t, repoRoot(t), "build", filepath.Join("config", "default"))
	}
	return decodeAll(t, installOut)
}

// find returns the single object of kind and name, failing the test if there is not exactly one.
func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s/%s in the install, found %d (objects: %v)", kind, name, len(found), objs)
	}
	return found[0]
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	return typed[appsv1.DaemonSet](t, find(t, install(t), "DaemonSet", daemonSetName))
}

// agentContainer returns the DaemonSet's only container.
func agentContainer(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want exactly one container in the agent pod, got %d", len(cs))
	}
	return &cs[0]
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// bindPort returns the port of a --*-bind-address flag value such as ":9652".
func bindPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("bind address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n <= 0 {
		t.Fatalf("bind address %q: the port must be a number, got %q", addr, p)
	}
	return int32(n)
}

// containerPort resolves a probe's or Service's target port (number or name) in c.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port name %q is not a port of container %s (ports: %+v)", p.StrVal, c.Name, c.Ports)
	return 0
}

// ---------------------------------------------------------------------------------------------
// The install as a whole

// The install contains exactly these objects. A new object (a leader-election Role, a second
// workload, a webhook) is a deliberate change to review: add it here.
func TestInstallContainsExactlyTheExpectedObjects(t *testing.T) {
	var got []string
	for _, o := range install(t) {
		got = append(got, o.String())
	}
	want := []string{
		"Namespace/" + namespace,
		"ServiceAccount/" + serviceAccount,
		"ClusterRole/" + managerRole,
		"ClusterRole/" + metricsAuth,
		"ClusterRole/" + metricsReader,
		"ClusterRoleBinding/flock-netpol-manager-rolebinding",
		"ClusterRoleBinding/flock-netpol-metrics-auth-rolebinding",
		"Service/" + metricsService,
		"DaemonSet/" + daemonSetName,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objects of the install:\n got  %v\n want %v", got, want)
	}
}

// Every object decodes strictly as its Kubernetes type: a misspelt field would otherwise be
// dropped silently by the API server (a misspelt readOnlyRootFilesystem is simply not set).
func TestInstallObjectsHaveNoUnknownFields(t *testing.T) {
	for _, o := range install(t) {
		switch o.Kind {
		case "Namespace":
			typed[corev1.Namespace](t, o)
		case "ServiceAccount":
			typed[corev1.ServiceAccount](t, o)
		case "Service":
			typed[corev1.Service](t, o)
		case "ClusterRole":
			typed[rbacv1.ClusterRole](t, o)
		case "ClusterRoleBinding":
			typed[rbacv1.ClusterRoleBinding](t, o)
		case "DaemonSet":
			typed[appsv1.DaemonSet](t, o)
		default:
			t.Errorf("%s: no strict decoding for kind %s; add it here", o, o.Kind)
		}
	}
}

// The Namespace comes first, so that `kubectl apply -f dist/install.yaml` creates it before the
// objects that live in it.
func TestNamespaceIsTheFirstObject(t *testing.T) {
	objs := install(t)
	if objs[0].Kind != "Namespace" || objs[0].Metadata.Name != namespace {
		t.Errorf("first object is %s, want Namespace/%s", objs[0], namespace)
	}
}

// Every namespaced object is installed into the agent's namespace.
func TestNamespacedObjectsLiveInTheAgentNamespace(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}
	for _, o := range install(t) {
		switch {
		case clusterScoped[o.Kind] && o.Metadata.Namespace != "":
			t.Errorf("%s is cluster-scoped but has namespace %q", o, o.Metadata.Namespace)
		case !clusterScoped[o.Kind] && o.Metadata.Namespace != namespace:
			t.Errorf("%s is in namespace %q, want %q", o, o.Metadata.Namespace, namespace)
		}
	}
}

// hostNetwork and NET_ADMIN are only admitted at the privileged Pod Security level.
func TestNamespaceEnforcesPrivilegedPodSecurity(t *testing.T) {
	ns := typed[corev1.Namespace](t, find(t, install(t), "Namespace", namespace))
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("label pod-security.kubernetes.io/enforce = %q, want privileged", got)
	}
	for _, mode := range []string{"audit", "warn"} {
		if got, ok := ns.Labels["pod-security.kubernetes.io/"+mode]; ok && got != "privileged" {
			t.Errorf("label pod-security.kubernetes.io/%s = %q: it would flag every agent pod; use privileged", mode, got)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// The DaemonSet: placement and pod settings

func TestDaemonSetUsesHostNetworkWithClusterDNS(t *testing.T) {
	spec := daemonSet(t).Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("hostNetwork must be true: the rules are programmed in the node's network namespace")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy = %q, want %q", spec.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
	}
}

func TestDaemonSetIsSystemNodeCritical(t *testing.T) {
	if got := daemonSet(t).Spec.Template.Spec.PriorityClassName; got != "system-node-critical" {
		t.Errorf("priorityClassName = %q, want system-node-critical", got)
	}
}

// The agent must run on every Linux node whatever its taints: a node without its agent runs
// its pods without their policies.
func TestDaemonSetToleratesEveryTaint(t *testing.T) {
	tols := daemonSet(t).Spec.Template.Spec.Tolerations
	for _, tol := range tols {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			return
		}
	}
	t.Errorf("tolerations %+v: want one with operator Exists and no key and no effect (tolerates everything)", tols)
}

func TestDaemonSetSelectsLinuxNodesOnly(t *testing.T) {
	spec := daemonSet(t).Spec.Template.Spec
	want := map[string]string{"kubernetes.io/os": "linux"}
	if len(spec.NodeSelector) != 1 || spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector = %v, want %v and nothing else", spec.NodeSelector, want)
	}
	if spec.Affinity != nil {
		t.Errorf("affinity %+v would keep the agent off some nodes", spec.Affinity)
	}
}

func TestDaemonSetRollsOutWithoutSurge(t *testing.T) {
	st := daemonSet(t).Spec.UpdateStrategy
	if st.Type != appsv1.RollingUpdateDaemonSetStrategyType {
		t.Fatalf("updateStrategy.type = %q, want RollingUpdate", st.Type)
	}
	if st.RollingUpdate == nil || st.RollingUpdate.MaxUnavailable == nil {
		t.Fatal("updateStrategy.rollingUpdate.maxUnavailable must be set (1 or a percentage)")
	}
	if mu := st.RollingUpdate.MaxUnavailable; mu.String() == "0" || mu.String() == "0%" {
		t.Errorf("maxUnavailable = %s: a rollout with no surge and nothing unavailable cannot progress", mu.String())
	}
	if ms := st.RollingUpdate.MaxSurge; ms != nil && ms.String() != "0" && ms.String() != "0%" {
		t.Errorf("maxSurge = %s, want 0: the old and the new agent would bind the same host ports", ms.String())
	}
}

// The agent leaves its rules in force on exit, so there is nothing to wait for at shutdown.
func TestDaemonSetHasShortTerminationGracePeriod(t *testing.T) {
	g := daemonSet(t).Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil || *g > 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want set and at most 30", g)
	}
}

// The agent authenticates with the ServiceAccount token, and that ServiceAccount is the one
// the roles are bound to.
func TestDaemonSetMountsTheAgentServiceAccountToken(t *testing.T) {
	spec := daemonSet(t).Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be explicitly true: the agent uses the in-cluster config")
	}
	if spec.ServiceAccountName != serviceAccount {
		t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, serviceAccount)
	}
}

// nft needs no host files: not the iptables lock (/run/xtables.lock), which nft does not take,
// nor anything else. A hostPath would widen what the root container can reach.
func TestDaemonSetMountsNoVolumes(t *testing.T) {
	ds := daemonSet(t)
	if v := ds.Spec.Template.Spec.Volumes; len(v) != 0 {
		t.Errorf("volumes %+v: the agent needs none", v)
	}
	if m := agentContainer(t, ds).VolumeMounts; len(m) != 0 {
		t.Errorf("volumeMounts %+v: the agent needs none", m)
	}
}

// ---------------------------------------------------------------------------------------------
// The DaemonSet: the agent container

// Root with NET_ADMIN only, and everything else locked down. Each setting is its own subtest so
// a failure names the setting.
func TestContainerRunsAsRootWithOnlyNetAdmin(t *testing.T) {
	ds := daemonSet(t)
	sc := agentContainer(t, ds).SecurityContext
	if sc == nil {
		t.Fatal("the agent container has no securityContext")
	}
	check := func(name string, ok bool, got any) {
		t.Run(name, func(t *testing.T) {
			if !ok {
				t.Errorf("securityContext: got %v", got)
			}
		})
	}
	deref := func(p any) any { return fmt.Sprintf("%v", p) }
	check("runAsUser=0", sc.RunAsUser != nil && *sc.RunAsUser == 0, ptrString(sc.RunAsUser))
	check("runAsNonRoot=false", sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot, ptrString(sc.RunAsNonRoot))
	check("privileged=false", sc.Privileged != nil && !*sc.Privileged, ptrString(sc.Privileged))
	check("allowPrivilegeEscalation=false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, ptrString(sc.AllowPrivilegeEscalation))
	check("readOnlyRootFilesystem=true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, ptrString(sc.ReadOnlyRootFilesystem))
	check("capabilities.drop=[ALL]", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}), deref(sc.Capabilities))
	check("capabilities.add=[NET_ADMIN]", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}), deref(sc.Capabilities))
	check("seccompProfile=RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, deref(sc.SeccompProfile))
	// The pod-level settings must not widen the container's.
	psc := ds.Spec.Template.Spec.SecurityContext
	check("pod has no hostPID/hostIPC", !ds.Spec.Template.Spec.HostPID && !ds.Spec.Template.Spec.HostIPC, "hostPID/hostIPC set")
	check("pod seccompProfile not Unconfined", psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined, deref(psc))
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	return fmt.Sprint(*p)
}

// `run` reads $NODE_NAME as the default of --node-name: it must be the pod's own node.
func TestContainerGetsNodeNameFromDownwardAPI(t *testing.T) {
	c := agentContainer(t, daemonSet(t))
	for _, e := range c.Env {
		if e.Name != "NODE_NAME" {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("NODE_NAME = %+v, want valueFrom.fieldRef.fieldPath spec.nodeName", e)
		}
		return
	}
	t.Error("the agent container has no NODE_NAME environment variable")
}

// The arguments are a valid `flock-netpol run` command line: the subcommand first, then only
// flags that `run` defines (checked against the real flag set, by asking it for --help after
// them; a flag it does not know makes it exit 2), the health and metrics endpoints switched on,
// and no leader election.
func TestContainerArgsAreAValidRunCommandLine(t *testing.T) {
	c := agentContainer(t, daemonSet(t))
	if len(c.Command) != 0 {
		t.Errorf("command = %q: leave it to the image's ENTRYPOINT", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("args = %q, want the run subcommand first", c.Args)
	}
	var stdout, stderr bytes.Buffer
	code := cli.Main(append(slices.Clone(c.Args), "--help"), cli.IO{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr})
	if code != 0 {
		t.Errorf("args %q are not accepted by `flock-netpol run` (exit %d):\n%s", c.Args, code, stderr.String())
	}
	for _, a := range c.Args {
		if strings.Contains(a, "leader-elect") {
			t.Errorf("argument %q: the agent does no leader election", a)
		}
	}
	for _, f := range []string{"health-probe-bind-address", "metrics-bind-address"} {
		v, ok := flagValue(c.Args, f)
		if !ok || v == "0" || v == "" {
			t.Errorf("--%s = %q: want it set to a port", f, v)
		}
	}
}

// The bind addresses avoid the ports of the components commonly found in the host network
// namespace, where a collision makes the agent fail to start on that node.
func TestContainerPortsAvoidWellKnownNodePorts(t *testing.T) {
	c := agentContainer(t, daemonSet(t))
	taken := map[int32]string{
		10248: "kubelet healthz", 10250: "kubelet", 10255: "kubelet read-only",
		10249: "kube-proxy metrics", 10256: "kube-proxy healthz",
		10257: "kube-controller-manager", 10259: "kube-scheduler", 2379: "etcd", 2380: "etcd", 6443: "kube-apiserver",
		9091: "Calico felix metrics", 9099: "Calico health", 9093: "Calico Typha",
		9879: "Cilium agent health", 9962: "Cilium agent metrics", 9963: "Cilium operator metrics",
		9964: "Cilium envoy metrics", 9965: "Hubble metrics", 4240: "Cilium health",
		9100: "node-exporter", 9641: "OVN NB (OpenShift)", 9642: "OVN SB (OpenShift)",
		9643: "OVN NB raft (OpenShift)", 9644: "OVN SB raft (OpenShift)",
		9808: "CSI livenessprobe", 7472: "MetalLB", 7946: "MetalLB memberlist",
	}
	for _, f := range []string{"health-probe-bind-address", "metrics-bind-address"} {
		v, ok := flagValue(c.Args, f)
		if !ok {
			continue // reported by TestContainerArgsAreAValidRunCommandLine
		}
		if who, clash := taken[bindPort(t, v)]; clash {
			t.Errorf("--%s=%s collides with %s", f, v, who)
		}
	}
}

// The liveness and readiness probes are plain HTTP GETs of /healthz and /readyz on the port
// the health endpoint binds to.
func TestContainerProbesUseTheHealthEndpoint(t *testing.T) {
	c := agentContainer(t, daemonSet(t))
	addr, ok := flagValue(c.Args, "health-probe-bind-address")
	if !ok {
		t.Fatal("no --health-probe-bind-address argument")
	}
	want := bindPort(t, addr)
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s: path %q, want %q", p.name, g.Path, p.path)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %q, want HTTP (the health endpoint is plain HTTP)", p.name, g.Scheme)
		}
		if got := containerPort(t, c, g.Port); got != want {
			t.Errorf("%s: port %d, want %d (from --health-probe-bind-address=%s)", p.name, got, want, addr)
		}
	}
}

func TestContainerSetsResourceRequestsAndMemoryLimit(t *testing.T) {
	r := agentContainer(t, daemonSet(t)).Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			t.Errorf("requests.%s must be set", name)
		}
	}
	lim, ok := r.Limits[corev1.ResourceMemory]
	if !ok || lim.IsZero() {
		t.Fatal("limits.memory must be set")
	}
	if req := r.Requests[corev1.ResourceMemory]; lim.Cmp(req) < 0 {
		t.Errorf("limits.memory %s is below requests.memory %s", lim.String(), req.String())
	}
	if lim, ok := r.Limits[corev1.ResourceCPU]; ok {
		if req := r.Requests[corev1.ResourceCPU]; lim.Cmp(req) < 0 {
			t.Errorf("limits.cpu %s is below requests.cpu %s", lim.String(), req.String())
		}
	}
}

// checkImageReference fails for an empty, untagged, :latest or placeholder image.
func checkImageReference(t *testing.T, image string) {
	t.Helper()
	if image == "" {
		t.Fatal("the agent container has no image")
	}
	name, digest, hasDigest := strings.Cut(image, "@")
	if hasDigest && !strings.HasPrefix(digest, "sha256:") {
		t.Errorf("image %q: malformed digest", image)
	}
	repo, tag := name, ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
	}
	switch {
	case tag == "latest":
		t.Errorf("image %q: pin a version, not :latest", image)
	case tag == "" && !hasDigest:
		t.Errorf("image %q has neither tag nor digest (it means :latest)", image)
	}
	if repo == imagePlaceholder {
		t.Errorf("image %q is the unreplaced placeholder %q", image, imagePlaceholder)
	}
}

func TestContainerImageIsPinned(t *testing.T) {
	checkImageReference(t, agentContainer(t, daemonSet(t)).Image)
}

// ---------------------------------------------------------------------------------------------
// RBAC

// grant is one (apiGroup, resource, verb) or (nonResourceURL, verb) permission.
type grant struct{ group, resource, url, verb string }

func (g grant) String() string {
	if g.url != "" {
		return g.verb + " " + g.url
	}
	return fmt.Sprintf("%s %s.%s", g.verb, g.resource, g.group)
}

// grants flattens rules into single permissions; resourceNames are rejected (none are
// expected, and they would make the flattened view wrong).
func grants(t *testing.T, owner string, rules []rbacv1.PolicyRule) []grant {
	t.Helper()
	var out []grant
	for _, r := range rules {
		if len(r.ResourceNames) > 0 {
			t.Errorf("%s: unexpected resourceNames in rule %+v", owner, r)
		}
		for _, v := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				out = append(out, grant{url: u, verb: v})
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					out = append(out, grant{group: g, resource: res, verb: v})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b grant) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

func readOnly(group string, resources ...string) []grant {
	var out []grant
	for _, r := range resources {
		for _, v := range []string{"get", "list", "watch"} {
			out = append(out, grant{group: group, resource: r, verb: v})
		}
	}
	return out
}

func sortedGrants(gs ...[]grant) []grant {
	out := slices.Concat(gs...)
	slices.SortFunc(out, func(a, b grant) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func clusterRole(t *testing.T, name string) *rbacv1.ClusterRole {
	t.Helper()
	return typed[rbacv1.ClusterRole](t, find(t, install(t), "ClusterRole", name))
}

// The agent only reads: pods, namespaces, nodes (its own for the pod ranges; every node when it
// enforces ClusterNetworkPolicy), NetworkPolicies and ClusterNetworkPolicies, cluster-wide,
// nothing else. The last is granted whether or not the CRD is installed, so that installing it
// later needs no change to the RBAC, only a restart of the agents.
func TestManagerRoleGrantsOnlyReadOfWhatTheAgentWatches(t *testing.T) {
	got := grants(t, managerRole, clusterRole(t, managerRole).Rules)
	want := sortedGrants(readOnly("", "pods", "namespaces", "nodes"), readOnly("networking.k8s.io", "networkpolicies"),
		readOnly("policy.networking.k8s.io", "clusternetworkpolicies"))
	if !slices.Equal(got, want) {
		t.Errorf("%s grants:\n got  %v\n want %v", managerRole, got, want)
	}
}

// Apart from the manager role, the only permissions in the install are those of the secure
// metrics endpoint: creating TokenReviews and SubjectAccessReviews (for the agent), and GET
// /metrics (for scrapers).
func TestOtherRolesGrantOnlyMetricsAuthentication(t *testing.T) {
	if got, want := grants(t, metricsAuth, clusterRole(t, metricsAuth).Rules), sortedGrants([]grant{
		{group: "authentication.k8s.io", resource: "tokenreviews", verb: "create"},
		{group: "authorization.k8s.io", resource: "subjectaccessreviews", verb: "create"},
	}); !slices.Equal(got, want) {
		t.Errorf("%s grants:\n got  %v\n want %v", metricsAuth, got, want)
	}
	if got, want := grants(t, metricsReader, clusterRole(t, metricsReader).Rules),
		[]grant{{url: "/metrics", verb: "get"}}; !slices.Equal(got, want) {
		t.Errorf("%s grants:\n got  %v\n want %v", metricsReader, got, want)
	}
	for _, o := range ofKind(install(t), "ClusterRole") {
		if name := o.Metadata.Name; name != managerRole && name != metricsAuth && name != metricsReader {
			t.Errorf("unexpected ClusterRole %s", name)
		}
	}
}

// One agent per node, no election: no Role at all, and no permission on Leases (nor on the
// ConfigMaps and Events that leader election also used), nor any wildcard.
func TestNoLeaderElectionRBAC(t *testing.T) {
	objs := install(t)
	for _, kind := range []string{"Role", "RoleBinding"} {
		for _, o := range ofKind(objs, kind) {
			t.Errorf("unexpected %s: the agent needs no namespaced permissions (leader election is off)", o)
		}
	}
	for _, o := range ofKind(objs, "ClusterRole") {
		for _, g := range grants(t, o.Metadata.Name, typed[rbacv1.ClusterRole](t, o).Rules) {
			switch {
			case g.group == "coordination.k8s.io" || g.resource == "leases":
				t.Errorf("%s grants %s: leader election is off", o, g)
			case g.resource == "configmaps" || g.resource == "events":
				t.Errorf("%s grants %s: nothing in the agent uses it", o, g)
			case g.group == "*" || g.resource == "*" || g.verb == "*" || g.url == "*":
				t.Errorf("%s grants the wildcard %s", o, g)
			}
		}
	}
}

// The manager and metrics-auth roles are bound to the agent's ServiceAccount, in the agent's
// namespace, and to nobody else; the metrics-reader role is left for the scraper's identity.
func TestBindingsGrantRolesToTheAgentServiceAccountOnly(t *testing.T) {
	objs := install(t)
	bound := map[string]bool{}
	for _, o := range ofKind(objs, "ClusterRoleBinding") {
		b := typed[rbacv1.ClusterRoleBinding](t, o)
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.APIGroup != rbacv1.GroupName {
			t.Errorf("%s: roleRef %+v, want a ClusterRole", o, b.RoleRef)
		}
		find(t, objs, "ClusterRole", b.RoleRef.Name) // the referenced role is part of the install
		bound[b.RoleRef.Name] = true
		want := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: namespace}}
		if !slices.Equal(b.Subjects, want) {
			t.Errorf("%s: subjects %+v, want %+v", o, b.Subjects, want)
		}
	}
	for _, r := range []string{managerRole, metricsAuth} {
		if !bound[r] {
			t.Errorf("ClusterRole %s is not bound to the agent", r)
		}
	}
	if bound[metricsReader] {
		t.Errorf("%s is bound by the install; it is meant for the scraper's identity", metricsReader)
	}
}

// rbacMarker matches a +kubebuilder:rbac marker comment.
var rbacMarker = regexp.MustCompile(`^\s*//\s*\+kubebuilder:rbac:(.*)$`)

// markerGrants parses the +kubebuilder:rbac markers of the Go files (not tests) of the main
// module, the same files `controller-gen paths=./...` reads.
func markerGrants(t *testing.T, root string) []grant {
	t.Helper()
	var out []grant
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root {
				name := d.Name()
				_, statErr := os.Stat(filepath.Join(path, "go.mod")) // another module
				if statErr == nil || name == "bin" || name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(src)) {
			m := rbacMarker.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
			if m == nil {
				continue
			}
			fields := map[string][]string{}
			for kv := range strings.SplitSeq(m[1], ",") {
				k, v, _ := strings.Cut(kv, "=")
				for item := range strings.SplitSeq(v, ";") {
					fields[k] = append(fields[k], strings.Trim(item, `"`))
				}
			}
			for _, v := range fields["verbs"] {
				for _, u := range fields["urls"] {
					out = append(out, grant{url: u, verb: v})
				}
				for _, g := range fields["groups"] {
					for _, r := range fields["resources"] {
						out = append(out, grant{group: g, resource: r, verb: v})
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b grant) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

// config/rbac/role.yaml is generated; it must match the markers in the code (run
// `make manifests` after changing them).
func TestRoleYAMLMatchesTheRBACMarkers(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := unmarshalStrict(b, &role); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	if role.Name != "manager-role" {
		t.Errorf("config/rbac/role.yaml names the role %q, want manager-role (controller-gen rbac:roleName=manager-role)", role.Name)
	}
	got, want := grants(t, "role.yaml", role.Rules), markerGrants(t, root)
	if len(want) == 0 {
		t.Fatal("found no +kubebuilder:rbac markers in the module")
	}
	if !slices.Equal(got, want) {
		t.Errorf("config/rbac/role.yaml is out of date with the +kubebuilder:rbac markers: run `make manifests`\n role.yaml %v\n markers   %v", got, want)
	}
}

// ---------------------------------------------------------------------------------------------
// Metrics Service and ServiceMonitor

// The metrics Service selects the agent pods and targets the port the metrics endpoint binds to.
func TestMetricsServiceTargetsTheMetricsEndpoint(t *testing.T) {
	objs := install(t)
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", daemonSetName))
	svc := typed[corev1.Service](t, find(t, objs, "Service", metricsService))
	podLabels := ds.Spec.Template.Labels
	if len(svc.Spec.Selector) == 0 {
		t.Fatal("the metrics Service has no selector")
	}
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("Service selector %s=%s does not match the agent pods (labels %v)", k, v, podLabels)
		}
	}
	c := agentContainer(t, ds)
	addr, ok := flagValue(c.Args, "metrics-bind-address")
	if !ok {
		t.Fatal("no --metrics-bind-address argument")
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("metrics Service ports %+v, want one", svc.Spec.Ports)
	}
	p := svc.Spec.Ports[0]
	if p.Name != "https" {
		t.Errorf("metrics Service port name %q, want https (config/prometheus selects it by name)", p.Name)
	}
	if got, want := containerPort(t, c, p.TargetPort), bindPort(t, addr); got != want {
		t.Errorf("metrics Service targets container port %d, the agent serves metrics on %d (--metrics-bind-address=%s)", got, want, addr)
	}
}

// config/prometheus (off by default) scrapes the metrics Service: matching labels, port name
// and scheme.
func TestServiceMonitorScrapesTheMetricsService(t *testing.T) {
	root := repoRoot(t)
	objs := decodeAll(t, kustomize(t, root, "build", filepath.Join("config", "prometheus")))
	if len(objs) != 1 || objs[0].Kind != "ServiceMonitor" {
		t.Fatalf("config/prometheus: want one ServiceMonitor, got %v", objs)
	}
	var sm struct {
		Spec struct {
			Endpoints []struct {
				Port   string `json:"port"`
				Scheme string `json:"scheme"`
				Path   string `json:"path"`
			} `json:"endpoints"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(objs[0].raw, &sm); err != nil {
		t.Fatal(err)
	}
	svc := find(t, install(t), "Service", metricsService)
	if len(sm.Spec.Selector.MatchLabels) == 0 {
		t.Error("ServiceMonitor selector is empty")
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the metrics Service has labels %v", k, v, svc.Metadata.Labels)
		}
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v, want one", sm.Spec.Endpoints)
	}
	if e := sm.Spec.Endpoints[0]; e.Port != "https" || e.Scheme != "https" || e.Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %+v, want port https, scheme https, path /metrics", e)
	}
}

// ---------------------------------------------------------------------------------------------
// The installer

// What `make build-installer` does: on a copy of config/, `kustomize edit set image
// controller=$(IMG)` in config/manager, then `kustomize build config/default`. The image must
// land in the DaemonSet (it does not if manager.yaml stops using the `controller` placeholder),
// and the committed kustomization must not be what gets edited.
func TestBuildInstallerSetsTheImage(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "config"), os.DirFS(filepath.Join(root, "config"))); err != nil {
		t.Fatal(err)
	}
	const img = "registry.example.com/flock-net/flock-netpol:v9.8.7"
	kustomize(t, filepath.Join(tmp, "config", "manager"), "edit", "set", "image", imagePlaceholder+"="+img)
	out := kustomize(t, tmp, "build", filepath.Join("config", "default"))
	objs := decodeAll(t, out)
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", daemonSetName))
	if got := agentContainer(t, ds).Image; got != img {
		t.Errorf("after `kustomize edit set image %s=%s` the DaemonSet image is %q", imagePlaceholder, img, got)
	}
	checkImageReference(t, img)
	// dist/install.yaml is this output: it must hold the same objects as the plain build.
	if len(objs) != len(install(t)) {
		t.Errorf("installer has %d objects, config/default %d", len(objs), len(install(t)))
	}
	if objs[0].Kind != "Namespace" {
		t.Errorf("installer starts with %s, want the Namespace", objs[0])
	}
}

// The installed agent collects garbage as the benchmarks do: they read GOGC from manager.yaml
// (testenv.ShippedGOGC), and the DaemonSet that kustomize builds must carry the same.
func TestTheAgentCollectsGarbageAsBenchmarked(t *testing.T) {
	want, err := testenv.ShippedGOGC()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range agentContainer(t, daemonSet(t)).Env {
		if e.Name == "GOGC" {
			if e.Value != strconv.Itoa(want) {
				t.Errorf("the installed DaemonSet sets GOGC=%q, the benchmarks run with %d", e.Value, want)
			}
			return
		}
	}
	if want != 100 {
		t.Errorf("the installed DaemonSet sets no GOGC, the benchmarks run with %d", want)
	}
}

// The Go runtime only knows the container's memory limit through GOMEMLIMIT; without it the heap
// may grow to twice the live data before a collection and the kubelet kills the agent first.
func TestGoMemoryLimitFollowsTheContainerLimit(t *testing.T) {
	c := agentContainer(t, daemonSet(t))
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			t.Fatalf("GOMEMLIMIT must come from the downward API's limits.memory, got %+v", e)
		}
		return
	}
	t.Error("the agent container sets no GOMEMLIMIT")
}
