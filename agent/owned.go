package agent

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/bulwark-filter/bulwark/maps"
)

// What the links to other systems (the fleet, CrowdSec) share: their
// secrets' files, and removing only what they wrote.

// readFirstLine reads the first line of a secret's file (a password, an
// API key), without its line ending; what names it in errors.
func readFirstLine(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s %s: the first line is empty", what, path)
	}
	return s, nil
}

// removeVerdictOf deletes the verdict on addr's source if origin put it
// there.
func removeVerdictOf(m *maps.Set, addr netip.Addr, origin maps.Origin) error {
	cur, ok, err := m.Verdict(addr)
	if err != nil || !ok || cur.Origin != origin {
		return err
	}
	return m.DeleteVerdict(addr)
}

// removeListEntryOf deletes the block entry of target if list id put it
// there.
func removeListEntryOf(l *maps.List, target netip.Prefix, id uint32) error {
	cur, ok, err := l.Lookup(target)
	if err != nil || !ok || cur.ListID != id {
		return err
	}
	return l.Delete([]netip.Prefix{target})
}
