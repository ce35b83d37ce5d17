package main

import (
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/test/bench"
)

func TestCrowdSecReport(t *testing.T) {
	r := map[string]any{"pull_interval_s": 1.0, "poll_bulwark_s": 0.1, "poll_bouncer_s": 1.0, "bouncer": "crowdsec-firewall-bouncer 0.0.25",
		"sizes": []any{
			map[string]any{"decisions": 10000.0, "runs": 3.0, "bulwark_median_s": 0.5, "bouncer_median_s": 4.0, "sooner": 8.0},
			map[string]any{"decisions": 100000.0, "runs": 3.0, "import_median_s": 40.0, "bulwark_median_s": 0.8, "bouncer_median_s": 60.0,
				"sooner": 75.0, "bulwark_ns_per_pkt": 50.0, "nft_bouncer_ns_per_pkt": 150.0, "cpu_ratio": 3.0,
				"bulwark_lapi_answer_median_s": 0.5, "bulwark_apply_median_s": 0.125},
		}}
	f, err := crowdSecOf(r)
	if err != nil {
		t.Fatal(err)
	}
	tg := crowdSecTargets(f)
	if len(tg) != 1 || !tg[0].Met || tg[0].Why != "" || !strings.Contains(tg[0].Measured, "0.80 s vs 60.0 s (medians of 3): 75.0x") {
		t.Errorf("targets %+v; want one, met, 0.80 s vs 60.0 s, 75.0x", tg)
	}
	f.Sizes[1].Sooner, f.Sizes[1].BouncerMissed = 12, 1
	tg = crowdSecTargets(f)
	if len(tg) != 1 || tg[0].Met || !strings.Contains(tg[0].Why, "40.0 s") || !strings.Contains(tg[0].Measured, "never all in 1 of 3 runs") {
		t.Errorf("targets %+v; want missed, why with the import's 40.0 s, the run the bouncer never held all", tg)
	}
	var w strings.Builder
	writeCrowdSec(&w, f)
	for _, want := range []string{"crowdsec-firewall-bouncer 0.0.25", "| 100000 | 3 | 40.0 | 0.80", "| 3.00x | 0.50 | 0.125 |", "never all in 1 runs"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, w.String())
		}
	}
}

// TestCrowdSecApplyTarget: the apply benchmark's median against 1 CPU-s,
// the end-to-end figure and its parts beside it; none without the
// benchmark.
func TestCrowdSecApplyTarget(t *testing.T) {
	f := bench.CrowdSecFigures{Sizes: []bench.CrowdSecSize{{Decisions: 100_000, BulwarkS: 5.5, BulwarkAnswerS: 2.25, BulwarkApplyS: 0.2}}}
	if tg := crowdSecApplyTargets(nil, f); tg != nil {
		t.Errorf("targets %+v without the benchmark; want none", tg)
	}
	gb := map[string]map[string][]float64{"CrowdSecApply100k": {"cpu-s/op": {0.3, 0.25, 1.5}}}
	tg := crowdSecApplyTargets(gb, f)
	if len(tg) != 1 || !tg[0].Met || !strings.Contains(tg[0].Measured, "0.30 CPU-s median (0.25-1.50 over 3)") ||
		!strings.Contains(tg[0].Measured, "5.50 s, of it the LAPI's answer to the full pull 2.25 s and the apply 0.200 s") {
		t.Errorf("targets %+v; want one, met, median 0.30 of 3, the end to end 5.50 s with its parts", tg)
	}
	gb["CrowdSecApply100k"]["cpu-s/op"] = []float64{1.2, 1.1}
	if tg := crowdSecApplyTargets(gb, f); len(tg) != 1 || tg[0].Met || tg[0].Why == "" {
		t.Errorf("targets %+v at 1.15 CPU-s; want missed, with why", tg)
	}
}
