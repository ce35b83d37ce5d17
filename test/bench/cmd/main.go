// Command cmd prints Bulwark's datapath benchmark table (as root):
//
//	go run ./test/bench/cmd [-rounds 5] [-repeat 1000000] [-retries 2] [-slots 8192] [-wide 262144] [-sizes 1000,100000,1000000] [-json FILE]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/bulwark-filter/bulwark/test/bench"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds; the median is reported")
	repeat := flag.Int("repeat", 1_000_000, "runs per measurement in the kernel")
	retries := flag.Int("retries", 2, "times a case whose rounds fail the stability check (interquartile range over 10 % of the median + 1 ns) is measured again")
	slots := flag.Int("slots", bench.DefaultSlots, "source addresses a rotated case cycles through (a power of two)")
	wide := flag.Int("wide", bench.DefaultWideSlots, "source addresses the -wide cases (largest list only, with the cache on and, as -wide-nocache, off) cycle through (a power of two; -1: no -wide cases)")
	sizeList := flag.String("sizes", "1000,100000,1000000", "block list fills, comma-separated")
	sources := flag.Int("sources", 1_000_000, "sources tracked in the ratelimited case")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (BPF)")
		os.Exit(1)
	}
	var sizes []int
	for _, f := range strings.Split(*sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -sizes: %q is no positive number\n", f)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	if *rounds < 1 || *repeat < 1 || *retries < 0 || *sources < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -repeat and -sources must be at least 1, -retries at least 0")
		os.Exit(2)
	}
	b, err := bench.Setup(bench.Options{
		Logf:  func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		Slots: *slots, WideSlots: *wide, ListSizes: sizes, Sources: *sources,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer b.Close()
	res, err := b.Measure(*rounds, *repeat, *retries)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	bench.PrintTable(os.Stdout, res, *rounds, *repeat)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(map[string]any{"rounds": *rounds, "repeat": *repeat, "retries": *retries,
			"max_spread": bench.MaxSpread, "slots": *slots, "wide_slots": *wide, "cases": res}, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}
