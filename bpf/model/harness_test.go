package model_test

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
)

// minFrame is the shortest frame BPF_PROG_TEST_RUN accepts for XDP (an
// Ethernet header); a NIC never hands XDP anything shorter either.
const minFrame = 14

// maxLinear is the longest frame BPF_PROG_TEST_RUN puts in one linear
// buffer with 4 KiB pages: PAGE_SIZE - XDP_PACKET_HEADROOM (256) -
// SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) (320) (measured: a longer
// frame is counted with 3520 bytes). The rest goes to fragments, which the
// program (not frags-aware) never sees, and a program that is not
// frags-aware never gets such a frame on a real interface. So a longer frame
// is compared as what the program sees: its first maxLinear bytes, which
// the model gets too.
const maxLinear = 4096 - 256 - 320

// baseNS is where the replayed clock starts.
const baseNS = uint64(1_000_000_000_000)

// verdictSpec is a dynamic verdict put on both sides before replay.
type verdictSpec struct {
	addr    netip.Addr
	action  maps.VerdictAction
	expires uint64
}

// setup is a policy, its lists and verdicts.
type setup struct {
	name     string
	policy   maps.Policy
	allow    []maps.Entry
	block    []maps.Entry
	verdicts []verdictSpec
	sigs     map[int]maps.Signature // signature table slots
}

// kernelOutcome is what the real program did with one frame.
type kernelOutcome struct {
	ret    uint32
	action maps.Action
	reason maps.Reason
	detail uint32 // the rule or list id the program reported
}

// harness runs frames through a loaded datapath and the model in lockstep.
type harness struct {
	t     testing.TB
	s     setup
	d     *loader.Datapath
	m     *model.Model
	stats *maps.Stats

	// What the model decided, for the counter cross-checks.
	decisions [maps.ActionWouldDrop + 1][maps.ReasonSignature + 1]uint64
	ruleDrops map[int]uint64
	listHits  map[uint32]uint64
	clipped   int // frames cut to the linear test-run buffer (maxLinear)
	short     int // frames shorter than an Ethernet header (model only)
}

// sizes are large enough that no LRU map evicts during a replay, so the
// kernel's buckets live as long as the model's.
func sizes() loader.Sizes {
	s := testutil.SmallSizes()
	s.Sources = 1 << 15
	s.RuleBuckets = 1 << 15
	return s
}

func newHarness(t testing.TB, s setup) *harness {
	t.Helper()
	d := testutil.Load(t, testutil.Setup{
		Sizes: sizes(), ReplayClock: true,
		Policy: s.policy, Allow: s.allow, Block: s.block,
	})
	m, err := model.New(s.policy, s.allow, s.block)
	if err != nil {
		t.Fatalf("model: %v", err)
	}
	for _, v := range s.verdicts {
		if err := d.Maps.PutVerdict(v.addr, v.action, v.expires, maps.OriginCLI, 0); err != nil {
			t.Fatalf("put verdict: %v", err)
		}
		m.SetVerdict(v.addr, model.Verdict{Action: v.action, ExpiresNS: v.expires})
	}
	for slot, sig := range s.sigs {
		if err := d.Maps.PutSignature(slot, sig); err != nil {
			t.Fatalf("put signature %d: %v", slot, err)
		}
		m.SetSignature(slot, sig)
	}
	st, err := d.Maps.Stats()
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return &harness{t: t, s: s, d: d, m: m, stats: st,
		ruleDrops: map[int]uint64{}, listHits: map[uint32]uint64{}}
}

// runKernel runs one frame at time now and reads which (action, reason)
// counter it incremented.
func (h *harness) runKernel(frame []byte, now uint64) (kernelOutcome, error) {
	dec, ret, err := h.d.RunAt(frame, now)
	if err != nil {
		return kernelOutcome{}, err
	}
	st, err := h.d.Maps.Stats()
	if err != nil {
		return kernelOutcome{}, err
	}
	out := kernelOutcome{ret: ret, detail: dec.Detail}
	cells := 0
	for a := range st {
		for r := range st[a] {
			dp := st[a][r].Packets - h.stats[a][r].Packets
			db := st[a][r].Bytes - h.stats[a][r].Bytes
			if dp == 0 && db == 0 {
				continue
			}
			cells++
			if dp != 1 || db != uint64(len(frame)) {
				return out, fmt.Errorf("stats cell [%v][%v] moved by %d packets, %d bytes; want 1, %d",
					maps.Action(a), maps.Reason(r), dp, db, len(frame))
			}
			out.action, out.reason = maps.Action(a), maps.Reason(r)
		}
	}
	h.stats = st
	if cells != 1 {
		return out, fmt.Errorf("%d stats cells moved, want exactly 1", cells)
	}
	if dec.Action != out.action || dec.Reason != out.reason {
		return out, fmt.Errorf("the program reported %s/%s, its counters %s/%s", dec.Action, dec.Reason,
			out.action, out.reason)
	}
	return out, nil
}

