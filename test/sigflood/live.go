package sigflood

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/test/netns"
)

// The live flood: an in-kernel generator (BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES, as test/bench/nft) sends a spoofed SYN flood
// from the client veth of a testbed. Live frames repeat one template, so
// the generator program rewrites each frame: a random source in
// 198.18.0.0/16 (its low 16 bits) and a random source port; it writes the
// complement of the source's low bits into the IPv4 ID, which keeps the
// IPv4 checksum valid (x + ^x is 0xffff in ones' complement), and the
// complements of both into the TCP sequence number, which keeps the TCP
// checksum valid. The rest is what SYN flood tools send: TTL 57 (64 less
// seven hops), no DF, window 1024, no TCP options, 40 bytes of IP.

// SYNTemplate is the live flood's frame to dst:port, with the fields the
// generator rewrites at their neutral values (source low bits 0, ID and
// sequence all ones, source port 0) and valid checksums.
func SYNTemplate(dstMAC, srcMAC net.HardwareAddr, dst netip.Addr, port uint16) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 57, Id: 0xffff, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{198, 18, 0, 0}, DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 0, DstPort: layers.TCPPort(port), Seq: 0xffffffff, SYN: true, Window: 1024}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp)
	return buf.Bytes(), err
}

// Offsets in the template (Ethernet 14, IPv4 20, TCP 20).
const (
	offIPID  = 18
	offSrcLo = 28
	offSPort = 34
	offSeqHi = 38
	offSeqLo = 40
)

// synProgram rewrites the template as the package comment says and
// returns verdict.
func synProgram(verdict int32) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetPrandomU32.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 54),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.StoreMem(asm.R2, offSrcLo, asm.R7, asm.Half), // source, low 16 bits
		asm.Mov.Reg(asm.R8, asm.R7),
		asm.Xor.Imm(asm.R8, 0xffff),
		asm.StoreMem(asm.R2, offIPID, asm.R8, asm.Half),
		asm.StoreMem(asm.R2, offSeqHi, asm.R8, asm.Half),
		asm.RSh.Imm(asm.R7, 16),
		asm.StoreMem(asm.R2, offSPort, asm.R7, asm.Half), // source port
		asm.Xor.Imm(asm.R7, 0xffff),
		asm.StoreMem(asm.R2, offSeqLo, asm.R7, asm.Half),
		asm.Mov.Imm(asm.R0, verdict).WithSymbol("out"),
		asm.Return(),
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bwk_synflood", Type: ebpf.XDP, License: "GPL", Instructions: insns})
}

// xdpMd is the context of a live-frames run: only ingress_ifindex is set.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// Progress is where a live flood stood at a time, by the kernel's own veth
// counts (ethtool -S) since the flood's start and the generator's.
// Delivered: flood frames the client veth put into the server veth's ring,
// each of which reaches the server's XDP program; Refused: those the ring
// had no room for, lost before XDP (the generator outran the ring's
// consumer); Sent: the two together, every frame the generator sent.
// XDPSeen and XDPDrops: the frames the server veth's XDP program ran on
// (the benign client's too) and those it dropped. Runs: the frames of the
// test runs that completed, the generator's own count; a run that a signal
// interrupts is run again whole (by cilium/ebpf), so Sent is at least Runs.
type Progress struct {
	At                                                time.Time
	Sent, Delivered, Refused, XDPSeen, XDPDrops, Runs uint64
}

// LiveFlood shapes a live flood.
type LiveFlood struct {
	Port    uint16        // the destination port on the server's address
	CPU     int           // the generator's CPU
	MaxPkts uint64        // at most this many frames in runs that completed
	MaxDur  time.Duration // and for at most this long
	Chunk   uint64        // frames per test run: the progress log's grain
	// PPS paces the flood: before each chunk the generator waits until its
	// runs are not ahead of PPS frames a second since the start (a chunk
	// itself goes at full speed). 0: as fast as it goes.
	PPS float64
	// Done, if not nil, is asked after each chunk: true stops the flood.
	Done func() bool
}

// LiveSYN sends the live SYN flood f from the client veth of tb to the
// server's address. It returns the progress after each chunk, the first
// entry being the start (all 0).
func LiveSYN(tb *netns.Testbed, f LiveFlood) ([]Progress, error) {
	frame, err := SYNTemplate(tb.ServerMAC, tb.ClientMAC, netns.ServerAddr4, f.Port)
	if err != nil {
		return nil, err
	}
	prog, err := synProgram(3) // XDP_TX
	if err != nil {
		return nil, fmt.Errorf("generator program: %w", err)
	}
	defer prog.Close()
	cl, err := tb.ClientEthtool()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	sv, err := tb.ServerEthtool()
	if err != nil {
		return nil, err
	}
	defer sv.Close()
	// counts reads the veth counters (absolute; made relative below).
	counts := func(p *Progress) error {
		c, err := cl.Read()
		if err != nil {
			return err
		}
		s, err := sv.Read()
		if err != nil {
			return err
		}
		p.Delivered, p.Refused = netns.QueueSum(c, "tx", "xdp_xmit"), netns.QueueSum(c, "tx", "xdp_xmit_errors")
		p.XDPSeen, p.XDPDrops = netns.QueueSum(s, "rx", "xdp_packets"), netns.QueueSum(s, "rx", "xdp_drops")
		return nil
	}
	var out []Progress
	err = tb.InClient(func() error {
		var old, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return err
		}
		one.Set(f.CPU)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", f.CPU, err)
		}
		defer func() { _ = unix.SchedSetaffinity(0, &old) }() // InClient's locked thread
		opts := &ebpf.RunOptions{Data: frame, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
			Context: xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(tb.ClientIndex)}}
		var base Progress
		if err := counts(&base); err != nil {
			return err
		}
		start := time.Now()
		out = append(out, Progress{At: start})
		var runs uint64
		for runs < f.MaxPkts && time.Since(start) < f.MaxDur {
			if f.PPS > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(float64(runs) / f.PPS * float64(time.Second)))))
			}
			n := min(f.Chunk, f.MaxPkts-runs)
			opts.Repeat = uint32(n)
			if _, err := prog.Run(opts); err != nil {
				return fmt.Errorf("live-frames test run: %w", err)
			}
			runs += n
			p := Progress{At: time.Now(), Runs: runs}
			if err := counts(&p); err != nil {
				return err
			}
			p.Delivered -= base.Delivered
			p.Refused -= base.Refused
			p.XDPSeen -= base.XDPSeen
			p.XDPDrops -= base.XDPDrops
			p.Sent = p.Delivered + p.Refused
			out = append(out, p)
			if f.Done != nil && f.Done() {
				break
			}
		}
		return nil
	})
	return out, err
}

// At is the value of field at t by the progress log (linear within a
// chunk), e.g. At(log, t, func(p Progress) uint64 { return p.Sent }).
func At(log []Progress, t time.Time, field func(Progress) uint64) float64 {
	for i := 1; i < len(log); i++ {
		a, b := log[i-1], log[i]
		if t.After(b.At) {
			continue
		}
		if !t.After(a.At) {
			return float64(field(a))
		}
		f := float64(t.Sub(a.At)) / float64(b.At.Sub(a.At))
		return float64(field(a)) + f*(float64(field(b))-float64(field(a)))
	}
	if len(log) == 0 {
		return 0
	}
	return float64(field(log[len(log)-1]))
}
