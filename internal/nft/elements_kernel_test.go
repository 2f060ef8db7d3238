//go:build linux

package nft

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// elementsTable has a set or map of every kind whose elements the agent changes: addresses,
// named-port endpoints, verdict maps, and the digest's mark with its comment.
const elementsTable = `add table inet flocktest
add chain inet flocktest c1
add chain inet flocktest c2
add set inet flocktest s4 { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 }; }
add set inet flocktest s6 { type ipv6_addr; elements = { fd00::1 }; }
add set inet flocktest ports4 { type ipv4_addr . inet_proto . inet_service; elements = { 10.0.0.1 . udp . 53 }; }
add set inet flocktest ports6 { type ipv6_addr . inet_proto . inet_service; }
add map inet flocktest m4 { type ipv4_addr : verdict; elements = { 10.0.0.1 : jump c1 }; }
add map inet flocktest m6 { type ipv6_addr : verdict; }
add set inet flocktest digest { type mark; elements = { 0x00000000 comment "ruleset aaaa" }; }
add map inet flocktest stamp { type nf_proto : verdict; elements = { ipv4 : goto c1, ipv6 : goto c1 }; }
add set inet flocktest cidrs { type ipv4_addr; flags interval; }
`

var elementChanges = []SetChange{
	{Set: "s4", Decl: "add set inet flocktest s4 { type ipv4_addr;", Delete: []string{"10.0.0.1"}, Add: []string{"10.0.0.3", "10.0.0.4"}},
	{Set: "s6", Decl: "add set inet flocktest s6 { type ipv6_addr;", Add: []string{"fd00::5"}},
	{Set: "ports4", Decl: "add set inet flocktest ports4 { type ipv4_addr . inet_proto . inet_service; comment \"x\";",
		Delete: []string{"10.0.0.1 . udp . 53"}, Add: []string{"10.0.0.9 . tcp . 8080", "10.0.0.9 . sctp . 9"}},
	{Set: "ports6", Decl: "add set inet flocktest ports6 { type ipv6_addr . inet_proto . inet_service;", Add: []string{"fd00::1 . tcp . 65535"}},
	{Set: "m4", Decl: "add map inet flocktest m4 { type ipv4_addr : verdict;", Delete: []string{"10.0.0.1"},
		Add: []string{"10.0.0.1 : goto c2", "10.0.0.7 : jump c1", "10.0.0.8 : drop"}},
	{Set: "m6", Decl: "add map inet flocktest m6 { type ipv6_addr : verdict;", Add: []string{"fd00::2 : goto c1"}},
	{Set: "stamp", Decl: "add map inet flocktest stamp { type nf_proto : verdict;", Delete: []string{"ipv4", "ipv6"},
		Add: []string{"ipv4 : goto c2", "ipv6 : goto c2"}},
	{Set: "digest", Decl: "add set inet flocktest digest { type mark;", Delete: []string{`0x00000000 comment "ruleset aaaa"`},
		Add: []string{`0x00000000 comment "ruleset bbbb"`}},
}

// The same changes as nft commands.
const elementCommands = `delete element inet flocktest s4 { 10.0.0.1 }
add element inet flocktest s4 { 10.0.0.3, 10.0.0.4 }
add element inet flocktest s6 { fd00::5 }
delete element inet flocktest ports4 { 10.0.0.1 . udp . 53 }
add element inet flocktest ports4 { 10.0.0.9 . tcp . 8080, 10.0.0.9 . sctp . 9 }
add element inet flocktest ports6 { fd00::1 . tcp . 65535 }
delete element inet flocktest m4 { 10.0.0.1 }
add element inet flocktest m4 { 10.0.0.1 : goto c2, 10.0.0.7 : jump c1, 10.0.0.8 : drop }
add element inet flocktest m6 { fd00::2 : goto c1 }
delete element inet flocktest stamp { ipv4, ipv6 }
add element inet flocktest stamp { ipv4 : goto c2, ipv6 : goto c2 }
delete element inet flocktest digest { 0x00000000 }
add element inet flocktest digest { 0x00000000 comment "ruleset bbbb" }
`

// elementsNamespace returns a client and a NetlinkElements for a new namespace holding
// elementsTable.
func elementsNamespace(t *testing.T) (*Client, *NetlinkElements) {
	t.Helper()
	c, fd := newNetnsClientFD(t)
	mustApply(t, c, elementsTable)
	nl := &NetlinkElements{NetNS: fd}
	t.Cleanup(func() { _ = nl.Close() })
	return c, nl
}