// step runs one frame through both sides. It returns a description of the
// divergence, or "" when they agree. ok=false means the frame was not run.
func (h *harness) step(frame []byte, now uint64) (diff string, ran bool) {
	if len(frame) > maxLinear {
		h.clipped++
		frame = frame[:maxLinear]
	}
	if len(frame) < minFrame {
		// The kernel refuses to test-run it; the model must call it malformed.
		h.short++
		d := h.m.Decide(frame, now)
		if d.Reason != maps.ReasonMalformed {
			return fmt.Sprintf("%d-byte frame: model says %v/%v, want malformed", len(frame), d.Action, d.Reason), true
		}
		return "", false
	}
	md := h.m.Decide(frame, now)
	h.decisions[md.Action][md.Reason]++
	if md.Reason == maps.ReasonRatelimit {
		h.ruleDrops[md.Rule]++
	}
	if md.Reason == maps.ReasonAllowlist || md.Reason == maps.ReasonBlocklist {
		h.listHits[md.ListID]++
	}
	k, err := h.runKernel(frame, now)
	if err != nil {
		h.t.Fatalf("kernel run of %s: %v", hex.EncodeToString(frame), err)
	}
	want := uint32(xdpPass)
	if md.Action == maps.ActionDrop {
		want = xdpDrop
	}
	if md.Reason == maps.ReasonSignature && k.reason == maps.ReasonSignature && k.detail != uint32(md.Slot) {
		return fmt.Sprintf("kernel dropped by signature %d, model by %d", k.detail, md.Slot), true
	}
	if k.ret != want || k.action != md.Action || k.reason != md.Reason {
		return fmt.Sprintf("kernel ret %d %v/%v, model %v/%v (rule %d)",
			k.ret, k.action, k.reason, md.Action, md.Reason, md.Rule), true
	}
	if (md.Reason == maps.ReasonAllowlist || md.Reason == maps.ReasonBlocklist) && k.detail != md.ListID {
		return fmt.Sprintf("kernel matched list id %d, model %d", k.detail, md.ListID), true
	}
	if (k.ret == xdpDrop) != (k.action == maps.ActionDrop) {
		return fmt.Sprintf("kernel returned %d but counted %v/%v", k.ret, k.action, k.reason), true
	}
	return "", true
}

// checkCounters compares the per-rule drop counters and per-list hits with
// what the model decided.
func (h *harness) checkCounters() {
	t := h.t
	t.Helper()
	rc, err := h.d.Maps.RuleCounters(256) // configured rules, the aggregate and the new-source ceiling
	if err != nil {
		t.Fatalf("rule counters: %v", err)
	}
	for id, c := range rc {
		if c.Dropped != h.ruleDrops[id] {
			t.Errorf("%s: rule %d (%s): kernel dropped %d, model %d", h.s.name, id,
				h.s.policy.RuleName(id), c.Dropped, h.ruleDrops[id])
		}
		if c.Matched < c.Dropped {
			t.Errorf("%s: rule %d matched %d < dropped %d", h.s.name, id, c.Matched, c.Dropped)
		}
	}
	for slot := range maps.MaxSignatures {
		kc, err := h.d.Maps.SignatureCounter(slot)
		if err != nil {
			t.Fatalf("signature counters: %v", err)
		}
		if mc := h.m.SignatureCounter(slot); kc.Matched != mc.Matched || kc.Dropped != mc.Dropped {
			t.Errorf("%s: signature %d: kernel matched/dropped %d/%d, model %d/%d", h.s.name, slot,
				kc.Matched, kc.Dropped, mc.Matched, mc.Dropped)
		}
	}
	hits, err := h.d.Maps.ListHits(h.d.Maps.MaxLists())
	if err != nil {
		t.Fatalf("list hits: %v", err)
	}
	for id, n := range hits {
		if n != h.listHits[uint32(id)] {
			t.Errorf("%s: list %d: kernel hits %d, model %d", h.s.name, id, n, h.listHits[uint32(id)])
		}
	}
}

// divergences collects the first few mismatches of a run.
type divergences struct {
	t     testing.TB
	limit int
	n     int
}

func (dv *divergences) add(where, diff string, frame []byte) {
	dv.t.Helper()
	dv.n++
	if dv.n <= dv.limit {
		shown, more := frame, ""
		if len(shown) > 160 {
			shown, more = shown[:160], "..."
		}
		dv.t.Errorf("%s: %s\n  frame (%d bytes): %s%s", where, diff, len(frame), hex.EncodeToString(shown), more)
	}
}

func (dv *divergences) done(what string) {
	if dv.n > dv.limit {
		dv.t.Errorf("%s: %d divergences in all (first %d shown)", what, dv.n, dv.limit)
	}
}
