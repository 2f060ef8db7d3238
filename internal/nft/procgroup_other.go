//go:build !unix

package nft

import "os/exec"

// killProcessGroupOnCancel is a no-op where process groups do not exist: exec.CommandContext
// already kills the direct child on cancellation. The agent only runs on Linux; this file merely
// keeps the package compiling elsewhere (for example for editors on other systems).
func killProcessGroupOnCancel(*exec.Cmd) {}
