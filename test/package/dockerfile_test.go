package package_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction: its keyword in upper case and its arguments as written.
type instruction struct {
	keyword, args string
	line          int
}

// parseDockerfile splits a Dockerfile into instructions (comments and blank lines dropped, "\" continuations joined).
func parseDockerfile(t *testing.T, src string) []instruction {
	t.Helper()
	var out []instruction
	var cur string
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur == "" {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		kw, args, _ := strings.Cut(cur, " ")
		out = append(out, instruction{strings.ToUpper(kw), strings.TrimSpace(args), start})
		cur = ""
	}
	if cur != "" {
		t.Fatalf("Dockerfile ends inside a continued line (from line %d)", start)
	}
	return out
}

// TestDockerfile checks the image recipe without docker: one stage on a static base (no libc, so the binary must
// be static), the binary copied from bin/bulwark (what `make build` writes) and run as the entrypoint, a default
// command that the CLI accepts, a build context of the binary alone, and the DaemonSet running the same path.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "configs/docker/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var from, copies []instruction
	var entrypoint, cmd []string
	for _, in := range parseDockerfile(t, string(src)) {
		switch in.keyword {
		case "FROM":
			from = append(from, in)
		case "COPY":
			copies = append(copies, in)
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(in.args), &v); err != nil {
				t.Fatalf("Dockerfile:%d: %s is not in exec (JSON) form: %v", in.line, in.keyword, err)
			}
			if in.keyword == "CMD" {
				cmd = v
			} else {
				entrypoint = v
			}
		case "ARG", "LABEL", "ENV", "USER", "WORKDIR", "EXPOSE":
		default:
			t.Errorf("Dockerfile:%d: unexpected %s (the image is the binary alone)", in.line, in.keyword)
		}
	}
	if len(from) != 1 {
		t.Fatalf("Dockerfile: %d FROM, want one stage", len(from))
	}
	if base := from[0].args; base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("Dockerfile: base %q, want scratch or gcr.io/distroless/static", base)
	}
	if len(copies) != 1 {
		t.Fatalf("Dockerfile: %d COPY, want one (bin/bulwark)", len(copies))
	}
	f := strings.Fields(copies[0].args)
	if len(f) != 2 || f[0] != "bin/bulwark" || !filepath.IsAbs(f[1]) {
		t.Fatalf("Dockerfile: COPY %s, want COPY bin/bulwark /ABSOLUTE/PATH", copies[0].args)
	}
	dest := f[1]
	if len(entrypoint) != 1 || entrypoint[0] != dest {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [%q]", entrypoint, dest)
	}
	if len(cmd) == 0 {
		t.Fatal("Dockerfile: no CMD")
	}

	ignore, err := os.ReadFile(filepath.Join(root, "configs/docker/Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(string(ignore), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	if !slices.Equal(rules, []string{"*", "!bin/bulwark"}) {
		t.Errorf(".dockerignore rules %q, want the binary alone: [* !bin/bulwark]", rules)
	}

	ds, err := os.ReadFile(filepath.Join(root, "configs/kubernetes/daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ds), "- "+dest+"\n") {
		t.Errorf("configs/kubernetes/daemonset.yaml does not run %s, the image's binary", dest)
	}

	// The default command parses: the same arguments with --help exit 0. The CLI wants the config file to exist,
	// so the image's config path (mounted from the ConfigMap) is replaced by a file of this test.
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "bulwark.hcl")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	i := slices.Index(cmd, "--config")
	if i < 0 || i+1 >= len(cmd) || cmd[i+1] != "/etc/bulwark/bulwark.hcl" {
		t.Fatalf("Dockerfile: CMD %q does not name --config /etc/bulwark/bulwark.hcl", cmd)
	}
	args := slices.Clone(cmd)
	args[i+1] = conf
	bin := filepath.Join(tmp, "bulwark")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bulwark")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput(); err != nil {
		t.Errorf("bulwark %s --help: %v\n%s", strings.Join(cmd, " "), err, out)
	}
}
