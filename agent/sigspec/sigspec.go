// Package sigspec reads and writes attack signatures as text: the
// space-separated key=value form that the config's signature blocks
// (match = "...") and `bulwark signatures add` take, and that
// maps.Signature.String prints. One parser for both, so the config and the
// CLI accept the same words.
package sigspec

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/bulwark-filter/bulwark/maps"
)

// Keys are the match keys, in the order String prints them.
var Keys = []string{"protocol", "dst_port", "src_port", "ttl", "ip_length", "df", "ip_id_zero", "tcp_flags",
	"window", "tcp_options_length", "icmp_type", "data"}

var protocols = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}

var tcpFlagNames = map[string][2]uint8{ // value, mask
	"syn":    {0x02, 0x12}, // SYN without ACK
	"synack": {0x12, 0x12},
	"ack":    {0x10, 0x17}, // ACK without SYN, FIN, RST
	"rst":    {0x04, 0x04},
	"fin":    {0x01, 0x01},
}

// Parse reads a match: key=value words separated by spaces, each key at
// most once, at least one. The signature's action is left as count.
func Parse(text string) (maps.Signature, error) {
	var s maps.Signature
	words := strings.Fields(text)
	if len(words) == 0 {
		return s, fmt.Errorf("empty match: want key=value words, keys %s", strings.Join(Keys, ", "))
	}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || v == "" {
			return s, fmt.Errorf("%q: want key=value", w)
		}
		f, err := set(&s, k, v)
		if err != nil {
			return s, fmt.Errorf("%s: %w", k, err)
		}
		if s.Fields&f != 0 {
			return s, fmt.Errorf("%s given twice", k)
		}
		s.Fields |= f
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// set parses one key's value into s and returns the field it sets.
func set(s *maps.Signature, k, v string) (maps.SigField, error) {
	var err error
	switch k {
	case "protocol":
		if p, ok := protocols[v]; ok {
			s.Proto = p
			return maps.SigProto, nil
		}
		s.Proto, err = parseUint8(v)
		return maps.SigProto, err
	case "dst_port":
		s.DPort, err = parseRange(v, 65535)
		return maps.SigDPort, err
	case "src_port":
		s.SPort, err = parseRange(v, 65535)
		return maps.SigSPort, err
	case "ttl":
		s.TTL, err = parseRange(v, 255)
		return maps.SigTTL, err
	case "ip_length":
		s.IPLen, err = parseRange(v, 65535)
		return maps.SigIPLen, err
	case "window":
		s.Window, err = parseRange(v, 65535)
		return maps.SigWindow, err
	case "df":
		s.DF, err = strconv.ParseBool(v)
		return maps.SigDF, err
	case "ip_id_zero":
		s.IPIDZero, err = strconv.ParseBool(v)
		return maps.SigIPID, err
	case "tcp_flags":
		if f, ok := tcpFlagNames[v]; ok {
			s.TCPValue, s.TCPMask = f[0], f[1]
			return maps.SigTCPFlags, nil
		}
		val, mask, ok := strings.Cut(v, "/")
		if !ok {
			return 0, fmt.Errorf("%q: want a name (syn, synack, ack, rst, fin) or value/mask (0x02/0x12)", v)
		}
		if s.TCPValue, err = parseUint8(val); err == nil {
			s.TCPMask, err = parseUint8(mask)
		}
		return maps.SigTCPFlags, err
	case "tcp_options_length":
		s.TCPOptLen, err = parseUint8(v)
		return maps.SigTCPOptLen, err
	case "icmp_type":
		s.ICMPType, err = parseUint8(v)
		return maps.SigICMPType, err
	case "data":
		val, mask, ok := strings.Cut(v, "/")
		if s.Data, err = hex.DecodeString(val); err != nil {
			return 0, fmt.Errorf("%q: bytes in hex, optionally /mask in hex", v)
		}
		if !ok {
			s.DataMask = []byte(strings.Repeat("\xff", len(s.Data)))
		} else if s.DataMask, err = hex.DecodeString(mask); err != nil {
			return 0, fmt.Errorf("mask %q: bytes in hex", mask)
		}
		return maps.SigDataPrefix, nil
	}
	return 0, fmt.Errorf("unknown key; keys are %s", strings.Join(Keys, ", "))
}

func parseUint8(v string) (uint8, error) {
	n, err := strconv.ParseUint(v, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("%q: a number 0-255", v)
	}
	return uint8(n), nil
}

// parseRange reads "n" or "lo-hi", each at most max.
func parseRange(v string, max uint64) (maps.Range, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || a > max || b > max || a > b {
		return maps.Range{}, fmt.Errorf("%q: want n or lo-hi with lo <= hi <= %d", v, max)
	}
	return maps.Range{Lo: uint16(a), Hi: uint16(b)}, nil
}

// ParseAction reads an action: drop, count, or limit with pps and burst
// above zero (burst 0 means pps).
func ParseAction(action string, pps, burst uint64, s *maps.Signature) error {
	switch action {
	case "drop":
		s.Action = maps.SigDrop
	case "count":
		s.Action = maps.SigCount
	case "limit":
		s.Action = maps.SigLimit
		if burst == 0 {
			burst = pps
		}
		s.PPS, s.Burst = pps, burst
	default:
		return fmt.Errorf("action %q: want drop, limit or count", action)
	}
	if s.Action != maps.SigLimit && (pps != 0 || burst != 0) {
		return fmt.Errorf("pps and burst are for action limit, not %s", action)
	}
	return s.Validate()
}
