//go:build linux

package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Beds and scratch namespaces whose process dies without cleaning up (SIGKILL, a crash, or
// `go test -timeout` expiring, which panics without running t.Cleanup) leave their namespaces
// behind. To make that self-healing without ever touching one that is still in use (other test
// processes may be running at the same time), each bed records its owner in the alias of the
// underlay bridge, each scratch namespace in the alias of its loopback link, and New and Scratch
// sweep those whose owner is provably gone.

// ownerTagPrefix starts every owner alias; anything else is never swept.
const ownerTagPrefix = "flock-netpol-netns-bed"

// bedPrefixRE matches the namespace prefix of a bed, as made by New, or of a scratch namespace
// (the prefix followed by "scratch"), as made by Scratch.
var bedPrefixRE = regexp.MustCompile(`^(fnp-[a-z0-9]{6}-)`)

// ownerTag identifies this process: pid, its start time (so a recycled pid does not look alive)
// and its pid namespace (so a process that cannot see our pids never judges us dead).
func ownerTag() string {
	return fmt.Sprintf("%s pid=%d start=%s pidns=%s", ownerTagPrefix, os.Getpid(), procStart(os.Getpid()), pidNS())
}

// procStart returns field 22 (starttime, in clock ticks since boot) of /proc/<pid>/stat, or "" if
// the process does not exist.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may contain spaces and parentheses; fields after it are plain.
	s := string(b)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 20 {
		return ""
	}
	return rest[19] // field 22 overall: rest starts at field 3
}

func pidNS() string {
	s, _ := os.Readlink("/proc/self/ns/pid")
	return s
}

// ownerAlive reports whether the process described by an owner tag still runs. It answers true
// whenever it cannot be sure, so the sweep errs on the side of leaving namespaces alone.
func ownerAlive(tag string) bool {
	if !strings.HasPrefix(tag, ownerTagPrefix+" ") {
		return true // not ours, or not readable
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(tag)[1:] {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	pid, err := strconv.Atoi(kv["pid"])
	if err != nil || kv["start"] == "" || kv["pidns"] != pidNS() {
		return true
	}
	return procStart(pid) == kv["start"]
}

// linkAlias returns the alias of link in namespace ns ("" if unavailable).
func linkAlias(ns, link string) string {
	out, err := run("", "ip", "-n", ns, "-j", "link", "show", link)
	if err != nil {
		return ""
	}
	var links []struct {
		IfAlias string `json:"ifalias"`
	}
	if json.Unmarshal([]byte(out), &links) != nil || len(links) != 1 {
		return ""
	}
	return links[0].IfAlias
}

// SweepStale deletes the namespaces of beds and scratch namespaces whose owning process has exited
// without cleaning up, and returns the names it deleted. Those of live processes, those whose owner
// cannot be determined and namespaces not made by this package are left alone. New calls it, and
// the first Scratch of a process, so leaks from killed or timed-out test runs disappear with the
// next run.
func SweepStale() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	byPrefix := map[string][]string{}
	for _, e := range entries {
		if m := bedPrefixRE.FindStringSubmatch(e.Name()); m != nil {
			byPrefix[m[1]] = append(byPrefix[m[1]], e.Name())
		}
	}
	var deleted []string
	for prefix, names := range byPrefix {
		switch {
		case slices.Equal(names, []string{prefix + scratchSuffix}):
			// A scratch namespace without its owner record is being created right now.
			if ownerAlive(linkAlias(prefix+scratchSuffix, "lo")) {
				continue
			}
		case slices.Contains(names, prefix+"ul"):
			if ownerAlive(linkAlias(prefix+"ul", "br0")) {
				continue
			}
		default:
			// A bed without its underlay namespace is being created or deleted right now (the
			// underlay is created first and deleted last), or was not made by us: skip it.
			continue
		}
		// Underlay last, so an interrupted sweep is still recognisable as a stale bed.
		slices.SortFunc(names, func(a, b string) int {
			return boolInt(a == prefix+"ul") - boolInt(b == prefix+"ul")
		})
		for _, n := range names {
			// Skip what vanished meanwhile (the owner finishing its Close just before
			// exiting, or another process sweeping), so the report names only real leftovers.
			if _, err := os.Stat(filepath.Join(netnsDir, n)); err != nil {
				continue
			}
			deleted = append(deleted, n)
		}
	}
	if len(deleted) == 0 {
		return nil, nil
	}
	// Another test process may be sweeping the same bed right now, so "No such file" errors from
	// ip are expected; what counts is whether the namespaces are gone afterwards.
	if err := Delete(deleted...); err != nil {
		return deleted, fmt.Errorf("stale namespaces could not be deleted: %w", err)
	}
	return deleted, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Leftovers lists namespaces in /var/run/netns whose name starts with prefix. Tests use it to
// assert that a Bed cleaned up after itself.
func Leftovers(prefix string) []string {
	entries, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}
