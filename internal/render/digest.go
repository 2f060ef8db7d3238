package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
)

// The base chain's last rule carries a digest of the whole script in its comment. Listing that
// chain (`nft list chain inet flock-netpol filter-forward`) tells whether the kernel still holds
// the table last applied: a deleted table, or one replaced by anything else, shows a missing or
// different digest. `nft monitor` prints the rule, comment included, when a script adds it, which
// is how the agent tells its own applies from other processes' changes.
const (
	digestPrefix = "ruleset "
	digestLen    = 16 // hex characters: 64 bits, plenty to tell two scripts apart
)

var (
	digestPlaceholder = digestPrefix + string(bytes.Repeat([]byte("0"), digestLen))
	digestPattern     = regexp.MustCompile(fmt.Sprintf(`%s([0-9a-f]{%d})`, digestPrefix, digestLen))
)

// stampDigest replaces the first placeholder with the digest of the script as rendered with the
// placeholder in it, so the digest is a pure function of the script's content, and returns it.
// The digest is written over the placeholder's zeros, in place: the script can be megabytes long.
func stampDigest(script []byte) string {
	sum := sha256.Sum256(script)
	digest := hex.EncodeToString(sum[:digestLen/2])
	if i := bytes.Index(script, []byte(digestPlaceholder)); i >= 0 {
		copy(script[i+len(digestPrefix):], digest)
	}
	return digest
}

// Digest returns the digest that the kernel's listing of the base chain (`nft list chain`)
// carries, and false when there is none.
func Digest(text []byte) (string, bool) {
	m := digestPattern.FindSubmatch(text)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// BaseChain is the name of the hooked chain, whose last rule carries the digest.
const BaseChain = forwardChain
