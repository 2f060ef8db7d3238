package nft

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func TestErrorMessage(t *testing.T) {
	argv := []string{"nft", "-f", "-"}
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{
			name: "exit status with stderr",
			err: &Error{Argv: argv, ExitCode: 1, Err: FakeExitError{1},
				Stderr: "/dev/stdin:2:1-5: Error: syntax error\nbogus\n^^^^^"},
			want: "nft command \"nft -f -\" failed: exit status 1:\n/dev/stdin:2:1-5: Error: syntax error\nbogus\n^^^^^",
		},
		{
			name: "exit status without stderr",
			err:  &Error{Argv: argv, ExitCode: 2, Err: FakeExitError{2}},
			want: `nft command "nft -f -" failed: exit status 2`,
		},
		{
			name: "no exit status",
			err:  &Error{Argv: argv, ExitCode: -1, Err: errors.New("permission denied")},
			want: `nft command "nft -f -" failed: permission denied`,
		},
		{
			name: "timeout",
			err:  &Error{Argv: argv, ExitCode: -1, Err: context.DeadlineExceeded, Timeout: 30 * time.Second},
			want: `nft command "nft -f -" timed out after 30s`,
		},
		{
			name: "arguments with spaces are quoted",
			err:  &Error{Argv: []string{"my nft", "list", "table", "inet", "x"}, ExitCode: 1},
			want: `nft command "\"my nft\" list table inet x" failed: exit status 1`,
		},
		{
			name: "missing binary, plain",
			err: &Error{Argv: argv, ExitCode: -1, command: []string{"nft"},
				Err: &exec.Error{Name: "nft", Err: exec.ErrNotFound}},
			want: `nft command "nft" not found: install the nftables package`,
		},
		{
			name: "missing binary, no configured command",
			err:  &Error{Argv: argv, ExitCode: -1, Err: &exec.Error{Name: "nft", Err: exec.ErrNotFound}},
			want: `nft command "nft" not found: install the nftables package`,
		},
		{
			name: "missing wrapper",
			err: &Error{Argv: []string{"ip", "netns", "exec", "n1", "nft", "-f", "-"}, ExitCode: -1,
				command: []string{"ip", "netns", "exec", "n1", "nft"},
				Err:     &exec.Error{Name: "ip", Err: exec.ErrNotFound}},
			want: `nft command "ip netns exec n1 nft" not found: cannot execute "ip": install the nftables package`,
		},
		{
			name: "missing nft inside ip netns exec",
			err: &Error{Argv: []string{"ip", "netns", "exec", "n1", "nft", "-f", "-"}, ExitCode: 1,
				command: []string{"ip", "netns", "exec", "n1", "nft"},
				Err:     FakeExitError{1}, Stderr: `exec of "nft" failed: No such file or directory`},
			want: `nft command "ip netns exec n1 nft" not found: cannot execute "nft": install the nftables package`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestErrorMessageTruncatesStderr(t *testing.T) {
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	e := &Error{Argv: []string{"nft"}, ExitCode: 1, Stderr: strings.Join(lines, "\n")}
	msg := e.Error()
	if !strings.Contains(msg, "\nline 19\n") || strings.Contains(msg, "line 20") {
		t.Errorf("Error() should show exactly the first 20 lines:\n%s", msg)
	}
	if !strings.HasSuffix(msg, "... (30 more lines of stderr)") {
		t.Errorf("Error() should say how much was left out:\n%s", msg)
	}
	if e.Stderr != strings.Join(lines, "\n") {
		t.Error("the Stderr field must keep everything")
	}

	// nft echoes the offending script line, which can be a huge set definition.
	long := "elements = { " + strings.Repeat("10.0.0.1, ", 1000) + "ä }"
	e = &Error{Argv: []string{"nft"}, ExitCode: 1, Stderr: "/dev/stdin:1:1: Error: x\n" + long}
	msg = e.Error()
	if len(msg) > 2*maxStderrLineLen+200 {
		t.Errorf("Error() is %d bytes long; long lines are not cut", len(msg))
	}
	if !utf8.ValidString(msg) {
		t.Error("Error() is not valid UTF-8 after cutting")
	}
	// A multi-byte rune straddling the cut must not be split.
	e = &Error{Argv: []string{"nft"}, ExitCode: 1, Stderr: strings.Repeat("a", maxStderrLineLen-1) + "ääää"}
	if msg := e.Error(); !utf8.ValidString(msg) {
		t.Errorf("Error() = %q is not valid UTF-8", msg)
	}
}

func TestErrorUnwrap(t *testing.T) {
	cause := FakeExitError{3}
	var err error = &Error{Argv: []string{"nft"}, ExitCode: 3, Err: cause}
	err = fmt.Errorf("applying ruleset: %w", err)
	if !errors.Is(err, cause) {
		t.Error("errors.Is does not reach the executor error")
	}
	var nftErr *Error
	if !errors.As(err, &nftErr) || nftErr.ExitCode != 3 {
		t.Errorf("errors.As = %v", nftErr)
	}
}

func TestIsNotFound(t *testing.T) {
	exit1 := FakeExitError{1}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("Error: No such file or directory"), false},
		{"list missing table", &Error{ExitCode: 1, Err: exit1,
			Stderr: "Error: No such file or directory\nlist table inet nope\n                ^^^^"}, true},
		{"rule in missing chain", &Error{ExitCode: 1, Err: exit1,
			Stderr: "/dev/stdin:6:25-30: Error: Could not process rule: No such file or directory\nadd rule inet t nosuch accept\n                        ^^^^^^"}, true},
		{"wrapped", fmt.Errorf("listing: %w", &Error{ExitCode: 1, Err: exit1,
			Stderr: "Error: No such file or directory"}), true},
		{"other nft error", &Error{ExitCode: 1, Err: exit1,
			Stderr: "/dev/stdin:7:41-48: Error: Could not process rule: File exists"}, false},
		{"missing netns", &Error{ExitCode: 1, Err: exit1,
			Stderr: `Cannot open network namespace "nosuch": No such file or directory`}, false},
		{"missing nft in netns", &Error{ExitCode: 1, Err: exit1,
			Stderr: `exec of "nft" failed: No such file or directory`}, false},
		{"missing binary", &Error{ExitCode: -1, Err: &exec.Error{Name: "nft", Err: exec.ErrNotFound}}, false},
		{"script line mentioning it", &Error{ExitCode: 1, Err: exit1,
			Stderr: "/dev/stdin:1:1-3: Error: syntax error\nfoo comment \"No such file or directory\"\n^^^"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsNotFound(tt.err); got != tt.want {
				t.Errorf("IsNotFound(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestIsCommandNotFound(t *testing.T) {
	exit1 := FakeExitError{1}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"raw exec.ErrNotFound", &exec.Error{Name: "nft", Err: exec.ErrNotFound}, true},
		{"plain error", errors.New("nft not found"), false},
		{"lookup failed", &Error{ExitCode: -1, Err: &exec.Error{Name: "nft", Err: exec.ErrNotFound}}, true},
		{"path does not exist", &Error{ExitCode: -1,
			Err: &fs.PathError{Op: "fork/exec", Path: "/opt/nft", Err: syscall.ENOENT}}, true},
		{"wrapped", fmt.Errorf("x: %w", &Error{ExitCode: -1, Err: &exec.Error{Name: "nft", Err: exec.ErrNotFound}}), true},
		{"ip netns exec could not exec nft", &Error{ExitCode: 1, Err: exit1,
			Stderr: `exec of "nft" failed: No such file or directory`}, true},
		{"nft ran and reported ENOENT", &Error{ExitCode: 1, Err: exit1,
			Stderr: "Error: No such file or directory"}, false},
		{"missing netns", &Error{ExitCode: 1, Err: exit1,
			Stderr: `Cannot open network namespace "nosuch": No such file or directory`}, false},
		{"permission denied", &Error{ExitCode: -1,
			Err: &fs.PathError{Op: "fork/exec", Path: "/opt/nft", Err: syscall.EACCES}}, false},
		{"timeout", &Error{ExitCode: -1, Timeout: time.Second,
			Err: fmt.Errorf("%w: %w", context.DeadlineExceeded, errors.New("signal: killed"))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsCommandNotFound(tt.err); got != tt.want {
				t.Errorf("IsCommandNotFound(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