func listFlocktest(t *testing.T, c *Client) string {
	t.Helper()
	out, err := c.ListTable(context.Background(), "inet", "flocktest")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKernelNetlinkElementsEqualNftCommands pins the netlink encoding of every element kind to
// nft's: the same changes sent by UpdateElements and by nft leave the same table, element
// comments and verdicts included, and a key deleted and added again in one batch holds the new
// element.
func TestKernelNetlinkElementsEqualNftCommands(t *testing.T) {
	byNft, _ := elementsNamespace(t)
	byNetlink, nl := elementsNamespace(t)
	mustApply(t, byNft, elementCommands)
	if err := nl.UpdateElements(context.Background(), "inet", "flocktest", elementChanges); err != nil {
		t.Fatal(err)
	}
	want, got := listFlocktest(t, byNft), listFlocktest(t, byNetlink)
	if got != want {
		t.Errorf("after the netlink batch the table lists\n%s\nafter nft\n%s", got, want)
	}
	if !strings.Contains(got, `comment "ruleset bbbb"`) || strings.Contains(got, "aaaa") {
		t.Errorf("the digest element was not replaced:\n%s", got)
	}
}

// TestKernelNetlinkElementsAllOrNothing pins the batch's atomicity: when one message fails (an
// element that is not there to delete, a set that does not exist), the kernel applies none of the
// batch, and the error says so; a set the encoder does not handle sends nothing.
func TestKernelNetlinkElementsAllOrNothing(t *testing.T) {
	c, nl := elementsNamespace(t)
	before := listFlocktest(t, c)
	good := SetChange{Set: "s4", Decl: "add set inet flocktest s4 { type ipv4_addr;", Add: []string{"10.0.0.99"}}
	for name, bad := range map[string]SetChange{
		"missing element": {Set: "s6", Decl: "add set inet flocktest s6 { type ipv6_addr;", Delete: []string{"fd00::99"}},
		"missing set":     {Set: "nosuch", Decl: "add set inet flocktest nosuch { type ipv4_addr;", Add: []string{"10.0.0.1"}},
		"missing chain":   {Set: "m4", Decl: "add map inet flocktest m4 { type ipv4_addr : verdict;", Add: []string{"10.0.0.5 : jump nosuch"}},
	} {
		err := nl.UpdateElements(context.Background(), "inet", "flocktest", []SetChange{good, bad})
		if err == nil || !strings.Contains(err.Error(), "nftables refused the element update") {
			t.Errorf("%s: err = %v, want the kernel's refusal", name, err)
		}
		if after := listFlocktest(t, c); after != before {
			t.Fatalf("%s: a refused batch changed the table:\n%s", name, after)
		}
	}
	interval := SetChange{Set: "cidrs", Decl: "add set inet flocktest cidrs { type ipv4_addr; flags interval;", Add: []string{"10.1.0.0/16"}}
	if err := nl.UpdateElements(context.Background(), "inet", "flocktest", []SetChange{good, interval}); !errors.Is(err, ErrUnsupportedSet) {
		t.Errorf("interval set: err = %v, want ErrUnsupportedSet", err)
	}
	if after := listFlocktest(t, c); after != before {
		t.Fatalf("an unsupported change sent something:\n%s", after)
	}
}

// TestKernelNetlinkElementsKeepsItsSocketUntilAnError pins the socket's reuse: updates share one
// socket, a refused batch drops it (so that no answer of that batch is read as the next one's),
// and the next update, on a new socket, applies.
func TestKernelNetlinkElementsKeepsItsSocketUntilAnError(t *testing.T) {
	c, nl := elementsNamespace(t)
	ctx := context.Background()
	add := func(a string) error {
		return nl.UpdateElements(ctx, "inet", "flocktest", []SetChange{{Set: "s4", Decl: "add set inet flocktest s4 { type ipv4_addr;", Add: []string{a}}})
	}
	if err := add("10.0.0.91"); err != nil {
		t.Fatal(err)
	}
	first := nl.conn
	if err := add("10.0.0.92"); err != nil || nl.conn != first || first == nil {
		t.Fatalf("the second update: err %v, socket reused %v", err, nl.conn == first)
	}
	bad := SetChange{Set: "s6", Decl: "add set inet flocktest s6 { type ipv6_addr;", Delete: []string{"fd00::99"}}
	if err := nl.UpdateElements(ctx, "inet", "flocktest", []SetChange{bad, bad, bad}); err == nil || nl.conn != nil {
		t.Fatalf("a refused batch: err %v, socket kept %v", err, nl.conn != nil)
	}
	if err := add("10.0.0.93"); err != nil {
		t.Fatalf("the update after a refused one: %v", err)
	}
	if got := listFlocktest(t, c); !strings.Contains(got, "10.0.0.91") || !strings.Contains(got, "10.0.0.92") || !strings.Contains(got, "10.0.0.93") {
		t.Errorf("the table lacks an added element:\n%s", got)
	}
	if err := nl.Close(); err != nil || nl.conn != nil {
		t.Errorf("Close: %v", err)
	}
}
