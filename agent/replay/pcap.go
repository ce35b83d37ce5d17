package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"
)

// captureReader reads the frames of a pcap or pcapng file as Ethernet
// frames: raw IPv4/IPv6 and Linux cooked (SLL, SLL2) captures get an
// Ethernet header, so the datapath sees what a NIC would hand it.
type captureReader struct {
	path  string
	f     *os.File
	next  func() ([]byte, gopacket.CaptureInfo, error)
	link  uint32
	frame []byte
}

// Link types replay understands (as the file says them: gopacket's
// LinkType is one byte and cannot hold SLL2's 276).
const (
	linkEthernet uint32 = 1
	linkRawBSD   uint32 = 12 // raw IP on some systems
	linkRaw      uint32 = 101
	linkSLL      uint32 = 113
	linkIPv4     uint32 = 228
	linkIPv6     uint32 = 229
	linkSLL2     uint32 = 276
	maxSnapRead         = 256 << 10
)

// fileLinkType reads the link type from a pcap header, or from the first
// interface description block of a pcapng file.
func fileLinkType(head []byte) (uint32, bool) {
	if len(head) < 24 {
		return 0, false
	}
	switch binary.LittleEndian.Uint32(head) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		return binary.LittleEndian.Uint32(head[20:24]), true
	case 0xd4c3b2a1, 0x4d3cb2a1:
		return binary.BigEndian.Uint32(head[20:24]), true
	case 0x0a0d0d0a: // section header block; its byte-order magic at 8
		var bo binary.ByteOrder = binary.BigEndian
		if binary.LittleEndian.Uint32(head[8:12]) == 0x1a2b3c4d {
			bo = binary.LittleEndian
		}
		shb := int(bo.Uint32(head[4:8]))
		if shb < 28 || len(head) < shb+12 || bo.Uint32(head[shb:shb+4]) != 1 {
			return 0, false
		}
		return uint32(bo.Uint16(head[shb+8 : shb+10])), true
	}
	return 0, false
}

func openCapture(path string) (*captureReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(4096)
	link, ok := fileLinkType(head)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("capture %s: not a pcap or pcapng file (or its first interface block is missing)", path)
	}
	c := &captureReader{path: path, f: f, link: link}
	if binary.LittleEndian.Uint32(head) == 0x0a0d0d0a {
		if err := checkPcapng(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("capture %s: pcapng: %w", path, err)
		}
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture %s: pcapng: %w", path, err)
		}
		// Not the zero-copy read: it would size its buffer from the
		// interface's snap length, which checkPcapng does not bound.
		c.next = r.ReadPacketData
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("capture %s: pcap: %w", path, err)
		}
		// Some captures declare a snap length smaller than their records.
		r.SetSnaplen(maxSnapRead)
		// One buffer of maxSnapRead for every record: the timeline copies
		// each frame out before the next read.
		c.next = r.ZeroCopyReadPacketData
	}
	switch link {
	case linkEthernet, linkRaw, linkRawBSD, linkIPv4, linkIPv6, linkSLL, linkSLL2:
	default:
		f.Close()
		return nil, fmt.Errorf("capture %s: link type %d is not supported: replay reads Ethernet, raw IPv4/IPv6 and Linux cooked (SLL, SLL2) captures",
			path, link)
	}
	return c, nil
}

func (c *captureReader) Close() error { return c.f.Close() }

// pcapng block types checkPcapng looks into.
const (
	ngSectionHeader  = 0x0a0d0d0a
	ngPacket         = 2 // obsolete, still written by old tools
	ngSimplePacket   = 3
	ngEnhancedPacket = 6
)

