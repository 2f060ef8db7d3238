package controller

import (
	"context"
	"crypto/sha256"
	"regexp"
)

// The periodic check reads one small set (render.DigestSet) and compares the digest the last
// applied script carries there: cheap, but blind to a rule or element changed inside the table.
// Every FullCheckEvery checks it also lists the whole table and compares it with the listing of
// the first full comparison after the last apply (the baseline): `nft list table` prints a table
// the same way for the same contents, once the counters' values are taken out. The baseline is
// taken at a check, not right after the apply, because listing a table of 150,000 elements costs
// nft seconds (see docs/operations.md): a change made between the apply and that first listing is
// the monitor's to see (see drift.go); this check catches what the monitor missed later (it had
// stopped, or nft lost events).

// tableBaseline is the hash of the table's listing for one applied digest.
type tableBaseline struct {
	digest string
	hash   [sha256.Size]byte
}

// What changes in a listing without anyone changing the table: the values of counters (a rule's
// "counter packets N bytes M", a named counter's "packets N bytes M" line), and the elements that
// packets add to the drop-log sets (render's dynamic sets, named drop-log-v4 and drop-log-v6).
var (
	counterValues = regexp.MustCompile(`(counter )?packets \d+ bytes \d+`)
	dynamicElems  = regexp.MustCompile(`(set drop-log-v[46] \{[^}]*?)\s*elements = \{[^}]*\}`)
)

// tableHash returns the hash of a listing with what traffic changes taken out.
func tableHash(listing string) [sha256.Size]byte {
	listing = dynamicElems.ReplaceAllString(listing, "$1")
	return sha256.Sum256([]byte(counterValues.ReplaceAllLiteralString(listing, "counter")))
}

// fullCheck reports whether the table still lists as it did at the first full check of digest;
// it is true when no full comparison is due.
func (r *Reconciler) fullCheck(ctx context.Context, digest string) (bool, error) {
	r.mu.Lock()
	r.checks++
	due := r.FullCheckEvery > 0 && r.checks%r.FullCheckEvery == 0
	base := r.baseline
	r.mu.Unlock()
	if !due {
		return true, nil
	}
	listing, err := r.Inspector.ListTable(ctx, "inet", r.Table)
	if err != nil {
		return false, err
	}
	h := tableHash(listing)
	if base.digest != digest {
		r.mu.Lock()
		r.baseline = tableBaseline{digest: digest, hash: h}
		r.mu.Unlock()
		return true, nil
	}
	if h != base.hash {
		r.Log.Info("the table's contents changed behind the agent's back (full comparison)", "digest", digest)
		return false, nil
	}
	return true, nil
}
