package config

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Error is a config that failed validation; its text is the
// file:line:col diagnostics.
type Error struct{ Text string }

func (e *Error) Error() string { return "invalid config:\n" + e.Text }

// FormatDiagnostics renders diags one per line as "path:line:col: summary: detail" ("path:line:col: warning:
// summary: detail" for a warning), for use in error messages. Lines are separated by "\n", with no trailing newline.
func FormatDiagnostics(diags hcl.Diagnostics) string {
	lines := make([]string, len(diags))
	for i, d := range diags {
		lines[i] = position(d)
		if d.Severity == hcl.DiagWarning {
			lines[i] += "warning: "
		}
		lines[i] += d.Summary
		if d.Detail != "" {
			lines[i] += ": " + oneLine(d.Detail)
		}
	}
	return strings.Join(lines, "\n")
}

// WriteDiagnostics prints diags as "file:line:col: error: summary; detail" lines, one per diagnostic. When files
// holds the diagnostic's source file (see Loader.Files), the line is followed by an indented snippet of the source
// with the subject underlined; pass nil files for exactly one line per diagnostic.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	var b strings.Builder
	for _, d := range diags {
		severity := "error"
		if d.Severity == hcl.DiagWarning {
			severity = "warning"
		}
		b.WriteString(position(d) + severity + ": " + d.Summary)
		if d.Detail != "" {
			b.WriteString("; " + oneLine(d.Detail))
		}
		b.WriteByte('\n')
		if d.Subject != nil {
			if f := files[d.Subject.Filename]; f != nil {
				b.WriteString(snippet(f.Bytes, *d.Subject))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// position renders "file:line:col: " for d's subject, or "" when it has none.
func position(d *hcl.Diagnostic) string {
	if d.Subject == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
}

// oneLine joins the lines of a multi-line detail so each diagnostic stays on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// snippet renders the source line of rng and a caret line under the range (its first line only), indented so it
// cannot be mistaken for a diagnostic line. It returns "" when rng does not fit src.
func snippet(src []byte, rng hcl.Range) string {
	start, end := rng.Start.Byte, rng.End.Byte
	if start < 0 || start > len(src) || end < start || end > len(src) {
		return ""
	}
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end = min(end, lineEnd)
	line := strings.TrimRight(string(src[lineStart:lineEnd]), "\r")
	var pad strings.Builder
	for _, r := range string(src[lineStart:start]) {
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	carets := max(utf8.RuneCount(src[start:end]), 1)
	gutter := fmt.Sprintf("%6d | ", rng.Start.Line)
	return gutter + line + "\n" + strings.Repeat(" ", len(gutter)-2) + "| " + pad.String() + strings.Repeat("^", carets) + "\n"
}

// sortDiagnostics orders diags by file and position (HCL reports unknown attributes in map order), keeping the
// relative order of diagnostics at the same position.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
	return diags
}
