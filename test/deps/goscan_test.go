package deps_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// use is one program that the code runs, and where.
type use struct {
	Program string
	Where   string // file:line
}

// arg is one element of a command line as far as the source tells: a known
// string, or an expression whose value is unknown (then prefix is its
// leading literal, if any, to tell options such as "--net="+path).
type arg struct {
	val    string
	known  bool
	prefix string
}

func known(s string) arg { return arg{val: s, known: true, prefix: s} }

// tmplKind is what one argument of an exec call inside a helper is.
type tmplKind int

const (
	tmplExpr   tmplKind = iota // an expression of the helper's own
	tmplParam                  // the helper's parameter idx
	tmplIndex                  // element from of the variadic parameter
	tmplSpread                 // the variadic parameter from element from, spread
)

type tmplArg struct {
	kind tmplKind
	idx  int // parameter index
	from int
	expr ast.Expr
}

// helper is a function that runs a program named (partly) by its caller:
// the exec call's arguments in terms of the helper's parameters.
type helper struct {
	gf       *goFile // where the helper is
	tmpl     []tmplArg
	variadic int // index of the variadic parameter, -1 if none
}

// goFile is one parsed file and the import names it uses.
type goFile struct {
	path    string // relative to the root
	dir     string
	f       *ast.File
	imports map[string]string   // local name -> import path
	values  map[string]ast.Expr // names given one value in the file (nil: more than one)
}

// scanGo returns the programs that the Go files under root run through
// os/exec: the first argument of exec.Command, exec.CommandContext and
// exec.LookPath when it is a string constant, also through helper functions
// that pass their own parameters to exec (such as `func ip(args ...string)`
// or `func sh(args ...string)`), and through wrappers that run another
// program (`ip netns exec NS prog`, nsenter, unshare, setpriv, timeout,
// `sh -c SCRIPT`). module is the module path, for calls of helpers in other
// packages of the module. The files are those of repoFiles.
func scanGo(root, module string) ([]use, error) {
	fset := token.NewFileSet()
	var files []*goFile
	pkgName := map[string]string{} // dir -> package name
	paths, err := repoFiles(root, func(name string) bool { return strings.HasSuffix(name, ".go") })
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		gf := &goFile{path: rel, dir: filepath.Dir(rel), f: f, imports: map[string]string{}, values: valuesOf(f)}
		pkgName[gf.dir] = strings.TrimSuffix(f.Name.Name, "_test")
		files = append(files, gf)
	}
	// Import names need every package's name, for imports without one.
	for _, gf := range files {
		for _, im := range gf.f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			name := path.Base(p)
			if rel, ok := strings.CutPrefix(p, module+"/"); ok {
				if n, ok := pkgName[filepath.FromSlash(rel)]; ok {
					name = n
				}
			}
			if im.Name != nil {
				name = im.Name.Name
			}
			gf.imports[name] = p
		}
	}

	// Pass 1: the helpers, by package directory and name.
	helpers := map[string]*helper{}
	for _, gf := range files {
		for _, decl := range gf.f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || fd.Body == nil {
				continue
			}
			params, variadic := paramList(fd.Type)
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				args, ok := execArgs(gf, call)
				if !ok {
					return true
				}
				if h := helperOf(args, call.Ellipsis.IsValid(), params, variadic); h != nil {
					h.gf = gf
					helpers[gf.dir+"."+fd.Name.Name] = h
				}
				return true
			})
		}
	}

	// Pass 2: every exec call and every call of a helper.
	var uses []use
	for _, gf := range files {
		ast.Inspect(gf.f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			where := fmt.Sprintf("%s:%d", gf.path, fset.Position(call.Pos()).Line)
			var argv []arg
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && isPkg(gf, sel.X, "os/exec") && sel.Sel.Name == "LookPath" && len(call.Args) == 1 {
				argv = []arg{gf.eval(call.Args[0])}
			} else if args, ok := execArgs(gf, call); ok {
				argv = gf.evalAll(args, call.Ellipsis.IsValid())
			} else if h := helperFor(gf, call, helpers, module); h != nil {
				argv = h.expand(gf, call)
			} else {
				return true
			}
			for _, p := range programsIn(argv) {
				uses = append(uses, use{p, where})
			}
			return true
		})
		// go:generate lines run their first word.
		for _, cg := range gf.f.Comments {
			for _, c := range cg.List {
				if line, ok := strings.CutPrefix(c.Text, "//go:generate "); ok {
					for _, p := range scanShell(line) {
						uses = append(uses, use{p, fmt.Sprintf("%s:%d", gf.path, fset.Position(c.Pos()).Line)})
					}
				}
			}
		}
	}
	return uses, nil
}

