//go:build !linux

package droplog

import (
	"context"
	"errors"

	"github.com/go-logr/logr"
)

// errNotLinux: NFLOG is Linux's. The agent only runs on Linux; this file merely keeps the package
// compiling elsewhere (for example for editors on other systems), since the netfilter library
// does not build there.
var errNotLinux = errors.New("droplog: NFLOG needs Linux")

// Reader receives the NFLOG messages of one group; only on Linux.
type Reader struct{}

// Open fails: NFLOG needs Linux.
func Open(group uint16, netnsFD int) (*Reader, error) { return nil, errNotLinux }

// Close does nothing.
func (r *Reader) Close() error { return nil }

// Run fails: NFLOG needs Linux.
func (r *Reader) Run(ctx context.Context, res Resolver, log logr.Logger, stats func(kind string, n int)) error {
	return errNotLinux
}
