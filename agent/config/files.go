package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Paths returns the config files that path names: path itself when it is not a directory (reading it then says
// why it cannot be read, if it cannot); when it is a directory, the
// regular files (or links to them) directly in it whose names end in ".hcl" and do not start with ".", in lexical
// order. A directory without such a file is an error.
func Paths(path string) ([]string, error) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".hcl") || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(path, name)
		// os.Stat follows links: a Kubernetes ConfigMap volume's files are links into its current data directory.
		if fst, err := os.Stat(p); err == nil && fst.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is a directory with no *.hcl file", path)
	}
	slices.Sort(out)
	return out, nil
}

// Load reads, parses and validates the config at path, a file or a directory of *.hcl files (see Paths), with l's
// options; afterwards Files returns the parsed source. The files of a directory are one config: their top-level
// keys and blocks are merged, and a key or a single block (limits, maps, ...) set in two files is an error naming
// both places, as are two interface, rule, class or feed blocks of the same name. Relative paths in any of them
// are relative to the directory.
func (l *Loader) Load(path string) (*Config, hcl.Diagnostics) {
	l.files = map[string]*hcl.File{}
	paths, err := Paths(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config file",
			Detail:   err.Error(),
			Subject:  &hcl.Range{Filename: path, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	var (
		files []*hcl.File
		diags hcl.Diagnostics
	)
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read config file",
				Detail: err.Error(), Subject: &hcl.Range{Filename: p, Start: hcl.InitialPos, End: hcl.InitialPos}})
			continue
		}
		f, fdiags := hclsyntax.ParseConfig(src, p, hcl.InitialPos)
		l.files[p] = f
		files = append(files, f)
		diags = append(diags, fdiags...)
	}
	if diags.HasErrors() {
		return nil, sortDiagnostics(diags)
	}
	dir := path
	if len(paths) == 1 && paths[0] == path {
		dir = filepath.Dir(path)
	}
	body := files[0].Body
	if len(files) > 1 {
		body = hcl.MergeFiles(files)
	}
	return l.decode(body, dir)
}