// repoFiles lists the files under root whose names keep accepts, less
// those in directories named testdata or vendor or starting with a dot.
func repoFiles(root string, keep func(name string) bool) ([]string, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p != root && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")):
			return filepath.SkipDir
		case !d.IsDir() && keep(d.Name()):
			paths = append(paths, p)
		}
		return nil
	})
	return paths, err
}

// paramList flattens a function's parameters; variadic is the index of the
// variadic one, or -1.
func paramList(ft *ast.FuncType) ([]string, int) {
	var names []string
	variadic := -1
	for _, f := range ft.Params.List {
		if _, ok := f.Type.(*ast.Ellipsis); ok {
			variadic = len(names)
		}
		if len(f.Names) == 0 {
			names = append(names, "_")
		}
		for _, n := range f.Names {
			names = append(names, n.Name)
		}
	}
	return names, variadic
}

// isPkg tells whether x names the import of path in gf.
func isPkg(gf *goFile, x ast.Expr, path string) bool {
	id, ok := x.(*ast.Ident)
	return ok && gf.imports[id.Name] == path
}

// execArgs returns the command-line arguments of an exec.Command or
// exec.CommandContext call (the program first).
func execArgs(gf *goFile, call *ast.CallExpr) ([]ast.Expr, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || !isPkg(gf, sel.X, "os/exec") {
		return nil, false
	}
	switch {
	case sel.Sel.Name == "Command" && len(call.Args) >= 1:
		return call.Args, true
	case sel.Sel.Name == "CommandContext" && len(call.Args) >= 2:
		return call.Args[1:], true
	}
	return nil, false
}

// helperOf describes the exec call args inside a function with params as a
// helper, or returns nil when the program run does not come from the
// function's caller.
func helperOf(args []ast.Expr, ellipsis bool, params []string, variadic int) *helper {
	param := func(e ast.Expr) int {
		if id, ok := e.(*ast.Ident); ok {
			for i, p := range params {
				if p == id.Name && p != "_" {
					return i
				}
			}
		}
		return -1
	}
	h := &helper{variadic: variadic}
	fromCaller := false
	for i, a := range args {
		t := tmplArg{kind: tmplExpr, expr: a}
		spread := ellipsis && i == len(args)-1
		switch x := a.(type) {
		case *ast.Ident:
			if p := param(x); p >= 0 {
				t = tmplArg{kind: tmplParam, idx: p}
				if spread && p == variadic {
					t.kind = tmplSpread
				}
			}
		case *ast.IndexExpr:
			if p := param(x.X); p >= 0 && p == variadic {
				if k, ok := intLit(x.Index); ok {
					t = tmplArg{kind: tmplIndex, idx: p, from: k}
				}
			}
		case *ast.SliceExpr:
			if p := param(x.X); p >= 0 && p == variadic && spread && x.High == nil {
				k := 0
				if x.Low != nil {
					k, _ = intLit(x.Low)
				}
				t = tmplArg{kind: tmplSpread, idx: p, from: k}
			}
		}
		if t.kind != tmplExpr {
			fromCaller = true
		}
		h.tmpl = append(h.tmpl, t)
	}
	if !fromCaller || h.tmpl[0].kind == tmplSpread && h.tmpl[0].from > 0 {
		return nil
	}
	return h
}

func intLit(e ast.Expr) (int, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.INT {
		return 0, false
	}
	n, err := strconv.Atoi(b.Value)
	return n, err == nil
}

// helperFor is the helper that call calls, if any: a function of the same
// package, or pkg.Func of another package of the module.
func helperFor(gf *goFile, call *ast.CallExpr, helpers map[string]*helper, module string) *helper {
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		return helpers[gf.dir+"."+fn.Name]
	case *ast.SelectorExpr:
		id, ok := fn.X.(*ast.Ident)
		if !ok {
			return nil
		}
		if rel, ok := strings.CutPrefix(gf.imports[id.Name], module+"/"); ok {
			return helpers[filepath.FromSlash(rel)+"."+fn.Sel.Name]
		}
	}
	return nil
}

