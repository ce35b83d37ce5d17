// Package sigflood builds the spoofed floods that test attack signatures:
// a SYN flood and a UDP flood from random sources over 198.18.0.0/15 (a
// /15: two /16s), with header distributions as flood tools and botnets
// send them (TTLs near 64, 128 and 255 less a few hops, a handful of
// windows, random IP IDs and source ports), as Ethernet frames with their
// times.
package sigflood

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Packet is one frame of a flood and when it is sent.
type Packet struct {
	At    time.Duration // since the flood's start
	Frame []byte
}

// Flood is what to build.
type Flood struct {
	Kind     string // "syn" or "udp"
	DstIP    net.IP
	DstPort  uint16
	PPS      int
	Duration time.Duration
	Seed     uint64
}

// Source is a random address of 198.18.0.0/15.
func Source(rng *rand.Rand) net.IP {
	return net.IP{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))}
}

// ttl is a TTL as seen after a few hops from a host of one of the common
// initial TTLs.
func ttl(rng *rand.Rand) uint8 {
	initial := []int{64, 128, 255}[rng.IntN(3)]
	return uint8(initial - 3 - rng.IntN(18))
}

// Build makes the flood's packets, evenly spaced.
func Build(f Flood) ([]Packet, error) {
	rng := rand.New(rand.NewPCG(f.Seed, 99))
	n := int(f.Duration.Seconds() * float64(f.PPS))
	out := make([]Packet, 0, n)
	windows := []uint16{1024, 2048, 3072, 4096, 5840, 8192, 16384, 65535}
	payload := []byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00") // a constant tool payload
	for i := 0; i < n; i++ {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
			EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl(rng), Id: uint16(rng.IntN(65536)), SrcIP: Source(rng), DstIP: f.DstIP}
		ls := []gopacket.SerializableLayer{eth, ip}
		sport := uint16(1024 + rng.IntN(64512))
		if f.Kind == "syn" {
			ip.Protocol = layers.IPProtocolTCP
			tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(f.DstPort), SYN: true,
				Seq: rng.Uint32(), Window: windows[rng.IntN(len(windows))]}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			ls = append(ls, tcp)
		} else {
			ip.Protocol = layers.IPProtocolUDP
			udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(f.DstPort)}
			_ = udp.SetNetworkLayerForChecksum(ip)
			ls = append(ls, udp, gopacket.Payload(payload))
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			return nil, err
		}
		out = append(out, Packet{At: time.Duration(i) * time.Second / time.Duration(f.PPS), Frame: buf.Bytes()})
	}
	return out, nil
}

// ReadPcap reads an Ethernet pcap file: its frames and their times since
// its first packet, and that packet's time.
func ReadPcap(path string) ([]Packet, time.Time, error) {
	var first time.Time
	f, err := os.Open(path)
	if err != nil {
		return nil, first, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, first, err
	}
	var out []Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, first, nil
		}
		if err != nil {
			return nil, first, err
		}
		if first.IsZero() {
			first = ci.Timestamp
		}
		out = append(out, Packet{At: ci.Timestamp.Sub(first), Frame: data})
	}
}

// WritePcap writes packets to an Ethernet pcap file, the first at start.
func WritePcap(path string, start time.Time, ps []Packet) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	for _, p := range ps {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(p.At), CaptureLength: len(p.Frame), Length: len(p.Frame)}
		if err := w.WritePacket(ci, p.Frame); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
