package main

import (
	"strings"
	"testing"
)

// TestLiveSignatureReport: the live dropped target is judged over the
// frames that reached XDP and by the stack's count, not over the frames
// the veth lost before XDP; the paced run gets its own rows.
func TestLiveSignatureReport(t *testing.T) {
	// 1,000,000 sent after the signature, 80,000 of them lost in the veth
	// before XDP, 910,800 of the 920,000 that reached it dropped: 99 % of
	// those reached, 91.08 % of those sent.
	live := map[string]any{"flood_mpps": 8.0, "time_to_signature_s": 0.9, "attack_sent_after_sig": 1e6,
		"attack_lost_before_xdp_after_sig": 80000.0, "attack_reached_xdp_after_sig": 920000.0, "attack_dropped_after_sig": 910800.0,
		"attack_dropped_pct": 91.08, "attack_dropped_pct_of_reached": 99.0, "attack_dropped_pct_by_stack": 99.4,
		"benign_connects_after_sig": 20.0, "benign_connects_after_sig_ok": 20.0}
	paced := map[string]any{"flood_paced_mpps": 2.0, "flood_mpps": 0.9, "time_to_signature_s": 0.8,
		"attack_dropped_pct_of_reached": 94.0, "attack_dropped_pct_by_stack": 99.0, "signature": "protocol=tcp dst_port=80",
		"benign_connects_after_sig": 20.0, "benign_connects_after_sig_ok": 19.0}
	tg := sigTargets(nil, live, paced)
	if len(tg) != 8 {
		t.Fatalf("%d targets, want 4 per live run: %+v", len(tg), tg)
	}
	for i, want := range []bool{true, true, true, true, true, false, false, false} {
		if tg[i].Met != want {
			t.Errorf("target %q met %v, want %v", tg[i].Target, tg[i].Met, want)
		}
	}
	if !strings.Contains(tg[2].Measured, "99.00 % of 920000 frames that reached XDP") ||
		!strings.Contains(tg[2].Measured, "of all 1000000 sent: 91.08 % (80000 lost") {
		t.Errorf("dropped row %q: want both views", tg[2].Measured)
	}
	if !strings.Contains(tg[4].Target, "paced at 2 Mpps") || !strings.Contains(tg[6].Why, "protocol=tcp dst_port=80") {
		t.Errorf("paced rows %+v: want the pace named and the signature in the why", tg[4:])
	}
	var w strings.Builder
	writeSignatures(&w, nil, live, paced)
	if s := w.String(); !strings.Contains(s, "| as fast as it goes: ") || !strings.Contains(s, "| paced at 2 Mpps: ") ||
		strings.Index(s, "Signature (") < strings.Index(s, "| paced at 2 Mpps: ") {
		t.Errorf("section: want a row per run, then the signatures:\n%s", s)
	}
}
