package nft

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestFakeExecutorQueue(t *testing.T) {
	var f FakeExecutor
	boom := errors.New("boom")
	f.Push(FakeResult{Stdout: []byte("one")}, FakeResult{Stderr: []byte("two"), Err: boom})
	if f.Pending() != 2 {
		t.Fatalf("Pending = %d, want 2", f.Pending())
	}

	out, _, err := f.Run(context.Background(), []string{"a"}, nil)
	if string(out) != "one" || err != nil {
		t.Errorf("first call = %q, %v", out, err)
	}
	_, errOut, err := f.Run(context.Background(), []string{"b"}, nil)
	if string(errOut) != "two" || !errors.Is(err, boom) {
		t.Errorf("second call = %q, %v", errOut, err)
	}
	// An exhausted queue means success with no output.
	out, errOut, err = f.Run(context.Background(), []string{"c"}, nil)
	if out != nil || errOut != nil || err != nil {
		t.Errorf("third call = %q, %q, %v; want zero result", out, errOut, err)
	}
	if f.Pending() != 0 {
		t.Errorf("Pending = %d, want 0", f.Pending())
	}
}

func TestFakeExecutorRecordsCopies(t *testing.T) {
	var f FakeExecutor
	argv := []string{"nft", "-f", "-"}
	stdin := []byte("script")
	if _, _, err := f.Run(context.Background(), argv, stdin); err != nil {
		t.Fatal(err)
	}
	argv[0] = "changed"
	stdin[0] = 'X'
	calls := f.Calls()
	if len(calls) != 1 || calls[0].Argv[0] != "nft" || string(calls[0].Stdin) != "script" {
		t.Errorf("Calls() = %q; recorded data changed with the caller's buffers", calls)
	}
	calls[0].Argv[0] = "mutated"
	if f.Calls()[0].Argv[0] != "nft" {
		t.Error("Calls() exposes internal state")
	}
}

func TestFakeExecutorRunFunc(t *testing.T) {
	var f FakeExecutor
	f.Push(FakeResult{Stdout: []byte("queued")})
	f.RunFunc = func(_ context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
		return append([]byte(argv[0]+":"), stdin...), nil, nil
	}
	out, _, _ := f.Run(context.Background(), []string{"nft"}, []byte("in"))
	if string(out) != "nft:in" {
		t.Errorf("stdout = %q, want RunFunc's result", out)
	}
	if f.Pending() != 1 {
		t.Error("RunFunc must take precedence over (and not consume) the queue")
	}
	if len(f.Calls()) != 1 {
		t.Error("calls answered by RunFunc must be recorded too")
	}
}

func TestFakeExecutorBlockUntilDone(t *testing.T) {
	f := &FakeExecutor{RunFunc: BlockUntilDone}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := f.Run(ctx, []string{"nft"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

// A blocked call must not hold up others: the lock is not held while RunFunc runs.
func TestFakeExecutorConcurrent(t *testing.T) {
	release := make(chan struct{})
	f := &FakeExecutor{RunFunc: func(_ context.Context, argv []string, _ []byte) ([]byte, []byte, error) {
		if argv[0] == "block" {
			<-release
		}
		return nil, nil, nil
	}}
	var wg sync.WaitGroup
	wg.Go(func() { f.Run(context.Background(), []string{"block"}, nil) })
	for range 50 {
		wg.Go(func() { f.Run(context.Background(), []string{"go"}, nil) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.Calls()) < 51 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	calls := f.Calls()
	if len(calls) != 51 {
		t.Fatalf("got %d calls, want 51", len(calls))
	}
	if n := len(slices.DeleteFunc(calls, func(c FakeCall) bool { return c.Argv[0] != "block" })); n != 1 {
		t.Errorf("recorded %d blocking calls, want 1", n)
	}
}

func TestFakeResultsThroughClient(t *testing.T) {
	var f FakeExecutor
	c, err := New(Config{Executor: &f})
	if err != nil {
		t.Fatal(err)
	}
	f.Push(FakeNotFound(), FakeCommandNotFound("nft"))
	if _, err := c.ListTable(context.Background(), "inet", "flock"); !IsNotFound(err) {
		t.Errorf("FakeNotFound: IsNotFound(%v) = false", err)
	}
	if err := c.Apply(context.Background(), nil); !IsCommandNotFound(err) {
		t.Errorf("FakeCommandNotFound: IsCommandNotFound(%v) = false", err)
	}
}
