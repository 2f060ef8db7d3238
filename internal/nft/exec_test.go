package nft

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run real processes through /bin/sh; they need no privileges.

func needSh(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
}

func TestExecutorCapturesStdoutStderrAndStdin(t *testing.T) {
	needSh(t)
	stdout, stderr, err := NewExecutor().Run(context.Background(),
		[]string{"/bin/sh", "-c", `cat; echo "to stderr" >&2`}, []byte("from stdin\n"))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := string(stdout), "from stdin\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := string(stderr), "to stderr\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestExecutorNilStdinIsEOF(t *testing.T) {
	needSh(t)
	// If stdin were inherited, cat could block on the test runner's stdin; with nil it must see EOF.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stdout, _, err := NewExecutor().Run(ctx, []string{"/bin/sh", "-c", "cat; echo end"}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if string(stdout) != "end\n" {
		t.Errorf("stdout = %q, want %q", stdout, "end\n")
	}
}

func TestExecutorExitCode(t *testing.T) {
	needSh(t)
	stdout, stderr, err := NewExecutor().Run(context.Background(),
		[]string{"/bin/sh", "-c", "echo out; echo bad >&2; exit 3"}, nil)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("err = %v (%T), want *exec.ExitError", err, err)
	}
	if exitErr.ExitCode() != 3 {
		t.Errorf("exit code = %d, want 3", exitErr.ExitCode())
	}
	// Output is returned even on failure: nft's stderr is the useful part of a failed apply.
	if string(stdout) != "out\n" || string(stderr) != "bad\n" {
		t.Errorf("stdout, stderr = %q, %q; want %q, %q", stdout, stderr, "out\n", "bad\n")
	}
}

func TestExecutorKillsOnTimeout(t *testing.T) {
	needSh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The background sleep is a grandchild holding the output pipes: only killing the whole
	// process group lets Run return well before waitDelay.
	_, _, err := NewExecutor().Run(ctx, []string{"/bin/sh", "-c", "sleep 30 & sleep 30; echo finished"}, nil)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if elapsed > waitDelay/2 {
		t.Errorf("Run took %v after a 200ms timeout; the process group was not killed promptly", elapsed)
	}
}

func TestExecutorKillsOnCancel(t *testing.T) {
	needSh(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := NewExecutor().Run(ctx, []string{"/bin/sh", "-c", "sleep 30"}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > waitDelay/2 {
		t.Errorf("Run took %v after cancellation", elapsed)
	}
}

func TestExecutorDoesNotStartWithDoneContext(t *testing.T) {
	needSh(t)
	marker := filepath.Join(t.TempDir(), "started")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := NewExecutor().Run(ctx, []string{"/bin/sh", "-c", "touch " + marker}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("the command ran although the context was already cancelled")
	}
}

func TestExecutorMissingBinary(t *testing.T) {
	_, _, err := NewExecutor().Run(context.Background(), []string{"flocktest-no-such-binary"}, nil)
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("bare name: err = %v, want exec.ErrNotFound", err)
	}
	_, _, err = NewExecutor().Run(context.Background(), []string{"/nonexistent/flocktest/nft"}, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("path: err = %v, want fs.ErrNotExist", err)
	}
}

func TestExecutorEmptyArgv(t *testing.T) {
	for _, argv := range [][]string{nil, {}, {""}} {
		if _, _, err := NewExecutor().Run(context.Background(), argv, nil); err == nil {
			t.Errorf("Run(%q) succeeded, want an error", argv)
		}
	}
}

// TestExecutorStreamsLinesUntilExit pins Stream: every stdout line in order, then the command's
// error with its stderr.
func TestExecutorStreamsLinesUntilExit(t *testing.T) {
	needSh(t)
	var lines []string
	err := NewExecutor().(Streamer).Stream(context.Background(), []string{"/bin/sh", "-c", "echo one; echo two; echo oops >&2; exit 3"},
		func(l string) { lines = append(lines, l) })
	if len(lines) != 2 || lines[0] != "one" || lines[1] != "two" {
		t.Errorf("lines = %q, want [one two]", lines)
	}
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "oops") {
		t.Errorf("err = %v, want the exit status and stderr", err)
	}
}

// TestExecutorStreamStopsWithTheContext pins that a stream that never ends is killed with its
// context, as Run kills.
func TestExecutorStreamStopsWithTheContext(t *testing.T) {
	needSh(t)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- NewExecutor().(Streamer).Stream(ctx, []string{"/bin/sh", "-c", "echo ready; sleep 60"}, func(l string) { got <- l })
	}()
	if l := <-got; l != "ready" {
		t.Fatalf("first line %q", l)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not stop with its context")
	}
}
