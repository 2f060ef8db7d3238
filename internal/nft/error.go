package nft

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Error is a failed nft invocation. Client returns it for every failure of the command itself
// (argument validation errors are plain errors), so callers can errors.As it to reach the details
// or simply log err.Error(), which already contains what an operator needs.
type Error struct {
	// Argv is the full command line that was run, e.g. [ip netns exec node1 nft -f -].
	Argv []string
	// ExitCode is the process's exit status, or -1 when it never exited on its own: it could not
	// be started, or it was killed (timeout, cancellation).
	ExitCode int
	// Stderr is what the command wrote to stderr, with surrounding white space trimmed. For a
	// script nft reports `/dev/stdin:LINE:COLS: Error: ...`, the offending line, and carets under
	// the offending part.
	Stderr string
	// Err is the underlying error from the Executor (for example *exec.ExitError, or an error
	// wrapping exec.ErrNotFound or context.DeadlineExceeded). Error unwraps to it.
	Err error
	// Timeout is the Client's per-invocation timeout when that timeout is what stopped the
	// command, and zero otherwise (including when the caller's own context ended first).
	Timeout time.Duration

	// command is the configured nft command (Argv without the subcommand), used to name the
	// command in the "not found" message. Empty when the Error was built outside Client.
	command []string
}

// maxStderrLines is how many lines of stderr Error() includes. nft prints three lines per problem
// (location + message, script line, carets), so this shows the first few problems in full, which
// is what finding the failing line needs; the full text stays in the Stderr field.
const maxStderrLines = 20

// maxStderrLineLen caps each included line: rendered scripts can put thousands of set elements
// on one line, and nft echoes that line back. Cutting the script line and its caret line at the
// same width keeps the carets aligned with what is shown.
const maxStderrLineLen = 300

// Error describes the failure in one message, followed by (the start of) stderr on its own lines
// so nft's carets stay aligned under the script line they point at.
func (e *Error) Error() string {
	var b strings.Builder
	cmdline := quoteArgv(e.Argv)
	switch name, missing := e.missingBinary(); {
	case missing:
		command := quoteArgv(e.command)
		if command == "" {
			command = name
		}
		fmt.Fprintf(&b, "nft command %q not found: ", command)
		if command != name {
			// Name the missing piece when it is not the whole command, e.g. "ip" or "nft" inside
			// an `ip netns exec` wrapper.
			fmt.Fprintf(&b, "cannot execute %q: ", name)
		}
		b.WriteString("install the nftables package")
		return b.String()
	case e.Timeout > 0:
		fmt.Fprintf(&b, "nft command %q timed out after %v", cmdline, e.Timeout)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, "nft command %q failed: exit status %d", cmdline, e.ExitCode)
	default:
		fmt.Fprintf(&b, "nft command %q failed: %v", cmdline, e.Err)
	}
	if e.Stderr != "" {
		b.WriteString(":\n")
		b.WriteString(excerpt(e.Stderr))
	}
	return b.String()
}

// Unwrap returns the underlying Executor error, so errors.Is(err, context.DeadlineExceeded) and
// errors.As(err, **exec.ExitError) see through an *Error.
func (e *Error) Unwrap() error { return e.Err }

// IsNotFound reports whether err is an nft failure because an object it was asked about does not
// exist: nft's "No such file or directory" (ENOENT), as for `list table` of a missing table, or a
// statement referencing a missing table, chain or set. It is false for a missing nft binary (see
// IsCommandNotFound) and for other programs' ENOENT messages such as `ip netns exec` naming a
// missing namespace.
func IsNotFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if _, missing := e.missingBinary(); missing {
		return false
	}
	return nftNotFound.MatchString(e.Stderr)
}

// nftNotFound matches nft's own ENOENT reports, which always carry "Error: ", optionally after a
// script location and before a context such as "Could not process rule: ". For example:
//
//	Error: No such file or directory
//	/dev/stdin:6:25-30: Error: Could not process rule: No such file or directory
var nftNotFound = regexp.MustCompile(`(?m)^(?:\S+: )?Error: (?:[^\n]*: )?No such file or directory[ \t]*$`)

// IsCommandNotFound reports whether err means the nft command could not be executed at all because
// a binary is missing: the program itself (exec.ErrNotFound for a name looked up in $PATH, or
// ENOENT when starting a path), or the program an `ip netns exec` wrapper was told to run.
func IsCommandNotFound(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		_, missing := e.missingBinary()
		return missing
	}
	return errors.Is(err, exec.ErrNotFound)
}

// ipExecFailed is what `ip netns exec` prints, as its only output, when it cannot exec the
// wrapped program. The process has then run (ip exits non-zero), so only the text reveals it.
var ipExecFailed = regexp.MustCompile(`\Aexec of "([^"]*)" failed: No such file or directory\z`)

// missingBinary reports whether the invocation failed because a binary does not exist, and
// which one.
func (e *Error) missingBinary() (name string, ok bool) {
	if m := ipExecFailed.FindStringSubmatch(e.Stderr); m != nil && e.ExitCode != 0 {
		return m[1], true
	}
	// A start failure leaves no exit status. Exclude ends caused by a context: those are about
	// time, not about the binary, even if the chain also mentions some ENOENT.
	if e.ExitCode >= 0 || e.Err == nil ||
		errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) {
		return "", false
	}
	var execErr *exec.Error
	if errors.As(e.Err, &execErr) && errors.Is(execErr.Err, exec.ErrNotFound) {
		return execErr.Name, true
	}
	if errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, fs.ErrNotExist) {
		var pathErr *fs.PathError
		if errors.As(e.Err, &pathErr) {
			return pathErr.Path, true
		}
		if len(e.Argv) > 0 {
			return e.Argv[0], true
		}
		return "", true
	}
	return "", false
}

// excerpt returns the first maxStderrLines lines of s, each cut to maxStderrLineLen bytes, with a
// note saying how much was left out.
func excerpt(s string) string {
	lines := strings.Split(s, "\n")
	omitted := 0
	if len(lines) > maxStderrLines {
		omitted = len(lines) - maxStderrLines
		lines = lines[:maxStderrLines]
	}
	for i, l := range lines {
		if len(l) > maxStderrLineLen {
			// Cut on a rune boundary so the message stays valid UTF-8.
			n := maxStderrLineLen
			for n > 0 && !utf8.RuneStart(l[n]) {
				n--
			}
			lines[i] = l[:n] + "..."
		}
	}
	out := strings.Join(lines, "\n")
	if omitted > 0 {
		out += fmt.Sprintf("\n... (%d more lines of stderr)", omitted)
	}
	return out
}

// quoteArgv renders argv as one line, quoting only the arguments that would otherwise be
// ambiguous, so the usual case reads like what an operator would type.
func quoteArgv(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}
