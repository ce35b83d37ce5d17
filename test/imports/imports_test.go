// Package imports holds the test of the import rules between Bulwark's
// packages (issue 11): the layering bpf -> maps -> loader -> agent -> cmd,
// a config package and a wire package that link nothing of the daemon, and
// a CLI that reaches the daemon only to run it.
package imports

import (
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/bulwark-filter/bulwark"

// rule says which of the module's packages pkg may import (paths relative
// to the module) and, if external is not nil, which packages from outside
// the module and the standard library.
type rule struct {
	pkg      string
	allowed  []string
	external []string // if not nil: the only non-standard imports allowed (prefixes)
	why      string
}

// rules are the import rules; every package they name must exist.
var rules = []rule{
	{pkg: "bpf", why: "the generated datapath is the bottom layer"},
	{pkg: "maps", allowed: []string{"bpf"}, why: "maps wraps the datapath's maps and nothing above it"},
	{pkg: "loader", allowed: []string{"bpf", "maps"}, why: "the loader imports no agent package"},
	{pkg: "loader/preflight", allowed: []string{"bpf", "maps", "loader"},
		why: "preflight checks kernel and interface facts; it imports no agent package"},
	{pkg: "agent/api", external: []string{"github.com/google/gopacket"},
		why: "the wire package: the CLI and remote tools link nothing of the daemon (no cilium/ebpf)"},
	{pkg: "agent/listset", external: []string{}, why: "the lists' compact keys are a leaf: the config's parser holds them"},
	{pkg: "agent/config", allowed: []string{"agent/listset"}, why: "the config's parser links nothing of the datapath"},
	{pkg: "agent/importfmt", allowed: []string{"agent/feeds"}, external: []string{},
		why: "the import formats' parsers link nothing of the daemon: the CLI reads the files"},
	{pkg: "agent/replay", allowed: []string{"agent/config", "agent/desired", "agent/feeds", "agent/geoip", "agent/listset", "agent/reputation",
		"agent/sigdetect", "bpf/model", "loader", "maps"}, why: "replay builds its own datapath: it imports no daemon (package agent)"},
	{pkg: "cmd/bulwark", allowed: []string{
		"agent",        // bulwark run (and the version the build stamps)
		"agent/api",    // every command that talks to the agent
		"agent/config", // bulwark config check, the default socket path
		// bulwark config check compiles the config as the agent does; the
		// config's map sizes, for preflight (one owner: desired.Sizes)
		"agent/desired",
		"agent/importfmt", // bulwark block import reads the files
		"agent/replay",    // bulwark replay runs in-process
		"loader",          // bulwark detach works with no agent running
		// bulwark preflight, and bulwark run's checks at start
		"loader/preflight",
	}, why: "the CLI reaches the daemon only to run it; everything else goes through agent/api"},
}

// exception is an import that breaks a rule today and is to go.
type exception struct{ pkg, imp, todo string }

// exceptions must each still happen (a stale one fails the test). There
// are none today: add one only with a TODO naming the issue that removes it.
var exceptions []exception

// check returns the broken rules of graph (package -> its imports, the
// module's packages relative to the module, others as they are), less the
// exceptions.
func check(graph map[string][]string, rules []rule, exceptions []exception) []string {
	var out []string
	for _, r := range rules {
		imps, ok := graph[r.pkg]
		if !ok {
			out = append(out, fmt.Sprintf("rule for %s: no such package", r.pkg))
			continue
		}
		for _, imp := range imps {
			if slices.ContainsFunc(exceptions, func(e exception) bool { return e.pkg == r.pkg && e.imp == imp }) {
				continue
			}
			if _, ours := graph[imp]; ours {
				if !slices.Contains(r.allowed, imp) {
					out = append(out, fmt.Sprintf("%s imports %s: %s", r.pkg, imp, r.why))
				}
				continue
			}
			if r.external != nil && !standard(imp) && !slices.ContainsFunc(r.external, func(p string) bool {
				return imp == p || strings.HasPrefix(imp, p+"/")
			}) {
				out = append(out, fmt.Sprintf("%s imports %s: %s", r.pkg, imp, r.why))
			}
		}
	}
	for _, e := range exceptions {
		if !slices.Contains(graph[e.pkg], e.imp) {
			out = append(out, fmt.Sprintf("exception %s -> %s (%s) no longer happens: remove it", e.pkg, e.imp, e.todo))
		}
	}
	for pkg, imps := range graph {
		for _, imp := range imps {
			if strings.HasPrefix(imp, "cmd/") {
				out = append(out, fmt.Sprintf("%s imports %s: nothing imports a command", pkg, imp))
			}
			if strings.HasPrefix(imp, "test/") && !strings.HasPrefix(pkg, "test/") {
				out = append(out, fmt.Sprintf("%s imports %s: only tests import test/", pkg, imp))
			}
		}
	}
	sort.Strings(out)
	return out
}

// standard reports a standard library import path (no dot in its first
// element).
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// moduleGraph reads the non-test imports of every package of the module
// under root, as go build sees them on this platform.
func moduleGraph(t *testing.T, root string) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		var imps []string
		for _, imp := range pkg.Imports {
			imps = append(imps, strings.TrimPrefix(imp, module+"/"))
		}
		graph[filepath.ToSlash(rel)] = imps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	graph := moduleGraph(t, root)
	// The walk must have seen the module: each layer and some of its tests.
	for _, p := range []string{"bpf", "maps", "loader", "agent", "agent/api", "agent/config", "cmd/bulwark", "test/agenttest"} {
		if _, ok := graph[p]; !ok {
			t.Fatalf("package %s not found; walked %d packages", p, len(graph))
		}
	}
	for _, v := range check(graph, rules, exceptions) {
		t.Error(v)
	}
}

