package model_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pcapDir holds the captures (copied from shared/pcaps with SOURCES.tsv and
// their licences).
const pcapDir = "../../test/testdata/pcaps"

// capture is one pcap file turned into Ethernet frames with their times.
type capture struct {
	name   string
	frames [][]byte
	ts     []uint64 // ns since the capture's first packet (never negative)
}

// packetSource is what pcapgo's classic and pcapng readers share.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// readCapture reads a pcap or pcapng file and returns Ethernet frames: raw
// IP link types get a 14-byte Ethernet header with the matching EtherType.
func readCapture(path string) (*capture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var src packetSource
	if len(raw) >= 4 && binary.LittleEndian.Uint32(raw) == 0x0a0d0d0a {
		src, err = pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
	} else {
		var r *pcapgo.Reader
		r, err = pcapgo.NewReader(bufio.NewReader(bytes.NewReader(raw)))
		if r != nil {
			// As tcpdump and Wireshark do, trust each record's own capture
			// length over the file's snap length (zeek_trunc-hdr.pcap
			// declares a snap length of 1 and holds an 8-byte record).
			r.SetSnaplen(262144)
			src = r
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	c := &capture{name: filepath.Base(path)}
	link := src.LinkType()
	var first int64
	for i := 0; ; i++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("packet %d: %w", i, err)
		}
		frame, err := toEthernet(link, data)
		if err != nil {
			return nil, fmt.Errorf("packet %d: %w", i, err)
		}
		t := ci.Timestamp.UnixNano()
		if i == 0 {
			first = t
		}
		d := t - first
		if d < 0 { // out-of-order records: keep time monotonic
			d = 0
		}
		if n := len(c.ts); n > 0 && uint64(d) < c.ts[n-1] {
			d = int64(c.ts[n-1])
		}
		c.frames = append(c.frames, frame)
		c.ts = append(c.ts, uint64(d))
	}
	return c, nil
}

// Link types the differential test understands.
const (
	linkEthernet = 1
	linkRaw      = 101
	linkIPv4     = 228
	linkIPv6     = 229
)

func ethernetAround(ethertype uint16, ip []byte) []byte {
	f := make([]byte, 14+len(ip))
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})  // dst
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x02}) // src
	binary.BigEndian.PutUint16(f[12:14], ethertype)
	copy(f[14:], ip)
	return f
}

func toEthernet(link layers.LinkType, data []byte) ([]byte, error) {
	switch int(link) {
	case linkEthernet:
		return append([]byte(nil), data...), nil
	case linkIPv4:
		return ethernetAround(0x0800, data), nil
	case linkIPv6:
		return ethernetAround(0x86dd, data), nil
	case linkRaw:
		if len(data) > 0 && data[0]>>4 == 6 {
			return ethernetAround(0x86dd, data), nil
		}
		if len(data) > 0 && data[0]>>4 == 4 {
			return ethernetAround(0x0800, data), nil
		}
		return nil, fmt.Errorf("raw link type: version nibble of %x is neither 4 nor 6", data[:min(len(data), 1)])
	}
	return nil, fmt.Errorf("unsupported link type %d (%s)", int(link), link)
}

// loadCaptures reads every capture in pcapDir, failing the test on any file
// it cannot read or whose link type it does not handle.
func loadCaptures(t testing.TB) []*capture {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(pcapDir, "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ng, err := filepath.Glob(filepath.Join(pcapDir, "*.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, ng...)
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no captures in %s", pcapDir)
	}
	var out []*capture
	for _, n := range names {
		c, err := readCapture(n)
		if err != nil {
			t.Fatalf("capture %s: %v", filepath.Base(n), err)
		}
		if len(c.frames) == 0 {
			t.Fatalf("capture %s: no packets", c.name)
		}
		out = append(out, c)
	}
	return out
}
