// Command cmd measures Bulwark's XDP datapath against nftables on a veth
// testbed and prints a table (as root; about six minutes with the defaults
// on a quiet 2-core machine):
//
//	go run ./test/bench/nft/cmd [-sizes 10000,100000,1000000] [-reps 5] [-retries 2] [-json bench/results-nft.json]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bulwark-filter/bulwark/test/bench/nft"
)

func main() {
	sizes := flag.String("sizes", "10000,100000,1000000", "block list sizes, comma separated")
	limit := flag.Uint64("limit", 100, "per-source limit in pps (0: skip the limit test)")
	floors := flag.Bool("floors", true, "measure the XDP_DROP and nft drop-all floors")
	reps := flag.Int("reps", 5, "repetitions of every receiver, interleaved (at least 1)")
	retries := flag.Int("retries", 2, "re-runs of a repetition whose generator did not hold its speed (0 or more)")
	rerunUntil := flag.Duration("rerun-until", 7*time.Minute, "no re-runs past this time from the start (0: no bound)")
	dur := flag.Duration("dur", 1500*time.Millisecond, "bound of one measured run in time")
	pkts := flag.Uint64("pkts", 40_000_000, "bound of one measured run in frames")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nft bench: needs root (BPF, namespaces, nft)")
		os.Exit(1)
	}
	if *reps < 1 || *retries < 0 || *dur <= 0 || *pkts == 0 || *rerunUntil < 0 {
		fmt.Fprintln(os.Stderr, "nft bench: -reps must be at least 1, -retries and -rerun-until 0 or more, -dur and -pkts above 0")
		os.Exit(2)
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "nft bench: bad size %q\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	b := nft.DefaultBounds()
	b.MaxDur, b.MaxPkts = *dur, *pkts
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	start := time.Now()
	rep, err := nft.Suite(nft.Config{Sizes: ns, Limit: *limit, Floors: *floors, Reps: *reps, Retries: *retries, RerunUntil: *rerunUntil, Bounds: b, Logf: logf})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nft bench:", err)
		os.Exit(1)
	}
	nft.Print(os.Stdout, rep)
	fmt.Printf("total time %.0f s\n", time.Since(start).Seconds())
	if *jsonOut != "" {
		out, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(out, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "nft bench:", err)
			os.Exit(1)
		}
	}
}
