package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// managerManifest is the DaemonSet's file, from the repository's root.
const managerManifest = "config/manager/manager.yaml"

// ShippedGOGC returns the GOGC that the agent's DaemonSet sets (config/manager/manager.yaml in
// the repository, see RepoRoot); 100, Go's default, when it sets none.
func ShippedGOGC() (int, error) {
	root, err := RepoRoot()
	if err != nil {
		return 0, fmt.Errorf("%w (or set GOGC)", err)
	}
	data, err := os.ReadFile(filepath.Join(root, managerManifest))
	if err != nil {
		return 0, err
	}
	return gogcOf(data)
}

// RepoRoot returns the directory of this module's go.mod, found upwards from the working
// directory (the package's directory under `go test`).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/flock-net/flock-netpol\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (go.mod of github.com/flock-net/flock-netpol) above the working directory")
		}
		dir = parent
	}
}

// gogcOf returns the GOGC of the DaemonSet's containers in a manifest of several documents.
func gogcOf(manifest []byte) (int, error) {
	for doc := range bytes.SplitSeq(manifest, []byte("\n---\n")) {
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal(doc, &ds); err != nil {
			return 0, fmt.Errorf("%s: %w", managerManifest, err)
		}
		if ds.Kind != "DaemonSet" {
			continue
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.Name != "GOGC" {
					continue
				}
				n, err := strconv.Atoi(e.Value)
				if err != nil || n <= 0 {
					return 0, fmt.Errorf("%s: container %s sets GOGC=%q, not a positive percentage", managerManifest, c.Name, e.Value)
				}
				return n, nil
			}
		}
		return 100, nil
	}
	return 0, fmt.Errorf("%s holds no DaemonSet", managerManifest)
}

// UseShippedGOGC makes this process, and the processes it starts, collect garbage as the agent's
// DaemonSet has it do (ShippedGOGC), so that what a benchmark measures is what the agent does;
// unless GOGC is set already, for an experiment with another value. It returns the value in
// force.
func UseShippedGOGC() (string, error) {
	if v := os.Getenv("GOGC"); v != "" {
		return v, nil
	}
	n, err := ShippedGOGC()
	if err != nil {
		return "", err
	}
	debug.SetGCPercent(n)
	v := strconv.Itoa(n)
	return v, os.Setenv("GOGC", v)
}

// RunWithShippedGOGC runs a package's tests and benchmarks after UseShippedGOGC, for its
// TestMain; it returns the exit code, 2 when the DaemonSet's GOGC cannot be read.
func RunWithShippedGOGC(m *testing.M) int {
	if _, err := UseShippedGOGC(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return m.Run()
}
