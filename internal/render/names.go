package render

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// Fixed names in the table.
const (
	DefaultTable = "flock-netpol"

	forwardChain         = "filter-forward"
	ingressDispatchChain = "ingress-dispatch"
	egressMapV4          = "egress-pods-v4"
	egressMapV6          = "egress-pods-v6"
	ingressMapV4         = "ingress-pods-v4"
	ingressMapV6         = "ingress-pods-v6"
	podCIDRsSet          = "pod-cidrs"  // + family suffix
	localPodsSet         = "local-pods" // + family suffix
	freshSet             = "fresh"      // + "-in"/"-out" + family suffix
	allowChain           = "allow"

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
	sum := sha256.Sum256([]byte(prefix + "\x00" + identity))
	h := base32.StdEncoding.EncodeToString(sum[:5]) // 8 characters, A-Z and 2-7
	name := prefix + "-" + h + "-"
	if room := maxNameLen - len(name) - len(suffix); len(readable) > room {
		readable = readable[:max(room, 0)]
	}
	return name + strings.Map(identifierRune, readable) + suffix
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
