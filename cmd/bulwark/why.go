package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/bulwark-filter/bulwark/agent/api"
)

type whyCmd struct {
	IP        string `arg:"" help:"Source address."`
	Proto     string `help:"The packet's protocol: tcp, udp or icmp (icmpv6 for an IPv6 source). Without it, no rule of a protocol applies." enum:"tcp,udp,icmp," default:""`
	Port      int    `help:"The packet's destination port (with --proto tcp or udp)." default:"0"`
	NoSYN     bool   `name:"no-syn" help:"With --proto tcp: a segment of an established connection, not a SYN (the first packet of a connection, the default)."`
	Bytes     int    `help:"The frame's length in bytes, for byte limits (${minbytes} to ${maxbytes})." default:"${defbytes}"`
	Interface string `help:"Whose datapath to read (default: the first of the config)."`
	JSON      bool   `help:"Print JSON."`
}

func (whyCmd) Help() string {
	return "Reads the datapath's maps and answers, in its decision order (first match wins: allow list, block list, " +
		"verdict, new-source ceiling, rate limits, pass), which step would decide a packet from the source now: the list " +
		"entry and where it comes from (config, file, feed, runtime), the verdict with its score and expiry, the source's " +
		"class, and each limit the packet meets with the tokens its bucket holds. It changes nothing (no token is taken) " +
		"and works with the reputation engine off. In monitor mode a drop is shown as would_drop.\n\n" +
		"Examples:\n  bulwark why 198.18.3.66\n  bulwark why 198.18.3.66 --proto tcp --port 22\n  bulwark why 2001:2::7 --proto udp --port 53 --json"
}

func (c *whyCmd) Run(g *cli) error {
	if _, err := api.ParseAddr(c.IP); err != nil {
		return usageError{err}
	}
	if c.Port < 0 || c.Port > 65535 {
		return usageError{fmt.Errorf("--port %d: want 0 to 65535", c.Port)}
	}
	if c.Port != 0 && c.Proto != "tcp" && c.Proto != "udp" {
		return usageError{fmt.Errorf("--port needs --proto tcp or udp")}
	}
	if c.NoSYN && c.Proto != "tcp" {
		return usageError{fmt.Errorf("--no-syn needs --proto tcp")}
	}
	if c.Bytes < api.MinWhyBytes || c.Bytes > api.MaxWhyBytes {
		return usageError{fmt.Errorf("--bytes %d: want %d to %d", c.Bytes, api.MinWhyBytes, api.MaxWhyBytes)}
	}
	w, raw, err := g.client().Why(context.Background(), c.IP, api.WhyQuery{Proto: c.Proto, Port: c.Port, NoSYN: c.NoSYN,
		Bytes: c.Bytes, Interface: c.Interface})
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	printWhy(w)
	return nil
}

// printWhy prints a why reply as text: the decision first, then each step.
func printWhy(w api.Why) {
	pkt := "any packet"
	switch {
	case w.Packet.Proto == "tcp" && w.Packet.SYN:
		pkt = fmt.Sprintf("a tcp SYN to port %d", w.Packet.Port)
	case w.Packet.Proto == "tcp" || w.Packet.Proto == "udp":
		pkt = fmt.Sprintf("a %s packet to port %d", w.Packet.Proto, w.Packet.Port)
	case w.Packet.Proto != "":
		pkt = "an " + w.Packet.Proto + " packet"
	}
	verb := map[string]string{"pass": "would pass", "drop": "would be dropped",
		"would_drop": "would pass, counted as would_drop (monitor mode)"}[w.Decision.Action]
	fmt.Printf("%s (source %s) on %s, mode %s: %s %s (reason %s)\n", w.Source, w.TrackingKey, w.Interface, w.Mode,
		pkt, verb, w.Decision.Reason)
	fmt.Printf("  because %s\n", w.Decision.Detail)
	entry := func(step string, e *api.WhyEntry) {
		if e == nil {
			fmt.Printf("  %s: no entry\n", step)
			return
		}
		exp := "no expiry"
		if e.ExpiresIn > 0 {
			exp = fmt.Sprintf("expires in %.0f s", e.ExpiresIn)
		}
		fmt.Printf("  %s: %s in list %q (origin %s), %s\n", step, e.CIDR, e.List, e.Origin, exp)
	}
	entry("1. allow list", w.Allow)
	if w.Allow != nil {
		return
	}
	if len(w.Signatures) == 0 {
		fmt.Println("  1b. signatures: none for this protocol and port")
	}
	for _, s := range w.Signatures {
		fmt.Printf("  1b. signature %s: decides a packet whose headers match\n", s)
	}
	entry("2. block list", w.Block)
	if w.Block != nil {
		return
	}
	if v := w.Verdict; v != nil {
		fmt.Printf("  3. verdict: %s (origin %s, score %d), expires in %.0f s\n", v.Action, v.Origin, v.Score, v.ExpiresIn)
		if v.Action == "block" {
			return
		}
	} else {
		fmt.Println("  3. verdict: none")
	}
	tracked := "tracked"
	if !w.Tracked {
		tracked = "not tracked yet (a first packet creates its state)"
	}
	class := "no class"
	if w.Class != "" {
		class = fmt.Sprintf("class %q", w.Class)
	}
	fmt.Printf("  4. rate limits: source %s, %s (multiplier %g)\n", tracked, class, w.ClassMult)
	if len(w.Limits) == 0 {
		fmt.Println("     no limit applies")
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "     LIMIT\tBUCKET\tRATE\tTOKENS\tFITS\tREACHED")
		for _, l := range w.Limits {
			rate, tokens := "", ""
			if l.PPS > 0 {
				rate = fmt.Sprintf("%d pps burst %d", l.PPS, l.Burst)
				tokens = fmt.Sprintf("%.3g", *l.Tokens)
			}
			if l.BytesPerSec > 0 {
				rate = join(rate, fmt.Sprintf("%d B/s burst %d", l.BytesPerSec, l.ByteBurst))
				tokens = join(tokens, fmt.Sprintf("%.0f B", *l.ByteTokens))
			}
			if l.Multiplier != 1 {
				rate += fmt.Sprintf(" x%g", l.Multiplier)
			}
			bucket := l.Bucket
			if bucket == "" {
				bucket = "(all new sources)"
			}
			if l.Fresh {
				tokens += " (full, new)"
			}
			fmt.Fprintf(tw, "     %s\t%s\t%s\t%s\t%v\t%v\n", l.Rule, bucket, rate, tokens, l.Conforms, l.Reached)
		}
		tw.Flush()
	}
	if s := w.Score; s != nil {
		fmt.Printf("  score: %.1f (throttle at %.0f, block at %.0f)", s.Score, s.ThrottleAt, s.BlockAt)
		if s.Exempt {
			fmt.Print(", exempt")
		}
		fmt.Println(" (bulwark explain shows its components)")
	}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}