// checkPcapng walks the blocks of a pcapng file, reading their headers
// only, and refuses one that does not fit the file or whose packet claims
// more bytes than its block holds or than replay reads (maxSnapRead):
// gopacket's pcapng reader allocates what a packet claims before it reads
// it, so a crafted length could make it allocate gigabytes. It leaves the
// file's offset where it was.
func checkPcapng(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 64<<10)
	size := fi.Size()
	var bo binary.ByteOrder = binary.LittleEndian
	for off := int64(0); off < size; {
		if size-off < 12 {
			return fmt.Errorf("block at offset %d: %d bytes left, too few for a block", off, size-off)
		}
		h, err := br.Peek(int(min(28, size-off)))
		if err != nil {
			return fmt.Errorf("block at offset %d: %w", off, err)
		}
		typ := bo.Uint32(h[0:4])
		if typ == ngSectionHeader {
			switch binary.LittleEndian.Uint32(h[8:12]) {
			case 0x1a2b3c4d:
				bo = binary.LittleEndian
			case 0x4d3c2b1a:
				bo = binary.BigEndian
			default:
				return fmt.Errorf("section header at offset %d: bad byte-order magic", off)
			}
		}
		total := int64(bo.Uint32(h[4:8]))
		if total < 12 || total%4 != 0 || total > size-off {
			return fmt.Errorf("block at offset %d: length %d does not fit the file (%d bytes left)", off, total, size-off)
		}
		switch typ {
		case ngEnhancedPacket, ngPacket:
			if total < 32 {
				return fmt.Errorf("packet block at offset %d: length %d, shorter than its header", off, total)
			}
			if caplen := int64(bo.Uint32(h[20:24])); caplen > total-32 || caplen > maxSnapRead {
				return fmt.Errorf("packet block at offset %d: captured length %d exceeds its block (%d bytes) or %d",
					off, caplen, total, maxSnapRead)
			}
		case ngSimplePacket:
			if total < 16 {
				return fmt.Errorf("simple packet block at offset %d: length %d, shorter than its header", off, total)
			}
			// Read as the captured length, cut to the interface's snap length.
			if orig := int64(bo.Uint32(h[8:12])); orig > maxSnapRead {
				return fmt.Errorf("simple packet block at offset %d: packet length %d exceeds %d", off, orig, maxSnapRead)
			}
		}
		if _, err := br.Discard(int(total)); err != nil {
			return fmt.Errorf("block at offset %d: %w", off, err)
		}
		off += total
	}
	return nil
}

// ether builds an Ethernet header for a frame carrying ethertype.
func (c *captureReader) ether(ethertype uint16, payload []byte) []byte {
	c.frame = append(c.frame[:0], 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, byte(ethertype>>8), byte(ethertype))
	return append(c.frame, payload...)
}

// Next returns the next frame, as Ethernet, and its capture info; io.EOF at
// the end. The frame is valid until the next call. Records that cannot be turned into a frame are an error naming
// the record.
func (c *captureReader) Next(n int) ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := c.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ci, io.EOF
		}
		return nil, ci, fmt.Errorf("capture %s, record %d: %w", c.path, n+1, err)
	}
	ipType := func(b []byte) uint16 {
		if len(b) > 0 && b[0]>>4 == 6 {
			return 0x86dd
		}
		return 0x0800
	}
	switch c.link {
	case linkEthernet:
		return data, ci, nil
	case linkIPv4:
		return c.ether(0x0800, data), ci, nil
	case linkIPv6:
		return c.ether(0x86dd, data), ci, nil
	case linkRaw, linkRawBSD:
		return c.ether(ipType(data), data), ci, nil
	case linkSLL:
		// 16-byte header; the protocol (ethertype) in its last two bytes.
		if len(data) < 16 {
			return nil, ci, fmt.Errorf("capture %s, record %d: %d bytes, shorter than a Linux cooked header", c.path, n+1, len(data))
		}
		return c.ether(binary.BigEndian.Uint16(data[14:16]), data[16:]), ci, nil
	case linkSLL2:
		// 20-byte header; the protocol in its first two bytes.
		if len(data) < 20 {
			return nil, ci, fmt.Errorf("capture %s, record %d: %d bytes, shorter than a Linux cooked v2 header", c.path, n+1, len(data))
		}
		return c.ether(binary.BigEndian.Uint16(data[0:2]), data[20:]), ci, nil
	}
	return nil, ci, fmt.Errorf("capture %s: link type %d", c.path, c.link)
}
