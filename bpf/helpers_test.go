// Package bpf_test runs Bulwark's real XDP program with
// BPF_PROG_TEST_RUN (nothing attached, no traffic) and checks its return
// codes and every counter and map it touches, and that the Go model
// (bpf/model) decides the same.
package bpf_test

import (
	"encoding/binary"
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
)

// Addresses (benchmarking ranges only).
const (
	a4  = "198.18.0.1"
	b4  = "198.18.0.2"
	c4  = "198.18.1.1" // inside the class prefix 198.18.1.0/24
	e4  = "198.18.2.9"
	d4  = "198.19.0.1" // destination
	a6  = "2001:2:0:1::1"
	a6b = "2001:2:0:1::2" // same /64 as a6
	b6  = "2001:2:0:2::1" // another /64, same /48
	c6  = "2001:2:0:3::1" // inside the class prefix 2001:2:0:3::/64
	d6  = "2001:2:0:ff::1"
)

// t0 is the replay clock at offset 0 of every table case: far from zero,
// because a zero clock is special in the datapath (entry_live).
const t0 = uint64(1000_000_000_000)

// xdpFor is the XDP code an action returns.
func xdpFor(a maps.Action) uint32 {
	if a == maps.ActionDrop {
		return xdpDrop
	}
	return xdpPass
}

// run sends one frame through the program and reads the stats before and
// after: exactly one (action, reason) slot must have grown, by one packet
// and len(frame) bytes, and nothing else. It returns the XDP code and that
// slot, so every caller checks the counters as well as the return code.
func run(t testing.TB, d *loader.Datapath, frame []byte) (uint32, maps.Action, maps.Reason) {
	t.Helper()
	ret, act, why, _ := runChecked(t, d, frame, func() (uint32, *maps.Decision, error) {
		ret, err := d.Run(frame)
		return ret, nil, err
	})
	return ret, act, why
}

// runAt is run for a program loaded for replay, at time now; the decision
// the program reports must agree with the counters, and is returned too.
func runAt(t testing.TB, d *loader.Datapath, frame []byte, now uint64) (uint32, maps.Action, maps.Reason, maps.Decision) {
	t.Helper()
	return runChecked(t, d, frame, func() (uint32, *maps.Decision, error) {
		dec, ret, err := d.RunAt(frame, now)
		return ret, &dec, err
	})
}

func runChecked(t testing.TB, d *loader.Datapath, frame []byte,
	do func() (uint32, *maps.Decision, error)) (uint32, maps.Action, maps.Reason, maps.Decision) {
	t.Helper()
	before, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	ret, dec, err := do()
	if err != nil {
		t.Fatalf("run %d-byte frame: %v", len(frame), err)
	}
	after, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var act maps.Action
	var why maps.Reason
	found := 0
	for _, a := range maps.Actions {
		for _, r := range maps.Reasons {
			b, c := before[a][r], after[a][r]
			if b == c {
				continue
			}
			found++
			act, why = a, r
			if c.Packets-b.Packets != 1 || c.Bytes-b.Bytes != uint64(len(frame)) {
				t.Errorf("stats[%s][%s] grew by %d packets, %d bytes; want 1, %d",
					a, r, c.Packets-b.Packets, c.Bytes-b.Bytes, len(frame))
			}
		}
	}
	if found != 1 {
		t.Fatalf("%d stats slots changed for one packet; want 1", found)
	}
	// A program loaded for replay also reports the decision itself.
	if dec == nil {
		return ret, act, why, maps.Decision{}
	}
	if dec.Action != act || dec.Reason != why {
		t.Errorf("replay decision %s/%s, stats say %s/%s", dec.Action, dec.Reason, act, why)
	}
	return ret, act, why, *dec
}

func put16(b []byte, off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }

// patched returns a copy of frame with fn applied.
func patched(frame []byte, fn func(b []byte)) []byte {
	b := append([]byte(nil), frame...)
	fn(b)
	return b
}
