package importfmt

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ipsetTypes are the set types whose elements are addresses, networks or
// ranges (and nothing else, such as ports or interfaces).
var ipsetTypes = map[string]bool{"hash:ip": true, "hash:net": true, "bitmap:ip": true}

// ipsetCommand is the command a word of `ipset save` output stands for:
// "create" or "add" (also in the short forms -N and -A), or "".
func ipsetCommand(w string) string {
	switch w {
	case "create", "-N", "n", "new":
		return "create"
	case "add", "-A", "a":
		return "add"
	}
	return ""
}

// ipsetSet is what a create line says about a set.
type ipsetSet struct {
	take    bool // its elements are taken
	netmask int  // a hash:ip's netmask option (0: none): its elements are networks of that length
}

// parseIPSet reads `ipset save` output: create lines, then add lines.
func parseIPSet(data []byte, b *builder, want []string) error {
	sets := map[string]*ipsetSet{}
	found := map[string]bool{}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := i + 1
		f := strings.Fields(string(raw))
		if line == 1 && len(f) > 0 {
			f[0] = strings.TrimPrefix(f[0], "\ufeff")
		}
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		cmd := ipsetCommand(f[0])
		if cmd == "" {
			return lineErr(line, "%q is not an ipset save line (want create or add)", f[0])
		}
		if len(f) < 3 {
			return lineErr(line, "%s needs a set name and a %s", cmd, map[string]string{"create": "type", "add": "element"}[cmd])
		}
		name := f[1]
		if cmd == "create" {
			if _, dup := sets[name]; dup {
				return lineErr(line, "set %q is created twice", name)
			}
			s, err := ipsetCreate(f[2], f[3:], selected(want, name))
			if err != nil {
				return lineErr(line, "set %q: %v", name, err)
			}
			sets[name] = s
			switch {
			case s.take:
				found[name] = true
			case selected(want, name) && len(want) > 0:
				return lineErr(line, "set %q is of type %s: its elements are not addresses", name, f[2])
			case selected(want, name):
				b.notef("line %d: set %q skipped: type %s holds no plain addresses", line, name, f[2])
			}
			continue
		}
		s, ok := sets[name]
		if !ok {
			return lineErr(line, "add to set %q, which no create line before made", name)
		}
		if !s.take {
			continue
		}
		if slices.Contains(f[3:], "nomatch") {
			return lineErr(line, "set %q: %s is a nomatch exception, which a block or allow list cannot hold; "+
				"leave it out of the import (or put it in the other list)", name, f[2])
		}
		ps, err := parseEntry(f[2])
		if err != nil {
			return lineErr(line, "set %q: %v", name, err)
		}
		for _, p := range ps {
			if s.netmask > 0 && p.IsSingleIP() {
				if p, err = p.Addr().Prefix(s.netmask); err != nil {
					return lineErr(line, "set %q: %s with netmask %d: %v", name, f[2], s.netmask, err)
				}
			}
			if err := b.add(p); err != nil {
				return lineErr(line, "%v", err)
			}
		}
	}
	return missingSets(want, found)
}

// ipsetCreate reads a create line's type and options; take is whether the
// set is selected.
func ipsetCreate(typ string, opts []string, take bool) (*ipsetSet, error) {
	s := &ipsetSet{take: take && ipsetTypes[typ]}
	for i := 0; i < len(opts); i++ {
		if opts[i] != "netmask" {
			continue
		}
		if i+1 >= len(opts) {
			return nil, fmt.Errorf("netmask without a value")
		}
		n, err := strconv.Atoi(opts[i+1])
		if err != nil || n < 1 || n > 128 {
			return nil, fmt.Errorf("netmask %q: want 1 to 128", opts[i+1])
		}
		s.netmask = n
	}
	return s, nil
}
