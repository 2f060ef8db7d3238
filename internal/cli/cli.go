// Package cli implements the flock-netpol command line: the `run` agent, the offline `render`
// command, `explain` and `trace` for troubleshooting, and `cleanup`. Each command parses its own
// flags and returns an exit code, so main stays a one-liner and deferred cleanup always runs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// IO is where a command reads and writes; tests substitute buffers.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdio IO) int
}

func commands() []command {
	return []command{
		{"run", "run the agent: enforce NetworkPolicy for this node's pods", runAgent},
		{"render", "print the nft script a node would apply, from manifest files (offline)", runRender},
		{"explain", "say why a connection is allowed or denied, and by which policies and rules", runExplain},
		{"trace", "follow real packets of a connection through the node's table (on a node, as root)", runTrace},
		{"cleanup", "delete the agent's nft table (the uninstall step)", runCleanup},
	}
}

// Main runs the command named by args[0] and returns the process exit code.
func Main(args []string, stdio IO) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdio.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdio)
		}
	}
	fmt.Fprintf(stdio.Stderr, "flock-netpol: unknown command %q\n\n", args[0])
	usage(stdio.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "flock-netpol enforces Kubernetes NetworkPolicy on one node with nftables.")
	fmt.Fprintln(w, "\nUsage:\n  flock-netpol <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'flock-netpol <command> --help' for the flags of a command.")
}

// newFlagSet returns a flag set that prints a usage header and the flags on --help.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flock-netpol "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  flock-netpol %s %s\n\n%s\n\nFlags:\n", name, synopsis, description)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and returns the exit code to use when parsing ends the command (--help: 0,
// a bad flag: 2), or -1 to continue.
func parse(fs *flag.FlagSet, args []string) int {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	return -1
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
