package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"regexp"
	"strconv"
)

// The script carries a digest of the table it installs (tableDigest) in the comment of the one
// element of a small set, DigestSet (`0x00000000 comment "ruleset <digest>"`). Listing that set
// (`nft list set inet flock-netpol digest`, milliseconds however large the table) tells whether
// the kernel still holds the table last applied: a deleted table, or one replaced by anything
// else, shows a missing or different digest. The kernel notifies the element, comment included,
// when a transaction adds it, which is how the agent tells its own applies from other processes'
// changes.
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

// tableDigest returns the digest of the table a script installs: its counters and limits, its
// chains with their rules, its sets and maps with their elements, in the script's order. It reads
// the Table rather than the text, so that a Render without text (Options.TableOnly) gives the
// same digest as one with, and the elements of a set that several Renders share through a Memo
// (most of a table at cluster scale) are read once: each set's elements are summed apart
// (setObj.sum) and the table's digest takes the sum.
//
// Left out are DigestSet (which holds the digest) and what holds the epochs of established
// connections (setObj.epoch, chainObj.epoch), which follow from the rule sets applied before this
// one rather than from the cluster. Equal digests mean equal verdicts for every new connection;
// the epochs move only when the rest changes too, so a script whose digest is unchanged needs no
// apply, and anyone can check that a node's kernel holds the rules of the current cluster state
// without knowing its history.
func tableDigest(t *Table) string {
	d, inner := newDigester(), newDigester()
	for _, key := range t.objOrder {
		d.str(t.objects[key].decl)
	}
	for _, name := range t.chainOrder {
		if c := t.chains[name]; !c.epoch {
			d.str(c.decl)
			d.count(len(c.rules))
			for _, r := range c.rules {
				d.str(r)
			}
		}
	}
	for _, name := range t.setOrder {
		if s := t.sets[name]; !s.epoch && name != digestSet {
			d.str(s.decl)
			sum := s.sum
			if sum == nil {
				sum = new(elementsSum)
			}
			d.buf = append(d.buf, sum.of(&s.elems, inner)...)
		}
	}
	return hex.EncodeToString(d.sum()[:digestLen/2])
}

// elementsSum is the SHA-256 of a set's elements, computed on first use.
type elementsSum struct {
	done bool
	sum  [sha256.Size]byte
}

// of returns the sum of elems, computing it with d (whose hash it resets) the first time.
func (e *elementsSum) of(elems *elemList, d *digester) []byte {
	if !e.done {
		d.h.Reset()
		d.count(elems.Len())
		for i := range elems.Len() {
			d.str(elems.at(i))
		}
		copy(e.sum[:], d.sum())
		e.done = true
	}
	return e.sum[:]
}

// digester feeds a hash with strings, each preceded by its length (so that no two sequences of
// strings feed the same bytes), through a buffer rather than a write per string.
type digester struct {
	h   hash.Hash
	buf []byte
}

const digesterBuffer = 32 << 10

func newDigester() *digester {
	return &digester{h: sha256.New(), buf: make([]byte, 0, digesterBuffer+512)}
}

func (d *digester) count(n int) {
	d.buf = binary.AppendUvarint(d.buf, uint64(n))
}

func (d *digester) str(s string) {
	d.count(len(s))
	d.buf = append(d.buf, s...)
	if len(d.buf) >= digesterBuffer {
		d.h.Write(d.buf)
		d.buf = d.buf[:0]
	}
}

func (d *digester) sum() []byte {
	d.h.Write(d.buf)
	d.buf = d.buf[:0]
	return d.h.Sum(nil)
}

// stampDigest writes digest over the placeholder in the script's text, in place: the script can
// be megabytes long, and the placeholder is near its start (DigestSet is declared first).
func stampDigest(script []byte, digest string) {
	if i := bytes.Index(script, []byte(digestPlaceholder)); i >= 0 {
		copy(script[i+len(digestPrefix):], digest)
	}
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
