// Package deps_test checks that scripts/deps.sh installs every program that
// the repository's code, tests and scripts run: it scans the Go files (with
// go/ast: os/exec calls, helpers that pass their arguments to os/exec, and
// wrappers such as `ip netns exec NS prog`), the shell scripts, .ci/run and
// the Makefile for the programs they run, and fails on one that deps.sh
// does not check for (`command -v PROG ... need+=(PACKAGE)`) or does not
// name in its header comment, unless baseSystem below lists it.
package deps_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// baseSystem are the programs that need no install step, each with why:
// they come with every Debian 12 system (packages that are Essential or of
// priority required, so in every debootstrap and container image), with
// the Go toolchain the README starts from, or they are optional with a
// fallback. A program not here must be installed by scripts/deps.sh.
var baseSystem = map[string]string{}

func init() {
	for why, progs := range map[string]string{
		"bash (Essential)": "bash sh",
		"dash (Essential)": "dash",
		"coreutils (Essential)": `basename cat chmod chown cp cut date dd dirname du echo env false head id install
			ln ls mkdir mktemp mv nproc paste printf pwd readlink realpath rm rmdir seq sleep sort stat stdbuf tail tee
			test timeout touch tr true uname uniq wc yes nice`,
		"grep (Essential)":                    "grep egrep",
		"sed (Essential)":                     "sed",
		"findutils (Essential)":               "find xargs",
		"diffutils (Essential)":               "diff cmp",
		"gzip (Essential)":                    "gzip",
		"dpkg (Essential)":                    "dpkg dpkg-query dpkg-deb",
		"util-linux (Essential in Debian 12)": "nsenter unshare setpriv taskset chrt flock",
		"mount (required)":                    "mount umount",
		"mawk (required; awk)":                "awk mawk",
		"apt (required)":                      "apt-get",
		"the Go toolchain, the README's prerequisite (go, gofmt; `go tool` runs bpf2go and staticcheck)": "go gofmt",
		"this project's own binary (make build; scripts/install.sh installs it)":                         "bulwark",
		"optional: the Makefile falls back to `uname -m` for the multiarch include path":                 "gcc",
	} {
		for _, p := range strings.Fields(progs) {
			baseSystem[p] = why
		}
	}
}

// repoRoot is the repository's top directory (this package is test/deps).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "deps.sh")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

var (
	commandV   = regexp.MustCompile(`command -v ([A-Za-z0-9_.+-]+)[^|]*\|\|\s*need\+=\(([a-z0-9.+-]+)\)`)
	headerLine = regexp.MustCompile(`^#(?:$| )`)
)

// depsCoverage reads a deps.sh: the programs it checks for, each with its
// package, and its header comment (the comment lines after the #! line).
func depsCoverage(text string) (map[string]string, string) {
	cover := map[string]string{}
	for _, m := range commandV.FindAllStringSubmatch(text, -1) {
		cover[m[1]] = m[2]
	}
	var header strings.Builder
	for i, line := range strings.Split(text, "\n") {
		if i == 0 && strings.HasPrefix(line, "#!") {
			continue
		}
		if !headerLine.MatchString(line) {
			break
		}
		header.WriteString(line + "\n")
	}
	return cover, header.String()
}

// scanRepo returns every program that the Go files, shell scripts
// (*.sh and .ci/run) and the Makefile under root run.
func scanRepo(root string) ([]use, error) {
	uses, err := scanGo(root, "github.com/bulwark-filter/bulwark")
	if err != nil {
		return nil, err
	}
	scripts, err := repoFiles(root, func(name string) bool { return strings.HasSuffix(name, ".sh") || name == "Makefile" })
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, ".ci", "run")); err == nil {
		scripts = append(scripts, filepath.Join(root, ".ci", "run"))
	}
	for _, p := range scripts {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		text := string(b)
		if filepath.Base(p) == "Makefile" {
			text = makefileShell(text)
		}
		rel, _ := filepath.Rel(root, p)
		for _, prog := range scanShell(text) {
			uses = append(uses, use{prog, rel})
		}
	}
	return uses, nil
}

