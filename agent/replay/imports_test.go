package replay

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportsNoDaemon: replay builds its own datapath; neither it nor
// anything it imports (transitively, within the module) imports the
// daemon, package agent.
func TestImportsNoDaemon(t *testing.T) {
	const module = "github.com/bulwark-filter/bulwark"
	const daemon = module + "/agent"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{module + "/agent/replay": ""}
	queue := []string{module + "/agent/replay"}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		pkg, err := build.ImportDir(filepath.Join(root, strings.TrimPrefix(path, module)), 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if imp == daemon {
				t.Errorf("%s imports %s (reached from %s)", path, daemon, seen[path])
			}
			if _, ok := seen[imp]; !ok && strings.HasPrefix(imp, module+"/") {
				seen[imp] = path
				queue = append(queue, imp)
			}
		}
	}
	if len(seen) < 5 {
		t.Fatalf("walked only %d packages: %v", len(seen), seen)
	}
}
