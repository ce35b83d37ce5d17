package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// auditWhats reads an audit file's records' What, in order.
func auditWhats(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, r := range agenttest.JSONLines[AuditRecord](t, path) {
		out = append(out, r.What)
	}
	return out
}

func TestAuditReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log", "audit.jsonl")
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(what string) {
		t.Helper()
		if err := a.Write(AuditRecord{What: what, Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	// Rotated by rename: records go to the renamed file until the reopen, then to a new file at the path.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write("two")
	if err := a.Reopen(); err != nil {
		t.Fatal(err)
	}
	write("three")
	// A reopen that cannot open the path (its directory moved away) keeps writing to the open file.
	if err := os.Rename(filepath.Join(dir, "log"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err == nil {
		t.Error("Reopen with the directory gone: no error")
	}
	write("four")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		filepath.Join(dir, "moved", "audit.jsonl.1"): {"one", "two"},
		filepath.Join(dir, "moved", "audit.jsonl"):   {"three", "four"},
	} {
		if got := auditWhats(t, file); !slices.Equal(got, want) {
			t.Errorf("%s: records %v, want %v", file, got, want)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "moved", "audit.jsonl")); err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("the reopened file's mode %v, want 0600", st.Mode().Perm())
	}
}
