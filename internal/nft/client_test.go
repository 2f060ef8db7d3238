package nft

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func newFakeClient(t *testing.T, cfg Config) (*Client, *FakeExecutor) {
	t.Helper()
	fake := &FakeExecutor{}
	cfg.Executor = fake
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, fake
}

func TestClientArgv(t *testing.T) {
	netns := []string{"ip", "netns", "exec", "node1", "nft"}
	tests := []struct {
		name    string
		command []string
		call    func(context.Context, *Client) error
		want    []string
	}{
		{"apply default", nil, applyScript, []string{"nft", "-f", "-"}},
		{"check default", nil, checkScript, []string{"nft", "-c", "-f", "-"}},
		{"list default", nil, listFlock, []string{"nft", "list", "table", "inet", "flock"}},
		{"apply netns", netns, applyScript, []string{"ip", "netns", "exec", "node1", "nft", "-f", "-"}},
		{"check netns", netns, checkScript, []string{"ip", "netns", "exec", "node1", "nft", "-c", "-f", "-"}},
		{"list netns", netns, listFlock, []string{"ip", "netns", "exec", "node1", "nft", "list", "table", "inet", "flock"}},
		{"apply path", []string{"/usr/sbin/nft"}, applyScript, []string{"/usr/sbin/nft", "-f", "-"}},
		{"list chain netns", netns, listChain, []string{"ip", "netns", "exec", "node1", "nft", "list", "chain", "inet", "flock", "filter-forward"}},
		{"list set netns", netns, listSet, []string{"ip", "netns", "exec", "node1", "nft", "list", "set", "inet", "flock", "digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fake := newFakeClient(t, Config{Command: tt.command})
			if err := tt.call(context.Background(), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			calls := fake.Calls()
			if len(calls) != 1 {
				t.Fatalf("got %d calls, want 1", len(calls))
			}
			if !slices.Equal(calls[0].Argv, tt.want) {
				t.Errorf("argv = %q, want %q", calls[0].Argv, tt.want)
			}
		})
	}
}

const testScript = "table inet flock {\n\tchain forward_chain { type filter hook forward priority 0; }\n}\n"

func applyScript(ctx context.Context, c *Client) error { return c.Apply(ctx, []byte(testScript)) }
func checkScript(ctx context.Context, c *Client) error { return c.Check(ctx, []byte(testScript)) }
func listFlock(ctx context.Context, c *Client) error {
	_, err := c.ListTable(ctx, "inet", "flock")
	return err
}

func listChain(ctx context.Context, c *Client) error {
	_, err := c.ListChain(ctx, "inet", "flock", "filter-forward")
	return err
}

func listSet(ctx context.Context, c *Client) error {
	_, err := c.ListSet(ctx, "inet", "flock", "digest")
	return err
}

func TestClientListSetRejectsBadNames(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	for _, args := range [][3]string{{"bogus", "t", "s"}, {"inet", "-t", "s"}, {"inet", "t", "s d"}, {"inet", "t", "-s"}} {
		if _, err := c.ListSet(context.Background(), args[0], args[1], args[2]); err == nil {
			t.Errorf("ListSet%q accepted", args)
		}
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("nft ran %d times for invalid names", n)
	}
}

func TestClientListSetMissing(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	fake.Push(FakeNotFound())
	_, err := c.ListSet(context.Background(), "inet", "flock", "digest")
	if !IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false, want true", err)
	}
}

func TestClientListChainRejectsBadNames(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	for _, args := range [][3]string{{"bogus", "t", "c"}, {"inet", "-t", "c"}, {"inet", "t", "c d"}} {
		if _, err := c.ListChain(context.Background(), args[0], args[1], args[2]); err == nil {
			t.Errorf("ListChain%q accepted", args)
		}
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("nft ran %d times for invalid names", n)
	}
}

