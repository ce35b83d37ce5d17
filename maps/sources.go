package maps

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// VerdictEntry is a dynamic verdict as the verdicts map holds it.
type VerdictEntry struct {
	Source    netip.Prefix // IPv4 host or IPv6 prefix at the tracking length
	Action    VerdictAction
	ExpiresNS uint64 // CLOCK_MONOTONIC
	Origin    Origin
	Score     uint16
}

// PutVerdict sets a verdict on the source that addr belongs to (and adds
// the source to the filter of MayHoldVerdicts).
func (s *Set) PutVerdict(addr netip.Addr, action VerdictAction, expiresNS uint64, origin Origin, score uint16) error {
	if action != VerdictBlock && action != VerdictThrottle {
		return fmt.Errorf("verdict action %d: want block or throttle", action)
	}
	key := bpf.BulwarkSrcKey{Addr: SourceKey(addr, s.IPv6Prefix())}
	v := bpf.BulwarkVerdict{ExpiresNs: expiresNS, Action: uint32(action), Origin: uint16(origin), Score: score}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setPresentLocked(presentVerdicts); err != nil {
		return err
	}
	s.vf.add(&key.Addr)
	if err := s.m.Verdicts.Put(key, v); err != nil {
		return fmt.Errorf("write verdict for %s: %w (map holds at most %d)", addr, err, s.m.Verdicts.MaxEntries())
	}
	return nil
}

// PutVerdicts sets many verdicts with batch writes (a syscall per 65,536):
// each entry's Source is the address its verdict goes on. A full map is a
// *FullError; what was written before it stays. Every source is added to
// the filter of MayHoldVerdicts before the write.
func (s *Set) PutVerdicts(vs []VerdictEntry) error {
	if len(vs) == 0 {
		return nil
	}
	prefix := s.IPv6Prefix()
	keys := make([]bpf.BulwarkSrcKey, len(vs))
	vals := make([]bpf.BulwarkVerdict, len(vs))
	for i, v := range vs {
		if v.Action != VerdictBlock && v.Action != VerdictThrottle {
			return fmt.Errorf("verdict action %d for %s: want block or throttle", v.Action, v.Source)
		}
		keys[i] = bpf.BulwarkSrcKey{Addr: SourceKey(v.Source.Addr(), prefix)}
		vals[i] = bpf.BulwarkVerdict{ExpiresNs: v.ExpiresNS, Action: uint32(v.Action), Origin: uint16(v.Origin), Score: v.Score}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setPresentLocked(presentVerdicts); err != nil {
		return err
	}
	for i := range keys {
		s.vf.add(&keys[i].Addr)
	}
	if err := batchPut(s.m.Verdicts, keys, vals); err != nil {
		return fmt.Errorf("write %d verdicts: %w", len(vs), err)
	}
	return nil
}

// DeleteVerdict removes the verdict on addr's source, if any.
func (s *Set) DeleteVerdict(addr netip.Addr) error {
	key := bpf.BulwarkSrcKey{Addr: SourceKey(addr, s.IPv6Prefix())}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.m.Verdicts.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete verdict for %s: %w", addr, err)
	}
	return s.clearIfEmptyLocked(map[uint32]*ebpf.Map{presentVerdicts: s.m.Verdicts})
}

// Verdict returns the verdict on addr's source, if the map holds one
// (expired or not).
func (s *Set) Verdict(addr netip.Addr) (VerdictEntry, bool, error) {
	prefix := s.IPv6Prefix()
	key := bpf.BulwarkSrcKey{Addr: SourceKey(addr, prefix)}
	var v bpf.BulwarkVerdict
	switch err := s.m.Verdicts.Lookup(key, &v); {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return VerdictEntry{}, false, nil
	case err != nil:
		return VerdictEntry{}, false, fmt.Errorf("look up verdict for %s: %w", addr, err)
	}
	return VerdictEntry{SourceFromKey(key.Addr, prefix), VerdictAction(v.Action), v.ExpiresNs, Origin(v.Origin), v.Score}, true, nil
}

