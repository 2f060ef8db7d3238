package manifest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// Objects are the objects the translator reads.
type Objects struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	// Nodes are read for their spec.podCIDRs (render closes the node's unknown pod addresses)
	// and, for the `nodes` peers of ClusterNetworkPolicies, their labels and status.addresses.
	Nodes    []*corev1.Node
	Policies []*networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2).
	ClusterPolicies []*v1alpha2.ClusterNetworkPolicy
}

// stdinName is how the standard input is named in errors and warnings.
const stdinName = "<stdin>"

// maxErrors caps the problems Load reports: a wrong file (or a dump with one systematic problem)
// can hold thousands of bad documents, and the first few say enough.
const maxErrors = 20

// manifestExts are the file name endings read from a directory, as kubectl does.
var manifestExts = []string{".yaml", ".yml", ".json"}

// Load reads every path (a file, a directory — its *.yaml, *.yml and *.json files, sorted by name,
// not recursive — or "-" for stdin, read from the given reader) and returns the objects. warn
// receives one line per skipped object (other kinds, e.g. `skipping apps/v1 Deployment "web" in
// file.yaml (document 1, line 1): flock-netpol reads only Namespaces, Pods, Nodes, NetworkPolicies
// and ClusterNetworkPolicies`);
// it may be nil. Errors name the file (and the document number) and the problem; Load reports
// every problem it finds, one per line, and returns no objects if there was any. See the package
// documentation for the exact rules.
func Load(paths []string, stdin io.Reader, warn func(string)) (Objects, error) {
	if warn == nil {
		warn = func(string) {}
	}
	l := &loader{warn: warn, seen: map[objectKey]location{}}
	if len(paths) == 0 {
		return Objects{}, errors.New("no manifest given: name at least one file, directory or - for standard input")
	}

	stdinRead := false
	for _, path := range paths {
		switch {
		case path == "":
			l.fail(errors.New("empty manifest path"))
		case path == "-":
			if stdin == nil {
				l.fail(errors.New("-: no standard input to read"))
				continue
			}
			if stdinRead {
				// A second read would see nothing; better say so than silently load less.
				l.fail(errors.New("-: standard input can be named only once"))
				continue
			}
			stdinRead = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				l.fail(fmt.Errorf("reading standard input: %w", err))
				continue
			}
			l.source(stdinName, data)
		default:
			files, err := expandPath(path)
			if err != nil {
				l.fail(err)
				continue
			}
			for _, file := range files {
				data, err := os.ReadFile(file)
				if err != nil {
					l.fail(err) // *os.PathError names the file
					continue
				}
				l.source(file, data)
			}
		}
	}
	if err := l.err(); err != nil {
		return Objects{}, err
	}
	return l.objs, nil
}

// expandPath returns the files path stands for: itself if it is a file, the manifest files
// directly in it if it is a directory.
func expandPath(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err // *os.PathError names the path
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name, so the order is deterministic
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if !hasManifestExt(e.Name()) {
			continue
		}
		file := filepath.Join(path, e.Name())
		// Stat rather than trust the entry type, so a symbolic link to a file counts and one to a
		// directory does not.
		info, err := os.Stat(file)
		if err != nil {
			return nil, err
		}
		if info.IsDir() {
			continue
		}
		files = append(files, file)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: directory holds no %s files", path, strings.Join(manifestExts, ", "))
	}
	return files, nil
}

func hasManifestExt(name string) bool {
	for _, ext := range manifestExts {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}
