// Package fleetbench is the size of the fleet benchmarks, one set of flags
// for test/fleet (propagation to real agents) and test/bench (the fan-out
// simulation and the cold sync): make bench gives both the same
// -fleet.rate and -fleet.seconds.
package fleetbench

import "flag"

// The benchmarks' parameters (go test ... -args -fleet.rate=N); a test
// binary that imports the package takes all of them.
var (
	Agents   = flag.Int("fleet.agents", 10, "propagation benchmark (test/fleet): agents (real bulwark run, XDP on their veths)")
	Clients  = flag.Int("fleet.clients", 200, "fan-out (test/bench): lightweight clients (the real fleet.Client)")
	Rate     = flag.Int("fleet.rate", 1000, "propagation and fan-out: verdicts published per second")
	Seconds  = flag.Int("fleet.seconds", 30, "propagation and fan-out: seconds of publishing")
	ColdSync = flag.Int("fleet.coldsync", 1_000_000, "cold sync (test/bench): active verdicts in the bucket")
)
