package evaluation_test

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/netns"
)

// TestShadowMode runs a shorter scenario with reputation.mode = "shadow":
// 20 of the well-behaved sources, 6 s of warm-up, then the UDP flooder
// (3000 pps to 9000 for 6 s). The scorer must judge the flooder (counted in
// bulwark_shadow_verdicts_total, a shadow.* audit record) but enforce
// nothing: no verdict in `bulwark verdicts list`, no datapath drop for a
// verdict, and the server receives the flooder at its rate-limit level
// (burst 1000 plus 500 pps).
func TestShadowMode(t *testing.T) {
	e := newEnv(t)
	rx, err := e.TB.NewReceiver(rxPort, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	e.start(e.config("shadow", ""))
	iface := e.TB.ServerIf

	good := population(populationN, popSeed)[:20]
	flood := netip.MustParseAddr("198.18.40.1")
	frame := netns.UDP4(e.TB.ServerMAC, e.TB.ClientMAC, flood, netns.ServerAddr4, 40000, rxPort, netns.Payload(1, 64))
	a := &attacker{name: "udp-flooder", addr: flood, startAt: 6 * time.Second, dur: 6 * time.Second, pps: 3000,
		frame: func(int) []byte { return frame }, stop: make(chan struct{})}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	go func() { defer wg.Done(); e.playGood(ctx, good, 15*time.Second, popSeed) }()
	go func() { defer wg.Done(); e.play(ctx, a, t0) }()

	var verdictsSeen []string
	polls := 0
	for time.Since(t0) < 15*time.Second {
		vs, err := e.verdicts()
		if err != nil {
			t.Fatal(err)
		}
		polls++
		for _, v := range vs {
			verdictsSeen = append(verdictsSeen, v.Source+" "+v.Action)
		}
		time.Sleep(pollEvery)
	}
	wg.Wait()
	rx.Settle(100*time.Millisecond, 3*time.Second)

	sent := a.sentCount.Load()
	dur := time.Duration(a.lastAt.Load() - a.firstAt.Load())
	got := rx.Count(flood)
	// The limit lets through the burst and then 500 pps.
	want := 1000 + 500*dur.Seconds()
	m := e.Metrics()
	verdictDrops := m.Get("bulwark_packets_total", "interface", iface, "action", "drop", "reason", "verdict")
	shadow := m.Get("bulwark_shadow_verdicts_total")
	enforced := m.Get("bulwark_verdicts_total")
	t.Logf("flooder: %d sent in %s, %d delivered (rate-limit level %.0f); verdict drops %.0f; shadow verdicts %.0f; enforced verdicts %.0f; %d polls of verdicts list",
		sent, dur.Round(10*time.Millisecond), got, want, verdictDrops, shadow, enforced, polls)

	if len(verdictsSeen) > 0 {
		t.Errorf("shadow mode: verdicts list showed %v, want always empty", verdictsSeen)
	}
	if verdictDrops != 0 {
		t.Errorf("shadow mode: %.0f datapath drops for a verdict, want 0", verdictDrops)
	}
	if enforced != 0 {
		t.Errorf("shadow mode: bulwark_verdicts_total %.0f, want 0", enforced)
	}
	if float64(got) < 0.8*want || float64(got) > 1.2*want {
		t.Errorf("shadow mode: %d of the flooder's %d datagrams delivered, want its rate-limit level, about %.0f", got, sent, want)
	}
	if shadow < 1 {
		t.Errorf("shadow mode: bulwark_shadow_verdicts_total %.0f, want at least 1", shadow)
	}
	var rec *auditRecord
	audit := e.auditLog()
	for i, r := range audit {
		if r.Who == "scorer" && (r.What == "shadow.block" || r.What == "shadow.throttle") &&
			len(r.Target) == 1 && r.Target[0] == "198.18.40.1/32" {
			rec = &audit[i]
			break
		}
	}
	if rec == nil {
		t.Errorf("shadow mode: no shadow.block or shadow.throttle audit record for 198.18.40.1/32 in %+v", audit)
	} else {
		t.Logf("audit: %s %s score %.1f at T+%s (%s after the flood began): %s", rec.What, strings.Join(rec.Target, ","), rec.Score,
			rec.Time.Sub(t0).Round(10*time.Millisecond), rec.Time.Sub(time.Unix(0, a.firstAt.Load())).Round(10*time.Millisecond), componentsText(rec.Components))
	}
	for _, r := range audit {
		if r.Who == "scorer" && strings.HasPrefix(r.What, "verdict.") {
			t.Errorf("shadow mode: enforced verdict in the audit log: %+v", r)
		}
	}
}
