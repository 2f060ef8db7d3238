package render

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/flock-net/flock-netpol/internal/ruleset"
)

// Fixed names in the table.
const (
	DefaultTable = "flock-netpol"

	forwardChain         = "filter-forward"
	inputChain           = "filter-input" // only with ClusterNetworkPolicies that police a pod's egress
	nodeMapV4            = "node-egress-v4"
	nodeMapV6            = "node-egress-v6"
	ingressDispatchChain = "ingress-dispatch"
	egressMapV4          = "egress-pods-v4"
	egressMapV6          = "egress-pods-v6"
	ingressMapV4         = "ingress-pods-v4"
	ingressMapV6         = "ingress-pods-v6"
	localPodsSet         = "local-pods" // + family suffix
	freshName            = "fresh"      // chains: + family suffix; maps: + "-in"/"-out" + family suffix
	windowName           = "window"     // + "-in-<epoch>", "-out-<epoch>" + family suffix
	allowChain           = "allow"
	stampName            = "stamp"         // chains: + "-<epoch>"; the map: alone
	currentEpochSet      = "current-epoch" // holds the current epoch's stamp
	digestSet            = "digest"        // see digest.go; not "ruleset", a keyword of nft's parser

	// maxNameLen keeps generated chain and set names well inside the kernel's limit (256 bytes
	// since Linux 4.14-era NFT_NAME_MAXLEN) and readable in `nft list` output.
	maxNameLen = 100
)

// baseChain describes the one hooked chain.
var baseChain = struct {
	name, typ, hook, priority, policy string
}{forwardChain, "filter", "forward", "filter", "accept"}

// generatedName returns a stable, unique, readable name: a prefix, a short hash of the full
// identity (so truncating the readable part can never make two names collide), the readable part
// (namespace/name...) cut to fit, then a suffix that is always kept. Kubernetes names only hold
// [a-z0-9.-], and '/' separates them; all of that is valid in an nft identifier, which must start
// with a letter (the prefix). A name that never passed API validation (an object written straight
// into etcd) may hold anything: every other byte of the readable part becomes '_', so that one
// such object cannot make nft reject the whole script; the hash of the identity keeps names unique.
func generatedName(prefix, identity, readable, suffix string) string {
	// Built in one buffer, with one allocation for the result: a render computes the name of
	// every chain, set and counter of the table (thousands at 150,000 pods) on every event.
	var in [160]byte
	sum := sha256.Sum256(append(append(append(in[:0], prefix...), 0), identity...))
	var h [8]byte
	base32.StdEncoding.Encode(h[:], sum[:5]) // 8 characters, A-Z and 2-7
	if room := maxNameLen - len(prefix) - len(h) - 2 - len(suffix); len(readable) > room {
		readable = readable[:max(room, 0)]
	}
	var name strings.Builder
	name.Grow(len(prefix) + len(h) + 2 + len(readable) + len(suffix))
	name.WriteString(prefix)
	name.WriteByte('-')
	name.Write(h[:])
	name.WriteByte('-')
	if plainIdentifier(readable) {
		name.WriteString(readable) // the usual case: a name that passed API validation
	} else {
		for _, r := range readable {
			name.WriteRune(identifierRune(r))
		}
	}
	name.WriteString(suffix)
	return name.String()
}

// plainIdentifier reports whether identifierRune keeps every byte of s.
func plainIdentifier(s string) bool {
	for i := range len(s) {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// identifierRune keeps the runes an nft identifier may hold after its first letter and turns any
// other rune into '_'.
func identifierRune(r rune) rune {
	if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || strings.ContainsRune("/-_.", r) {
		return r
	}
	return '_'
}

var commentReplacer = strings.NewReplacer(`"`, "'", `\`, "/", "\n", " ", "\x00", " ")

// comment quotes s for an nft comment; quotes and backslashes cannot be escaped there, so they
// are replaced, and so are newlines and NUL bytes, which end it (a name that never passed API
// validation may hold them).
func comment(format string, args ...any) string {
	s := commentReplacer.Replace(fmt.Sprintf(format, args...))
	if len(s) > 120 { // the kernel caps user data; comments are for people, so cut them short
		s = s[:117] + "..."
	}
	return `"` + s + `"`
}

// ValidateTableName reports whether name can be used as the table name: an nft identifier.
func ValidateTableName(name string) error {
	if name == "" {
		return fmt.Errorf("table name is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("table name %q is longer than %d characters", name, maxNameLen)
	}
	for i, r := range name {
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if i == 0 && !letter {
			return fmt.Errorf("table name %q must start with a letter", name)
		}
		if !letter && !(r >= '0' && r <= '9') && !strings.ContainsRune("-_.", r) {
			return fmt.Errorf("table name %q may only hold letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// ruleSetName names a set of one policy rule: its peers ("peers") or named ports ("named").
func ruleSetName(kind string, k ruleset.PolicyKey, d direction, index int, f family) string {
	return generatedName(kind, fmt.Sprintf("%s/%s/%d", k, d.name, index), fmt.Sprintf("%s/%s%d", k, d.short, index), f.suffix)
}

// Names of what the table holds for a pod, a policy and a rule, as `nft list table` shows them
// (for explanations that point into the table).

func dir(in bool) direction {
	if in {
		return ingress
	}
	return egress
}

// PodChain names the chain of an isolated local pod in one direction.
func PodChain(ingress bool, namespace, name string) string {
	return podChainName(&ruleset.Target{Namespace: namespace, Name: name}, dir(ingress))
}

// AdminChain names the chain of a local pod's Admin tier in one direction.
func AdminChain(ingress bool, namespace, name string) string {
	return adminChainName(&ruleset.Target{Namespace: namespace, Name: name}, dir(ingress))
}

// ClusterChain names the chain of a ClusterNetworkPolicy's rules in one direction.
func ClusterChain(ingress bool, name string) string { return clusterChainName(dir(ingress), name) }

// PolicyChain names the chain of a policy's rules in one direction.
func PolicyChain(ingress bool, k ruleset.PolicyKey) string { return policyChainName(dir(ingress), k) }

// PeerSet names the peer set of a policy rule, per family.
func PeerSet(ingress bool, k ruleset.PolicyKey, index int, v4 bool) string {
	return ruleSetName("peers", k, dir(ingress), index, familyOf(v4))
}

// NamedPortSet names the named-port set of a policy rule, per family.
func NamedPortSet(ingress bool, k ruleset.PolicyKey, index int, v4 bool) string {
	return ruleSetName("named", k, dir(ingress), index, familyOf(v4))
}

// DispatchMap names the verdict map that sends a direction's isolated pods to their chains.
func DispatchMap(ingress, v4 bool) string {
	switch {
	case ingress && v4:
		return ingressMapV4
	case ingress:
		return ingressMapV6
	case v4:
		return egressMapV4
	}
	return egressMapV6
}

// NodeEgressMap names the verdict map the input hook sends local pods' traffic to this node
// through, to the chains of their ClusterNetworkPolicy tiers.
func NodeEgressMap(v4 bool) string {
	if v4 {
		return nodeMapV4
	}
	return nodeMapV6
}

func familyOf(v4 bool) family {
	if v4 {
		return families[0]
	}
	return families[1]
}
