package nft

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flock-net/flock-netpol/test/nfttest"
)

// newNetnsClient returns a Client that runs nft inside a new throwaway namespace, the same way
// the agent is configured with --nft "ip netns exec NAME nft".
func newNetnsClient(t *testing.T) (*Client, string) {
	t.Helper()
	ns := nfttest.NewNetns(t)
	c, err := New(Config{Command: []string{"ip", "netns", "exec", ns, "nft"}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, ns
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

func assertNotContains(t *testing.T, what, got string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(got, w) {
			t.Errorf("%s contains %q:\n%s", what, w, got)
		}
	}
}

func TestKernelApplyAndList(t *testing.T) {
	c, _ := newNetnsClient(t)
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

func TestKernelApplyReplacesTable(t *testing.T) {
	c, _ := newNetnsClient(t)
	// The replacing script must also work when the table does not exist yet (first apply).
	mustApply(t, c, replacement(""))
	mustApply(t, c, initialScript+"add element inet flocktest allowed { 10.0.0.9 }\n")
	before := mustList(t, c)
	assertContains(t, "table before replacement", before, "10.0.0.9", "forward_chain")

	mustApply(t, c, replacement(""))
	got := mustList(t, c)
	assertContains(t, "replaced table", got, "chain replaced_chain {", "policy drop", "10.0.0.2")
	// Nothing of the old definition may survive: not the chain, not even the extra element.
	assertNotContains(t, "replaced table", got, "forward_chain", "10.0.0.1", "10.0.0.9")
}

func TestKernelFailedApplyIsAtomic(t *testing.T) {
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
			c, _ := newNetnsClient(t)
			mustApply(t, c, initialScript)
			before := mustList(t, c)

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

			if after := mustList(t, c); after != before {
				t.Errorf("the failed apply changed the table.\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestKernelCheckChangesNothing(t *testing.T) {
	c, _ := newNetnsClient(t)

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
	c, _ := newNetnsClient(t)
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

func TestKernelMissingBinary(t *testing.T) {
	ns := nfttest.NewNetns(t)
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
