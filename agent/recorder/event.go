// Package recorder keeps a bounded, after-the-fact record of the packets the
// XDP program sampled when it dropped them (issue 5).
//
// The XDP program samples dropped packets (1 in N, with a per-second cap)
// into a BPF ring buffer as struct drop_event records. A [Recorder] reads
// those records, decodes them into [Event]s and
//
//   - writes them to rotating pcapng files in a configured directory
//     (drops-<UTC timestamp>-<seq>.pcapng, mode 0600, at most MaxFiles files
//     of about MaxFileBytes each; the oldest file is deleted first), and
//   - hands them to live subscribers ([Recorder.Subscribe]) for
//     `bulwark capture`.
//
// # File format
//
// Files are pcapng. gopacket v1.1.19's pcapgo.NgWriter cannot attach options
// to a packet, so the recorder writes the few pcapng blocks it needs itself
// (Section Header, one Interface Description per network interface, with
// if_name and nanosecond if_tsresol, and Enhanced Packet blocks). Every
// Enhanced Packet Block carries an opt_comment such as
//
//	reason=ratelimit rule=dns rule_id=3 action=drop iface=eth0 len=1514
//
// so Wireshark/tshark show why a packet was dropped (tshark -T fields -e
// frame.comment), and no side index is needed. The snap length is 128
// bytes (the sample size); every packet carries its original length and the
// time the XDP program saw it. The files read back with pcapgo.NewNgReader.
//
// # Bounded memory and disk, never stalling
//
// The reader loop ([Recorder.Run]) never blocks on the disk or on a
// subscriber: decoded events go to a bounded queue drained by one writer
// goroutine, and to bounded subscriber channels; an event that does not fit
// is dropped and counted ([Stats]). A write error (a full disk, a vanished
// directory) loses the sample (counted), is logged at most once a minute,
// closes the current file and the next sample is tried on a new file.
package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/maps"
)

// SnapLen is the number of bytes of each frame the XDP program captures.
const SnapLen = maps.EventSnap

// RecordSize is the size of a struct drop_event ring buffer record.
const RecordSize = int(unsafe.Sizeof(maps.DropEvent{}))

// headerSize is the fixed part of struct drop_event before data, and the
// offsets of its fields: all from the generated type.
const (
	headerSize = int(unsafe.Offsetof(maps.DropEvent{}.Data))
	offTS      = unsafe.Offsetof(maps.DropEvent{}.TsNs)
	offIfindex = unsafe.Offsetof(maps.DropEvent{}.Ifindex)
	offPktLen  = unsafe.Offsetof(maps.DropEvent{}.PktLen)
	offRule    = unsafe.Offsetof(maps.DropEvent{}.Rule)
	offCapLen  = unsafe.Offsetof(maps.DropEvent{}.CapLen)
	offAction  = unsafe.Offsetof(maps.DropEvent{}.Action)
	offReason  = unsafe.Offsetof(maps.DropEvent{}.Reason)
)

// Event is one decoded drop sample: the control API's wire type, which
// `bulwark capture` receives.
type Event = api.Event

// Decoding errors. Decode wraps them with details; test with errors.Is.
var (
	// ErrShortRecord means the record is shorter than its header or than
	// the captured bytes it claims.
	ErrShortRecord = errors.New("short drop event record")
	// ErrBadRecord means a field of the record is out of range.
	ErrBadRecord = errors.New("garbled drop event record")
)

// Decode decodes one raw ring buffer record (struct drop_event, host byte
// order, i.e. little endian on the platforms bulwark supports).
//
// bootTime is the wall-clock time at CLOCK_MONOTONIC 0; ifname maps an
// ifindex to a name and ruleName maps (reason name, rule or list id) to a
// name; either may be nil. Decode never panics on bad input: a record that is
// too short fails with ErrShortRecord, one with an unknown action or reason,
// a capture length above SnapLen or above the packet length fails with
// ErrBadRecord. Data is copied; raw may be reused afterwards.
func Decode(raw []byte, bootTime time.Time, ifname func(int) string, ruleName func(reason string, id uint32) string) (Event, error) {
	if len(raw) < headerSize {
		return Event{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrShortRecord, len(raw), headerSize)
	}
	le := binary.LittleEndian
	ts := le.Uint64(raw[offTS:])
	ifindex := le.Uint32(raw[offIfindex:])
	pktLen := le.Uint32(raw[offPktLen:])
	rule := le.Uint32(raw[offRule:])
	capLen := int(le.Uint16(raw[offCapLen:]))
	action := raw[offAction]
	reason := raw[offReason]

	if int(action) >= len(maps.Actions) {
		return Event{}, fmt.Errorf("%w: unknown action %d", ErrBadRecord, action)
	}
	if int(reason) >= len(maps.Reasons) {
		return Event{}, fmt.Errorf("%w: unknown reason %d", ErrBadRecord, reason)
	}
	if capLen > SnapLen {
		return Event{}, fmt.Errorf("%w: capture length %d above snap length %d", ErrBadRecord, capLen, SnapLen)
	}
	if uint32(capLen) > pktLen {
		return Event{}, fmt.Errorf("%w: capture length %d above packet length %d", ErrBadRecord, capLen, pktLen)
	}
	if ts > math.MaxInt64 {
		return Event{}, fmt.Errorf("%w: timestamp %d out of range", ErrBadRecord, ts)
	}
	if pktLen > math.MaxInt32 {
		return Event{}, fmt.Errorf("%w: packet length %d out of range", ErrBadRecord, pktLen)
	}
	if len(raw) < headerSize+capLen {
		return Event{}, fmt.Errorf("%w: %d bytes, capture length %d needs %d", ErrShortRecord, len(raw), capLen, headerSize+capLen)
	}

	e := Event{
		Time:   bootTime.Add(time.Duration(ts)),
		Action: maps.Action(action).String(),
		Reason: maps.Reason(reason).String(),
		Rule:   rule,
		PktLen: int(pktLen),
		Data:   append([]byte(nil), raw[headerSize:headerSize+capLen]...),
	}
	if ifname != nil {
		e.Iface = ifname(int(ifindex))
	}
	if e.Iface == "" {
		e.Iface = "if" + strconv.FormatUint(uint64(ifindex), 10)
	}
	if ruleName != nil {
		e.RuleName = ruleName(e.Reason, rule)
	}
	return e, nil
}

// Filter selects events for a subscriber: the control API's capture
// filter.
type Filter = api.CaptureFilter
