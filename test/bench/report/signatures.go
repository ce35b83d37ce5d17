package main

import (
	"fmt"
	"strings"
)

// Attack signatures: TestSignatureFloods (test/replay: floods merged with
// benign captures, replayed) and TestLiveSYNFlood, TestLiveSYNFloodPaced
// (test/sigflood: the real agent on a veth against the in-kernel generator).

// sigTargets checks the signature figures against the targets:
// from 3 s after a flood starts at least 95 % of it dropped, at most 0.1 %
// of benign packets dropped, and live a signature within 3 s of a flood of
// at least 1 Mpps with the benign clients still connecting, for the flood
// as fast as the generator goes (live) and paced (paced).
func sigTargets(replay, live, paced map[string]any) []target {
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
	if live != nil {
		out = append(out, liveTargets("as fast as it goes", live)...)
	}
	if paced != nil {
		out = append(out, liveTargets("paced", paced)...)
	}
	return out
}

// liveTargets checks one live run (TestLiveSYNFlood or its paced twin).
// The dropped share is judged over the frames that reached the server's
// XDP program (the kernel's veth counters say how many the veth's ring
// refused before it) and by the server stack's count; the share of all
// frames sent is shown beside them.
func liveTargets(label string, live map[string]any) []target {
	num := func(k string) float64 { v, _ := live[k].(float64); return v }
	if p := num("flood_paced_mpps"); p > 0 {
		label = fmt.Sprintf("paced at %.0f Mpps", p)
	}
	tts, mpps := num("time_to_signature_s"), num("flood_mpps")
	after, okAfter := num("benign_connects_after_sig"), num("benign_connects_after_sig_ok")
	sig := target{fmt.Sprintf("live (veth, real agent; flood %s): a signature within 3 s of a spoofed SYN flood's start", label),
		fmt.Sprintf("%.2f s", tts), tts > 0 && tts <= 3, ""}
	if !sig.Met {
		sig.Why = "detection ticks once a second and needs an anomalous second with 200 sampled packets; the agent's tick " +
			"and the map reads ran late on the loaded machine"
	}
	rate := target{fmt.Sprintf("live (%s): a flood of at least 1 Mpps from the in-kernel generator", label),
		fmt.Sprintf("%.2f Mpps sent over %.0f packets (%.2f Mpps once dropped); %.0f reached XDP, %.0f lost in the veth before it",
			mpps, num("flood_packets"), num("flood_mpps_after_sig"), num("flood_reached_xdp"), num("flood_lost_before_xdp")),
		mpps >= 1, ""}
	if !rate.Met {
		rate.Why = "the generator shares the machine's CPUs with the agent, the veth's consumer and the benign client"
	}
	reached, stack := num("attack_dropped_pct_of_reached"), num("attack_dropped_pct_by_stack")
	drop := target{fmt.Sprintf("live (%s): >= 95 %% of the flood dropped after the signature (of the frames that reached XDP; "+
		"and never reaching the server's stack)", label),
		fmt.Sprintf("%.2f %% of %.0f frames that reached XDP (signature's counter); %.2f %% by the veth's XDP_DROP count; "+
			"%.2f %% never reached the stack; of all %.0f sent: %.2f %% (%.0f lost in the veth's ring before XDP)",
			reached, num("attack_reached_xdp_after_sig"), num("xdp_dropped_pct"), stack, num("attack_sent_after_sig"),
			num("attack_dropped_pct"), num("attack_lost_before_xdp_after_sig")),
		reached >= 95 && stack >= 95, ""}
	if !drop.Met {
		drop.Why = fmt.Sprintf("the signature `%v` leaves out flood packets the sample did not show (e.g. source ports outside its range)",
			live["signature"])
	}
	return []target{sig, rate, drop,
		{fmt.Sprintf("live (%s): every benign connection after the signature succeeds", label), fmt.Sprintf("%.0f of %.0f", okAfter, after),
			after > 0 && okAfter == after, ""}}
}

// writeSignatures writes the section of the signature figures.
func writeSignatures(w *strings.Builder, replay, live, paced map[string]any) {
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
	if live == nil && paced == nil {
		return
	}
	w.WriteString("\nLive (`TestLiveSYNFlood`, `TestLiveSYNFloodPaced`): the real agent with `detect = \"enforce\"` on a server veth; a " +
		"spoofed SYN flood from the in-kernel generator (random sources over 198.18.0.0/16 and source ports, TTL 57, window 1024, " +
		"no options) after 4 calm seconds, as fast as the generator goes and paced, while a client in the other namespace opens " +
		"a real TCP connection to the server's port every 50 ms. Sent: frames the generator sent; reached XDP and lost before " +
		"it: the kernel's veth counters (ethtool -S: the client veth's xdp_xmit and xdp_xmit_errors, frames the server veth's " +
		"ring took or had no room for), which account for every frame sent. After the signature's write: dropped of those " +
		"that reached XDP (the signature's drop counter), the server veth's own XDP_DROP count over its XDP runs, 1 - the " +
		"server stack's TCP InSegs over the frames sent (from when the test saw the signature), and dropped of all frames " +
		"sent (a lower bound when the ring lost some).\n\n")
	w.WriteString("| flood | sent, Mpps | reached XDP / lost before it | time to signature | after it: dropped of reached | XDP_DROP (veth) | never reached the stack | dropped of sent | benign connects after it | all benign connects |\n")
	w.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	var sigs strings.Builder
	for _, m := range []map[string]any{live, paced} {
		if m == nil {
			continue
		}
		num := func(k string) float64 { v, _ := m[k].(float64); return v }
		pace := "as fast as it goes"
		if p := num("flood_paced_mpps"); p > 0 {
			pace = fmt.Sprintf("paced at %.0f Mpps", p)
		}
		fmt.Fprintf(w, "| %s: %.0f packets in %.2f s | %.2f (%.2f once dropped) | %.0f / %.0f | %.2f s | %.2f %% of %.0f | %.2f %% | %.2f %% | %.2f %% of %.0f (%.0f lost) | %.0f of %.0f | %.0f of %.0f |\n",
			pace, num("flood_packets"), num("flood_seconds"), num("flood_mpps"), num("flood_mpps_after_sig"),
			num("flood_reached_xdp"), num("flood_lost_before_xdp"), num("time_to_signature_s"),
			num("attack_dropped_pct_of_reached"), num("attack_reached_xdp_after_sig"), num("xdp_dropped_pct"),
			num("attack_dropped_pct_by_stack"), num("attack_dropped_pct"), num("attack_sent_after_sig"),
			num("attack_lost_before_xdp_after_sig"), num("benign_connects_after_sig_ok"), num("benign_connects_after_sig"),
			num("benign_connects_ok"), num("benign_connects"))
		fmt.Fprintf(&sigs, "\nSignature (%s): `%v`.\n", pace, m["signature"])
	}
	w.WriteString(sigs.String())
}
