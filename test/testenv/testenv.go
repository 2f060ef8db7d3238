// Package testenv is what every test that needs the kernel or a control plane shares: whether CI
// requires those tests to run, the check for root, ip and nft, a testing.TB whose skips fail, and
// where the envtest binaries are. Test code only; the agent never imports it.
package testenv

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Required reports whether FLOCK_REQUIRE_KERNEL_TESTS (set by .ci/run) asks for the skips of
// kernel, datapath and envtest tests to become failures, so that a broken CI machine cannot
// silently stop running them.
func Required() bool {
	v := os.Getenv("FLOCK_REQUIRE_KERNEL_TESTS")
	return v != "" && v != "0" && v != "false"
}

// CheckKernel returns nil when this process can build network namespaces and program nftables in
// them: root, and `ip` and `nft` in $PATH. Otherwise the error says everything that is missing.
func CheckKernel() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not running as root (network namespaces and nftables need CAP_SYS_ADMIN and CAP_NET_ADMIN)"))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		errs = append(errs, errors.New("`ip` is not in $PATH (apt-get install iproute2)"))
	}
	if _, err := exec.LookPath("nft"); err != nil {
		errs = append(errs, errors.New("`nft` is not in $PATH (apt-get install nftables)"))
	}
	return errors.Join(errs...)
}

// Strict returns tb, or when Required, a wrapper of tb whose Skip, Skipf and SkipNow fail the test
// instead: helpers deep in a harness can then skip as usual and still fail in CI.
func Strict(tb testing.TB) testing.TB {
	if Required() {
		return strictTB{tb}
	}
	return tb
}

// RequireKernel skips the test (fails it when Required) unless CheckKernel passes, and returns
// Strict(tb) for the rest of the set-up. what names the test group in the message.
func RequireKernel(tb testing.TB, what string) testing.TB {
	tb.Helper()
	tb = Strict(tb)
	if err := CheckKernel(); err != nil {
		tb.Skipf("%s: skipping, needs root, ip and nft: %v", what, err)
	}
	return tb
}

type strictTB struct{ testing.TB }

const strictNote = " [FLOCK_REQUIRE_KERNEL_TESTS is set: failing instead of skipping]"

func (s strictTB) Skip(args ...any) {
	s.Helper()
	s.Fatal(fmt.Sprint(args...) + strictNote)
}

func (s strictTB) Skipf(format string, args ...any) {
	s.Helper()
	s.Fatal(fmt.Sprintf(format, args...) + strictNote)
}

func (s strictTB) SkipNow() {
	s.Helper()
	s.Fatal("skipped" + strictNote)
}

// Assets returns the directory holding the envtest binaries (kube-apiserver and etcd): dir, or
// when dir is empty, $KUBEBUILDER_ASSETS. The error says what is missing and how to provide it;
// envtest itself would fall back to /usr/local/kubebuilder/bin and fail much less clearly.
func Assets(dir string) (string, error) {
	const how = "build them with `make envtest` (`make test` sets KUBEBUILDER_ASSETS itself), or set " +
		"KUBEBUILDER_ASSETS to the absolute path of a directory holding kube-apiserver and etcd, e.g. " +
		"KUBEBUILDER_ASSETS=$PWD/bin/k8s/1.37.2"
	if dir == "" {
		dir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if dir == "" {
		return "", errors.New("envtest binaries not found: KUBEBUILDER_ASSETS is not set; " + how)
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS=%q is not an absolute path (go test runs each package in its own directory); %s", dir, how)
	}
	var missing []string
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, bin))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s does not hold an executable %s; %s", dir, strings.Join(missing, " or "), how)
	}
	return dir, nil
}

// CanonicalTable returns the JSON listing of a table (`nft -j list table`) in a form that two
// tables holding the same objects share whatever their history: handles removed, set and map
// elements sorted, objects ordered by kind and name, rules kept in their order within their chain,
// and what traffic changes left out: the values of named counters, the elements that packets add
// to dynamic sets.
// (nft lists objects in the order they were created, and a hash set's elements in the order its
// table holds them, which differ between a table replaced whole and one updated in place.)
func CanonicalTable(listing []byte) (string, error) {
	var v any
	if err := json.Unmarshal(listing, &v); err != nil {
		return "", fmt.Errorf("nft -j output: %w", err)
	}
	v = canonical(v)
	if m, ok := v.(map[string]any); ok {
		if objs, ok := m["nftables"].([]any); ok {
			for _, o := range objs {
				stateless(o)
			}
			slices.SortStableFunc(objs, func(a, b any) int {
				ka, na := objectKey(a)
				kb, nb := objectKey(b)
				return cmp.Or(cmp.Compare(ka, kb), cmp.Compare(na, nb))
			})
		}
	}
	b, err := json.MarshalIndent(v, "", " ")
	return string(b), err
}

func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "handle")
		for k, e := range x {
			x[k] = canonical(e)
		}
		if elems, ok := x["elem"].([]any); ok {
			slices.SortFunc(elems, func(a, b any) int {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				return bytes.Compare(ja, jb)
			})
		}
		return x
	case []any:
		for i := range x {
			x[i] = canonical(x[i])
		}
		return x
	}
	return v
}

// stateless removes from one object of a listing what traffic changes.
func stateless(v any) {
	m, _ := v.(map[string]any)
	if c, ok := m["counter"].(map[string]any); ok {
		delete(c, "packets")
		delete(c, "bytes")
	}
	if set, ok := m["set"].(map[string]any); ok {
		if flags, _ := set["flags"].([]any); slices.Contains(flags, any("dynamic")) {
			delete(set, "elem")
		}
	}
}

// objectKey orders a listing's objects: kind, then name (a rule's chain).
func objectKey(v any) (kind, name string) {
	m, _ := v.(map[string]any)
	for k, o := range m {
		f, _ := o.(map[string]any)
		name, _ = f["name"].(string)
		if k == "rule" {
			name, _ = f["chain"].(string)
		}
		return k, name
	}
	return "", ""
}
