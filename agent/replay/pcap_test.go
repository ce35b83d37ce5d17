package replay

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pcapngFile is a section header, an Ethernet interface and one enhanced
// packet block of 60 bytes whose captured length field says caplen.
func pcapngFile(caplen uint32, total uint32) []byte {
	le := binary.LittleEndian
	var b []byte
	b = le.AppendUint32(b, ngSectionHeader)
	b = le.AppendUint32(b, 28)
	b = le.AppendUint32(b, 0x1a2b3c4d)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, ^uint64(0))
	b = le.AppendUint32(b, 28)
	// interface description: Ethernet, snap length 0
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 20)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 20)
	// enhanced packet
	b = le.AppendUint32(b, ngEnhancedPacket)
	b = le.AppendUint32(b, total)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, caplen)
	b = le.AppendUint32(b, 60)
	b = append(b, make([]byte, 60)...)
	return le.AppendUint32(b, 92)
}

// TestOpenCapturePcapngLengths: a pcapng packet that claims more bytes
// than its block holds, or a block longer than the file, is refused when
// the file is opened, with the block's offset, before gopacket would
// allocate what the packet claims.
func TestOpenCapturePcapngLengths(t *testing.T) {
	for _, tt := range []struct {
		name   string
		data   []byte
		errHas string // "" = opens and reads one frame
	}{
		{"good", pcapngFile(60, 92), ""},
		{"captured length beyond the block", pcapngFile(0xfffffff0, 92), "packet block at offset 48: captured length 4294967280"},
		{"captured length over the limit", pcapngFile(maxSnapRead+4, 92), "captured length 262148"},
		{"block beyond the file", pcapngFile(60, 4096), "block at offset 48: length 4096 does not fit the file"},
		{"block length not a multiple of 4", pcapngFile(60, 90), "length 90 does not fit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := openCapture(path)
			if tt.errHas != "" {
				if err == nil {
					r.Close()
					t.Fatalf("opened; want an error containing %q", tt.errHas)
				}
				if !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q; want the file and %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			frame, _, err := r.Next(0)
			if err != nil || len(frame) != 60 {
				t.Fatalf("read %d bytes, %v; want 60", len(frame), err)
			}
		})
	}
}
