package api

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
)

var boot = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestWritePcap(t *testing.T) {
	events := []Event{
		{Time: boot.Add(123), PktLen: 1514, Data: bytes.Repeat([]byte{1}, 128)},
		{Time: boot.Add(time.Second), PktLen: 10, Data: bytes.Repeat([]byte{2}, 20)}, // inconsistent length
	}
	var buf bytes.Buffer
	if err := WritePcap(&buf, events); err != nil {
		t.Fatal(err)
	}
	pr, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if pr.LinkType() != 1 || int(pr.Snaplen()) != SnapLen {
		t.Fatalf("link %v snap %d", pr.LinkType(), pr.Snaplen())
	}
	for i, e := range events {
		data, ci, err := pr.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		if !ci.Timestamp.Equal(e.Time) || ci.Length != max(e.PktLen, len(e.Data)) || !bytes.Equal(data, e.Data) {
			t.Fatalf("packet %d: %+v", i, ci)
		}
	}
	if _, _, err := pr.ReadPacketData(); err != io.EOF {
		t.Fatalf("trailing: %v", err)
	}
}

func TestFilterValidate(t *testing.T) {
	if err := (CaptureFilter{Reason: "ratelimit", Action: "would_drop"}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (CaptureFilter{Reason: "nope"}).Validate(); err == nil || !strings.Contains(err.Error(), "ratelimit") {
		t.Fatalf("bad reason: %v", err)
	}
	if err := (CaptureFilter{Action: "nope"}).Validate(); err == nil {
		t.Fatal("bad action accepted")
	}
}
