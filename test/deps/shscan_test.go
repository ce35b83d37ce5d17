package deps_test

import (
	"path/filepath"
	"regexp"
	"strings"
)

// optsWithValue are, for each program that runs another one, its options
// that take the next word as their value.
var optsWithValue = map[string][]string{
	"nsenter": {"-t", "--target", "-S", "--setuid", "-G", "--setgid", "-w", "--wd"},
	"unshare": {"--propagation", "--setgroups", "--map-user", "--map-group", "-S", "--setuid", "-G", "--setgid", "-R", "--root", "-w", "--wd"},
	"setpriv": {"--reuid", "--regid", "--groups", "--inh-caps", "--bounding-set"},
	"timeout": {"-s", "--signal", "-k", "--kill-after"},
	"nice":    {"-n", "--adjustment"},
	"xargs":   {"-I", "-n", "-P", "-d", "-a", "-L", "-s", "-E"},
	"env":     {"-u", "--unset", "-C", "--chdir"},
	"exec":    {"-a"},
	"stdbuf":  {},
	"sudo":    {"-u", "-g"},
	"chrt":    {},
	"taskset": {},
}

// programsIn is the programs that the command line argv runs: its first
// word (a name, or the base name of an absolute path; a relative path is a
// file of the repository and needs no package), and the program that a
// wrapper in optsWithValue, `ip netns exec NS`, or `sh -c SCRIPT` runs.
func programsIn(argv []arg) []string {
	if len(argv) == 0 || !argv[0].known || argv[0].val == "" {
		return nil
	}
	name := argv[0].val
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return nil
		}
		name = filepath.Base(name)
	}
	out := []string{name}
	rest := argv[1:]
	switch name {
	case "ip":
		for i := 0; i+3 < len(rest); i++ {
			if rest[i].val == "netns" && rest[i+1].val == "exec" {
				return append(out, programsIn(rest[i+3:])...)
			}
		}
	case "sh", "bash":
		for i := 0; i+1 < len(rest); i++ {
			if rest[i].val == "-c" {
				if rest[i+1].known {
					out = append(out, scanShell(rest[i+1].val)...)
				}
				break
			}
		}
	case "command":
		for _, a := range rest {
			if a.val == "-v" || a.val == "-V" {
				return nil // a look-up, not a run
			}
		}
		return programsIn(rest)
	default:
		valued, ok := optsWithValue[name]
		if !ok {
			break
		}
		i := 0
		for i < len(rest) && strings.HasPrefix(rest[i].prefix, "-") {
			o := rest[i].val
			i++
			for _, v := range valued {
				if o == v && rest[i-1].known {
					i++ // its value
				}
			}
		}
		if name == "env" {
			for i < len(rest) && rest[i].known && strings.Contains(rest[i].val, "=") {
				i++
			}
		}
		if name == "timeout" || name == "chrt" || name == "taskset" {
			i++ // the duration, priority or mask
		}
		if i < len(rest) {
			out = append(out, programsIn(rest[i:])...)
		}
		if name == "exec" || name == "command" {
			out = out[1:] // builtins
		}
	}
	return out
}

// shellBuiltins are shell builtins and keywords that may stand where a
// command does; nothing needs to install them.
var shellBuiltins = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`: . [ [[ ]] { } ! alias bg break builtin case cd continue declare do done echo elif
		else esac eval exit export false fg fi for function getopts hash if in jobs kill let local mapfile printf
		pushd popd pwd read readarray readonly return select set shift source test then time trap true type
		typeset ulimit umask unalias unset until wait while`) {
		shellBuiltins[w] = true
	}
}