// expand is the command line that call (in caller) of the helper runs.
func (h *helper) expand(caller *goFile, call *ast.CallExpr) []arg {
	callArg := func(i int) arg {
		if i < len(call.Args) && !(call.Ellipsis.IsValid() && i == len(call.Args)-1) {
			return caller.eval(call.Args[i])
		}
		return arg{}
	}
	var argv []arg
	for _, t := range h.tmpl {
		switch t.kind {
		case tmplExpr:
			argv = append(argv, h.gf.eval(t.expr))
		case tmplParam:
			argv = append(argv, callArg(t.idx))
		case tmplIndex:
			argv = append(argv, callArg(t.idx+t.from))
		case tmplSpread:
			if call.Ellipsis.IsValid() {
				argv = append(argv, arg{}) // a slice passed on: unknown
				continue
			}
			for i := t.idx + t.from; i < len(call.Args); i++ {
				argv = append(argv, caller.eval(call.Args[i]))
			}
		}
	}
	return argv
}

// evalAll evaluates exec's arguments, a slice spread at the end too.
func (gf *goFile) evalAll(args []ast.Expr, ellipsis bool) []arg {
	var argv []arg
	for i, a := range args {
		if ellipsis && i == len(args)-1 {
			return append(argv, gf.spread(a)...)
		}
		argv = append(argv, gf.eval(a))
	}
	return argv
}

// eval is the value of a string expression as far as the source shows: a
// literal, a name given one value in the file (a constant, or a variable
// assigned once with :=), or a concatenation of those.
func (gf *goFile) eval(e ast.Expr) arg { return gf.evalDepth(e, 0) }

func (gf *goFile) evalDepth(e ast.Expr, depth int) arg {
	if depth > 8 {
		return arg{} // x := x + "..." and the like
	}
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			if s, err := strconv.Unquote(x.Value); err == nil {
				return known(s)
			}
		}
	case *ast.ParenExpr:
		return gf.evalDepth(x.X, depth+1)
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			l, r := gf.evalDepth(x.X, depth+1), gf.evalDepth(x.Y, depth+1)
			if l.known && r.known {
				return known(l.val + r.val)
			}
			return arg{prefix: l.prefix}
		}
	case *ast.Ident:
		if v := gf.values[x.Name]; v != nil {
			return gf.evalDepth(v, depth+1)
		}
	}
	return arg{}
}

// valuesOf maps the names that f gives exactly one value, by const or by
// :=, to that value; a name given more than one maps to nil.
func valuesOf(f *ast.File) map[string]ast.Expr {
	vals := map[string]ast.Expr{}
	set := func(name string, v ast.Expr) {
		if _, dup := vals[name]; dup {
			vals[name] = nil
			return
		}
		vals[name] = v
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch d := n.(type) {
		case *ast.ValueSpec:
			for i, id := range d.Names {
				var v ast.Expr
				if i < len(d.Values) && len(d.Names) == len(d.Values) {
					v = d.Values[i]
				}
				set(id.Name, v)
			}
		case *ast.AssignStmt:
			for i, l := range d.Lhs {
				id, ok := l.(*ast.Ident)
				if !ok {
					continue
				}
				var v ast.Expr
				if d.Tok == token.DEFINE && len(d.Lhs) == len(d.Rhs) {
					v = d.Rhs[i]
				}
				set(id.Name, v)
			}
		}
		return true
	})
	return vals
}

// spread is what a slice passed as x... holds as far as the source shows:
// the elements of a []string{...} literal, and of append(that, more), and
// then one unknown for the rest.
func (gf *goFile) spread(x ast.Expr) []arg {
	switch e := x.(type) {
	case *ast.CompositeLit:
		var argv []arg
		for _, el := range e.Elts {
			argv = append(argv, gf.eval(el))
		}
		return argv
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "append" && len(e.Args) > 0 {
			argv := gf.spread(e.Args[0])
			for i, a := range e.Args[1:] {
				if e.Ellipsis.IsValid() && i == len(e.Args)-2 {
					return append(argv, arg{})
				}
				argv = append(argv, gf.eval(a))
			}
			return argv
		}
	}
	return []arg{{}}
}