func TestClientPassesScriptOnStdin(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	if err := c.Apply(context.Background(), []byte(testScript)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background(), []byte(testScript)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListTable(context.Background(), "inet", "flock"); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	for i, want := range []string{testScript, testScript, ""} {
		if got := string(calls[i].Stdin); got != want {
			t.Errorf("call %d (%q): stdin = %q, want %q", i, calls[i].Argv, got, want)
		}
	}
}

func TestClientListTableReturnsStdout(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	fake.Push(FakeResult{Stdout: []byte(testScript)})
	got, err := c.ListTable(context.Background(), "inet", "flock")
	if err != nil {
		t.Fatal(err)
	}
	if got != testScript {
		t.Errorf("ListTable = %q, want %q", got, testScript)
	}
}

// TestClientTableExistsReadsOnlyTheNames pins that the check lists table names, never a table's
// contents, and matches the whole name.
func TestClientTableExistsReadsOnlyTheNames(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	fake.Push(FakeResult{Stdout: []byte("table inet flock-netpol-old\ntable inet flock\n")}, FakeResult{Stdout: []byte("table inet flock-netpol-old\n")})
	for _, want := range []bool{true, false} {
		got, err := c.TableExists(context.Background(), "inet", "flock")
		if err != nil || got != want {
			t.Errorf("TableExists = %v, %v; want %v", got, err, want)
		}
	}
	if argv := fake.Calls()[0].Argv; !slices.Equal(argv[len(argv)-3:], []string{"list", "tables", "inet"}) {
		t.Errorf("argv = %q, want it to end in list tables inet", argv)
	}
}

func TestClientListTableMissing(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	fake.Push(FakeNotFound())
	_, err := c.ListTable(context.Background(), "inet", "flock")
	if !IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false, want true", err)
	}
	if IsCommandNotFound(err) {
		t.Errorf("IsCommandNotFound(%v) = true, want false", err)
	}
}

func TestClientListTableRejectsBadNames(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	for _, tt := range []struct{ family, table string }{
		{"", "flock"},
		{"inet6", "flock"},
		{"inet", ""},
		{"inet", "-f"},
		{"inet", "two words"},
		{"inet", "semi;colon"},
	} {
		if _, err := c.ListTable(context.Background(), tt.family, tt.table); err == nil {
			t.Errorf("ListTable(%q, %q) succeeded, want an error", tt.family, tt.table)
		}
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("invalid names ran nft %d times, want 0", n)
	}
	for _, table := range []string{"flock", "flock_netpol", "flock-netpol", "_x", "a.b/c"} {
		if _, err := c.ListTable(context.Background(), "inet", table); err != nil {
			t.Errorf("ListTable(inet, %q): %v", table, err)
		}
	}
}

func TestClientWrapsStderr(t *testing.T) {
	c, fake := newFakeClient(t, Config{Command: []string{"ip", "netns", "exec", "node1", "nft"}})
	stderr := "/dev/stdin:7:41-48: Error: Could not process rule: File exists\n" +
		"create element inet flocktest allowed { 10.0.0.2 }\n" +
		"                                        ^^^^^^^^\n"
	fake.Push(FakeResult{Stderr: []byte("\n" + stderr), Err: FakeExitError{Code: 1}})

	err := c.Apply(context.Background(), []byte("whatever"))
	var nftErr *Error
	if !errors.As(err, &nftErr) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if want := []string{"ip", "netns", "exec", "node1", "nft", "-f", "-"}; !slices.Equal(nftErr.Argv, want) {
		t.Errorf("Argv = %q, want %q", nftErr.Argv, want)
	}
	if nftErr.ExitCode != 1 {
		t.Errorf("ExitCode = %d, want 1", nftErr.ExitCode)
	}
	if want := strings.TrimSpace(stderr); nftErr.Stderr != want {
		t.Errorf("Stderr = %q, want trimmed %q", nftErr.Stderr, want)
	}
	if !errors.Is(err, FakeExitError{Code: 1}) {
		t.Errorf("err does not unwrap to the executor's error")
	}
	msg := err.Error()
	for _, want := range []string{
		`"ip netns exec node1 nft -f -"`,
		"exit status 1",
		"/dev/stdin:7:41-48: Error: Could not process rule: File exists",
		// The caret line must survive with its indentation, or it points at the wrong column.
		"\n                                        ^^^^^^^^",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, want it to contain %q", msg, want)
		}
	}
	if IsNotFound(err) || IsCommandNotFound(err) {
		t.Errorf("predicates true for a File exists error")
	}
}

