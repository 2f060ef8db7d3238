package agent

import (
	"os"
	"testing"

	"github.com/flock-net/flock-netpol/test/testenv"
)

// TestMain runs the package with the garbage collector set as the agent's DaemonSet sets it
// (GOGC), so that the benchmarks measure what the agent does; a GOGC in the environment wins.
func TestMain(m *testing.M) { os.Exit(testenv.RunWithShippedGOGC(m)) }