var (
	assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=`)
	funcDef    = regexp.MustCompile(`(?m)^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)`)
)

// scanShell returns the programs that a shell script runs: the command word
// of every simple command (after ; & | && || ( { ! then do else and the
// like, inside $(...), `...` and <(...) too, through the wrappers of
// programsIn), less builtins, keywords, the script's own functions and
// words that are not plain names (variables, paths of the repository). It
// is a reasonable reading of the scripts of this repository, not a full
// shell parser: heredoc bodies, case patterns and arithmetic are skipped.
func scanShell(script string) []string {
	funcs := map[string]bool{}
	for _, m := range funcDef.FindAllStringSubmatch(script, -1) {
		funcs[m[1]] = true
	}
	var out []string
	for _, cmd := range shellCommands(script) {
		for len(cmd) > 0 && cmd[0].known && (assignment.MatchString(cmd[0].val) || shellKeyword(cmd[0].val)) {
			cmd = cmd[1:]
		}
		if len(cmd) == 0 || !cmd[0].known {
			continue
		}
		w := cmd[0].val
		switch {
		case w == "for" || w == "case" || w == "select" || w == "[[" || w == "function":
			continue
		case funcs[w]:
			continue
		case w == "exec" || w == "command" || w == "time":
			out = append(out, filterBuiltins(programsIn(cmd), funcs)...)
			continue
		case shellBuiltins[w]:
			continue
		}
		out = append(out, filterBuiltins(programsIn(cmd), funcs)...)
	}
	return out
}

func shellKeyword(w string) bool {
	switch w {
	case "if", "then", "elif", "else", "do", "while", "until", "!", "{", "fi", "done", "}", "esac":
		return true
	}
	return false
}

func filterBuiltins(ps []string, funcs map[string]bool) []string {
	var out []string
	for _, p := range ps {
		if !shellBuiltins[p] && !funcs[p] {
			out = append(out, p)
		}
	}
	return out
}

// shellCommands splits a script into simple commands, each a list of words
// (known when the word has no expansion in it). Command substitutions are
// split out as commands of their own.
func shellCommands(s string) [][]arg {
	var (
		cmds     [][]arg
		cur      []arg
		word     strings.Builder
		inWord   bool
		plain    = true // the word has no expansion
		heredoc  []string
		skipTo   = ""    // a keyword to skip words up to (for ... do; case ... esac)
		redirect = false // the next word is a redirection's target
	)
	endWord := func() {
		if inWord && redirect {
			inWord, redirect = false, false // a redirection's target
		}
		if inWord {
			w := arg{val: word.String(), known: plain}
			w.prefix = w.val
			if !plain {
				w.val = ""
			}
			switch {
			case skipTo != "" && w.val == skipTo:
				skipTo = ""
			case skipTo != "":
			case len(cur) == 0 && (w.val == "for" || w.val == "select"):
				skipTo = "do"
			case len(cur) == 0 && w.val == "case":
				skipTo = "esac"
			default:
				cur = append(cur, w)
			}
		}
		word.Reset()
		inWord, plain = false, true
	}
	endCmd := func() {
		endWord()
		if len(cur) > 0 {
			cmds = append(cmds, cur)
		}
		cur = nil
		redirect = false
	}
	// sub scans the inside of a substitution that starts at s[i] (after its
	// opening) up to the matching close, and returns the index after it.
	sub := func(i int, open, close byte) int {
		depth, j := 1, i
		for ; j < len(s) && depth > 0; j++ {
			switch s[j] {
			case '\\':
				j++
			case '\'':
				if k := strings.IndexByte(s[j+1:], '\''); k >= 0 {
					j += k + 1
				}
			case close:
				depth--
			case open:
				depth++
			}
		}
		if j > i {
			cmds = append(cmds, shellCommands(s[i:max(i, j-1)])...)
		}
		return j
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if s[i+1] != '\n' {
				word.WriteByte(s[i+1])
				inWord = true
			}
			i++
		case c == '\'':
			k := strings.IndexByte(s[i+1:], '\'')
			if k < 0 {
				k = len(s) - i - 1
			}
			word.WriteString(s[i+1 : i+1+k])
			inWord = true
			i += k + 1
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s):
					i++
					word.WriteByte(s[i])
				case strings.HasPrefix(s[i:], "$(("):
					plain = false
					i = skipParens(s, i+1)
				case strings.HasPrefix(s[i:], "${"):
					plain = false
					if k := strings.IndexByte(s[i:], '}'); k >= 0 {
						i += k
					}
				case s[i] == '$' && i+1 < len(s) && s[i+1] == '(':
					plain = false
					i = sub(i+2, '(', ')') - 1
				case s[i] == '`':
					plain = false
					i = sub(i+1, '`', '`') - 1
				case s[i] == '$':
					plain = false
				default:
					word.WriteByte(s[i])
				}
			}
		case c == '$' && strings.HasPrefix(s[i:], "$(("):
			plain, inWord = false, true
			i = skipParens(s, i+1) // arithmetic: no commands
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			plain, inWord = false, true
			i = sub(i+2, '(', ')') - 1
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			plain, inWord = false, true
			if k := strings.IndexByte(s[i:], '}'); k >= 0 {
				i += k
			}
		case c == '$':
			plain, inWord = false, true
		case c == '`':
			plain, inWord = false, true
			i = sub(i+1, '`', '`') - 1
		case (c == '<' || c == '>') && i+1 < len(s) && s[i+1] == '(':
			redirect = false
			endWord()
			i = sub(i+2, '(', ')') - 1
		case c == '<' || c == '>':
			// A redirection: digits before it belong to it, and so do
			// its target word (here strings and heredoc delimiters too).
			if inWord && strings.Trim(word.String(), "0123456789") == "" {
				word.Reset()
				inWord = false
			}
			endWord()
			j := i
			for j+1 < len(s) && strings.IndexByte("<>&|-", s[j+1]) >= 0 {
				j++
			}
			op := s[i : j+1]
			i = j
			if strings.HasPrefix(op, "<<") && !strings.HasPrefix(op, "<<<") {
				rest := strings.TrimLeft(s[i+1:], " \t")
				end := strings.IndexAny(rest, " \t\n;|&")
				if end < 0 {
					end = len(rest)
				}
				heredoc = append(heredoc, strings.Trim(rest[:end], `'"`))
			}
			redirect = !strings.HasSuffix(op, "&") || i+1 < len(s) && s[i+1] != ' '
		case c == '#' && !inWord:
			for i < len(s) && s[i] != '\n' {
				i++
			}
			i--
		case c == '\n' && len(heredoc) > 0:
			endCmd()
			// Skip the bodies of the heredocs opened on this line.
			for _, d := range heredoc {
				for i < len(s) {
					k := strings.IndexByte(s[i+1:], '\n')
					line := s[i+1:]
					if k >= 0 {
						line = s[i+1 : i+1+k]
					}
					i += len(line) + 1
					if strings.TrimLeft(line, "\t") == d {
						break
					}
				}
			}
			heredoc = nil
		case strings.IndexByte(";&|\n(){}", c) >= 0:
			if (c == '{' || c == '}') && (inWord || i+1 < len(s) && !isSpace(s[i+1])) {
				word.WriteByte(c)
				inWord = true
				continue
			}
			if c == '(' && inWord && strings.HasSuffix(word.String(), "=") {
				i = skipParens(s, i) // an array assignment: no command
				plain = false
				continue
			}
			if c == '(' && inWord && i+1 < len(s) && s[i+1] == ')' {
				endWord() // a function definition: name()
				cur = nil
				i++
				continue
			}
			endCmd()
		case isSpace(c):
			endWord()
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	endCmd()
	return cmds
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// skipParens returns the index of the parenthesis that closes the one at
// s[i], quotes respected (or the end).
func skipParens(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'', '"':
			if k := strings.IndexByte(s[i+1:], s[i]); k >= 0 {
				i += k + 1
			}
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return len(s) - 1
}

