//go:build unix

package nft

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// killProcessGroupOnCancel runs the command in its own process group and makes context
// cancellation kill that whole group. exec.CommandContext alone kills only the direct child: with
// a wrapper such as `sh -c` the real work would survive in a grandchild that still holds our
// stdout/stderr pipes, so Run would neither stop the work nor return promptly.
//
// Killing nft in the middle of a transaction is safe: the kernel commits a batch only when it has
// received all of it, so an interrupted apply changes nothing.
func killProcessGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		// With Setpgid the group id equals the child's pid; a negative pid addresses the group.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			// The group is already gone; tell os/exec so it does not treat this as a failure.
			return os.ErrProcessDone
		}
		return err
	}
}
