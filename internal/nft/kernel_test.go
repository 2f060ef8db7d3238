package nft

// These tests run the Client against the real nft binary, in a throwaway network namespace: what
// the client makes of nft's output, exit status and stderr (errors that carry nft's complaint and
// its location, the IsNotFound and IsCommandNotFound classifications, Check's -c, ListTable). What
// the kernel does with the agent's rendered scripts (replacing the table, rolling back a rejected
// transaction) is tested in test/kernel.

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/netns"
)

// newNetnsClient returns a Client that runs nft inside a new throwaway namespace, the same way
// the agent is configured with --nft "ip netns exec NAME nft".
func newNetnsClient(t *testing.T) *Client {
	t.Helper()
	c, _ := newNetnsClientFD(t)
	return c
}

// newNetnsClientFD is newNetnsClient, with the namespace open for netlink (as --netns) for the
// test's duration.
func newNetnsClientFD(t *testing.T) (*Client, int) {
	t.Helper()
	ns := netns.NewScratch(t)
	c, err := New(Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, netns.OpenFD(t, ns)
}

// Chain names avoid words such as "fwd" and "forward" that nft's parser treats as keywords.
const initialScript = `table inet flocktest {
	set allowed {
		type ipv4_addr
		elements = { 10.0.0.1 }
	}
	chain forward_chain {
		type filter hook forward priority 0; policy accept;
		ip saddr @allowed accept
	}
}
`

// replacement builds a script that atomically swaps table inet flocktest for a new definition,
// followed by lastLine. The add makes the delete valid when the table does not exist yet.
func replacement(lastLine string) string {
	return `add table inet flocktest
delete table inet flocktest
table inet flocktest {
	set allowed {
		type ipv4_addr
		elements = { 10.0.0.2 }
	}
	chain replaced_chain {
		type filter hook forward priority 0; policy drop;
		ip saddr @allowed accept
	}
}
` + lastLine
}

func mustApply(t *testing.T, c *Client, script string) {
	t.Helper()
	if err := c.Apply(context.Background(), []byte(script)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func mustList(t *testing.T, c *Client) string {
	t.Helper()
	out, err := c.ListTable(context.Background(), "inet", "flocktest")
	if err != nil {
		t.Fatalf("ListTable: %v", err)
	}
	return out
}

func assertContains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

func TestKernelApplyAndList(t *testing.T) {
	c := newNetnsClient(t)
	mustApply(t, c, initialScript)
	assertContains(t, "table listing", mustList(t, c),
		"table inet flocktest {",
		"set allowed {",
		"10.0.0.1",
		"chain forward_chain {",
		"hook forward",
		"policy accept",
		"ip saddr @allowed accept",
	)
}

// TestKernelApplyErrorCarriesNftsComplaint checks the error of a failed apply: nft's complaint and
// the location of the offending line reach it, and the predicates classify it. That the kernel keeps
// the previous table is TestARejectedScriptLeavesThePreviousTableIntact in test/kernel.
func TestKernelApplyErrorCarriesNftsComplaint(t *testing.T) {
	tests := []struct {
		name     string
		lastLine string
		// wantErr are parts of nft's complaint that must reach the error text, besides the
		// location of the script's last line.
		wantErr      []string
		wantNotFound bool
	}{
		{
			// Only the kernel can reject this (the element exists in the new set), so the whole
			// batch, including the delete of the old table, has reached the kernel and must be
			// rolled back there.
			name:     "kernel rejects last statement",
			lastLine: "create element inet flocktest allowed { 10.0.0.2 }\n",
			wantErr:  []string{"File exists", "create element inet flocktest allowed { 10.0.0.2 }", "^^^"},
		},
		{
			name:         "last statement references a missing chain",
			lastLine:     "add rule inet flocktest no_such_chain accept\n",
			wantErr:      []string{"No such file or directory", "no_such_chain", "^^^"},
			wantNotFound: true,
		},
		{
			name:     "syntax error on last line",
			lastLine: "this is not nft syntax\n",
			wantErr:  []string{"syntax error", "this is not nft syntax"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newNetnsClient(t)
			mustApply(t, c, initialScript)

			err := c.Apply(context.Background(), []byte(replacement(tt.lastLine)))
			if err == nil {
				t.Fatal("Apply of a broken script succeeded")
			}
			lastLineNo := strings.Count(replacement(""), "\n") + 1
			assertContains(t, "error text", err.Error(), tt.wantErr...)
			assertContains(t, "error text", err.Error(), fmt.Sprintf("/dev/stdin:%d:", lastLineNo))
			if got := IsNotFound(err); got != tt.wantNotFound {
				t.Errorf("IsNotFound = %v, want %v (err: %v)", got, tt.wantNotFound, err)
			}
			if IsCommandNotFound(err) {
				t.Errorf("IsCommandNotFound is true for %v", err)
			}
		})
	}
}

func TestKernelCheckChangesNothing(t *testing.T) {
	c := newNetnsClient(t)

	// On an empty namespace: checking a valid script must not create the table.
	if err := c.Check(context.Background(), []byte(initialScript)); err != nil {
		t.Fatalf("Check of a valid script: %v", err)
	}
	if _, err := c.ListTable(context.Background(), "inet", "flocktest"); !IsNotFound(err) {
		t.Fatalf("after Check, ListTable err = %v; want IsNotFound (Check must not create the table)", err)
	}

	// On an existing table: checking a replacement must not replace it.
	mustApply(t, c, initialScript)
	before := mustList(t, c)
	if err := c.Check(context.Background(), []byte(replacement(""))); err != nil {
		t.Fatalf("Check of a valid replacement: %v", err)
	}
	if after := mustList(t, c); after != before {
		t.Errorf("Check changed the table.\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// And it does find problems only the kernel detects.
	err := c.Check(context.Background(), []byte(replacement("create element inet flocktest allowed { 10.0.0.2 }\n")))
	if err == nil {
		t.Fatal("Check of a script the kernel rejects succeeded")
	}
	assertContains(t, "Check error", err.Error(), "File exists", "-c -f -")
	if after := mustList(t, c); after != before {
		t.Errorf("failed Check changed the table.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestKernelListMissingTable(t *testing.T) {
	c := newNetnsClient(t)
	out, err := c.ListTable(context.Background(), "inet", "flocktest")
	if err == nil {
		t.Fatalf("ListTable of a missing table succeeded: %q", out)
	}
	if !IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}
	if IsCommandNotFound(err) {
		t.Errorf("IsCommandNotFound(%v) = true", err)
	}
	assertContains(t, "error text", err.Error(), "No such file or directory", "list table inet flocktest")
}

// TestKernelListSetMissing pins that a missing set, in a missing table or in an existing one, is
// IsNotFound, as the periodic check needs to tell a deleted table from a failing nft.
func TestKernelListSetMissing(t *testing.T) {
	c := newNetnsClient(t)
	ctx := context.Background()
	for _, setup := range []string{"", "add table inet flocktest\n"} {
		if setup != "" {
			if err := c.Apply(ctx, []byte(setup)); err != nil {
				t.Fatal(err)
			}
		}
		out, err := c.ListSet(ctx, "inet", "flocktest", "digest")
		if !IsNotFound(err) {
			t.Errorf("after %q: ListSet of a missing set = %q, %v; want IsNotFound", setup, out, err)
		}
	}
}

func TestKernelMissingBinary(t *testing.T) {
	ns := netns.NewScratch(t)
	c, err := New(Config{Command: []string{"ip", "netns", "exec", ns, "flocktest-no-such-nft"}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Apply(context.Background(), []byte(initialScript))
	if !IsCommandNotFound(err) {
		t.Errorf("IsCommandNotFound(%v) = false", err)
	}
	if IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = true for a missing binary", err)
	}
	assertContains(t, "error text", err.Error(),
		`nft command "ip netns exec `+ns+` flocktest-no-such-nft" not found`,
		`cannot execute "flocktest-no-such-nft"`,
		"install the nftables package")

	// A missing namespace is a configuration error, but neither "not found" predicate applies:
	// both binaries exist and nft never ran.
	c, err = New(Config{Command: []string{"ip", "netns", "exec", ns + "-missing", "nft"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListTable(context.Background(), "inet", "flocktest")
	if err == nil || IsNotFound(err) || IsCommandNotFound(err) {
		t.Errorf("missing namespace: err = %v, IsNotFound = %v, IsCommandNotFound = %v; want an error and both false",
			err, IsNotFound(err), IsCommandNotFound(err))
	}
}

// TestKernelNetlinkCountersReadsNamedCounters pins NetlinkCounters against the kernel: every named
// counter of the table, by name, with the packets and bytes the kernel holds (set here by the
// declaration), none of another table or of another kind of object, and none without the table.
func TestKernelNetlinkCountersReadsNamedCounters(t *testing.T) {
	c, fd := newNetnsClientFD(t)
	read := NetlinkCounters{NetNS: fd}
	if got, err := read.Counters(context.Background(), "inet", "flocktest"); err != nil || len(got) != 0 {
		t.Fatalf("Counters without the table = %v, %v; want none", got, err)
	}
	mustApply(t, c, "add table inet flocktest\n"+
		"add counter inet flocktest rule-X-x/p/in0 { packets 3 bytes 180; comment \"x/p ingress rule 0\"; }\n"+
		"add counter inet flocktest denied-in-Y-x/a\n"+
		"add limit inet flocktest drop-log { rate 5/second; }\n"+
		"add table inet other\nadd counter inet other rule-X-x/p/in0 { packets 9 bytes 9; }\n")
	got, err := read.Counters(context.Background(), "inet", "flocktest")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Counter{"rule-X-x/p/in0": {Packets: 3, Bytes: 180}, "denied-in-Y-x/a": {}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counters = %v, want %v", got, want)
	}
}
