// Command flock-netpol is the NetworkPolicy agent of the flock network plugin. See
// `flock-netpol --help` and README.md.
package main

import (
	"os"

	"github.com/flock-net/flock-netpol/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
