package nft

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
)

// FakeExecutor is an Executor for tests, here and in other packages. It records every call and
// answers from RunFunc if set, otherwise from a queue of results filled with Push; with neither,
// a call succeeds with no output. The zero value is ready to use and it is safe for concurrent use.
type FakeExecutor struct {
	// RunFunc, if non-nil, computes the result of every call (after the call is recorded) and the
	// queue is not used. Set it before the first Run; it may be called from several goroutines.
	RunFunc func(ctx context.Context, argv []string, stdin []byte) (stdout, stderr []byte, err error)
	// StreamFunc, if non-nil, plays a streamed command (see Stream): it calls line for each line
	// and returns the command's error.
	StreamFunc func(ctx context.Context, argv []string, line func(string)) error

	mu    sync.Mutex
	queue []FakeResult
	calls []FakeCall
}

// FakeCall is one recorded invocation.
type FakeCall struct {
	Argv  []string
	Stdin []byte
}

// FakeResult is one scripted answer.
type FakeResult struct {
	Stdout []byte
	Stderr []byte
	Err    error
}

var (
	_ Executor = (*FakeExecutor)(nil)
	_ Streamer = (*FakeExecutor)(nil)
)

// Run records the call and returns the next scripted result.
func (f *FakeExecutor) Run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	f.mu.Lock()
	// Copies, so a caller reusing its buffers cannot rewrite history the test inspects later.
	f.calls = append(f.calls, FakeCall{Argv: slices.Clone(argv), Stdin: slices.Clone(stdin)})
	run := f.RunFunc
	var res FakeResult
	if run == nil && len(f.queue) > 0 {
		res = f.queue[0]
		f.queue = f.queue[1:]
	}
	f.mu.Unlock()

	// RunFunc is called without the lock so that a blocking one (see BlockUntilDone) does not
	// stall other goroutines' calls.
	if run != nil {
		return run(ctx, argv, stdin)
	}
	return res.Stdout, res.Stderr, res.Err
}

// Push queues results; each call without RunFunc consumes the oldest one.
func (f *FakeExecutor) Push(results ...FakeResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, results...)
}

// Pending returns how many queued results have not been consumed, so a test can check that every
// expected call happened.
func (f *FakeExecutor) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue)
}

// Calls returns a copy of the calls so far, oldest first.
func (f *FakeExecutor) Calls() []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FakeCall, len(f.calls))
	for i, c := range f.calls {
		out[i] = FakeCall{Argv: slices.Clone(c.Argv), Stdin: slices.Clone(c.Stdin)}
	}
	return out
}

// BlockUntilDone is a RunFunc that hangs like a wedged process until ctx ends and then returns
// ctx.Err(), for testing timeouts and cancellation.
func BlockUntilDone(ctx context.Context, _ []string, _ []byte) ([]byte, []byte, error) {
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// FakeExitError is an error carrying an exit status, as *exec.ExitError does for real processes
// (which tests cannot construct). Client reads the status through the ExitCode method.
type FakeExitError struct{ Code int }

func (e FakeExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// ExitCode returns the scripted exit status.
func (e FakeExitError) ExitCode() int { return e.Code }

// FakeNotFound is the result nft gives when asked about a missing table (or other object): exit
// status 1 and "No such file or directory". A Client turns it into an error for which IsNotFound
// is true.
func FakeNotFound() FakeResult {
	return FakeResult{
		Stderr: []byte("Error: No such file or directory\nlist table inet flock\n                ^^^^^\n"),
		Err:    FakeExitError{Code: 1},
	}
}

// FakeCommandNotFound is the result of trying to run a binary that is not installed. A Client
// turns it into an error for which IsCommandNotFound is true.
func FakeCommandNotFound(name string) FakeResult {
	return FakeResult{Err: &exec.Error{Name: name, Err: exec.ErrNotFound}}
}

// Stream implements Streamer: the call is recorded, and StreamFunc (if set) produces the lines;
// without it the stream ends at once.
func (f *FakeExecutor) Stream(ctx context.Context, argv []string, line func(string)) error {
	f.mu.Lock()
	f.calls = append(f.calls, FakeCall{Argv: slices.Clone(argv)})
	stream := f.StreamFunc
	f.mu.Unlock()
	if stream == nil {
		return nil
	}
	return stream(ctx, argv, line)
}