func TestClientTimeout(t *testing.T) {
	c, fake := newFakeClient(t, Config{Timeout: 50 * time.Millisecond})
	fake.RunFunc = BlockUntilDone
	start := time.Now()
	err := c.Apply(context.Background(), []byte(testScript))
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Apply took %v with a 50ms timeout", elapsed)
	}
	var nftErr *Error
	if !errors.As(err, &nftErr) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if nftErr.Timeout != 50*time.Millisecond {
		t.Errorf("Timeout = %v, want 50ms", nftErr.Timeout)
	}
	if nftErr.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1", nftErr.ExitCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if want := "timed out after 50ms"; !strings.Contains(err.Error(), want) {
		t.Errorf("Error() = %q, want it to contain %q", err.Error(), want)
	}
	if IsCommandNotFound(err) || IsNotFound(err) {
		t.Errorf("predicates true for a timeout")
	}
}

// A timeout is reported even by an Executor that returns something else when killed, as the
// real one's process does ("signal: killed").
func TestClientTimeoutWithOpaqueExecutorError(t *testing.T) {
	c, fake := newFakeClient(t, Config{Timeout: 20 * time.Millisecond})
	killed := errors.New("signal: killed")
	fake.RunFunc = func(ctx context.Context, _ []string, _ []byte) ([]byte, []byte, error) {
		<-ctx.Done()
		return nil, nil, killed
	}
	err := c.Apply(context.Background(), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, killed) {
		t.Errorf("err = %v, want it to wrap both context.DeadlineExceeded and the executor error", err)
	}
	if !strings.Contains(err.Error(), "timed out after 20ms") {
		t.Errorf("Error() = %q, want a timeout message", err.Error())
	}
}

