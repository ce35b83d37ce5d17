package sigdetect

import (
	"bytes"
	"slices"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
)

// search finds the most specific signature that matches at least
// minCov of attack: starting from the destination (protocol and port),
// it adds, one at a time, the candidate field that leaves the least of
// benign matched (ties: the most of attack), as long as the attack
// coverage holds. It fails when the result matches more than maxCol of
// benign.
func search(attack, benign []model.SigFields, minCov, maxCol float64) (Finding, bool) {
	ex := make([]maps.Signature, len(attack))
	for i := range attack {
		ex[i] = attack[i].Exact()
	}
	sig := maps.Signature{Fields: maps.SigProto, Proto: ex[0].Proto}
	if ex[0].Fields&maps.SigDPort != 0 {
		sig.Fields |= maps.SigDPort
		sig.DPort = ex[0].DPort
	}
	cands := candidates(ex)
	for {
		best, bestA, bestB := -1, 0.0, 2.0
		for i, cand := range cands {
			if sig.Fields&cand.Fields != 0 {
				continue
			}
			s := merge(sig, cand)
			a := share(attack, &s)
			if a < minCov {
				continue
			}
			if b := share(benign, &s); b < bestB || (b == bestB && a > bestA) {
				best, bestA, bestB = i, a, b
			}
		}
		if best < 0 {
			break
		}
		sig = merge(sig, cands[best])
	}
	f := Finding{Sig: sig, Coverage: share(attack, &sig), Collateral: share(benign, &sig)}
	return f, f.Coverage >= minCov && f.Collateral <= maxCol
}

// share is the fraction of sample that s matches (0 of an empty sample).
func share(sample []model.SigFields, s *maps.Signature) float64 {
	if len(sample) == 0 {
		return 0
	}
	n := 0
	for i := range sample {
		if sample[i].Matches(s) {
			n++
		}
	}
	return float64(n) / float64(len(sample))
}

// tail is the share of a sample a range candidate may leave out at each end.
const tail = 0.005

// candidates are single-field signatures built from the attack sample:
// for each numeric field the range holding all but its extreme half
// percent, for each flag or type its most common value, and the data bytes
// that (nearly) every packet has in common.
func candidates(ex []maps.Signature) []maps.Signature {
	var out []maps.Signature
	ranged := []struct {
		f   maps.SigField
		get func(*maps.Signature) *maps.Range
	}{{maps.SigTTL, func(s *maps.Signature) *maps.Range { return &s.TTL }},
		{maps.SigIPLen, func(s *maps.Signature) *maps.Range { return &s.IPLen }},
		{maps.SigWindow, func(s *maps.Signature) *maps.Range { return &s.Window }},
		{maps.SigSPort, func(s *maps.Signature) *maps.Range { return &s.SPort }}}
	for _, r := range ranged {
		var vs []uint16
		for i := range ex {
			if ex[i].Fields&r.f != 0 {
				vs = append(vs, r.get(&ex[i]).Lo)
			}
		}
		if len(vs) == 0 {
			continue
		}
		slices.Sort(vs)
		cut := int(tail * float64(len(vs)))
		s := maps.Signature{Fields: r.f}
		*r.get(&s) = maps.Range{Lo: vs[cut], Hi: vs[len(vs)-1-cut]}
		out = append(out, s)
	}
	exact := []struct {
		f   maps.SigField
		key func(*maps.Signature) int
		set func(*maps.Signature, int)
	}{
		{maps.SigDF, func(s *maps.Signature) int { return b2i(s.DF) }, func(s *maps.Signature, v int) { s.DF = v == 1 }},
		{maps.SigIPID, func(s *maps.Signature) int { return b2i(s.IPIDZero) }, func(s *maps.Signature, v int) { s.IPIDZero = v == 1 }},
		{maps.SigTCPFlags, func(s *maps.Signature) int { return int(s.TCPValue) },
			func(s *maps.Signature, v int) { s.TCPMask, s.TCPValue = 0xff, uint8(v) }},
		{maps.SigTCPOptLen, func(s *maps.Signature) int { return int(s.TCPOptLen) }, func(s *maps.Signature, v int) { s.TCPOptLen = uint8(v) }},
		{maps.SigICMPType, func(s *maps.Signature) int { return int(s.ICMPType) }, func(s *maps.Signature, v int) { s.ICMPType = uint8(v) }},
	}
	for _, e := range exact {
		count := map[int]int{}
		for i := range ex {
			if ex[i].Fields&e.f != 0 {
				count[e.key(&ex[i])]++
			}
		}
		best, n := 0, 0
		for v, c := range count {
			if c > n || (c == n && v < best) {
				best, n = v, c
			}
		}
		if n > 0 {
			s := maps.Signature{Fields: e.f}
			e.set(&s, best)
			out = append(out, s)
		}
	}
	if d, ok := commonData(ex); ok {
		out = append(out, d)
	}
	return out
}

// commonData is the data candidate: over the length that all but tail of
// the packets have, the bytes in which all but tail of them agree.
func commonData(ex []maps.Signature) (maps.Signature, bool) {
	var lens []int
	for i := range ex {
		lens = append(lens, len(ex[i].Data))
	}
	slices.Sort(lens)
	n := lens[int(tail*float64(len(lens)))]
	if n == 0 {
		return maps.Signature{}, false
	}
	data, mask := make([]byte, n), make([]byte, n)
	for pos := 0; pos < n; pos++ {
		var count [256]int
		have := 0
		for i := range ex {
			if len(ex[i].Data) > pos {
				count[ex[i].Data[pos]]++
				have++
			}
		}
		b := 0
		for v := range count {
			if count[v] > count[b] {
				b = v
			}
		}
		if float64(count[b]) >= (1-tail)*float64(have) {
			data[pos], mask[pos] = byte(b), 0xff
		}
	}
	// The packet must hold every byte of the rule: end at the last fixed one.
	end := bytes.LastIndexByte(mask, 0xff) + 1
	if end == 0 {
		return maps.Signature{}, false
	}
	return maps.Signature{Fields: maps.SigDataPrefix, Data: data[:end], DataMask: mask[:end]}, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// merge adds the one field of c to s.
func merge(s, c maps.Signature) maps.Signature {
	s.Fields |= c.Fields
	switch c.Fields {
	case maps.SigTTL:
		s.TTL = c.TTL
	case maps.SigIPLen:
		s.IPLen = c.IPLen
	case maps.SigWindow:
		s.Window = c.Window
	case maps.SigSPort:
		s.SPort = c.SPort
	case maps.SigDF:
		s.DF = c.DF
	case maps.SigIPID:
		s.IPIDZero = c.IPIDZero
	case maps.SigTCPFlags:
		s.TCPMask, s.TCPValue = c.TCPMask, c.TCPValue
	case maps.SigTCPOptLen:
		s.TCPOptLen = c.TCPOptLen
	case maps.SigICMPType:
		s.ICMPType = c.ICMPType
	case maps.SigDataPrefix:
		s.Data, s.DataMask = c.Data, c.DataMask
	}
	return s
}
