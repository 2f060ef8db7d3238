package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatal instead of ending the test.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.fatal = args[0].(string) }

func TestStrictTurnsSkipsIntoFailuresOnlyWhenRequired(t *testing.T) {
	for _, tc := range []struct {
		env    string
		strict bool
	}{{"", false}, {"0", false}, {"false", false}, {"1", true}, {"yes", true}} {
		t.Setenv("FLOCK_REQUIRE_KERNEL_TESTS", tc.env)
		r := &recorder{TB: t}
		tb := Strict(r)
		if _, ok := tb.(strictTB); ok != tc.strict {
			t.Errorf("FLOCK_REQUIRE_KERNEL_TESTS=%q: strict = %v, want %v", tc.env, ok, tc.strict)
		}
		if !tc.strict {
			continue
		}
		tb.Skip("no nft")
		if !strings.HasPrefix(r.fatal, "no nft") || !strings.Contains(r.fatal, "failing instead of skipping") {
			t.Errorf("Skip on a strict TB: Fatal(%q), want the reason and the note", r.fatal)
		}
	}
}

func TestAssetsSaysWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBEBUILDER_ASSETS", "")
	for _, tc := range []struct{ dir, want string }{
		{"", "KUBEBUILDER_ASSETS is not set"},
		{"bin/k8s", "not an absolute path"},
		{dir, "does not hold an executable kube-apiserver;"},
	} {
		if _, err := Assets(tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Assets(%q) = %v, want an error containing %q", tc.dir, err, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBEBUILDER_ASSETS", dir)
	if got, err := Assets(""); err != nil || got != dir {
		t.Errorf("Assets(\"\") with KUBEBUILDER_ASSETS=%s = %q, %v", dir, got, err)
	}
}

// TestCanonicalTableLeavesOutWhatTrafficChanges pins that two listings of one table, before and
// after traffic moved its named counters and filled its dynamic sets, compare equal.
func TestCanonicalTableLeavesOutWhatTrafficChanges(t *testing.T) {
	before := `{"nftables": [{"counter": {"family": "inet", "name": "c", "table": "t", "handle": 1, "packets": 0, "bytes": 0}},
		{"set": {"family": "inet", "name": "d", "table": "t", "type": "ipv4_addr", "handle": 2, "flags": ["dynamic", "timeout"]}}]}`
	after := `{"nftables": [{"counter": {"family": "inet", "name": "c", "table": "t", "handle": 1, "packets": 7, "bytes": 420}},
		{"set": {"family": "inet", "name": "d", "table": "t", "type": "ipv4_addr", "handle": 2, "flags": ["dynamic", "timeout"], "elem": ["10.0.0.1"]}}]}`
	a, err := CanonicalTable([]byte(before))
	if err != nil {
		t.Fatal(err)
	}
	b, err := CanonicalTable([]byte(after))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("the listings differ:\n%s\n%s", a, b)
	}
}

// The benchmarks collect garbage as the DaemonSet has the agent do: gogcOf finds its GOGC among
// the manifest's documents, defaults to Go's 100, and refuses a value Go would not take as a
// percentage.
func TestGOGCIsTheDaemonSets(t *testing.T) {
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"
	ds := func(env string) string {
		return "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      containers:\n      - name: agent\n        env:\n" + env
	}
	for _, c := range []struct {
		manifest string
		want     int
		err      bool
	}{
		{ns + "---\n" + ds("        - name: GOGC\n          value: \"50\"\n"), 50, false},
		{ds("        - name: GOMEMLIMIT\n          value: \"1\"\n"), 100, false},
		{ds("        - name: GOGC\n          value: \"off\"\n"), 0, true},
		{ns, 0, true},
	} {
		got, err := gogcOf([]byte(c.manifest))
		if got != c.want || (err != nil) != c.err {
			t.Errorf("gogcOf(%q) = %d, %v; want %d, error %v", c.manifest, got, err, c.want, c.err)
		}
	}
	n, err := ShippedGOGC()
	if err != nil || n <= 0 {
		t.Errorf("ShippedGOGC() = %d, %v", n, err)
	}
}
