package nft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultTimeout is the per-invocation timeout used when Config.Timeout is zero. Applying even a
// large rule set takes well under a second; the generous bound only exists so a wedged nft (for
// example one stuck on a netlink socket) cannot stall the agent's reconcile loop forever.
const DefaultTimeout = 30 * time.Second

// defaultCommand is used when Config.Command is nil.
var defaultCommand = []string{"nft"}

// Config configures a Client. The zero value is valid and means: run "nft" from $PATH with the
// os/exec Executor and DefaultTimeout.
type Config struct {
	// Command is the nft command, default []string{"nft"}. It may wrap nft, e.g.
	// []string{"ip", "netns", "exec", "node1", "nft"} to program another network namespace; the
	// Client appends nft's arguments to it. Use ParseCommand to build it from a flag value.
	Command []string
	// Executor runs the command, default NewExecutor().
	Executor Executor
	// Timeout bounds each invocation, default DefaultTimeout. The caller's context still applies;
	// whichever ends first stops the command.
	Timeout time.Duration
}

// Validate reports every problem with the configuration at once (joined with errors.Join), so an
// operator fixing flags sees them all in one go. Zero fields are valid: they select defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Command != nil && len(c.Command) == 0 {
		errs = append(errs, errors.New("nft command is empty"))
	}
	for i, arg := range c.Command {
		if strings.TrimSpace(arg) == "" {
			errs = append(errs, fmt.Errorf("nft command %q: argument %d is empty", quoteArgv(c.Command), i))
		}
	}
	// A program name with spaces is almost certainly an unsplit flag value, which exec would
	// look up as one (nonexistent) file name.
	if len(c.Command) > 0 && strings.ContainsAny(strings.TrimSpace(c.Command[0]), " \t\n") {
		errs = append(errs, fmt.Errorf("nft command %q: program name contains white space (split it with ParseCommand)", c.Command[0]))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("nft timeout %v is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// Client runs nft. It keeps no state between calls, so one Client may be shared by goroutines
// (provided its Executor is safe for concurrent use, as NewExecutor's and FakeExecutor are).
type Client struct {
	command  []string
	executor Executor
	timeout  time.Duration
}

// New returns a Client for cfg, or the Validate error. It does not check that the command exists:
// the first call reports that (see IsCommandNotFound), which keeps New free of side effects.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid nft configuration: %w", err)
	}
	c := &Client{
		// Cloned so that a caller reusing its slice cannot change a live Client's command.
		command:  slices.Clone(cfg.Command),
		executor: cfg.Executor,
		timeout:  cfg.Timeout,
	}
	if c.command == nil {
		c.command = slices.Clone(defaultCommand)
	}
	if c.executor == nil {
		c.executor = NewExecutor()
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// ParseCommand splits a flag value such as "ip netns exec node1 nft" into argv. Splitting is on
// runs of white space only: there is no shell quoting, escaping or variable expansion, so an
// argument can never contain a space. Because of that, quote and backslash characters are
// rejected rather than passed on literally, which would silently do something other than what
// a shell user meant. An empty or all-white-space value is an error.
func ParseCommand(s string) ([]string, error) {
	if strings.ContainsAny(s, "\"'\\`") {
		return nil, fmt.Errorf("nft command %q: quotes and backslashes are not supported (the value is split on white space only)", s)
	}
	argv := strings.Fields(s)
	if len(argv) == 0 {
		return nil, errors.New("nft command is empty")
	}
	return argv, nil
}

// Command returns a copy of the command the Client runs nft with, e.g. for logging.
func (c *Client) Command() []string { return slices.Clone(c.command) }

// Apply pipes script to `<Command> -f -`. One nft invocation is one kernel transaction: if any
// statement fails, including one on the script's last line, nothing in the script takes effect
// and the previous ruleset stays fully in place. To replace a table atomically, start the script
// with `add table F T` and `delete table F T` (the add makes the delete safe when the table does
// not exist yet) followed by the table's full definition.
func (c *Client) Apply(ctx context.Context, script []byte) error {
	_, err := c.run(ctx, []string{"-f", "-"}, script)
	return err
}

// IsApply reports whether argv, as a Client hands it to its Executor, is an Apply: the script
// piped to "-f -" without "-c". Executors that wrap the real one (tests that time or gate the
// applies) tell them from checks and listings by it.
func IsApply(argv []string) bool {
	n := len(argv)
	return n >= 2 && argv[n-2] == "-f" && argv[n-1] == "-" && !slices.Contains(argv, "-c")
}

// Check pipes script to `<Command> -c -f -`: nft parses and evaluates it and the kernel validates
// the batch, but nothing is committed. It needs the same privileges as Apply, and, since it
// evaluates against the current ruleset, a script that references existing objects is checked
// against what is there now.
func (c *Client) Check(ctx context.Context, script []byte) error {
	_, err := c.run(ctx, []string{"-c", "-f", "-"}, script)
	return err
}

// ListTable returns the output of `<Command> list table <family> <table>`. A missing table is an
// *Error for which IsNotFound is true. family must be one of nft's families (ip, ip6, inet, arp,
// bridge, netdev) and table a plain nft identifier; anything else is rejected without running
// nft, which also keeps a value starting with "-" from being read as an option.
func (c *Client) ListTable(ctx context.Context, family, table string) (string, error) {
	if !slices.Contains(families, family) {
		return "", fmt.Errorf("nft family %q is not one of %s", family, strings.Join(families, ", "))
	}
	if !identifier.MatchString(table) {
		return "", fmt.Errorf("nft table name %q is not a valid identifier", table)
	}
	return c.run(ctx, []string{"list", "table", family, table}, nil)
}

// ListChain returns the output of `<Command> list chain <family> <table> <chain>`. nft loads the
// sets the chain's rules refer to first, so a chain is not cheap to list in a large table (the
// base chain: 545 ms at 150,000 pods). A missing table or chain is an *Error for which IsNotFound
// is true.
func (c *Client) ListChain(ctx context.Context, family, table, chain string) (string, error) {
	return c.listObject(ctx, "chain", family, table, chain)
}

// ListSet returns the output of `<Command> list set <family> <table> <set>`: for a small set, a
// few milliseconds however large the rest of the table. A missing table or set is an *Error for
// which IsNotFound is true.
func (c *Client) ListSet(ctx context.Context, family, table, set string) (string, error) {
	return c.listObject(ctx, "set", family, table, set)
}

// listObject lists one chain or set, after checking the names as ListTable does.
func (c *Client) listObject(ctx context.Context, kind, family, table, name string) (string, error) {
	if !slices.Contains(families, family) {
		return "", fmt.Errorf("nft family %q is not one of %s", family, strings.Join(families, ", "))
	}
	for _, n := range []string{table, name} {
		if !identifier.MatchString(n) {
			return "", fmt.Errorf("nft name %q is not a valid identifier", n)
		}
	}
	return c.run(ctx, []string{"list", kind, family, table, name}, nil)
}

// TableExists reports whether the table exists, from `<Command> list tables <family>`, which
// lists only names: listing the table itself would read every element of its sets.
func (c *Client) TableExists(ctx context.Context, family, table string) (bool, error) {
	if !slices.Contains(families, family) {
		return false, fmt.Errorf("nft family %q is not one of %s", family, strings.Join(families, ", "))
	}
	out, err := c.run(ctx, []string{"list", "tables", family}, nil)
	if err != nil {
		return false, err
	}
	return slices.Contains(strings.Split(out, "\n"), "table "+family+" "+table), nil
}

// Monitor runs `<Command> monitor` and hands every line it prints to line until ctx ends or
// the command exits (see Streamer). The Client's timeout does not apply: the monitor runs until
// it is stopped. It fails at once when the Executor cannot stream.
func (c *Client) Monitor(ctx context.Context, line func(string)) error {
	st, ok := c.executor.(Streamer)
	if !ok {
		return fmt.Errorf("the %T executor cannot stream a command's output", c.executor)
	}
	return st.Stream(ctx, append(slices.Clone(c.command), "monitor"), line)
}

// Session is a running `nft -i`: what it creates with the owner flag lives exactly as long as
// the session (see Holder).
type Session struct {
	stdin io.WriteCloser
	wait  func() error
}

// Session starts `<Command> -i`. The caller must Close it.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	h, ok := c.executor.(Holder)
	if !ok {
		return nil, fmt.Errorf("the %T executor cannot hold a command open", c.executor)
	}
	in, wait, err := h.Hold(ctx, append(slices.Clone(c.command), "-i"))
	if err != nil {
		return nil, err
	}
	return &Session{stdin: in, wait: wait}, nil
}

// Send writes commands to the session. nft reports errors on its stderr only (returned by
// Close); check the result by listing.
func (s *Session) Send(commands []byte) error {
	_, err := s.stdin.Write(commands)
	return err
}

// Close ends the session: nft reads the end of its input and exits, and the kernel deletes what
// it owned.
func (s *Session) Close() error {
	err := s.stdin.Close()
	if werr := s.wait(); werr != nil {
		return werr
	}
	return err
}

var families = []string{"ip", "ip6", "inet", "arp", "bridge", "netdev"}

// identifier is nft's syntax for an unquoted name: a letter, underscore or dot, then letters,
// digits and "/ \ - _ .". The backslash is left out; nobody names a table with it.
var identifier = regexp.MustCompile(`^[A-Za-z_.][A-Za-z0-9/_.-]*$`)

// errInvocationTimeout is the context cause that marks the Client's own timeout, telling it apart
// from a deadline the caller set on its context.
var errInvocationTimeout = errors.New("nft invocation timeout")

// run executes the command with args appended and turns any failure into an *Error.
func (c *Client) run(ctx context.Context, args []string, stdin []byte) (string, error) {
	argv := append(slices.Clone(c.command), args...)
	runCtx, cancel := context.WithTimeoutCause(ctx, c.timeout, errInvocationTimeout)
	defer cancel()

	stdout, stderr, err := c.executor.Run(runCtx, argv, stdin)
	if err == nil {
		return string(stdout), nil
	}
	e := &Error{
		Argv:     argv,
		ExitCode: -1,
		Stderr:   strings.TrimSpace(string(stderr)),
		Err:      err,
		command:  slices.Clone(c.command),
	}
	var exitErr interface{ ExitCode() int }
	if errors.As(err, &exitErr) {
		e.ExitCode = exitErr.ExitCode()
	}
	if ctxErr := runCtx.Err(); ctxErr != nil {
		// Not every Executor wraps the context's error (a fake may return anything); add it so
		// errors.Is(err, context.DeadlineExceeded / context.Canceled) holds regardless.
		if !errors.Is(err, ctxErr) {
			e.Err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		// A killed process has no meaningful exit status even if the Executor reported one.
		e.ExitCode = -1
		if ctx.Err() == nil && errors.Is(context.Cause(runCtx), errInvocationTimeout) {
			e.Timeout = c.timeout
		}
	}
	return "", e
}
