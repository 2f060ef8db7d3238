package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
)

// The script carries a digest of itself in the comment of the one element of a small set,
// DigestSet (`0x00000000 comment "ruleset <digest>"`). Listing that set (`nft list set inet
// flock-netpol digest`, milliseconds however large the table) tells whether the kernel still
// holds the table last applied: a deleted table, or one replaced by anything else, shows a
// missing or different digest. The kernel notifies the element, comment included, when a
// transaction adds it, which is how the agent tells its own applies from other processes' changes.
//
// The digest is a set element rather than, as it once was, the comment of the base chain's last
// rule, because an ordinary update (a peer joins a set) changes set elements only: with the
// digest in a rule, every update had to flush and refill the base chain; with it in an element,
// an update carries it as one more element change (the old element deleted, the new one added),
// whether the update goes through nft or through netlink.
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
//
// The byte ranges in skip (sorted, disjoint) are left out: they hold the epochs of established
// connections, which follow from the rule sets applied before this one rather than from the
// cluster. Equal digests mean equal verdicts for every new connection; the epochs move only when
// the rest changes too, so a script whose digest is unchanged needs no apply, and anyone can check
// that a node's kernel holds the rules of the current cluster state without knowing its history.
func stampDigest(script []byte, skip [][2]int) string {
	h := sha256.New()
	from := 0
	for _, r := range skip {
		h.Write(script[from:r[0]])
		from = r[1]
	}
	h.Write(script[from:])
	sum := h.Sum(nil)
	digest := hex.EncodeToString(sum[:digestLen/2])
	if i := bytes.Index(script, []byte(digestPlaceholder)); i >= 0 {
		copy(script[i+len(digestPrefix):], digest)
	}
	return digest
}

// Digest returns the digest that a text carries (a script, the kernel's listing of DigestSet,
// a line of the monitor), and false when there is none.
func Digest(text []byte) (string, bool) {
	m := digestPattern.FindSubmatch(text)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

// DigestSet is the name of the set whose one element carries the digest.
const DigestSet = digestSet

// digestKey is the key of DigestSet's one element: any would do, the comment is what counts.
const digestKey = "0x00000000"

// digestSet declares DigestSet with its element, whose comment holds the placeholder that
// stampDigest overwrites. It is written first, so the placeholder is the script's first.
func (s *script) digestSet() {
	e := s.set(digestSet, "mark", "", comment("holds the digest of the script that installed this table, in its element's comment"))
	e.write(append(e.next(), digestKey+" comment "+comment("%s", digestPlaceholder)...))
	e.end()
}

// BaseChain is the name of the hooked chain. In a table of a version before CurrentEpochSet, its
// fast path rule names the epoch in its comment.
const BaseChain = forwardChain

// The current epoch's set holds its stamp with a comment naming the epoch, so that a restarted
// agent can continue after it (no stamp of the old table may pass as the new table's).
const epochPrefix = "epoch "

var epochPattern = regexp.MustCompile(`comment "` + epochPrefix + `([0-9]+)"`)

// CurrentEpochSet is the set that holds the current epoch's stamp; listing it (`nft list set`)
// gives what Epoch reads.
const CurrentEpochSet = currentEpochSet

// Epoch returns the epoch that the kernel's listing of the current epoch's set (or of the whole
// table, or of an older version's base chain) names, and false when there is none (no table, or
// one rendered with Keep).
func Epoch(text []byte) (uint32, bool) {
	m := epochPattern.FindSubmatch(text)
	if m == nil {
		return 0, false
	}
	e, err := strconv.ParseUint(string(m[1]), 10, 32)
	return uint32(e), err == nil
}