func TestClientCallerCancellationIsNotATimeout(t *testing.T) {
	c, fake := newFakeClient(t, Config{Timeout: time.Hour})
	fake.RunFunc = BlockUntilDone

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err := c.Apply(ctx, nil)
	var nftErr *Error
	if !errors.As(err, &nftErr) || nftErr.Timeout != 0 {
		t.Errorf("err = %#v, want *Error with zero Timeout", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}

	// The caller's own deadline is the caller's business: not "our" timeout either.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = c.Apply(ctx, nil)
	if !errors.As(err, &nftErr) || nftErr.Timeout != 0 {
		t.Errorf("err = %#v, want *Error with zero Timeout", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if strings.Contains(err.Error(), "timed out after") {
		t.Errorf("Error() = %q claims the client timeout fired", err.Error())
	}
}

func TestClientDefaultTimeoutApplied(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	var deadline time.Time
	var ok bool
	fake.RunFunc = func(ctx context.Context, _ []string, _ []byte) ([]byte, []byte, error) {
		deadline, ok = ctx.Deadline()
		return nil, nil, nil
	}
	start := time.Now()
	if err := c.Apply(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("the executor got a context without deadline")
	}
	if d := deadline.Sub(start); d < DefaultTimeout-time.Second || d > DefaultTimeout+time.Second {
		t.Errorf("deadline %v after start, want about %v", d, DefaultTimeout)
	}
}

func TestClientCommandNotFound(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	fake.Push(FakeCommandNotFound("nft"))
	err := c.Apply(context.Background(), nil)
	if !IsCommandNotFound(err) {
		t.Errorf("IsCommandNotFound(%v) = false", err)
	}
	if want := `nft command "nft" not found: install the nftables package`; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

// With the real executor: the binary really is not there.
func TestClientCommandNotFoundRealExec(t *testing.T) {
	for _, command := range [][]string{{"flocktest-no-such-nft"}, {"/nonexistent/flocktest/nft"}} {
		c, err := New(Config{Command: command})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Apply(context.Background(), []byte(testScript))
		if !IsCommandNotFound(err) {
			t.Errorf("%q: IsCommandNotFound(%v) = false", command, err)
		}
		if IsNotFound(err) {
			t.Errorf("%q: IsNotFound(%v) = true", command, err)
		}
		want := `nft command "` + command[0] + `" not found: install the nftables package`
		if err.Error() != want {
			t.Errorf("Error() = %q, want %q", err.Error(), want)
		}
	}
}

func TestClientCommandIsCopied(t *testing.T) {
	command := []string{"ip", "netns", "exec", "node1", "nft"}
	c, fake := newFakeClient(t, Config{Command: command})
	command[3] = "other"
	got := c.Command()
	got[0] = "changed"
	if err := c.Apply(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if argv := fake.Calls()[0].Argv; argv[0] != "ip" || argv[3] != "node1" {
		t.Errorf("argv = %q: the client's command changed through a caller's slice", argv)
	}
}

func TestClientConcurrentUse(t *testing.T) {
	c, fake := newFakeClient(t, Config{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			script := []byte(strings.Repeat("x", i))
			if err := c.Apply(context.Background(), script); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	calls := fake.Calls()
	if len(calls) != 20 {
		t.Fatalf("got %d calls, want 20", len(calls))
	}
	seen := map[int]bool{}
	for _, call := range calls {
		seen[len(call.Stdin)] = true
	}
	if len(seen) != 20 {
		t.Errorf("scripts got mixed up: saw %d distinct lengths, want 20", len(seen))
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"zero value", Config{}, nil},
		{"netns", Config{Command: []string{"ip", "netns", "exec", "n", "nft"}, Timeout: time.Second}, nil},
		{"empty command", Config{Command: []string{}}, []string{"nft command is empty"}},
		{"empty program", Config{Command: []string{""}}, []string{"argument 0 is empty"}},
		{"blank argument", Config{Command: []string{"ip", " ", "nft"}}, []string{"argument 1 is empty"}},
		{"unsplit", Config{Command: []string{"ip netns exec n nft"}}, []string{"ParseCommand"}},
		{"negative timeout", Config{Timeout: -time.Second}, []string{"timeout -1s is negative"}},
		{"all at once", Config{Command: []string{}, Timeout: -time.Second},
			[]string{"nft command is empty", "timeout -1s is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if len(tt.want) > 1 {
				if joined, ok := err.(interface{ Unwrap() []error }); !ok || len(joined.Unwrap()) != len(tt.want) {
					t.Errorf("Validate() = %#v, want %d joined errors", err, len(tt.want))
				}
			}
			if _, newErr := New(tt.cfg); newErr == nil {
				t.Errorf("New accepted a config Validate rejects")
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "nft", want: []string{"nft"}},
		{in: "/usr/sbin/nft", want: []string{"/usr/sbin/nft"}},
		{in: "ip netns exec node1 nft", want: []string{"ip", "netns", "exec", "node1", "nft"}},
		{in: "  ip\tnetns  exec node1\nnft  ", want: []string{"ip", "netns", "exec", "node1", "nft"}},
		{in: "", wantErr: true},
		{in: " \t ", wantErr: true},
		{in: `ip netns exec "node 1" nft`, wantErr: true},
		{in: `nft'`, wantErr: true},
		{in: `my\ nft`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseCommand(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseCommand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if err := (Config{Command: got}).Validate(); err != nil {
			t.Errorf("ParseCommand(%q) result fails Validate: %v", tt.in, err)
		}
	}
}

// TestIsApplyTellsAppliesFromOtherCalls pins IsApply against the argv the Client really passes:
// only Apply counts, also behind a wrapping command such as ip netns exec.
func TestIsApplyTellsAppliesFromOtherCalls(t *testing.T) {
	c, fake := newFakeClient(t, Config{Command: []string{"ip", "netns", "exec", "node1", "nft"}})
	ctx := context.Background()
	_ = c.Apply(ctx, []byte("flush ruleset\n"))
	_ = c.Check(ctx, []byte("flush ruleset\n"))
	_, _ = c.ListTable(ctx, "inet", "flock-netpol")
	var got []bool
	for _, call := range fake.Calls() {
		got = append(got, IsApply(call.Argv))
	}
	if want := []bool{true, false, false}; !slices.Equal(got, want) {
		t.Errorf("IsApply of apply, check, list = %v, want %v", got, want)
	}
}

// TestClientMonitorRunsNftMonitor pins the monitor's command line and that its lines reach the
// caller.
func TestClientMonitorRunsNftMonitor(t *testing.T) {
	c, fake := newFakeClient(t, Config{Command: []string{"ip", "netns", "exec", "n1", "nft"}})
	fake.StreamFunc = func(_ context.Context, _ []string, line func(string)) error {
		line("add table inet t")
		return nil
	}
	var got []string
	if err := c.Monitor(context.Background(), func(l string) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"ip", "netns", "exec", "n1", "nft", "monitor"}; !slices.Equal(fake.Calls()[0].Argv, want) {
		t.Errorf("argv = %q, want %q", fake.Calls()[0].Argv, want)
	}
	if len(got) != 1 || got[0] != "add table inet t" {
		t.Errorf("lines = %q", got)
	}
}
