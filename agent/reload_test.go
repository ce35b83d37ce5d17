package agent

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// keysBase writes the base config of the key tests (agenttest.KeysBase on one interface) into a temporary
// directory and returns the directory, the variables for agenttest.Edit and the source.
func keysBase(t *testing.T) (string, map[string]string, []byte) {
	t.Helper()
	dir := t.TempDir()
	mmdb, err := filepath.Abs(filepath.Join("..", "test", "testdata", "mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"$DIR": dir, "$MMDB": mmdb}
	src, err := agenttest.Edit([]byte("interface \"eth0\" {\n}\n"), agenttest.KeysBase, nil, vars)
	if err != nil {
		t.Fatal(err)
	}
	return dir, vars, src
}

// parseKeys parses src as a config in dir, offline (eth0 need not exist), with no diagnostic at all.
func parseKeys(t *testing.T, dir string, src []byte) *config.Config {
	t.Helper()
	cfg, diags := config.ParseWithOptions(filepath.Join(dir, "bulwark.hcl"), src, config.Options{Offline: true})
	if len(diags) > 0 {
		t.Fatalf("config:\n%s\n%s", src, config.FormatDiagnostics(diags))
	}
	return cfg
}

// TestReloadEveryKey walks every key of the config schema: its change in agenttest.KeyChanges changes that key
// only (config.Changed), the reload table classifies it, and the classification is the one the issue asks for
// (KeyChange.Restart): refused with "restart needed: <key>", or taken. A key added to the schema without an entry
// in both tables fails here; test/agent runs the same changes against the real agent.
func TestReloadEveryKey(t *testing.T) {
	keys := config.Keys()
	if len(keys) < 60 {
		t.Fatalf("config.Keys() found %d keys, fewer than the schema has", len(keys))
	}
	for k := range reloadKeys {
		if !slices.Contains(keys, k) {
			t.Errorf("reloadKeys lists %q, which is not a config key", k)
		}
	}
	dir, vars, baseSrc := keysBase(t)
	base := parseKeys(t, dir, baseSrc)
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			how, ok := reloadKeys[key]
			if !ok {
				t.Fatalf("no entry in reloadKeys: say whether a reload applies %s or refuses it", key)
			}
			kc, ok := agenttest.KeyChanges[key]
			if !ok {
				t.Fatalf("no entry in agenttest.KeyChanges: give a change of %s", key)
			}
			if err := agenttest.WriteKeyFiles(dir, vars["$MMDB"], kc.Files); err != nil {
				t.Fatal(err)
			}
			src, err := agenttest.Edit(baseSrc, kc.Set, kc.Add, vars)
			if err != nil {
				t.Fatal(err)
			}
			cfg := parseKeys(t, dir, src)
			if got := config.Changed(base, cfg); !slices.Equal(got, []string{key}) {
				t.Fatalf("the change of %s changes %v, want just [%s]", key, got, key)
			}
			if (how == reloadRestart) != kc.Restart {
				t.Errorf("reloadKeys: %s needs a restart: %v; the issue wants %v", key, how == reloadRestart, kc.Restart)
			}
			err = restartNeeded(base, cfg)
			switch {
			case kc.Restart && (err == nil || !strings.Contains(err.Error(), "restart needed: "+key)):
				t.Errorf("reload changing %s: %v, want \"restart needed: %s\"", key, err, key)
			case !kc.Restart && err != nil:
				t.Errorf("reload changing %s: %v, want it taken", key, err)
			}
			// Back to the base: nothing changed.
			if got := config.Changed(base, parseKeys(t, dir, baseSrc)); len(got) != 0 {
				t.Fatalf("the base config against itself changes %v", got)
			}
		})
	}
}

// TestRestartNeededNamesEveryKey changes two keys that need a restart and a live one: all restart keys are named.
func TestRestartNeededNamesEveryKey(t *testing.T) {
	dir, vars, baseSrc := keysBase(t)
	base := parseKeys(t, dir, baseSrc)
	var sets []agenttest.Setting
	for _, k := range []string{"maps.sources", "mode", "pin_dir"} {
		sets = append(sets, agenttest.KeyChanges[k].Set...)
	}
	src, err := agenttest.Edit(baseSrc, sets, nil, vars)
	if err != nil {
		t.Fatal(err)
	}
	err = restartNeeded(base, parseKeys(t, dir, src))
	const want = "restart needed: pin_dir, maps.sources (a reload cannot apply it; the running config is kept)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// TestRestartNeededSameSizes: a map size set to its default where it was unset (or back) leaves the maps as they
// are, so a reload takes it; another size still needs a restart.
func TestRestartNeededSameSizes(t *testing.T) {
	dir := t.TempDir()
	unset := parseKeys(t, dir, []byte("interface \"eth0\" {}\n"))
	def := parseKeys(t, dir, []byte("interface \"eth0\" {}\nmaps { verdicts = 131072 }\n"))
	other := parseKeys(t, dir, []byte("interface \"eth0\" {}\nmaps { verdicts = 4096 }\n"))
	if desired.Sizes(unset).Verdicts != 131072 {
		t.Fatalf("default verdicts %d; the configs above assume 131072", desired.Sizes(unset).Verdicts)
	}
	for _, c := range [][2]*config.Config{{unset, def}, {def, unset}} {
		if err := restartNeeded(c[0], c[1]); err != nil {
			t.Errorf("verdicts unset <-> its default: %v", err)
		}
	}
	if err := restartNeeded(def, other); err == nil || !strings.Contains(err.Error(), "restart needed: maps.verdicts") {
		t.Errorf("verdicts 131072 -> 4096: %v, want restart needed: maps.verdicts", err)
	}
}
