package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestExplainExitStatus pins the contract scripts rely on: 0 allowed, 1 denied, 2 bad usage or
// input, and -o json parses.
func TestExplainExitStatus(t *testing.T) {
	base := []string{"explain", "-f", "../../examples"}
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"--from", "shop/api-1", "--to", "payments/ledger-1", "--port", "9443"}, 0},
		{[]string{"--from", "shop/web-1", "--to", "payments/ledger-1", "--port", "9443/tcp"}, 1},
		{[]string{"--from", "shop/web-1", "--to", "payments/ledger-1"}, 2},
		{[]string{"--from", "shop/nope", "--to", "payments/ledger-1", "--port", "9443"}, 2},
		{[]string{"--from", "shop/web-1", "--to", "payments/ledger-1", "--port", "9443", "-o", "yaml"}, 2},
	}
	for _, c := range cases {
		code, _, stderr := runCLI("", append(base, c.args...)...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, stderr)
		}
	}
	code, out, stderr := runCLI("", append(base, "--from", "shop/web-1", "--to", "payments/ledger-1", "--port", "9443", "-o", "json")...)
	var r struct {
		Allowed bool `json:"allowed"`
		Nodes   []struct {
			Sides []struct {
				Pod        string `json:"pod"`
				NearMisses []struct {
					Policy string `json:"policy"`
				} `json:"nearMisses"`
			} `json:"sides"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, stderr)
	}
	if r.Allowed || len(r.Nodes) != 1 || len(r.Nodes[0].Sides) != 2 || !strings.Contains(out, `"policy": "payments/ledger-from-api"`) {
		t.Errorf("unexpected answer:\n%s", out)
	}
}
