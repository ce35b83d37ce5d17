package main

import (
	"fmt"
	"strings"
)

// Attack signatures: TestSignatureFloods (test/replay: floods merged with
// benign captures, replayed) and TestLiveSYNFlood (test/sigflood: the real
// agent on a veth against the in-kernel generator).

// sigTargets checks the signature figures against the targets:
// from 3 s after a flood starts at least 95 % of it dropped, at most 0.1 %
// of benign packets dropped, and live a signature within 3 s of a flood of
// at least 1 Mpps with the benign clients still connecting.
func sigTargets(replay, live map[string]any) []target {
	var out []target
	num := func(m map[string]any, k string) float64 { v, _ := m[k].(float64); return v }
	floods, _ := replay["floods"].([]any)
	for _, f := range floods {
		m, _ := f.(map[string]any)
		kind, _ := m["kind"].(string)
		late, bad := num(m, "attack_from_3s_dropped_pct"), num(m, "benign_dropped_pct")
		out = append(out,
			target{fmt.Sprintf("replay, spoofed %s flood merged with benign captures: >= 95 %% of the flood dropped from 3 s after its start", kind),
				fmt.Sprintf("%.2f %% (signature at %v)", late, m["signature_at"]), late >= 95, ""},
			target{fmt.Sprintf("replay, spoofed %s flood: <= 0.1 %% of benign packets dropped", kind),
				fmt.Sprintf("%.3f %% (%.0f of %.0f)", bad, num(m, "benign_dropped"), num(m, "benign")), bad <= 0.1, ""})
	}
	if live == nil {
		return out
	}
	tts, mpps := num(live, "time_to_signature_s"), num(live, "flood_mpps")
	after, okAfter := num(live, "benign_connects_after_sig"), num(live, "benign_connects_after_sig_ok")
	sig := target{"live (veth, real agent): a signature within 3 s of a spoofed SYN flood's start",
		fmt.Sprintf("%.2f s", tts), tts > 0 && tts <= 3, ""}
	if !sig.Met {
		sig.Why = "detection ticks once a second and needs an anomalous second with 200 sampled packets; the agent's tick " +
			"and the map reads ran late on the loaded machine"
	}
	return append(out, sig,
		target{"live: a flood of at least 1 Mpps from the in-kernel generator", fmt.Sprintf("%.2f Mpps over %.0f packets (%.2f Mpps once dropped)",
			mpps, num(live, "flood_packets"), num(live, "flood_mpps_after_sig")), mpps >= 1, ""},
		target{"live: >= 95 % of the flood dropped after the signature", fmt.Sprintf("%.2f %% (the server stack's count: %.2f %%)",
			num(live, "attack_dropped_pct"), num(live, "attack_dropped_pct_by_stack")),
			num(live, "attack_dropped_pct") >= 95 && num(live, "attack_dropped_pct_by_stack") >= 95, ""},
		target{"live: every benign connection after the signature succeeds", fmt.Sprintf("%.0f of %.0f", okAfter, after),
			after > 0 && okAfter == after, ""})
}

// writeSignatures writes the section of the signature figures.
func writeSignatures(w *strings.Builder, replay, live map[string]any) {
	num := func(m map[string]any, k string) float64 { v, _ := m[k].(float64); return v }
	w.WriteString("\n## Attack signatures\n\n")
	if floods, _ := replay["floods"].([]any); len(floods) > 0 {
		fmt.Fprintf(w, "Replay (`TestSignatureFloods`): each spoofed flood (test/sigflood: random sources over 198.18.0.0/15, "+
			"realistic TTLs, windows, IP IDs and source ports) merged 2 s into the benign captures %v, replayed with "+
			"`signatures { detect = \"enforce\" }`.\n\n", replay["benign_captures"])
		w.WriteString("| flood | pps x s | signature at | flood dropped from 3 s | benign dropped | signature |\n|---|---|---|---|---|---|\n")
		for _, f := range floods {
			m, _ := f.(map[string]any)
			fmt.Fprintf(w, "| %v | %.0f x %.0f | %v | %.0f of %.0f (%.2f %%) | %.0f of %.0f | `%v` |\n", m["kind"], num(m, "pps"),
				num(m, "seconds"), m["signature_at"], num(m, "attack_from_3s_dropped"), num(m, "attack_from_3s"),
				num(m, "attack_from_3s_dropped_pct"), num(m, "benign_dropped"), num(m, "benign"), m["signature"])
		}
	}
	if live == nil {
		return
	}
	w.WriteString("\nLive (`TestLiveSYNFlood`): the real agent with `detect = \"enforce\"` on a server veth; a spoofed SYN flood " +
		"from the in-kernel generator (random sources over 198.18.0.0/16 and source ports, TTL 57, window 1024, no options) " +
		"after 4 calm seconds, while a client in the other namespace opens a real TCP connection to the server's port every " +
		"50 ms. Dropped after the signature: the signature's drop counter against the frames the generator sent after its " +
		"write, and, independently, 1 - the server stack's TCP InSegs over the frames sent, from when the test saw it.\n\n")
	w.WriteString("| flood | Mpps | time to signature | dropped after it | by the stack's count | benign connects after it | all benign connects |\n")
	w.WriteString("|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %.0f packets in %.2f s | %.2f (%.2f once dropped) | %.2f s | %.2f %% | %.2f %% | %.0f of %.0f | %.0f of %.0f |\n",
		num(live, "flood_packets"), num(live, "flood_seconds"), num(live, "flood_mpps"), num(live, "flood_mpps_after_sig"),
		num(live, "time_to_signature_s"), num(live, "attack_dropped_pct"), num(live, "attack_dropped_pct_by_stack"),
		num(live, "benign_connects_after_sig_ok"), num(live, "benign_connects_after_sig"), num(live, "benign_connects_ok"),
		num(live, "benign_connects"))
	fmt.Fprintf(w, "\nSignature: `%v`.\n", live["signature"])
}