// makefileShell is the shell text of a Makefile: its recipe lines and the
// insides of $(shell ...), with make's own references replaced by a
// variable ($MAKEVAR) and $$ by $.
func makefileShell(text string) string {
	text = strings.ReplaceAll(text, "\\\n", " ")
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if r, ok := strings.CutPrefix(line, "\t"); ok {
			b.WriteString(makeExpand(strings.TrimLeft(r, "@+-"), &b))
			b.WriteByte('\n')
			continue
		}
		makeExpand(line, &b) // only its $(shell ...) go to b
	}
	return b.String()
}

// makeExpand replaces make's references in line; the text of each
// $(shell ...) in it is written to shell as a line of its own.
func makeExpand(line string, shell *strings.Builder) string {
	var out strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] != '$' || i+1 >= len(line) {
			out.WriteByte(line[i])
			continue
		}
		switch c := line[i+1]; c {
		case '$':
			out.WriteByte('$')
			i++
		case '(', '{':
			end := skipParens(strings.NewReplacer("{", "(", "}", ")").Replace(line), i+1)
			inner := line[i+2 : end]
			if cmd, ok := strings.CutPrefix(inner, "shell "); ok {
				shell.WriteString(makeExpand(cmd, shell))
				shell.WriteByte('\n')
			} else {
				makeExpand(inner, shell)
			}
			out.WriteString("$MAKEVAR")
			i = end
		default:
			out.WriteString("$MAKEVAR")
			i++
		}
	}
	return out.String()
}
