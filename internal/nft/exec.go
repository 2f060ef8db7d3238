package nft

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// Executor runs a command. The production implementation uses os/exec; tests use a fake.
//
// Run starts argv[0] with the arguments argv[1:], feeds it stdin (nil or empty: the command reads EOF at once, never the agent's own stdin) and returns
// everything it wrote to stdout and stderr. A non-nil err means the command could not be started,
// exited unsuccessfully or was stopped because ctx ended. When the process ran and exited,
// err should expose the exit status through an `ExitCode() int` method (as *exec.ExitError does);
// Client uses that to fill Error.ExitCode.
type Executor interface {
	Run(ctx context.Context, argv []string, stdin []byte) (stdout, stderr []byte, err error)
}

// Streamer runs a long-lived command and hands each line it writes to stdout to line, in order,
// until the command exits or ctx ends (then it is killed as Run kills). It returns the command's
// error, with the end of its stderr. The os/exec Executor implements it; Client.Monitor needs it.
type Streamer interface {
	Stream(ctx context.Context, argv []string, line func(string)) error
}

// Holder starts a long-lived command that reads from a pipe the caller writes to, for as long as
// the caller keeps it open: `nft -i` holding a table created with the owner flag, which the
// kernel deletes as soon as that nft process ends, however it ends. Closing stdin ends the
// command; wait then returns its error, with the end of its stderr. The os/exec Executor
// implements it; Client.Session needs it.
type Holder interface {
	Hold(ctx context.Context, argv []string) (stdin io.WriteCloser, wait func() error, err error)
}

// waitDelay bounds how long Run keeps waiting for the output pipes after the process was killed.
// Without it a stray grandchild that inherited the pipes (and escaped the process-group kill, say
// by calling setsid) would keep Run blocked long after the context ended.
const waitDelay = 5 * time.Second

// NewExecutor returns the os/exec based Executor. It:
//   - kills the command (and, on Unix, its whole process group, so wrappers such as `sh -c` or
//     `ip netns exec` cannot leave children behind) as soon as ctx is cancelled or times out;
//   - returns an error that wraps ctx.Err() in that case, so errors.Is(err,
//     context.DeadlineExceeded) works whatever the kill made the process report;
//   - starts nothing at all if ctx is already done;
//   - reports a missing binary as the os/exec error (errors.Is(err, exec.ErrNotFound) for a bare
//     name looked up in $PATH, fs.ErrNotExist for a path).
//
// The child inherits the agent's environment and working directory.
func NewExecutor() Executor { return osExecutor{} }

type osExecutor struct{}

func (osExecutor) Run(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, nil, errors.New("exec: empty command")
	}
	// exec.Cmd would notice a finished context too, but only after resolving the binary; checking
	// first gives one clear error and guarantees nothing is started.
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A nil Stdin makes os/exec connect the null device, which is the EOF we want for no input.
	if len(stdin) > 0 {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	killProcessGroupOnCancel(cmd)

	err := cmd.Run()
	if err != nil {
		// After a kill the process reports "signal: killed", which says nothing about why; make the
		// context's reason part of the chain so callers can tell a timeout from a crash.
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
	}
	return stdout.Bytes(), stderr.Bytes(), err
}

// maxStreamLine bounds one line of a stream: nft monitor prints one object per line, and a line
// longer than this (a rule with a huge anonymous set) is cut rather than stopping the stream.
const maxStreamLine = 1 << 20

func (osExecutor) Stream(ctx context.Context, argv []string, line func(string)) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("exec: empty command")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = waitDelay
	killProcessGroupOnCancel(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), maxStreamLine)
	for sc.Scan() {
		line(sc.Text())
	}
	err = cmd.Wait()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if err == nil {
		err = sc.Err()
	}
	if err != nil && stderr.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return err
}

func (osExecutor) Hold(ctx context.Context, argv []string) (io.WriteCloser, func() error, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, nil, errors.New("exec: empty command")
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr // nft -i echoes nothing useful; errors go to either
	cmd.WaitDelay = waitDelay
	killProcessGroupOnCancel(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	wait := func() error {
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		return err
	}
	return in, wait, nil
}
