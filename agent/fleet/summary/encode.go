package summary

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// MaxSize bounds an encoded summary: 64 KiB per agent per window.
const MaxSize = 64 << 10

// The encoding (all integers unsigned varints unless said otherwise):
//
//	magic "BWS1"
//	node: length byte, bytes
//	start (Unix ns), length (ns), omitted sources, omitted packets, entries
//	each entry:
//	  tag byte: bit 0 = IPv6, bit 1 = raw sketch
//	  IPv6: prefix length byte, then 16 address bytes; IPv4: 4 address bytes
//	  raw sketch: 32 bytes (4 little-endian words); else a count byte n < 31
//	  and n strictly increasing bit indexes
//	  packets
//
// An IPv4 source with a few ports costs about 10 bytes; the largest entry,
// an IPv6 source with a raw sketch and 2^64-1 packets, costs maxEntry.
const (
	magic       = "BWS1"
	tagV6       = 1
	tagRaw      = 2
	listMax     = 30 // up to this many bits as a list (1+n bytes < 32)
	maxEntry    = 1 + 1 + 16 + 32 + binary.MaxVarintLen64
	maxHeader   = len(magic) + 1 + 64 + 5*binary.MaxVarintLen64
	errPrefix   = "summary"
	maxEntryNum = MaxSize / 7 // the smallest entry (IPv4, no port, 0 packets) is 7 bytes
)

// Sort orders entries as a summary keeps them: most distinct ports first
// (scans), then most packets (heavy hitters), then by source.
func Sort(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := cmp.Compare(b.Ports.Bits(), a.Ports.Bits()); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		return a.Source.Addr().Compare(b.Source.Addr())
	})
}

// Marshal encodes s within MaxSize: it sorts s.Entries (Sort) and keeps the
// first ones that fit; the rest are added to s.OmittedSources and
// s.OmittedPackets, and s.Entries is cut to what was encoded, so s
// describes exactly what was sent.
func (s *Summary) Marshal() ([]byte, error) {
	if !validNode(s.Node) {
		return nil, fmt.Errorf("%s: node %q: want 1 to 64 of [A-Za-z0-9_-]", errPrefix, s.Node)
	}
	if err := checkWindow(s.Start, s.Length); err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	for _, e := range s.Entries {
		if err := checkSource(e.Source); err != nil {
			return nil, fmt.Errorf("%s: %w", errPrefix, err)
		}
	}
	Sort(s.Entries)
	body := make([]byte, 0, 4096)
	kept := 0
	for _, e := range s.Entries {
		before := len(body)
		body = appendEntry(body, e)
		// The header is written last; reserve its largest size.
		if maxHeader+len(body) > MaxSize {
			body = body[:before]
			break
		}
		kept++
	}
	for _, e := range s.Entries[kept:] {
		s.OmittedSources++
		s.OmittedPackets = addSat(s.OmittedPackets, e.Packets)
	}
	s.Entries = s.Entries[:kept]
	out := make([]byte, 0, maxHeader+len(body))
	out = append(out, magic...)
	out = append(out, byte(len(s.Node)))
	out = append(out, s.Node...)
	out = binary.AppendUvarint(out, uint64(s.Start.UnixNano()))
	out = binary.AppendUvarint(out, uint64(s.Length))
	out = binary.AppendUvarint(out, s.OmittedSources)
	out = binary.AppendUvarint(out, s.OmittedPackets)
	out = binary.AppendUvarint(out, uint64(kept))
	return append(out, body...), nil
}

func addSat(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// checkSource accepts an IPv4 /32 or a masked IPv6 prefix of /1 to /128.
func checkSource(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("invalid source prefix")
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		return fmt.Errorf("source %s: want a plain IPv4 or IPv6 prefix", p)
	case p.Addr().Is4() && p.Bits() != 32:
		return fmt.Errorf("source %s: an IPv4 source is a /32", p)
	case p.Bits() == 0 || p.Masked() != p:
		return fmt.Errorf("source %s: want a masked prefix of /1 to /128", p)
	}
	return nil
}

func appendEntry(b []byte, e Entry) []byte {
	tag := byte(0)
	if e.Source.Addr().Is6() {
		tag |= tagV6
	}
	n := e.Ports.Bits()
	if n > listMax {
		tag |= tagRaw
	}
	b = append(b, tag)
	if tag&tagV6 != 0 {
		a := e.Source.Addr().As16()
		b = append(b, byte(e.Source.Bits()))
		b = append(b, a[:]...)
	} else {
		a := e.Source.Addr().As4()
		b = append(b, a[:]...)
	}
	if tag&tagRaw != 0 {
		for _, w := range e.Ports {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
	} else {
		b = append(b, byte(n))
		for i := range SketchBits {
			if e.Ports[i>>6]&(1<<(i&63)) != 0 {
				b = append(b, byte(i))
			}
		}
	}
	return binary.AppendUvarint(b, e.Packets)
}

// decoder reads the encoding and keeps the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
}

