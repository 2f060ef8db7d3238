package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/translate"
)

// edgeFlags are the flags that shape the rules beyond the policies (the node's edges, established
// connections, drop logs), shared by `run` and `render` so that the offline script is exactly what
// the agent applies.
type edgeFlags struct {
	podCIDRs     prefixList
	closeUnknown bool
	antiSpoofing bool
	established  render.Established
	logDrops     bool
	logGroup     uint
	logRate      int
}

func (e *edgeFlags) register(fs *flag.FlagSet) {
	e.established = render.Revalidate
	fs.Func("established", "how established connections are treated: \"revalidate\" (default) judges a live connection again at its next packet after a change that can deny it, and cuts it if denied; \"keep\" judges a connection only when it starts", func(v string) error {
		mode, err := render.ParseEstablished(v)
		e.established = mode
		return err
	})
	fs.Var(&e.podCIDRs, "pod-cidrs", "this node's pod ranges, comma-separated (e.g. 10.244.1.0/24,fd00:1::/64); default: the Node's spec.podCIDRs")
	fs.BoolVar(&e.closeUnknown, "close-unknown-pod-addresses", true, "drop forwarded traffic from or to an address of the node's pod ranges that no known local pod owns; turn off for CNIs that do not allocate pod addresses from the node's ranges")
	fs.BoolVar(&e.antiSpoofing, "anti-spoofing", true, "drop forwarded packets whose source fails a strict reverse-path check (a pod sending with an address not its own); turn off for nodes with asymmetric routing")
	fs.BoolVar(&e.logDrops, "drop-log", false, "log the first packet of every connection a policy drops, for every pod; without it, only pods of namespaces annotated "+translate.DropLogAnnotation+"=true log theirs")
	fs.UintVar(&e.logGroup, "drop-log-group", render.DefaultLogGroup, "the NFLOG group drop logs go through, 0-65535")
	fs.IntVar(&e.logRate, "drop-log-rate", render.DefaultLogRate, "the most drop log lines per second for the whole node (bursts of twice as many); more drops are dropped silently, and counted")
}

// validate reports flag values out of range.
func (e *edgeFlags) validate() error {
	var errs []error
	if e.logGroup > 65535 {
		errs = append(errs, fmt.Errorf("--drop-log-group must be at most 65535, got %d", e.logGroup))
	}
	if e.logRate < 1 {
		errs = append(errs, fmt.Errorf("--drop-log-rate must be positive, got %d", e.logRate))
	}
	return errors.Join(errs...)
}

// renderOptions are the render options the flags set.
func (e *edgeFlags) renderOptions(table string) render.Options {
	return render.Options{Table: table, AntiSpoofing: e.antiSpoofing, Established: e.established,
		LogGroup: uint16(e.logGroup), LogRate: e.logRate}
}

// prefixList is a comma-separated list of CIDRs; host bits are allowed (the translator masks
// them).
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	var s []string
	for _, p := range *l {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("not a CIDR: %q", f)
		}
		*l = append(*l, p)
	}
	return nil
}