// Verdicts lists the verdicts the map holds, expired ones included (the
// datapath ignores and lazily deletes those).
func (s *Set) Verdicts() ([]VerdictEntry, error) {
	prefix := s.IPv6Prefix()
	var out []VerdictEntry
	err := walk(s.m.Verdicts, func(ks []bpf.BulwarkSrcKey, vs []bpf.BulwarkVerdict) {
		for i, v := range vs {
			out = append(out, VerdictEntry{SourceFromKey(ks[i].Addr, prefix), VerdictAction(v.Action), v.ExpiresNs, Origin(v.Origin), v.Score})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read verdicts: %w", err)
	}
	return out, nil
}

// Source is one tracked source's observations.
type Source struct {
	Source         netip.Prefix
	FirstSeenNS    uint64
	LastSeenNS     uint64
	Packets        uint64
	Bytes          uint64
	SYNs           uint64
	DropsRatelimit uint64
	Malformed      uint64
	PortWindow     uint32    // window (monotonic ns >> 30) PortBits belong to
	PortBits       [4]uint64 // destination ports hashed into 256 bits, that window
	PortBitsSet    int       // bits set in PortBits
	PortsPrev      int       // bits set in the window before it
	// Connection attempts over the long window (bpf/scans.h): destination
	// ports and addresses hashed into two generations, and the epoch
	// (monotonic ns >> scan shift) of the last attempt; ScanBits reads them.
	ScanEpoch uint32
	ScanPorts [2][2]uint64 // [generation][word]
	ScanAddrs [2]uint64    // [generation]
	ScanPort  uint16       // destination port of the last TCP or UDP attempt
	UDP       uint64       // UDP datagrams
	UDPSame   uint64       // of those, the same shape as the source's previous one
	UDPShape  uint32       // the shape of its last (port, length, a payload word; bpf/sources.h)
}

// ScanBits is the union of the scan generations that belong to the window
// of epoch (the current one and the one before): the hashed destination
// ports (128 bits) and addresses (64 bits) of the source's connection
// attempts over the last one to two epochs.
func (s *Source) ScanBits(epoch uint32) (ports [2]uint64, addrs uint64) {
	// The generation of epoch e is e&1; the kernel cleared the one before
	// ScanEpoch's unless it holds the epoch just before. An epoch one
	// ahead of the reader's is a packet that came after it read the clock.
	for _, e := range [2]uint32{s.ScanEpoch, s.ScanEpoch - 1} {
		if d := epoch - e; d > 1 && d != ^uint32(0) {
			continue
		}
		ports[0] |= s.ScanPorts[e&1][0]
		ports[1] |= s.ScanPorts[e&1][1]
		addrs |= s.ScanAddrs[e&1]
	}
	return ports, addrs
}

// ScanShift is the scan epoch of the datapath for a window of d (0: the
// default, DefaultScanWindow): the largest power of two nanoseconds not
// above d, as a shift.
func ScanShift(d time.Duration) uint32 {
	if d <= 0 {
		d = DefaultScanWindow
	}
	return uint32(bits.Len64(uint64(d)) - 1)
}

// DefaultScanWindow is the default scan epoch before rounding: 10 minutes,
// which ScanShift rounds down to 2^39 ns (9m9.8s).
const DefaultScanWindow = 10 * time.Minute

// DistinctPorts estimates distinct destination ports from bits set out of
// the 256-bit sketch (linear counting).
func DistinctPorts(bitsSet int) float64 {
	if bitsSet >= 0 && bitsSet < len(portCounts) {
		return portCounts[bitsSet]
	}
	return linearCount(256, bitsSet)
}

// portCounts is DistinctPorts at every count of bits set, computed once: a
// scoring cycle reads the sketch of every source.
var portCounts = func() (t [257]float64) {
	for set := range t {
		t[set] = linearCount(256, set)
	}
	return t
}()

// PortWindowOf is the datapath's distinct-port window number at monotonic
// time ns (windows of 2^30 ns, about 1.07 s).
func PortWindowOf(ns uint64) uint32 { return uint32(ns >> 30) }

// WriteSources writes per-source state directly, for benchmarks and tests
// of the scorer over many sources; the datapath writes it in production.
func (s *Set) WriteSources(src []Source) error {
	prefix := s.IPv6Prefix()
	keys := make([]bpf.BulwarkSrcKey, len(src))
	vals := make([]bpf.BulwarkSrcState, len(src))
	for i, x := range src {
		keys[i] = bpf.BulwarkSrcKey{Addr: SourceKey(x.Source.Addr(), prefix)}
		vals[i] = bpf.BulwarkSrcState{FirstSeenNs: x.FirstSeenNS, LastSeenNs: x.LastSeenNS,
			Packets: x.Packets, Bytes: x.Bytes, Syns: x.SYNs, DropsRatelimit: x.DropsRatelimit,
			Malformed: x.Malformed, PortBits: x.PortBits, PortWindow: x.PortWindow, PortsPrev: uint32(x.PortsPrev),
			ScanEpoch: x.ScanEpoch, ScanPorts: x.ScanPorts, ScanAddrs: x.ScanAddrs, ScanDport: x.ScanPort, Udp: x.UDP, UdpSame: x.UDPSame, UdpShape: x.UDPShape}
	}
	return batchPut(s.m.Sources, keys, vals)
}

// SourceBatch is how many sources one batch read returns at most.
const SourceBatch = 4096

// IterateSources calls fn with batches of tracked sources, in the map's
// order, until fn returns false or the map is exhausted. The map is read in
// batch syscalls; while fn works on one batch, another goroutine reads and
// decodes the next (two buffers in all, so memory stays bounded). The
// slice fn is given is reused once fn returns.
func (s *Set) IterateSources(fn func([]Source) bool) error {
	r := sourceReader{m: s.m.Sources, prefix: s.IPv6Prefix()}
	cur := r.newBuf()
	r.read(cur)
	if cur.end {
		// All in one batch (a small map): no second goroutine.
		return cur.finish(fn)
	}
	// full holds both buffers at most, so the reader never blocks on it;
	// it stops at the map's end, or when stop closes.
	full, free, stop := make(chan *sourceBuf, 2), make(chan *sourceBuf, 1), make(chan struct{})
	free <- r.newBuf()
	go func() {
		defer close(full)
		for {
			select {
			case b := <-free:
				r.read(b)
				full <- b
				if b.end {
					return
				}
			case <-stop:
				return
			}
		}
	}()
	for !cur.end {
		if len(cur.out) > 0 && !fn(cur.out) {
			close(stop)
			for range full {
				// Wait for the reader to end: it owns a buffer until then.
			}
			return nil
		}
		free <- cur
		cur = <-full
	}
	return cur.finish(fn)
}

// sourceReader reads the sources map in batches, from its first bucket on.
type sourceReader struct {
	m      *ebpf.Map
	prefix int
	cursor ebpf.MapBatchCursor
}

// sourceBuf is one batch read: the kernel's keys and values, and the
// sources decoded from them.
type sourceBuf struct {
	keys []bpf.BulwarkSrcKey
	vals []bpf.BulwarkSrcState
	out  []Source
	end  bool  // the map is exhausted, or err
	err  error // the read's error
}

func (r *sourceReader) newBuf() *sourceBuf {
	return &sourceBuf{keys: make([]bpf.BulwarkSrcKey, SourceBatch), vals: make([]bpf.BulwarkSrcState, SourceBatch),
		out: make([]Source, 0, SourceBatch)}
}

// read reads the next batch into b.
func (r *sourceReader) read(b *sourceBuf) {
	n, err := r.m.BatchLookup(&r.cursor, b.keys, b.vals, nil)
	b.out = b.out[:n]
	for i := range b.out {
		b.out[i] = sourceFrom(b.keys[i], &b.vals[i], r.prefix)
	}
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		b.end = true
	case err != nil:
		b.end, b.err = true, fmt.Errorf("read sources: %w", err)
	}
}

// finish hands the last batch to fn and returns the read's error.
func (b *sourceBuf) finish(fn func([]Source) bool) error {
	if len(b.out) > 0 && !fn(b.out) {
		return nil
	}
	return b.err
}

// LookupSource returns the observations of addr's source.
func (s *Set) LookupSource(addr netip.Addr) (Source, bool, error) {
	prefix := s.IPv6Prefix()
	key := bpf.BulwarkSrcKey{Addr: SourceKey(addr, prefix)}
	var v bpf.BulwarkSrcState
	if err := s.m.Sources.Lookup(key, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
		return Source{}, false, nil
	} else if err != nil {
		return Source{}, false, fmt.Errorf("read source %s: %w", addr, err)
	}
	return sourceFrom(key, &v, prefix), true, nil
}

func sourceFrom(k bpf.BulwarkSrcKey, v *bpf.BulwarkSrcState, prefix int) Source {
	n := 0
	for _, w := range v.PortBits {
		n += bits.OnesCount64(w)
	}
	return Source{
		Source:      SourceFromKey(k.Addr, prefix),
		FirstSeenNS: v.FirstSeenNs, LastSeenNS: v.LastSeenNs,
		Packets: v.Packets, Bytes: v.Bytes, SYNs: v.Syns,
		DropsRatelimit: v.DropsRatelimit, Malformed: v.Malformed,
		PortWindow: v.PortWindow, PortBits: v.PortBits, PortBitsSet: n, PortsPrev: int(v.PortsPrev),
		ScanEpoch: v.ScanEpoch, ScanPorts: v.ScanPorts, ScanAddrs: v.ScanAddrs, ScanPort: v.ScanDport, UDP: v.Udp, UDPSame: v.UdpSame, UDPShape: v.UdpShape,
	}
}

func linearCount(m, set int) float64 {
	zeros := m - set
	if zeros <= 0 {
		zeros = 1 // saturated: the estimate's ceiling
	}
	return float64(m) * math.Log(float64(m)/float64(zeros))
}
