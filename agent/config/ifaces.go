package config

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// InterfaceAuto is the interface name that stands for the interface of the
// host's default route (IPv4, else IPv6).
const InterfaceAuto = "auto"

// IsInterfacePattern reports whether an interface block's name is a pattern
// of names (path.Match syntax: *, ? and [...]) rather than one name.
func IsInterfacePattern(name string) bool { return strings.ContainsAny(name, "*?[") }

// interfacePatternError checks a pattern's syntax.
func interfacePatternError(pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("%q is not a valid pattern (use *, ? and [...], as in \"en*\")", pattern)
	}
	return nil
}

// ResolveInterface returns the names of this host's (this network
// namespace's) interfaces that an interface block's name stands for:
// InterfaceAuto the interface of the default route, a pattern every
// interface it matches but the loopback (sorted), a plain name itself. An
// error says why there is none.
func ResolveInterface(name string) ([]string, error) {
	switch {
	case name == InterfaceAuto:
		n, err := defaultRouteInterface()
		if err != nil {
			return nil, err
		}
		return []string{n}, nil
	case IsInterfacePattern(name):
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var out []string
		for _, i := range ifs {
			if ok, _ := path.Match(name, i.Name); ok && i.Flags&net.FlagLoopback == 0 {
				out = append(out, i.Name)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no interface matches %q (list them with `ip link`)", name)
		}
		sort.Strings(out)
		return out, nil
	}
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, fmt.Errorf("there is no network interface named %q (list them with `ip link`)", name)
	}
	return []string{name}, nil
}

// defaultRouteInterface is the interface of the main table's IPv4 default
// route (/proc/net/route), else of the IPv6 one (/proc/net/ipv6_route).
func defaultRouteInterface() (string, error) {
	if n, err := routeFile("/proc/net/route", func(f []string) (string, bool) {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		return f[0], len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" && up(f[3])
	}); err != nil || n != "" {
		return n, err
	}
	n, err := routeFile("/proc/net/ipv6_route", func(f []string) (string, bool) {
		// dest dest_len src src_len next_hop metric refcnt use flags iface
		return f[len(f)-1], len(f) == 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" && up(f[8]) && f[9] != "lo"
	})
	if err != nil || n != "" {
		return n, err
	}
	return "", errors.New(`no default route, so interface "auto" names no interface (give the interface's name or a pattern)`)
}

// up reports whether route flags (hex) have RTF_UP.
func up(flags string) bool {
	v, err := strconv.ParseUint(flags, 16, 32)
	return err == nil && v&0x1 != 0
}

// routeFile returns the interface of the first line (after the header of
// /proc/net/route) for which isDefault says so.
func routeFile(file string, isDefault func([]string) (string, bool)) (string, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil // no IPv6 in this kernel
	}
	if err != nil {
		return "", fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if name, ok := isDefault(fields); ok {
			return name, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	return "", nil
}
