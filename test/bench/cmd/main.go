// Command cmd prints Bulwark's datapath benchmark table (as root):
//
//	go run ./test/bench/cmd [-rounds 5] [-repeat 1000000] [-json FILE]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/bulwark-filter/bulwark/test/bench"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds; the median is reported")
	repeat := flag.Int("repeat", 1_000_000, "runs per measurement in the kernel (>= 1e6)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (BPF)")
		os.Exit(1)
	}
	b, err := bench.Setup(func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer b.Close()
	res, err := b.Measure(*rounds, *repeat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	bench.PrintTable(os.Stdout, res, *rounds, *repeat)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(map[string]any{"rounds": *rounds, "repeat": *repeat, "cases": res}, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}
