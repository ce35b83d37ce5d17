package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestUpgradeAcrossLayoutChange: maps pinned by an older build whose
// sources map had a shorter value (as before the scan sketches) make the
// agent refuse to start, attach nothing and say which map differs, why and
// the exact detach command; after that command the agent starts.
func TestUpgradeAcrossLayoutChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{})
	dir := loader.PinDir(e.PinRoot, e.TB.ServerIf)
	oldSize := testutil.PinOldSources(t, dir, loader.Sizes{Sources: uint32(agenttest.DefaultSizes.Sources)})

	a := e.Spawn("")
	if !a.Wait(60 * time.Second) {
		t.Fatalf("agent still running:\n%s", a.LogText())
	}
	want := fmt.Sprintf("bulwark: interface %s: pinned maps in %s do not match this build and config: sources (value size %d, want %d); "+
		"this build lays a map out differently from the build that pinned it (an upgrade across a change of the map's key or value): "+
		"they cannot be adopted; `bulwark detach --interface %s --pin-dir %s` removes the program and its pins",
		e.TB.ServerIf, dir, oldSize, oldSize+80, e.TB.ServerIf, e.PinRoot)
	if a.ExitCode() == 0 || !strings.Contains(a.LogText(), want) {
		t.Fatalf("exit %d, want non-zero and %q in:\n%s", a.ExitCode(), want, a.LogText())
	}
	t.Logf("the agent said: %s", lineWith(a.LogText(), "pinned maps in"))
	if id, err := e.TB.ServerXDPProgID(); err != nil || id != 0 {
		t.Fatalf("XDP program %d (%v) attached by a refused agent, want none", id, err)
	}
	if r := agenttest.RunBin(t, "detach", "--interface", e.TB.ServerIf, "--pin-dir", e.PinRoot); r.Code != 0 {
		t.Fatalf("detach: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, maps.MapSources)); !os.IsNotExist(err) {
		t.Fatalf("old sources pin after detach: %v", err)
	}
	e.Start()
	if id, err := e.TB.ServerXDPProgID(); err != nil || id == 0 {
		t.Fatalf("XDP program %d (%v) after the restart, want one attached", id, err)
	}
}

// lineWith is the first line of text that holds s.
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