// TestRulesCatchViolations runs the rules over a synthetic module: the
// allowed graph passes, and each forbidden import added to it is reported.
func TestRulesCatchViolations(t *testing.T) {
	clean := func() map[string][]string {
		return map[string][]string{
			"bpf":          {"github.com/cilium/ebpf"},
			"maps":         {"bpf", "net/netip"},
			"loader":       {"bpf", "maps"},
			"agent/api":    {"net/http", "github.com/google/gopacket/pcapgo"},
			"agent/config": {"github.com/hashicorp/hcl/v2", "agent/listset"},
			"agent/geoip":  {},
			"agent/feeds":  {"agent/config"},
			"agent":        {"agent/api", "agent/config", "loader", "maps"},
			"agent/replay": {"loader", "agent/config"},
			"cmd/bulwark":  {"agent", "agent/api", "agent/config", "agent/replay", "loader"},
			"test/util":    {"agent/api"},
			"test/agent":   {"test/util", "agent/api"},

			"loader/preflight": {"bpf", "loader"},
			"agent/importfmt":  {"agent/feeds"},
			"agent/listset":    {"net/netip"},
		}
	}
	if got := check(clean(), rules, nil); got != nil {
		t.Fatalf("clean graph: %q", got)
	}
	for _, c := range []struct{ pkg, imp, want string }{
		{"agent/config", "loader", "agent/config imports loader"},
		{"agent/config", "agent/geoip", "agent/config imports agent/geoip"},
		{"agent/listset", "maps", "agent/listset imports maps"},
		{"agent/listset", "github.com/cilium/ebpf", "agent/listset imports github.com/cilium/ebpf"},
		{"maps", "loader", "maps imports loader"},
		{"maps", "agent", "maps imports agent"},
		{"bpf", "maps", "bpf imports maps"},
		{"loader", "agent/config", "loader imports agent/config"},
		{"loader/preflight", "agent/config", "loader/preflight imports agent/config"},
		{"agent/api", "maps", "agent/api imports maps"},
		{"agent/api", "github.com/cilium/ebpf", "agent/api imports github.com/cilium/ebpf"},
		{"cmd/bulwark", "agent/recorder", "cmd/bulwark imports agent/recorder"},
		{"cmd/bulwark", "maps", "cmd/bulwark imports maps"},
		{"agent", "test/util", "agent imports test/util"},
		{"agent", "cmd/bulwark", "agent imports cmd/bulwark"},
	} {
		g := clean()
		if _, ok := g[c.imp]; !ok && !strings.Contains(c.imp, ".") {
			g[c.imp] = nil
		}
		g[c.pkg] = append(g[c.pkg], c.imp)
		got := check(g, rules, nil)
		if len(got) != 1 || !strings.HasPrefix(got[0], c.want+":") {
			t.Errorf("%s -> %s: got %q, want one %q", c.pkg, c.imp, got, c.want)
		}
	}
	// An exception excuses its import, and fails once the import is gone.
	g := clean()
	g["agent/config"] = append(g["agent/config"], "loader")
	ex := []exception{{"agent/config", "loader", "TODO"}}
	if got := check(g, rules, ex); got != nil {
		t.Errorf("excepted import reported: %q", got)
	}
	if got := check(clean(), rules, ex); len(got) != 1 || !strings.Contains(got[0], "no longer happens") {
		t.Errorf("stale exception: %q", got)
	}
	// A rule for a package that is gone is reported, not passed.
	g = clean()
	delete(g, "loader")
	if got := check(g, rules, nil); len(got) != 1 || !strings.Contains(got[0], "rule for loader: no such package") {
		t.Errorf("missing package: %q", got)
	}
}
