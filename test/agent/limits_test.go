package agent_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// limitCase is a limit of the config: config(n) is a config with n of the limited things.
type limitCase struct {
	name  string
	limit int
	want  string // the summary of the diagnostic past the limit
	cfg   func(e *env, n int) agenttest.Config
	edit  func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock)
}

// hosts returns n IPv4 host addresses of 198.18.128.0/17.
func hosts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.18.%d.%d", 128+i/250, 1+i%250)
	}
	return out
}

// quoted renders a list of strings as HCL.
func quoted(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// limitCases are the limits the agent enforces when it starts; each is owned by the maps or the loader.
var limitCases = []limitCase{{
	name: "rules", limit: maps.MaxRules, want: "Too many rules",
	edit: func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock) {
		var add []agenttest.NewBlock
		for i := range n {
			add = append(add, agenttest.NewBlock{In: []string{"limits"}, Type: "rule", Labels: []string{fmt.Sprintf("r%d", i)},
				Attrs: [][2]string{{"protocol", `"udp"`}, {"ports", fmt.Sprintf(`["%d"]`, 10000+i)}, {"pps", "1000"}}})
		}
		return nil, add
	},
}, {
	name: "list files", limit: desired.MaxListFiles, want: "Too many list files",
	edit: func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock) {
		files := make([]string, n)
		for i := range files {
			files[i] = filepath.Join(e.Dir, fmt.Sprintf("list-%d.txt", i))
			agenttest.WriteFile(e.T, files[i], fmt.Sprintf("198.18.%d.%d\n", 128+i/250, 1+i%250))
		}
		return []agenttest.Setting{{Block: []string{"block"}, Attr: "files", Value: quoted(files)}}, nil
	},
}, {
	name: "block feeds", limit: desired.MaxBlockFeeds, want: "Too many block feeds",
	edit: func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock) {
		path := filepath.Join(e.Dir, "feed.txt")
		agenttest.WriteFile(e.T, path, "198.18.70.0/24\n")
		var add []agenttest.NewBlock
		for i := range n {
			add = append(add, agenttest.NewBlock{Type: "feed", Labels: []string{fmt.Sprintf("f%d", i)},
				Attrs: [][2]string{{"path", fmt.Sprintf("%q", path)}, {"format", `"plain"`}, {"refresh", `"1h"`}}})
		}
		return nil, add
	},
}, {
	name: "allow hosts", limit: 8, want: "List map too small",
	cfg: func(e *env, n int) agenttest.Config {
		return agenttest.Config{Allow: hosts(n), Maps: agenttest.Sizes{AllowHosts: 8}}
	},
}, {
	name: "block prefixes", limit: 8, want: "List map too small",
	cfg: func(e *env, n int) agenttest.Config {
		var block []string
		for i := range n {
			block = append(block, fmt.Sprintf("198.18.%d.0/24", 100+i))
		}
		return agenttest.Config{Block: block, Maps: agenttest.Sizes{BlockPrefixes: 8}}
	},
}, {
	name: "class prefixes", limit: 4, want: "Class map too small",
	cfg: func(e *env, n int) agenttest.Config { return agenttest.Config{Maps: agenttest.Sizes{Classes: 4}} },
	edit: func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock) {
		var cidrs []string
		for i := range n {
			cidrs = append(cidrs, fmt.Sprintf("198.18.%d.0/24", 110+i))
		}
		return nil, []agenttest.NewBlock{{In: []string{"limits"}, Type: "class", Labels: []string{"c"},
			Attrs: [][2]string{{"cidrs", quoted(cidrs)}, {"multiplier", "2"}}}}
	},
}, {
	name: "max_verdicts", limit: agenttest.DefaultSizes.Verdicts, want: "Verdict map too small",
	edit: func(e *env, n int) ([]agenttest.Setting, []agenttest.NewBlock) {
		return []agenttest.Setting{{Block: []string{"reputation"}, Attr: "mode", Value: `"shadow"`},
			{Block: []string{"reputation"}, Attr: "max_verdicts", Value: fmt.Sprint(n)}}, nil
	},
}}

// TestLimitsCheckAndAgent writes, for each limit the agent enforces, a config at the limit and one past it: at
// the limit both `bulwark config check` and the agent accept it; past it both refuse it, with the same
// file:line:col diagnostic.
func TestLimitsCheckAndAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range limitCases {
		for _, n := range []int{c.limit, c.limit + 1} {
			what := fmt.Sprintf("%s: %d (limit %d)", c.name, n, c.limit)
			base := agenttest.Config{}
			if c.cfg != nil {
				base = c.cfg(e, n)
			}
			src := []byte(e.Render(base))
			if c.edit != nil {
				sets, add := c.edit(e, n)
				var err error
				if src, err = agenttest.Edit(src, sets, add, nil); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(e.Dir, strings.ReplaceAll(c.name, " ", "-")+fmt.Sprintf("-%d.hcl", n))
			agenttest.WriteFile(t, path, string(src))

			// The check runs outside the server namespace, where the interface is not: it skips that check only.
			r := agenttest.RunBin(t, "config", "check", "--skip-interfaces", path)
			diag := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(path) + `:\d+:\d+: ` + regexp.QuoteMeta(c.want))
			a := e.Spawn(path)
			if n == c.limit {
				if r.Code != 0 {
					t.Errorf("%s: config check %s, want it accepted", what, r)
				}
				e.WaitReady(a, func() bool { return e.CLI("status", "--json").Code == 0 })
				a.Kill()
				if out, err := agenttest.Exec(30*time.Second, "detach", "--interface", e.TB.ServerIf, "--pin-dir", e.PinRoot); err != nil || out.Code != 0 {
					t.Fatalf("%s: detach: %v %s", what, err, out)
				}
				continue
			}
			if r.Code != 1 || !diag.MatchString(r.Stderr) {
				t.Errorf("%s: config check %s, want exit 1 and a %s:line:col: %s diagnostic", what, r, path, c.want)
			}
			if !a.Wait(30 * time.Second) {
				t.Fatalf("%s: the agent runs; want it to refuse the config", what)
			}
			if a.ExitCode() == 0 || !diag.MatchString(a.LogText()) {
				t.Errorf("%s: agent exit %d, log:\n%s\nwant it refused with a %s:line:col: %s diagnostic", what, a.ExitCode(), a.LogText(), path, c.want)
			}
		}
	}
}
