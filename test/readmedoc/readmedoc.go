// Package readmedoc reads the README the way the tests that keep it
// runnable need it (test/readme, test/runbook): its fenced code blocks with
// the headings they sit under, the command lines of a shell block, the
// words of a command, and the placeholder table of the runbook.
package readmedoc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Block is one fenced code block.
type Block struct {
	Lang     string   // the fence's info string ("sh", "hcl", ...)
	Body     string   // the lines between the fences
	Line     int      // the line of the opening fence, from 1
	Headings []string // the titles of the headings it sits under, outermost (level 1) first
}

// Under reports whether one of the block's headings is title.
func (b Block) Under(title string) bool {
	for _, h := range b.Headings {
		if h == title {
			return true
		}
	}
	return false
}

// Read is the README of the repository at root.
func Read(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		return "", fmt.Errorf("read the README: %w", err)
	}
	return string(b), nil
}

// Blocks are the fenced code blocks of a Markdown text, in order. Headings
// are tracked outside the blocks only, so a "#" comment in a block is not
// one.
func Blocks(text string) []Block {
	var (
		blocks   []Block
		headings []string // index = level - 1
		cur      *Block
		body     []string
	)
	for i, line := range strings.Split(text, "\n") {
		if cur != nil {
			if strings.TrimSpace(line) == "```" {
				cur.Body = strings.Join(body, "\n")
				blocks = append(blocks, *cur)
				cur, body = nil, nil
				continue
			}
			body = append(body, line)
			continue
		}
		if lang, ok := strings.CutPrefix(line, "```"); ok {
			cur = &Block{Lang: strings.TrimSpace(lang), Line: i + 1, Headings: nonEmpty(headings)}
			continue
		}
		if level, title := heading(line); level > 0 {
			for len(headings) < level {
				headings = append(headings, "")
			}
			headings = append(headings[:level-1], title)
		}
	}
	return blocks
}

func nonEmpty(hs []string) []string {
	var out []string
	for _, h := range hs {
		if h != "" {
			out = append(out, h)
		}
	}
	return out
}

// heading is the level and title of an ATX heading line, or 0.
func heading(line string) (int, string) {
	level := len(line) - len(strings.TrimLeft(line, "#"))
	if level == 0 || level > 6 || !strings.HasPrefix(line[level:], " ") {
		return 0, ""
	}
	return level, strings.TrimSpace(line[level:])
}

// Headings are the titles of every heading of a Markdown text outside code
// blocks.
func Headings(text string) []string {
	var out []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if _, title := heading(line); title != "" && !fenced {
			out = append(out, title)
		}
	}
	return out
}

// Commands are the command lines of a shell block: blank lines and
// comment lines are left out, and a trailing comment (" # ..." outside
// quotes) is cut off.
func Commands(body string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(cutComment(line))
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// cutComment is line without a comment: a "#" at its start or after a
// blank, outside quotes.
func cutComment(line string) string {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// Words splits a simple command into its words as sh would: blanks
// separate words, single and double quotes group them (no expansions: the
// README's commands use none).
func Words(cmd string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
	)
	for _, r := range cmd {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, cmd)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// SimpleCommands splits a command line at the shell's list and pipe
// operators (&&, ||, ;, |) outside quotes.
func SimpleCommands(line string) []string {
	var (
		out   []string
		start int
		quote byte
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';' || c == '|' || c == '&':
			out = append(out, strings.TrimSpace(line[start:i]))
			if i+1 < len(line) && (line[i+1] == c) {
				i++
			}
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(line[start:]))
}

// Placeholders are the first column of the table that follows the line
// starting with "**Placeholders.**": the values the runbook's commands and
// configs use in place of the reader's own, without their backquotes.
func Placeholders(text string) ([]string, error) {
	_, after, ok := strings.Cut(text, "\n**Placeholders.**")
	if !ok {
		return nil, fmt.Errorf(`the README has no "**Placeholders.**" paragraph`)
	}
	var out []string
	inTable := false
	for _, line := range strings.Split(after, "\n")[1:] {
		switch {
		case strings.HasPrefix(line, "|"):
			inTable = true
			cell := strings.TrimSpace(strings.Split(line, "|")[1])
			if v, ok := strings.CutPrefix(cell, "`"); ok {
				out = append(out, strings.TrimSuffix(v, "`"))
			}
		case inTable:
			return out, nil
		}
	}
	return out, nil
}
