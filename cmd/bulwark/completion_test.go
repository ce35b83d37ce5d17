package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// commandPaths are the commands of the CLI, written out here (not taken from the generators): each must be in the
// scripts and the man page. modelPaths adds any command the parser has that this list lacks.
var commandPaths = []string{
	"run", "config", "config check", "status", "block", "block add", "block del", "block list",
	"allow", "allow add", "allow del", "allow list", "reload", "explain", "replay", "capture", "top",
	"verdicts", "verdicts list", "verdicts del", "detach", "version", "completion", "man", "preflight",
}

// modelPaths walks the parser's tree on its own: every visible command's path.
func modelPaths(t *testing.T) (*kong.Application, []string) {
	t.Helper()
	c := cli{Block: newListCmd("block"), Allow: newListCmd("allow")}
	k, err := newParser(&c)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n *kong.Node, prefix string)
	walk = func(n *kong.Node, prefix string) {
		for _, ch := range n.Children {
			if ch.Type == kong.CommandNode && !ch.Hidden {
				out = append(out, prefix+ch.Name)
				walk(ch, prefix+ch.Name+" ")
			}
		}
	}
	walk(k.Model.Node, "")
	for _, p := range commandPaths {
		found := false
		for _, q := range out {
			found = found || p == q
		}
		if !found {
			t.Errorf("the parser has no command %q", p)
		}
	}
	return k.Model, out
}

// generate runs a generator over the parser's model.
func generate(t *testing.T, app *kong.Application, gen func(io.Writer, []command) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := gen(&b, commands(app.Node)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestBashCompletion sources the bash script in bash and completes, for every command, a prefix of its name
// after its parent's words, and a flag of `run`; a file name after --config.
func TestBashCompletion(t *testing.T) {
	app, paths := modelPaths(t)
	script := generate(t, app, writeBash)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bulwark.hcl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var drive strings.Builder
	drive.WriteString(script + "\ncomplete_words() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _bulwark; echo \"${COMPREPLY[*]}\"; }\n")
	type want struct{ words, reply string }
	var wants []want
	for _, p := range paths {
		words := strings.Fields(p)
		last := words[len(words)-1]
		// The global flag and its value before the command do not count as command words.
		line := append([]string{"bulwark", "--socket", "/run/x.sock"}, words[:len(words)-1]...)
		line = append(line, last[:min(2, len(last))])
		wants = append(wants, want{strings.Join(line, " "), last})
	}
	wants = append(wants, want{"bulwark run --requ", "--require-persistent-pins"},
		want{"bulwark run --config " + dir + "/bulw", dir + "/bulwark.hcl"},
		want{"bulwark block add --ttl", "--ttl"})
	for _, w := range wants {
		fmt.Fprintf(&drive, "echo \"%s => $(complete_words %s)\"\n", w.words, w.words)
	}
	out, err := exec.Command("bash", "-c", drive.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		words, reply, _ := strings.Cut(line, " => ")
		got[words] = strings.Fields(reply)
	}
	for _, w := range wants {
		found := false
		for _, r := range got[w.words] {
			found = found || r == w.reply
		}
		if !found {
			t.Errorf("completing %q: %q, want it to offer %q", w.words, got[w.words], w.reply)
		}
	}
}

// TestZshFishCompletionAndMan checks that every command, and every flag of run, is in the zsh and fish scripts
// and the man page (zsh and fish are not installed here: they are not run).
func TestZshFishCompletionAndMan(t *testing.T) {
	app, paths := modelPaths(t)
	zsh := generate(t, app, writeZsh)
	fish := generate(t, app, writeFish)
	var man bytes.Buffer
	if err := writeMan(&man, app); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(zsh, "#compdef bulwark\n") {
		t.Errorf("the zsh script does not start with #compdef bulwark")
	}
	for _, p := range paths {
		words := strings.Fields(p)
		parent, name := strings.Join(words[:len(words)-1], " "), words[len(words)-1]
		// zsh: the parent's arm lists the name; fish: offered with the parent's path as condition.
		if !regexp.MustCompile(`(?m)^    "` + regexp.QuoteMeta(parent) + `"\) echo "([^"]* )?` + regexp.QuoteMeta(name) + `( [^"]*)?" ;;$`).MatchString(zsh) {
			t.Errorf("zsh: %q is not offered after %q", name, parent)
		}
		cond := fishQuote("test (__bulwark_path) = " + fishQuote(parent))
		if !strings.Contains(fish, "complete -c bulwark -n "+cond+" -a "+name+" -d ") {
			t.Errorf("fish: %q is not offered after %q", name, parent)
		}
		if !strings.Contains(man.String(), "\n.SS \"bulwark "+roff(p)) {
			t.Errorf("man: no section for bulwark %s", p)
		}
	}
	for _, f := range []string{"--config", "--require-persistent-pins"} {
		if !strings.Contains(zsh, `"run") echo "`) || !strings.Contains(zsh, f) {
			t.Errorf("zsh: run's %s missing", f)
		}
		if !strings.Contains(fish, "-l "+f[2:]) {
			t.Errorf("fish: run's %s missing", f)
		}
		if !strings.Contains(man.String(), `\fB\-\-`+roff(f[2:])+`\fR`) {
			t.Errorf("man: run's %s missing", f)
		}
	}
	// Every line of the page that starts with a dot is a macro the page uses (no text taken for a request).
	for _, line := range strings.Split(man.String(), "\n") {
		if strings.HasPrefix(line, ".") && !regexp.MustCompile(`^\.(TH|SH|SS|TP|PP|nf|fi|B)( |$)`).MatchString(line) {
			t.Errorf("man: line %q starts with a dot but is no macro of the page", line)
		}
	}
}

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		`a-b \n`:          `a\-b \en`,
		".start\n'quote":  "\\&.start\n\\&'quote",
		"mid.dle it's ok": "mid.dle it's ok",
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}
