package nft

import "syscall"

// dieWithParent makes the kernel kill the command when the agent dies, SIGKILL included: a
// killed agent's nft would otherwise run on and could commit a stale transaction while the next
// agent applies. (The signal follows the thread that started the command; the Go runtime keeps
// its threads, and the agent locks none to a goroutine.) Killing nft is always safe: see
// killProcessGroupOnCancel.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
