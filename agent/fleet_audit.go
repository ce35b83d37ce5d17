package agent

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/bulwark-filter/bulwark/agent/fleet"
)

// appendFleetAudit appends the audit line of fleet verdict v applied (or
// not written, a.err set) at now: the bytes json.Marshal makes of its
// AuditRecord, and a newline. A verdict applied is encoded by hand,
// without an allocation: a cold sync writes one per verdict.
func appendFleetAudit(b []byte, now time.Time, v *fleet.Verdict, a appliedVerdict) []byte {
	if a.err != nil {
		line, _ := json.Marshal(AuditRecord{Time: now, Who: "fleet:" + v.Issuer, What: "fleet." + string(v.Action),
			Target: []string{v.Target.String()}, Why: v.Reason, Result: "error", Detail: a.err.Error()})
		return append(append(b, line...), '\n')
	}
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","who":"fleet:`...)
	b = appendJSONText(b, v.Issuer)
	b = append(b, `","what":"fleet.`...)
	b = appendJSONText(b, string(v.Action))
	b = append(b, `","target":["`...)
	b = v.Target.AppendTo(b)
	b = append(b, `"]`...)
	if v.Reason != "" {
		b = append(b, `,"why":"`...)
		b = appendJSONText(b, v.Reason)
		b = append(b, '"')
	}
	b = append(b, `,"ttl":"`...)
	b = appendSeconds(b, a.left.Round(time.Second))
	b = append(b, `","result":"ok","detail":"origin `...)
	b = appendJSONText(b, v.Origin)
	b = append(b, '"')
	if v.Score != 0 {
		b = append(b, `,"score":`...)
		b = strconv.AppendUint(b, uint64(v.Score), 10)
	}
	return append(b, "}\n"...)
}

// appendJSONText appends s as encoding/json writes it inside a string's
// quotes: as it is when it is plain printable ASCII that needs no escape
// (names, reasons), else through encoding/json.
func appendJSONText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q[1:len(q)-1]...)
		}
	}
	return append(b, s...)
}

// appendSeconds appends d, a whole number of seconds, as d.String()
// writes it ("1h0m0s", "59m59s", "5s"), without an allocation.
func appendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		b, d = append(b, '-'), -d
	}
	s := int64(d / time.Second)
	h, m := s/3600, s/60%60
	if h > 0 {
		b = append(strconv.AppendInt(b, h, 10), 'h')
	}
	if h > 0 || m > 0 {
		b = append(strconv.AppendInt(b, m, 10), 'm')
	}
	return append(strconv.AppendInt(b, s%60, 10), 's')
}
