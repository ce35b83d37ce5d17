package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Map names of live signature detection's counters and samples
// (bpf/sigsample.h).
const (
	MapSigSettings = "sig_settings"
	MapSigDests    = "sig_dests"
	MapSigBudget   = "sig_budget"
	MapSigRing     = "sig_ring"
)

// SigDest is a destination of live detection: L4 protocol and destination
// port (0 for protocols without ports and for non-first fragments).
type SigDest struct {
	Proto uint8
	Port  uint16
}

// SigDestCount is what the datapath counted of one destination, summed
// over CPUs, since the agent started sampling.
type SigDestCount struct {
	Packets    uint64 // packets that reached the signature step
	NewSources uint64 // of those, from sources without per-source state
}

// SetSigSampling sets the datapath's sampling for signature detection:
// 1 in every packets per destination and CPU into the sample ring, at most
// budget per CPU per second. every 0 turns counting and sampling off.
func (s *Set) SetSigSampling(every, budget uint32) error {
	if every > 0 && budget == 0 {
		return errors.New("signature sampling: a budget of 0 samples per second")
	}
	if err := s.m.SigSettings.Put(uint32(0), bpf.BulwarkSigSampling{Every: every, Budget: budget}); err != nil {
		return fmt.Errorf("write signature sampling: %w", err)
	}
	return nil
}

// SigDests reads every destination's counters, summed over CPUs. The
// table holds at most bpf SIG_DESTS destinations; the datapath counts no
// new one beyond that.
func (s *Set) SigDests() (map[SigDest]SigDestCount, error) {
	out := map[SigDest]SigDestCount{}
	var (
		key uint32
		per []bpf.BulwarkSigDest
	)
	it := s.m.SigDests.Iterate()
	for it.Next(&key, &per) {
		var c SigDestCount
		for _, v := range per {
			c.Packets += v.Packets
			c.NewSources += v.NewSources
		}
		out[SigDest{Proto: uint8(key >> 16), Port: uint16(key)}] = c
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read signature destinations: %w", err)
	}
	return out, nil
}

// SigSamples opens a reader of the sample ring: each record is a struct
// drop_event of a packet sampled before it was decided; SampleFrame reads
// its frame.
func (s *Set) SigSamples() (*ringbuf.Reader, error) {
	r, err := ringbuf.NewReader(s.m.SigRing)
	if err != nil {
		return nil, fmt.Errorf("open signature sample ring: %w", err)
	}
	return r, nil
}

// RenewSignature moves the expiry of the signature in slot to expiresNS
// (CLOCK_MONOTONIC; 0 = never) and leaves the rest alone: a limiting
// signature keeps its bucket, every signature its counters.
func (s *Set) RenewSignature(slot int, expiresNS uint64) error {
	if slot < 0 || slot >= MaxSignatures {
		return fmt.Errorf("signature slot %d out of range 0-%d", slot, MaxSignatures-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var v bpf.BulwarkSigRule
	if err := s.m.Signatures.Lookup(uint32(slot), &v); err != nil {
		return fmt.Errorf("read signature %d: %w", slot, err)
	}
	if v.Fields == 0 {
		return fmt.Errorf("renew signature %d: the slot is empty", slot)
	}
	v.ExpiresNs = expiresNS
	if err := s.m.Signatures.Update(uint32(slot), v, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("renew signature %d: %w", slot, err)
	}
	return nil
}

// sampleHeader is the size of struct drop_event before its data.
const sampleHeader = int(unsafe.Offsetof(bpf.BulwarkDropEvent{}.Data))

// sampleCapLen is where struct drop_event's cap_len is.
const sampleCapLen = int(unsafe.Offsetof(bpf.BulwarkDropEvent{}.CapLen))

// sampleLen is where struct drop_event's pkt_len is.
const sampleLen = int(unsafe.Offsetof(bpf.BulwarkDropEvent{}.PktLen))

// SampleFrame is the frame (its first EVENT_SNAP bytes at most) of a record
// of the sample ring, sharing raw's memory, and the length of the packet.
func SampleFrame(raw []byte) ([]byte, int, error) {
	if len(raw) < sampleHeader {
		return nil, 0, fmt.Errorf("signature sample of %d bytes, want at least %d", len(raw), sampleHeader)
	}
	n := int(binary.LittleEndian.Uint16(raw[sampleCapLen:]))
	if n > int(bpf.BulwarkLimitsEVENT_SNAP) || sampleHeader+n > len(raw) {
		return nil, 0, fmt.Errorf("signature sample: capture length %d in a record of %d bytes", n, len(raw))
	}
	return raw[sampleHeader : sampleHeader+n], int(binary.LittleEndian.Uint32(raw[sampleLen:])), nil
}
