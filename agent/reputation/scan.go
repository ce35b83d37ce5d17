package reputation

import (
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
)

// Scans over the scan window: the distinct destination ports and addresses
// of a source's connection attempts, which the datapath hashes into two
// generations of its scan epoch (bpf/scans.h): 128 bits of ports and 64 of
// addresses per generation, 56 bytes per source in the kernel. The scorer
// reads both generations each cycle: the attempts of the last one to two
// epochs (9m10s to 18m20s by default).
//
// Two components, each able to reach the block score alone: a throttle
// scales the source's rate limits, and a scanner needs one packet per port
// or address, so a throttle changes nothing for it.
//
//   - port_scan_long: distinct ports over the window; vertical scans of any
//     speed, down to 1 port per 10 s (about 55 ports in the 9m10s an epoch
//     lasts at least). From max(24, 4x the baseline) to twice that.
//   - horizontal_scan: distinct destination addresses over the window; one
//     port (or ICMP echo) swept over many addresses of a host that owns
//     many, or of the networks behind a gateway. From max(16, 4x the
//     baseline) to 4x that.
const (
	CompPortScanLong   = "port_scan_long"
	CompHorizontalScan = "horizontal_scan"
)

// Thresholds of the scan components (docs/reputation.md, "Scans").
const (
	// A client reaches a handful of service ports; a monitoring prober
	// checks a fixed list of some 20. 24 distinct ports is past both (a
	// set of 20 ports reads at most 21.7 from 128 bits: collisions only
	// lower the estimate).
	scanPortStartMin, scanPortFullFactor = 24.0, 2.0
	// A client reaches one or two of a host's addresses; 16 is past any
	// ordinary use of a host with many, and 64 is a sweep.
	scanAddrStartMin, scanAddrFullFactor = 16.0, 4.0
)

// scanState is what the scorer keeps of a source's scans: 16 bytes.
type scanState struct {
	contrib      [2]float32 // port_scan_long, horizontal_scan
	ports, addrs uint16     // distinct ports and addresses over the window (estimates)
	port         uint16     // destination port of the last TCP or UDP attempt
	span         uint16     // seconds the window covers for this source
}

// scanFeatures reads src's scan sketches into f and st.scan, at monotonic
// time mono.
func (e *Engine) scanFeatures(st *state, src *maps.Source, mono uint64, f *[numFeatures]float64) {
	shift := maps.ScanShift(e.cfg.ScanWindow)
	epoch := uint32(mono >> shift)
	ports, addrs := src.ScanBits(epoch)
	f[FeatureScanPorts] = counts128[bits.OnesCount64(ports[0])+bits.OnesCount64(ports[1])]
	f[FeatureScanAddrs] = counts64[bits.OnesCount64(addrs)]
	from := max(src.FirstSeenNS, (mono>>shift-1)<<shift)
	span := 1.0 // at least the packet's own second
	if mono > from {
		span = math.Max(span, math.Round(time.Duration(mono-from).Seconds()))
	}
	st.scan.ports = uint16(math.Round(min(f[FeatureScanPorts], 65535)))
	st.scan.addrs = uint16(math.Round(min(f[FeatureScanAddrs], 65535)))
	st.scan.port = src.ScanPort
	st.scan.span = uint16(min(span, 65535))
}

// scanBehaviour computes the scan components into st.scan and returns
// their sum.
func (e *Engine) scanBehaviour(st *state, f *[numFeatures]float64) float32 {
	w := &e.cfg.Weights
	b := e.baseline
	pStart := math.Max(scanPortStartMin, 4*b.Value(FeatureScanPorts))
	aStart := math.Max(scanAddrStartMin, 4*b.Value(FeatureScanAddrs))
	st.scan.contrib = [2]float32{
		float32(w.PortScanLong * ramp(f[FeatureScanPorts], pStart, scanPortFullFactor*pStart)),
		float32(w.HorizontalScan * ramp(f[FeatureScanAddrs], aStart, scanAddrFullFactor*aStart)),
	}
	return st.scan.contrib[0] + st.scan.contrib[1]
}

// scanComponents adds the scan components to comps.
func scanComponents(st *state, comps map[string]float64) {
	comps[CompPortScanLong] = float64(st.scan.contrib[0])
	comps[CompHorizontalScan] = float64(st.scan.contrib[1])
}

// scanDetails explains the scan components that contribute, e.g.
// "touched 240 addresses on port 22 in 62 s".
func scanDetails(st *state) map[string]string {
	s := &st.scan
	if s.contrib == [2]float32{} {
		return nil
	}
	span := time.Duration(s.span) * time.Second
	out := map[string]string{}
	if s.contrib[0] > 0 {
		out[CompPortScanLong] = fmt.Sprintf("tried %d ports in %s (last %d)", s.ports, span, s.port)
	}
	if s.contrib[1] > 0 {
		on := fmt.Sprintf("on %d ports (last %d)", s.ports, s.port)
		switch {
		case s.ports == 0:
			on = "with ICMP echo requests"
		case s.ports == 1:
			on = fmt.Sprintf("on port %d", s.port)
		}
		out[CompHorizontalScan] = fmt.Sprintf("touched %d addresses %s in %s", s.addrs, on, span)
	}
	return out
}
