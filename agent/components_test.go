package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

// agentBackPointers returns "type.field" for every field of a struct type
// (other than Agent) in files whose type names Agent, and the
// struct types it saw.
func agentBackPointers(files []*ast.File) (found, types []string) {
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok || ts.Name.Name == "Agent" {
				return true
			}
			types = append(types, ts.Name.Name)
			for _, fld := range st.Fields.List {
				names := "(embedded)"
				if len(fld.Names) > 0 {
					names = fld.Names[0].Name
				}
				ast.Inspect(fld.Type, func(n ast.Node) bool {
					if id, ok := n.(*ast.Ident); ok && id.Name == "Agent" {
						found = append(found, ts.Name.Name+"."+names)
					}
					return true
				})
			}
			return true
		})
	}
	return found, types
}

// The components the agent runs (feeds, scoring, flight recorders, metrics
// collector, control API server, and every other struct type of the package) get what they use
// through their constructors: none keeps a pointer to the whole Agent.
func TestComponentsHoldNoAgent(t *testing.T) {
	fset := token.NewFileSet()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	found, types := agentBackPointers(files)
	for _, want := range []string{"feedSet", "scoring", "flightRecorders", "recorderCollector", "collector", "controlServer"} {
		if !slices.Contains(types, want) {
			t.Errorf("struct type %s not found in package agent", want)
		}
	}
	if len(found) > 0 {
		t.Errorf("fields that point back to Agent: %v", found)
	}

	// The check finds a back-pointer, bare, embedded or in a container.
	planted := `package agent
type a1 struct{ a *Agent }
type a2 struct{ *Agent }
type a3 struct{ x []map[string]*Agent; ok int }
type a4 struct{ ok int }`
	f, err := parser.ParseFile(fset, "planted.go", planted, 0)
	if err != nil {
		t.Fatal(err)
	}
	found, _ = agentBackPointers([]*ast.File{f})
	if want := []string{"a1.a", "a2.(embedded)", "a3.x"}; !slices.Equal(found, want) {
		t.Errorf("planted back-pointers: found %v, want %v", found, want)
	}
}