func (d *decoder) bytes(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated at %s", what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint at %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Unmarshal decodes b strictly: a value that Marshal would not produce
// (wrong magic, bad node, unaligned window, unmasked or duplicate source,
// non-canonical sketch, trailing bytes, over MaxSize) is an error.
func Unmarshal(b []byte) (*Summary, error) {
	s, err := unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	return s, nil
}

func unmarshal(b []byte) (*Summary, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%d bytes, over the %d-byte bound", len(b), MaxSize)
	}
	d := &decoder{b: b}
	if string(d.bytes(len(magic), "magic")) != magic {
		if d.err != nil {
			return nil, d.err
		}
		return nil, errors.New("not a summary (bad magic)")
	}
	nl := d.bytes(1, "node length")
	if d.err != nil {
		return nil, d.err
	}
	s := &Summary{Node: string(d.bytes(int(nl[0]), "node"))}
	start, length := d.uvarint("start"), d.uvarint("length")
	s.OmittedSources, s.OmittedPackets = d.uvarint("omitted sources"), d.uvarint("omitted packets")
	n := d.uvarint("entry count")
	if d.err != nil {
		return nil, d.err
	}
	if !validNode(s.Node) {
		return nil, fmt.Errorf("node %q: want 1 to 64 of [A-Za-z0-9_-]", s.Node)
	}
	if start > 1<<62 || length > 1<<62 {
		return nil, errors.New("window out of range")
	}
	s.Start, s.Length = time.Unix(0, int64(start)).UTC(), time.Duration(length)
	if err := checkWindow(s.Start, s.Length); err != nil {
		return nil, err
	}
	if n > maxEntryNum {
		return nil, fmt.Errorf("%d entries: more than %d bytes can hold", n, MaxSize)
	}
	s.Entries = make([]Entry, 0, n)
	seen := make(map[netip.Prefix]struct{}, n)
	for i := range int(n) {
		e, err := d.entry()
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if _, dup := seen[e.Source]; dup {
			return nil, fmt.Errorf("entry %d: source %s appears twice", i, e.Source)
		}
		seen[e.Source] = struct{}{}
		s.Entries = append(s.Entries, e)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return s, nil
}

func (d *decoder) entry() (Entry, error) {
	var e Entry
	tb := d.bytes(1, "tag")
	if d.err != nil {
		return e, d.err
	}
	tag := tb[0]
	if tag&^(tagV6|tagRaw) != 0 {
		return e, fmt.Errorf("unknown tag %#x", tag)
	}
	if tag&tagV6 != 0 {
		pl := d.bytes(1, "prefix length")
		a := d.bytes(16, "address")
		if d.err != nil {
			return e, d.err
		}
		e.Source = netip.PrefixFrom(netip.AddrFrom16([16]byte(a)), int(pl[0]))
		if e.Source.Addr().Is4In6() {
			return e, fmt.Errorf("source %s: an IPv4-mapped address in an IPv6 entry", e.Source)
		}
	} else {
		a := d.bytes(4, "address")
		if d.err != nil {
			return e, d.err
		}
		e.Source = netip.PrefixFrom(netip.AddrFrom4([4]byte(a)), 32)
	}
	if err := checkSource(e.Source); err != nil {
		return e, err
	}
	if tag&tagRaw != 0 {
		raw := d.bytes(32, "sketch")
		if d.err != nil {
			return e, d.err
		}
		for i := range e.Ports {
			e.Ports[i] = binary.LittleEndian.Uint64(raw[8*i:])
		}
		if e.Ports.Bits() <= listMax {
			return e, fmt.Errorf("a raw sketch of %d bits (a list is canonical up to %d)", e.Ports.Bits(), listMax)
		}
	} else {
		nb := d.bytes(1, "sketch length")
		if d.err != nil {
			return e, d.err
		}
		if int(nb[0]) > listMax {
			return e, fmt.Errorf("a sketch list of %d bits (at most %d)", nb[0], listMax)
		}
		idx := d.bytes(int(nb[0]), "sketch bits")
		if d.err != nil {
			return e, d.err
		}
		for i, x := range idx {
			if i > 0 && x <= idx[i-1] {
				return e, errors.New("sketch bits not strictly increasing")
			}
			e.Ports[x>>6] |= 1 << (x & 63)
		}
	}
	e.Packets = d.uvarint("packets")
	return e, d.err
}
