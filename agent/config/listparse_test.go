package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/listset"
)

// fastLines are list file lines: those fastListLine parses itself (ok) and those it leaves to parsePrefix.
var fastLines = []struct {
	line string
	ok   bool
}{
	{"198.51.100.7\n", true}, {"198.51.100.7", true}, {"198.51.100.0/24\n", true}, {"0.0.0.0/0", true},
	{"255.255.255.255/32", true}, {"10.0.0.0/8\n", true}, {"1.2.3.5/31", false}, {"1.2.3.4/24", false},
	{"01.2.3.4", false}, {"1.2.3.04", false}, {"256.1.1.1", false}, {"1.2.3.4/33", false}, {"1.2.3.4/032", false},
	{"1.2.3.4/", false}, {"1.2.3.4 ", false}, {" 1.2.3.4", false}, {"1.2.3.4\r\n", false}, {"1.2.3", false},
	{"1.2.3.4.5", false}, {"1.2.3.4#c", false}, {"2001:db8::/32", false}, {"::ffff:1.2.3.4", false}, {"", false},
	{"1234.1.1.1", false}, {"1.2.3.4/3x", false},
}

// TestFastListLine: the fast path takes the canonical IPv4 lines and gives the key parsePrefix gives; every
// other line is left to parsePrefix.
func TestFastListLine(t *testing.T) {
	for _, c := range fastLines {
		k, ok := fastListLine(c.line)
		if ok != c.ok {
			t.Errorf("fastListLine(%q): ok %v, want %v", c.line, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		p, err := parsePrefix(strings.TrimSpace(c.line))
		if err != nil || listset.KeyOf(p) != k {
			t.Errorf("fastListLine(%q) = %v; parsePrefix gives %v (%v)", c.line, k.Prefix(), p, err)
		}
	}
}

// FuzzFastListLine: whatever the fast path takes, parsePrefix takes too, as the same key.
func FuzzFastListLine(f *testing.F) {
	for _, c := range fastLines {
		f.Add(c.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		k, ok := fastListLine(line)
		if !ok {
			return
		}
		p, err := parsePrefix(strings.TrimSuffix(line, "\n"))
		if err != nil || listset.KeyOf(p) != k {
			t.Fatalf("fastListLine(%q) = %v; parsePrefix gives %v (%v)", line, k.Prefix(), p, err)
		}
	})
}

// TestListFileHalves: a list file large enough to be parsed in two halves gives every entry once, and its bad
// lines (one in each half, and IPv6 and commented lines the fast path leaves to parsePrefix) are reported at
// their line numbers counted over the whole file.
func TestListFileHalves(t *testing.T) {
	var b strings.Builder
	const n = 1 << 17 // 198.18.0.0 to 198.19.255.255, about 1.6 MB
	bad := map[int]bool{1000: true, n - 1000: true}
	for i := range n {
		switch {
		case bad[i]:
			b.WriteString("198.18.0.300\n")
		case i%1000 == 7:
			fmt.Fprintf(&b, "2001:2::%x:%x ; v6\n", i>>16, i&0xffff)
		default:
			fmt.Fprintf(&b, "198.%d.%d.%d\n", 18+i>>16, i>>8&255, i&255)
		}
	}
	b.WriteString("198.18.0.1\n") // a repeat
	if b.Len() < parallelParseBytes {
		t.Fatalf("the file has %d bytes, fewer than the %d parsed in halves", b.Len(), parallelParseBytes)
	}
	list := writeFile(t, t.TempDir(), "halves.txt", b.String())
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	if len(diags) != 2 {
		t.Fatalf("got %d diagnostics, want 2:\n%s", len(diags), FormatDiagnostics(diags))
	}
	for i, line := range []int{1001, n - 999} {
		if want := fmt.Sprintf("%s:%d: bad CIDR", list, line); !strings.HasPrefix(diags[i].Detail, want) {
			t.Errorf("diagnostic %d: %q, want it to start with %q", i, diags[i].Detail, want)
		}
	}

	good := strings.ReplaceAll(b.String(), "198.18.0.300\n", "# was bad\n")
	list = writeFile(t, t.TempDir(), "halves.txt", good)
	cfg, diags := LoadWithOptions(writeFile(t, t.TempDir(), "b.hcl", `interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	if len(diags) != 0 {
		t.Fatal(FormatDiagnostics(diags))
	}
	got := cfg.Block.Files[0].Entries
	if want := n - len(bad); len(got) != want {
		t.Fatalf("%d entries, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		if listset.Compare(got[i-1], got[i]) >= 0 {
			t.Fatalf("entries %d and %d out of order: %v, %v", i-1, i, got[i-1].Prefix(), got[i].Prefix())
		}
	}
	if !got[len(got)-1].Prefix().Addr().Is6() || !got[0].Is4() {
		t.Errorf("first entry %v, last %v: want IPv4 first, IPv6 last", got[0].Prefix(), got[len(got)-1].Prefix())
	}
}

// TestListFileNoLineEndInSecondHalf: a large file whose second half is one line without a line end is parsed
// whole, as one piece: the long line is one bad line, at its number.
func TestListFileNoLineEndInSecondHalf(t *testing.T) {
	var b strings.Builder
	const n = 1 << 16
	for i := range n {
		fmt.Fprintf(&b, "198.18.%d.%d\n", i>>8, i&255)
	}
	b.WriteString(strings.Repeat("x", b.Len()+1))
	if b.Len() < parallelParseBytes {
		t.Fatalf("the file has %d bytes, fewer than the %d parsed in halves", b.Len(), parallelParseBytes)
	}
	list := writeFile(t, t.TempDir(), "long.txt", b.String())
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	if len(diags) != 1 || !strings.HasPrefix(diags[0].Detail, fmt.Sprintf("%s:%d: bad CIDR", list, n+1)) {
		t.Fatalf("got\n%s\nwant one bad CIDR at line %d", FormatDiagnostics(diags), n+1)
	}
}
