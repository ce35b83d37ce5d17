package resilience_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestReloadStorm alternates good and broken configs through POST
// /v1/reload while other clients make thousands of API calls and traffic
// flows: exactly the broken half is rejected, nothing else fails, the
// policy in force is always the last good one, and the agent's memory does
// not grow after a warm-up.
func TestReloadStorm(t *testing.T) {
	t.Parallel()
	reloads := pick(100, 1000)
	calls := pick(1000, 10000)
	warmup := pick(50, 300)
	// The quick subset's storm lasts about a second: too short for the Go
	// heap to settle, so its memory bound is a smoke test; the full run
	// holds the agent to 5 %.
	maxGrowth := float64(pick(15, 5))

	e := newEnv(t)
	good := func(i int) agenttest.Config {
		// Two good configs in turn: each blocks 198.18.66.6 and its own marker.
		return agenttest.Config{PPS: 1000, Burst: 1000, Block: []string{"198.18.66.6", fmt.Sprintf("198.18.67.%d", 1+i%2)}}
	}
	broken := func(i int) string {
		switch i % 3 {
		case 0:
			return e.Render(good(0)) + "\nlimits {\n  this is not HCL\n"
		case 1:
			return e.Render(agenttest.Config{PPS: 1000, Burst: 1000, Block: []string{"198.18.66.6", "198.18.300.1"}})
		default:
			// Valid HCL, invalid config: a burst of 0 with a rate.
			return e.Render(agenttest.Config{PPS: 1000, Burst: 0, Block: []string{"198.18.66.6"}})
		}
	}
	e.WriteConfig("", good(1))
	a := e.Start()
	pid := a.Cmd.Process.Pid

	blocked, normal := agenttest.Addr("198.18.66.6"), agenttest.Addr("2001:2:0:1::2")
	bg := e.background([][]byte{e.Frame(blocked, 1), e.Frame(normal, 2)}, 2*time.Millisecond, 10*time.Minute)
	defer bg.finish(t)

	// The API clients: status, block add with a TTL, lists, block del.
	var apiWG sync.WaitGroup
	var apiMu sync.Mutex
	apiCalls, apiErrs := 0, []string{}
	apiDone := make(chan struct{})
	workers := 2
	for w := 0; w < workers; w++ {
		apiWG.Add(1)
		go func(w int) {
			defer apiWG.Done()
			c := e.api()
			defer c.CloseIdleConnections()
			for i := w; i < calls; i += workers {
				ip := fmt.Sprintf("198.18.%d.%d", 100+w, 1+(i/workers)%250)
				var method, path, body string
				switch i / workers % 5 {
				case 0:
					method, path = "GET", "/v1/status"
				case 1:
					method, path, body = "POST", "/v1/lists/block", `{"cidrs":["`+ip+`"],"ttl":"1h","reason":"storm"}`
				case 2:
					method, path = "GET", "/v1/lists/block"
				case 3:
					method, path, body = "DELETE", "/v1/lists/block", `{"cidrs":["`+ip+`"]}`
				default:
					method, path = "GET", "/v1/lists/allow"
				}
				st, rb, err := do(c, method, path, body)
				apiMu.Lock()
				apiCalls++
				if err != nil || st != 200 {
					apiErrs = append(apiErrs, fmt.Sprintf("%s %s: HTTP %d %v %.200s", method, path, st, err, rb))
				}
				apiMu.Unlock()
			}
		}(w)
	}
	go func() { apiWG.Wait(); close(apiDone) }()

	c := e.api()
	defer c.CloseIdleConnections()
	// Every reload is made; the deadline only bounds a hung agent.
	deadline := time.Now().Add(time.Duration(pick(300, 600)) * time.Second)
	ok, rejected, other := 0, 0, []string{}
	lastGood := 1
	var warmRSS, endRSS []int
	checks := 0
	start := time.Now()
	for i := 0; i < reloads; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d reloads made by the deadline (%s)", i, reloads, time.Since(start).Round(time.Second))
		}
		if i%2 == 0 {
			agenttest.WriteFile(t, e.CfgPath, e.Render(good(i/2)))
		} else {
			agenttest.WriteFile(t, e.CfgPath, broken(i/2))
		}
		st, body, err := do(c, "POST", "/v1/reload", "")
		switch {
		case err != nil:
			other = append(other, fmt.Sprintf("reload %d: %v", i, err))
		case i%2 == 0 && st == 200:
			ok++
			lastGood = i / 2
		case i%2 == 1 && st == 422 && strings.Contains(body, `"rejected"`):
			rejected++
		default:
			other = append(other, fmt.Sprintf("reload %d (%s): HTTP %d %.300s", i, map[bool]string{true: "good", false: "broken"}[i%2 == 0], st, body))
		}
		// RSS follows the Go heap's saw-tooth (here about +-1.5 MiB around
		// 33 MiB), so one reading at each end would measure the tooth, not
		// a leak: compare the median of readings taken every 10 reloads
		// over the second half of the warm-up with the median over the
		// last `warmup` reloads.
		if i%10 == 9 {
			switch {
			case i >= warmup/2 && i < warmup:
				warmRSS = append(warmRSS, rssKiB(t, pid))
			case i >= reloads-warmup:
				endRSS = append(endRSS, rssKiB(t, pid))
			}
		}
		// Now and then, right after a rejected reload: the last good
		// config's entries are the ones in force.
		if i%2 == 1 && i%20 == 19 {
			checks++
			st, body, err := do(c, "GET", "/v1/lists/block", "")
			want := fmt.Sprintf(`"198.18.67.%d/32"`, 1+lastGood%2)
			other2 := fmt.Sprintf(`"198.18.67.%d/32"`, 2-lastGood%2)
			if err != nil || st != 200 || !strings.Contains(body, want) || strings.Contains(body, other2) || !strings.Contains(body, `"198.18.66.6/32"`) {
				t.Errorf("after reload %d (a rejected one): block list %d %v does not hold the last good config (%s, not %s): %.500s", i, st, err, want, other2, body)
			}
		}
	}
	reloadTime := time.Since(start)
	select {
	case <-apiDone:
	case <-time.After(time.Until(deadline.Add(30 * time.Second))):
		t.Fatalf("API clients not done by the deadline")
	}
	apiTime := time.Since(start)
	rssWarm, rssEnd := median(warmRSS), median(endRSS)
	sent := bg.finish(t)
	e.Rcv.Settle(200*time.Millisecond, 10*time.Second)

	m := e.Metrics()
	mOK, mRej, mErr := m.Get("bulwark_config_reloads_total", "result", "ok"), m.Get("bulwark_config_reloads_total", "result", "rejected"), m.Get("bulwark_config_reloads_total", "result", "error")
	growth := 100 * float64(rssEnd-rssWarm) / float64(rssWarm)
	t.Logf("%d reloads in %s (%d ok, %d rejected, metrics ok=%v rejected=%v error=%v); %d API calls in %s, %d failed; RSS median %d KiB over reloads %d-%d, %d KiB over the last %d (%+.1f%%); traffic: blocked %d sent, %d delivered; normal %d sent, %d delivered",
		ok+rejected+len(other), reloadTime.Round(time.Millisecond), ok, rejected, mOK, mRej, mErr, apiCalls, apiTime.Round(time.Millisecond), len(apiErrs),
		rssWarm, warmup/2, warmup, rssEnd, warmup, growth, sent[0], e.Rcv.Count(blocked), sent[1], e.Rcv.Count(normal))
	summary(t, "%d reloads (%d ok, %d rejected; metrics %v/%v/%v ok/rejected/error) + %d API calls (%d failed) in %s; RSS median %d -> %d KiB (%+.1f%%) after %d warm-up reloads; blocked source delivered %d of %d",
		reloads, ok, rejected, mOK, mRej, mErr, apiCalls, len(apiErrs), apiTime.Round(time.Second), rssWarm, rssEnd, growth, warmup, e.Rcv.Count(blocked), sent[0])

	if len(other) > 0 {
		t.Errorf("%d unexpected reload results, first: %s", len(other), strings.Join(other[:min(5, len(other))], "; "))
	}
	if ok != reloads/2 || rejected != reloads/2 {
		t.Errorf("reloads: %d ok, %d rejected, want %d each", ok, rejected, reloads/2)
	}
	if mOK != float64(reloads/2) || mRej != float64(reloads/2) || mErr != 0 {
		t.Errorf("bulwark_config_reloads_total ok=%v rejected=%v error=%v, want %d, %d, 0", mOK, mRej, mErr, reloads/2, reloads/2)
	}
	if apiCalls != calls || len(apiErrs) > 0 {
		t.Errorf("%d of %d API calls made, %d failed; first: %s", apiCalls, calls, len(apiErrs), strings.Join(apiErrs[:min(5, len(apiErrs))], "; "))
	}
	if len(warmRSS) == 0 || len(endRSS) == 0 {
		t.Errorf("RSS readings: %d in the warm-up, %d at the end; want some of each", len(warmRSS), len(endRSS))
	} else if growth >= maxGrowth {
		t.Errorf("agent RSS grew %.1f%% (%d -> %d KiB) from reload %d to the end, want under %.0f%%", growth, rssWarm, rssEnd, warmup, maxGrowth)
	}
	if n := e.Rcv.Count(blocked); n != 0 {
		t.Errorf("%d of %d frames from the source every good config blocks were delivered during the storm, want 0", n, sent[0])
	}
	if n := e.Rcv.Count(normal); n != sent[1] {
		t.Errorf("%d of %d frames from a normal source delivered during the storm, want all", n, sent[1])
	}
	if checks == 0 {
		t.Errorf("no policy check ran during the storm")
	}
	// At the end: the last good config in force, also by traffic.
	want := fmt.Sprintf("198.18.67.%d", 1+lastGood%2)
	if got := e.Send(agenttest.Addr(want), 10); got != 0 {
		t.Errorf("%d of 10 frames from %s (blocked by the last good config) delivered", got, want)
	}
	if a.Exited() {
		t.Fatalf("agent exited during the storm: %v\n%s", a.Err, a.LogText())
	}
}

// median of v (0 when empty).
func median(v []int) int {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
