package replay

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// droppedWriter writes dropped frames, with their original timestamps, to a
// pcap file.
type droppedWriter struct {
	f *os.File
	b *bufio.Writer
	w *pcapgo.Writer
}

func newDroppedWriter(path string) (*droppedWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--write-dropped: %w", err)
	}
	b := bufio.NewWriter(f)
	w := pcapgo.NewWriterNanos(b)
	if err := w.WriteFileHeader(maxSnapRead, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("--write-dropped: %w", err)
	}
	return &droppedWriter{f: f, b: b, w: w}, nil
}

func (d *droppedWriter) write(ts time.Time, frame []byte, origLen int) error {
	return d.w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: max(origLen, len(frame))}, frame)
}

// Close flushes and closes the file; closing it again does nothing.
func (d *droppedWriter) Close() error {
	f := d.f
	if f == nil {
		return nil
	}
	d.f = nil
	if err := d.b.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("--write-dropped: %w", err)
	}
	return f.Close()
}
