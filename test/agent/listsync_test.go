package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestReloadFailedListWrite reloads a block list that does not fit beside
// run-time entries: the new hosts are written before the old ones go, the
// hosts map is full, and the reload fails. The agent keeps the running
// lists (config and run-time entries as they were, the traffic they block
// still blocked); the next reload, which fits, applies the change from
// them, and a third, back to the first config, too.
func TestReloadFailedListWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hosts := func(third, from, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("198.18.%d.%d", third, from+i)
		}
		return out
	}
	const room = 64
	first := hosts(7, 1, 60)
	cfg := func(block []string) agenttest.Config {
		return agenttest.Config{Block: block, Maps: agenttest.Sizes{BlockHosts: room}}
	}
	e.WriteConfig("", cfg(first))
	e.Start()
	runtime := hosts(9, 1, 3)
	for _, h := range runtime {
		if out := e.MustCLI("block", "add", h); strings.TrimSpace(out) != "added 1" {
			t.Fatalf("block add %s: %q", h, out)
		}
	}
	check := func(when string, config []string) {
		t.Helper()
		want := map[string]string{}
		for _, h := range config {
			want[h+"/32"] = "config"
		}
		for _, h := range runtime {
			want[h+"/32"] = "runtime"
		}
		got := e.List("block")
		if len(got) != len(want) {
			t.Errorf("%s: the block list holds %d entries, want %d", when, len(got), len(want))
		}
		for _, en := range got {
			if want[en.CIDR] != en.Origin {
				t.Errorf("%s: %s from %q, want %q", when, en.CIDR, en.Origin, want[en.CIDR])
			}
		}
		if got := e.Send(agenttest.Addr(config[0]), 10); got != 0 {
			t.Errorf("%s: %d of 10 frames from the blocked %s delivered, want 0", when, got, config[0])
		}
	}
	check("before", first)

	// 60 new hosts beside the 63 entries: no room.
	e.WriteConfig("", cfg(hosts(8, 1, 60)))
	if r := e.CLI("reload"); r.Code == 0 || !strings.Contains(r.Stderr, "full") {
		t.Fatalf("reload of a list that does not fit: %s, want an error saying the map is full", r)
	}
	check("after the failed reload", first)

	// 10 hosts dropped, one new: fits.
	next := append(append([]string(nil), first[10:]...), "198.18.8.1")
	e.WriteConfig("", cfg(next))
	if r := e.CLI("reload"); r.Code != 0 {
		t.Fatalf("reload: %s", r)
	}
	check("after the next reload", next)
	if got := e.Send(agenttest.Addr(first[0]), 10); got != 10 {
		t.Errorf("%d of 10 frames from the dropped %s delivered, want 10", got, first[0])
	}
	e.WriteConfig("", cfg(first))
	if r := e.CLI("reload"); r.Code != 0 {
		t.Fatalf("reload back: %s", r)
	}
	check("after the reload back", first)
}

// TestReloadVerifiesLists writes into the agent's pinned block hosts map
// from this process, as another program would: a config entry the agent
// did not write, and the delete of one it wrote. A reload of a changed
// config writes only its change from the agent's image, so both stay, as
// they do after a reload in which only a list file changed (the config
// file as it was); a reload of the unchanged config reads the kernel's
// entries, repairs both and says so in the log.
func TestReloadVerifiesLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	block := []string{"198.18.7.1", "198.18.7.2", "198.18.7.3"}
	listFile := filepath.Join(e.Dir, "block.txt")
	if err := os.WriteFile(listFile, []byte("198.18.5.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.WriteConfig("", agenttest.Config{Block: block, BlockFiles: []string{listFile}})
	a := e.Start()
	m, err := ebpf.LoadPinnedMap(filepath.Join(loader.PinDir(e.PinRoot, e.TB.ServerIf), maps.MapBlockHosts4), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	stray := agenttest.Addr("198.18.6.6")
	if err := m.Put(stray.As4(), bpf.BulwarkListValue{ListId: desired.ListConfigBlock, Prefixlen: 32}); err != nil {
		t.Fatal(err)
	}
	gone := agenttest.Addr(block[0])
	if err := m.Delete(gone.As4()); err != nil {
		t.Fatal(err)
	}
	traffic := func(when string, strayBlocked bool) {
		t.Helper()
		want := 10
		if strayBlocked {
			want = 0
		}
		if got := e.Send(stray, 10); got != want {
			t.Errorf("%s: %d of 10 frames from %s delivered, want %d", when, got, stray, want)
		}
		if got := e.Send(gone, 10); got != 10-want {
			t.Errorf("%s: %d of 10 frames from %s delivered, want %d", when, got, gone, 10-want)
		}
	}
	traffic("after the other process's writes", true)

	// A changed reload writes its new host and repairs nothing.
	changed := func(what, added string) {
		t.Helper()
		if r := e.CLI("reload"); r.Code != 0 {
			t.Fatalf("reload of a changed %s: %s", what, r)
		}
		traffic("after a reload of a changed "+what, true)
		if got := e.Send(agenttest.Addr(added), 10); got != 0 {
			t.Errorf("%d of 10 frames from the newly blocked %s delivered, want 0", got, added)
		}
		if strings.Contains(a.LogText(), "another process wrote the maps") {
			t.Errorf("a reload of a changed %s says it repaired the lists:\n%s", what, a.LogText())
		}
	}
	e.WriteConfig("", agenttest.Config{Block: append(block, "198.18.7.9"), BlockFiles: []string{listFile}})
	changed("config", "198.18.7.9")
	if err := os.WriteFile(listFile, []byte("198.18.5.1\n198.18.5.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed("list file", "198.18.5.2")

	if r := e.CLI("reload"); r.Code != 0 {
		t.Fatalf("reload of the unchanged config: %s", r)
	}
	traffic("after a reload of the unchanged config", false)
	if !strings.Contains(a.LogText(), "another process wrote the maps") {
		t.Errorf("the reload of the unchanged config does not say it repaired the lists:\n%s", a.LogText())
	}
	if en, ok := agenttest.FindEntry(e.List("block"), block[0]+"/32"); !ok || en.Origin != "config" {
		t.Errorf("block list: %s is %+v (%v), want it from config", block[0], en, ok)
	}
}
