package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/flock-net/flock-netpol/internal/explain"
	"github.com/flock-net/flock-netpol/internal/manifest"
	"github.com/flock-net/flock-netpol/internal/nft"
	"github.com/flock-net/flock-netpol/internal/render"
	"github.com/flock-net/flock-netpol/internal/trace"
)

func runTrace(ctx context.Context, args []string, stdio IO) int {
	fs := newFlagSet("trace", "--from POD|ADDR --to POD|ADDR [--port PORT/PROTO] [--duration D] [--nft COMMAND]",
		"Run on a node (as root, in its network namespace): follows the real packets of the\n"+
			"connections from --from to --to through the agent's table for --duration, and prints each\n"+
			"packet's path (which pod's chain, which policy rule, or the drop) and its verdict. Packets\n"+
			"are marked with `meta nftrace set 1` by a table of the trace's own (inet\n"+
			"flock-netpol-trace-<pid>, hooked just before the agent's), which the kernel deletes when\n"+
			"the trace ends, however it ends; the agent's table and applies are not touched.\n\n"+
			"POD is namespace/name, resolved from -f manifests or, without -f, the API server; ADDR an\n"+
			"IP address. PORT/PROTO is e.g. 80/tcp or 53/udp (the destination port), or only a protocol.",
		stdio.Stderr)
	from := fs.String("from", "", "the source: an address or namespace/pod; required")
	to := fs.String("to", "", "the destination: an address or namespace/pod; required")
	port := fs.String("port", "", "the destination port and protocol (80/tcp, 53/udp), a protocol alone (udp), or empty for any")
	ipv6 := fs.Bool("ipv6", false, "use the IPv6 addresses of pods given by name")
	duration := fs.Duration("duration", 30*time.Second, "how long to trace")
	table := fs.String("table", render.DefaultTable, "name of the agent's nft table (family inet)")
	nftCmd := fs.String("nft", "nft", "the nft command, split on spaces (e.g. \"ip netns exec node1 nft\")")
	var files stringList
	fs.Var(&files, "f", "manifests to resolve namespace/pod names from (as for render); repeatable")
	config.RegisterFlags(fs)
	if code := parse(fs, args); code >= 0 {
		return code
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stdio.Stderr, "flock-netpol trace: "+format+"\n", args...)
		return code
	}
	if *from == "" || *to == "" {
		return fail(2, "--from and --to are required")
	}
	if *duration <= 0 {
		return fail(2, "--duration must be positive, got %s", *duration)
	}
	f := trace.Filter{}
	if p, proto, ok := strings.Cut(*port, "/"); ok {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fail(2, "--port: %q is not a port number", p)
		}
		f.Port, f.Protocol = uint16(n), strings.ToLower(proto)
	} else {
		f.Protocol = strings.ToLower(*port)
	}
	var objs *manifest.Objects
	for _, e := range []struct {
		flag, value string
		addr        *netip.Addr
	}{{"--from", *from, &f.Src}, {"--to", *to, &f.Dst}} {
		if a, err := netip.ParseAddr(e.value); err == nil {
			*e.addr = a.Unmap()
			continue
		}
		if objs == nil {
			o, err := loadObjects(ctx, files, stdio)
			if err != nil {
				return fail(2, "%v", err)
			}
			objs = &o
		}
		a, err := explain.Resolve(*objs, e.value, *ipv6)
		if err != nil {
			return fail(2, "%s: %v", e.flag, err)
		}
		*e.addr = a
	}
	if err := f.Validate(); err != nil {
		return fail(2, "%v", err)
	}
	client, err := newNFT(*nftCmd, nft.DefaultTimeout)
	if err != nil {
		return fail(2, "%v", err)
	}
	if err := trace.Run(ctx, client, *table, f, *duration, stdio.Stdout); err != nil {
		return fail(1, "%v", withNFTFlagHint(err))
	}
	return 0
}

// loadObjects reads the cluster from manifests, or from the API server without them.
func loadObjects(ctx context.Context, files []string, stdio IO) (manifest.Objects, error) {
	if len(files) > 0 {
		return manifest.Load(files, stdio.Stdin, func(w string) { fmt.Fprintln(stdio.Stderr, "warning: "+w) })
	}
	return readCluster(ctx)
}