// uncovered lists the uses of programs that neither cover (deps.sh) nor
// baseSystem accounts for, and the programs of cover that header does not
// name.
func uncovered(uses []use, cover map[string]string, header string) []string {
	var bad []string
	seen := map[string]bool{}
	for _, u := range uses {
		if _, ok := cover[u.Program]; ok || baseSystem[u.Program] != "" || seen[u.Program] {
			continue
		}
		seen[u.Program] = true
		bad = append(bad, fmt.Sprintf("%s (run at %s) is not installed by scripts/deps.sh", u.Program, u.Where))
	}
	for prog := range cover {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(prog) + `\b`).MatchString(header) {
			bad = append(bad, fmt.Sprintf("scripts/deps.sh installs %s but its header comment does not name it", prog))
		}
	}
	sort.Strings(bad)
	return bad
}

// TestDepsCoverEveryProgram: every program that the repository runs is
// installed by scripts/deps.sh and named in its header, or is part of every
// Debian 12 system (baseSystem).
func TestDepsCoverEveryProgram(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "scripts", "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cover, header := depsCoverage(string(b))
	if len(cover) < 5 {
		t.Fatalf("scripts/deps.sh: only %d `command -v PROG ... || need+=(PKG)` checks found: %v", len(cover), cover)
	}
	uses, err := scanRepo(root)
	if err != nil {
		t.Fatal(err)
	}
	// The scan must see what is known to be run; else it sees nothing.
	var progs []string
	for _, u := range uses {
		progs = append(progs, u.Program)
	}
	for _, want := range []string{"ip", "sysctl", "ethtool", "nft", "nsenter", "tmux", "systemd-analyze", "setpriv", "git", "make"} {
		if !slices.Contains(progs, want) {
			t.Errorf("the scan did not find %s, which the repository runs", want)
		}
	}
	for _, msg := range uncovered(uses, cover, header) {
		t.Error(msg)
	}
}

// TestScannerFixture runs the scanner over testdata/fixture, whose Go file
// and scripts run known programs in each of the ways the scanner follows,
// and checks that a program added without a deps.sh check is reported.
func TestScannerFixture(t *testing.T) {
	dir := filepath.Join("testdata", "fixture")
	uses, err := scanRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, u := range uses {
		got[u.Program] = append(got[u.Program], u.Where)
	}
	want := map[string]string{
		"foo":        "exec.Command(\"foo\")",
		"ctxprog":    "exec.CommandContext(ctx, \"ctxprog\", ...)",
		"lookprog":   "exec.LookPath",
		"constprog":  "a constant",
		"ip":         "the ip helper",
		"innerprog":  "ip netns exec NS innerprog through the ip helper",
		"helperprog": "a run(args ...string) helper",
		"twoprog":    "a run2(t, name, args...) helper",
		"pkgprog":    "a helper of another package",
		"nsprog":     "nsenter --net=... nsprog",
		"unshare":    "exec.Command(\"unshare\", ...)",
		"scriptprog": "sh -c SCRIPT",
		"timedprog":  "timeout 5 timedprog",
		"shprog":     "a command word in a .sh",
		"pipeprog":   "after a pipe",
		"subprog":    "$(subprog) in double quotes",
		"procprog":   "<(procprog)",
		"makeprog":   "a Makefile recipe",
		"shellprog":  "$(shell shellprog) in a Makefile",
		"ciprog":     "$$(ciprog) in a Makefile recipe",
		"genprog":    "a go:generate line",
	}
	for p, how := range want {
		if len(got[p]) == 0 {
			t.Errorf("%s (%s) not found", p, how)
		}
	}
	// Words that are no programs: variables, builtins, functions, paths
	// of the repository, array elements, redirection targets, heredoc
	// bodies, options and arguments.
	for _, p := range []string{"notaprog", "myfunc", "need", "arrayword", "heredocword", "dev", "null",
		"echo", "cd", "local", "read", "scripts", "bin", "private", "netns", "exec", "command", "argword"} {
		if len(got[p]) != 0 {
			t.Errorf("%s reported as a program at %v", p, got[p])
		}
	}
	if t.Failed() {
		t.Logf("found: %v", got)
	}

	// Covered by the fixture's deps.sh and base programs: only foo (the
	// exec.Command("foo") without a deps.sh check) is reported, and the
	// program that deps.sh checks but its header does not name.
	b, err := os.ReadFile(filepath.Join(dir, "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cover, header := depsCoverage(string(b))
	bad := uncovered(uses, cover, header)
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "foo (run at main.go:") ||
		bad[1] != "scripts/deps.sh installs unnamedprog but its header comment does not name it" {
		t.Errorf("uncovered = %q, want foo from main.go and unnamedprog", bad)
	}
}
