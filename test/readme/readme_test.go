// Package readme_test keeps the README runnable: every `bulwark` command in
// its shell blocks parses (the binary's own parser, through --help), every
// hcl block is a valid config (`bulwark config check --offline`), and every
// relative link of the README and docs/ resolves, anchors included.
// test/runbook runs the README's first steps for real.
package readme_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/readmedoc"
)

const root = "../.."

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-readme-")) }

func readme(t *testing.T) string {
	t.Helper()
	text, err := readmedoc.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// bulwarkCommands are the bulwark commands of the README's shell blocks,
// each as its words after "bulwark" (a leading sudo dropped), with the line
// of its block.
func bulwarkCommands(t *testing.T, text string) (cmds [][]string, lines []int) {
	t.Helper()
	for _, b := range readmedoc.Blocks(text) {
		if b.Lang != "sh" {
			continue
		}
		for _, line := range readmedoc.Commands(b.Body) {
			for _, simple := range readmedoc.SimpleCommands(line) {
				w, err := readmedoc.Words(simple)
				if err != nil {
					t.Fatalf("README line %d: %v", b.Line, err)
				}
				if len(w) > 0 && w[0] == "sudo" {
					w = w[1:]
				}
				if len(w) > 0 && w[0] == "bulwark" {
					cmds, lines = append(cmds, w[1:]), append(lines, b.Line)
				}
			}
		}
	}
	return cmds, lines
}

// commandPath is the leading words of args that name the command (lower-case words before the first flag or
// argument), as the usage line names it.
func commandPath(args []string) []string {
	var path []string
	for _, a := range args {
		if !word.MatchString(a) {
			break
		}
		path = append(path, a)
	}
	return path
}

// fileArgs makes, under dir, an empty file for each argument that names a file (a path with a directory, or a
// config or capture file name), since the parser checks that some exist; it returns args with absolute paths moved
// under dir.
func fileArgs(t *testing.T, dir string, args []string) []string {
	t.Helper()
	out := append([]string(nil), args...)
	for i, a := range out {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if !strings.Contains(a, "/") && !fileName.MatchString(a) {
			continue
		}
		p := filepath.Join(dir, strings.TrimPrefix(a, "/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// TestCommandsParse runs every bulwark command of the README with --help
// added: the binary's parser must take its command path, flags and
// arguments (exit 0 with the usage of that command; an unknown command or
// flag exits 2).
func TestCommandsParse(t *testing.T) {
	cmds, lines := bulwarkCommands(t, readme(t))
	if len(cmds) < 20 {
		t.Fatalf("found %d bulwark commands in the README, want at least 20: is the extraction broken?", len(cmds))
	}
	dir := t.TempDir()
	for i, args := range cmds {
		path := commandPath(args)
		if len(path) == 0 {
			t.Errorf("README line %d: bulwark %s: no command", lines[i], strings.Join(args, " "))
			continue
		}
		r := agenttest.RunBin(t, append(fileArgs(t, dir, args), "--help")...)
		usage := "Usage: bulwark " + strings.Join(path, " ")
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, usage+" ") {
			t.Errorf("README block at line %d: bulwark %s: %s; want exit 0 and %q", lines[i], strings.Join(args, " "), r, usage)
		}
	}
}

// hasInterface reports whether a config's text declares an interface
// block: a whole config, not a fragment.
func hasInterface(t *testing.T, src string) bool {
	t.Helper()
	f, diags := hclwrite.ParseConfig([]byte(src), "snippet.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("snippet does not parse: %s\n%s", diags, src)
	}
	for _, b := range f.Body().Blocks() {
		if b.Type() == "interface" {
			return true
		}
	}
	return false
}

// merge adds a fragment's blocks and attributes to a whole config, as the
// README's recipes say: a block of a type the config already has (limits,
// allow, ...) with the same labels gets the fragment's body added to its own.
func merge(t *testing.T, base, fragment string) string {
	t.Helper()
	bf, diags := hclwrite.ParseConfig([]byte(base+"\n"), "base.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("base config: %s", diags)
	}
	ff, diags := hclwrite.ParseConfig([]byte(fragment), "fragment.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("fragment: %s\n%s", diags, fragment)
	}
	for name, attr := range ff.Body().Attributes() {
		bf.Body().SetAttributeRaw(name, attr.Expr().BuildTokens(nil))
	}
	for _, blk := range ff.Body().Blocks() {
		if into := bf.Body().FirstMatchingBlock(blk.Type(), blk.Labels()); into != nil {
			into.Body().AppendUnstructuredTokens(blk.Body().BuildTokens(nil))
			continue
		}
		bf.Body().AppendBlock(blk)
	}
	return string(bf.Bytes())
}

// TestConfigSnippets checks every hcl block of the README with `bulwark
// config check --offline`: a whole config (one with an interface block) as
// it is, a fragment merged into the README's first whole config.
func TestConfigSnippets(t *testing.T) {
	var base string
	var snippets []readmedoc.Block
	for _, b := range readmedoc.Blocks(readme(t)) {
		if b.Lang != "hcl" {
			continue
		}
		snippets = append(snippets, b)
		if base == "" && hasInterface(t, b.Body) {
			base = b.Body
		}
	}
	if base == "" || len(snippets) < 3 {
		t.Fatalf("the README has %d hcl blocks and whole config %v; want a first config and recipes", len(snippets), base != "")
	}
	dir := t.TempDir()
	for i, b := range snippets {
		src := b.Body
		if !hasInterface(t, src) {
			src = merge(t, base, src)
		}
		path := filepath.Join(dir, fmt.Sprintf("snippet-%d.hcl", i))
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		r := agenttest.RunBin(t, "config", "check", "--offline", path)
		if r.Code != 0 {
			t.Errorf("README hcl block at line %d: config check: %s\nchecked:\n%s", b.Line, r, src)
		}
	}
}

// TestMergeRefusesAnInvalidFragment shows that TestConfigSnippets can fail:
// a fragment with an unknown key or a rule that breaks the config is
// refused after the merge.
func TestMergeRefusesAnInvalidFragment(t *testing.T) {
	base := "interface \"eth0\" {}\nlimits {\n  default {\n    pps = 10\n  }\n}\n"
	dir := t.TempDir()
	for _, frag := range []string{
		"limits {\n  rule \"default\" {\n    protocol = \"tcp\"\n    pps = 5\n  }\n}\n", // a reserved rule name
		"limits {\n  default {\n    pps = 10\n  }\n}\n",                                 // a second default limit
		"mode = \"drop-all\"\n",
	} {
		path := filepath.Join(dir, "bad.hcl")
		if err := os.WriteFile(path, []byte(merge(t, base, frag)), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := agenttest.RunBin(t, "config", "check", "--offline", path); r.Code != 1 {
			t.Errorf("fragment %q merged: config check %s, want exit 1", frag, r)
		}
	}
}

var (
	link     = regexp.MustCompile(`\]\(([^)\s]+)\)`) // a Markdown link's target
	scheme   = regexp.MustCompile(`^[a-z]+:`)        // an absolute URL
	word     = regexp.MustCompile(`^[a-z]+$`)        // a word of a command path
	fileName = regexp.MustCompile(`\.(hcl|pcap|pcapng|json)$`)
)

// slug is GitHub's anchor for a heading title: lower case, punctuation
// other than "-" and "_" dropped, blanks made "-".
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, h := range readmedoc.Headings(string(b)) {
		out[slug(h)] = true
	}
	return out
}

// TestDocLinks checks every relative link of the README and docs/*.md:
// the file or directory exists in the repository, and an anchor names a
// heading of the Markdown file it points into.
func TestDocLinks(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, doc := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if scheme.MatchString(target) {
				continue // http(s), mailto: not checked offline
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			checked++
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", doc, target, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[anchor] {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", doc, target, path, anchor)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d links, want at least 10: is the extraction broken?", checked)
	}
}
