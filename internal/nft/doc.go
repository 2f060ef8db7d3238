// Package nft is flock-netpol's only door to the outside world of processes: every command the
// project runs (in practice, the nft binary, possibly wrapped in `ip netns exec`) goes through
// the Executor seam defined here. Keeping that seam narrow means the rest of the code can be tested
// with FakeExecutor, and there is exactly one place to audit for how commands are started,
// killed on timeout and how their output is captured.
//
// On top of the seam, Client speaks to nft in the one way the agent needs: the whole desired state
// is rendered into a script that is piped to `nft -f -`. nft turns one such invocation into one
// netlink batch, which the kernel commits atomically: either every statement in the script takes
// effect or none does, so a broken script can never leave the node half-programmed.
//
// Client is deliberately stateless. It does not remember what it last applied; skipping a rewrite
// when the rendered script is unchanged is the caller's job, because only the caller knows when the
// kernel state may have drifted (for example after a restart or a failed apply).
//
// Failures are reported as *Error, which carries the argv, exit status and nft's stderr (which
// names the offending script line and marks it with carets). IsNotFound and IsCommandNotFound
// classify the common cases.
package nft
