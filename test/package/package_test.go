// Package package_test builds the .deb and .rpm with `make package` at two versions and checks them with the
// distributions' own tools: the .deb is installed into this machine's root with dpkg, upgraded over an edited
// config, removed and purged (always purged at the end, also when the test fails); the .rpm's files, config flags
// and scripts are read with rpm. The package scripts run under a stand-in systemctl to check what they ask
// systemd for on install, upgrade and removal. The Dockerfile is checked for its base and paths.
package package_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

const (
	pkgName  = "bulwark"
	binPath  = "/usr/bin/bulwark"
	unitPath = "/usr/lib/systemd/system/bulwark.service"
	confPath = "/etc/bulwark/bulwark.hcl"
	refPath  = "/usr/share/doc/bulwark/bulwark.hcl.reference"
	license  = "/usr/share/doc/bulwark/LICENSE"
	stateDir = "/var/lib/bulwark"
	confDir  = "/etc/bulwark"
	rotate   = "/etc/logrotate.d/bulwark"
	bashComp = "/usr/share/bash-completion/completions/bulwark"
	zshComp  = "/usr/share/zsh/vendor-completions/_bulwark"
	fishComp = "/usr/share/fish/vendor_completions.d/bulwark.fish"
	manPage  = "/usr/share/man/man1/bulwark.1.gz"
	// The fail2ban action (a conffile: fail2ban reads it only when a jail names it) and the jail example.
	f2bAction = "/etc/fail2ban/action.d/bulwark.conf"
	f2bJail   = "/usr/share/doc/bulwark/examples/fail2ban-jail.conf"
)

// repoRoot is the repository's top directory (this package is test/package).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a program with stdin closed (so a dpkg prompt fails instead of waiting) and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs a program and fails the test when it fails.
func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// buildPackages runs `make package` at version into a directory of its own and returns the .deb and .rpm paths.
func buildPackages(t *testing.T, version string) (deb, rpm string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), version)
	must(t, "make", "-C", repoRoot(t), "package", "VERSION="+version, "PKG_DIR="+dir)
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package VERSION=%s: want one .deb and one .rpm in %s, got %v and %v", version, dir, debs, rpms)
	}
	return debs[0], rpms[0]
}

// installedVersion is the package's version and status as dpkg records them, or "" when dpkg knows no such package.
func installedVersion(t *testing.T) (version, status string) {
	t.Helper()
	out, err := run(t, "dpkg-query", "-W", "-f=${Version}\t${db:Status-Abbrev}", pkgName)
	if err != nil {
		return "", ""
	}
	v, s, _ := strings.Cut(out, "\t")
	return v, strings.TrimSpace(s)
}

// wantMode fails unless path exists with permission bits mode (and is a directory when dir).
func wantMode(t *testing.T, path string, mode os.FileMode, dir bool) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("after install: %v", err)
	}
	if fi.Mode().Perm() != mode || fi.IsDir() != dir {
		t.Errorf("%s: mode %v (dir %v), want %v (dir %v)", path, fi.Mode().Perm(), fi.IsDir(), mode, dir)
	}
}

// wantGone fails when path still exists.
func wantGone(t *testing.T, when, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after %s: %s still exists (%v)", when, path, err)
	}
}

// wantVersion runs the installed binary's version command.
func wantVersion(t *testing.T, version string) {
	t.Helper()
	if got, want := must(t, binPath, "version"), "bulwark "+version+"\n"; got != want {
		t.Errorf("%s version: %q, want %q", binPath, got, want)
	}
}

func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	testutil.RequireRoot(t)
	// Never clobber a Bulwark installed by other means, nor a config of this machine's own.
	if v, s := installedVersion(t); v != "" || s != "" {
		t.Fatalf("package %s is already known to dpkg (%s %s): purge it first (dpkg -P %s)", pkgName, v, s, pkgName)
	}
	for _, p := range []string{binPath, confDir, stateDir, "/usr/local/bin/bulwark"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists on this machine: this test installs into the root and would overwrite it", p)
		}
	}
	root := repoRoot(t)
	deb1, _ := buildPackages(t, "1.0.0")
	deb2, _ := buildPackages(t, "1.1.0")
	t.Cleanup(func() {
		if v, s := installedVersion(t); v != "" || s != "" {
			if out, err := run(t, "dpkg", "-P", pkgName); err != nil {
				t.Errorf("cleanup: dpkg -P %s: %v\n%s", pkgName, err, out)
			}
		}
	})

	out := must(t, "dpkg", "-i", deb1)
	if !strings.Contains(out, "installed, not enabled") {
		t.Errorf("dpkg -i: the postinst's first-install note is missing:\n%s", out)
	}
	if v, s := installedVersion(t); v != "1.0.0-1" || s != "ii" {
		t.Fatalf("after dpkg -i: version %q status %q, want 1.0.0-1 ii", v, s)
	}
	wantMode(t, binPath, 0o755, false)
	wantMode(t, unitPath, 0o644, false)
	wantMode(t, confDir, 0o750, true)
	wantMode(t, confPath, 0o640, false)
	wantMode(t, refPath, 0o644, false)
	wantMode(t, license, 0o644, false)
	wantMode(t, stateDir, 0o700, true)
	for _, p := range []string{rotate, bashComp, zshComp, fishComp, manPage, f2bAction, f2bJail} {
		wantMode(t, p, 0o644, false)
	}
	wantVersion(t, "1.0.0")
	for _, p := range []string{confPath, rotate, f2bAction} {
		if conf := must(t, "dpkg-query", "-W", "-f=${Conffiles}", pkgName); !strings.Contains(conf, p+" ") {
			t.Errorf("dpkg does not record %s as a conffile: %q", p, conf)
		}
	}
	// The installed completion and man page are the installed binary's.
	if got, err := os.ReadFile(bashComp); err != nil || string(got) != must(t, binPath, "completion", "bash") {
		t.Errorf("%s is not `bulwark completion bash` (err %v)", bashComp, err)
	}
	if page := must(t, "gzip", "-dc", manPage); !strings.Contains(page, "\n.SS \"bulwark completion") {
		t.Errorf("%s has no section for bulwark completion:\n%s", manPage, page)
	}
	// The unit is the repository's with the package's binary path, and nothing enables it.
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	repoUnit, err := os.ReadFile(filepath.Join(root, "configs/systemd/bulwark.service"))
	if err != nil {
		t.Fatal(err)
	}
	_, repoBody, _ := bytes.Cut(repoUnit, []byte("\n"))
	wantBody := strings.ReplaceAll(string(repoBody), "/usr/local/bin/bulwark", binPath)
	if _, body, _ := strings.Cut(string(unit), "\n"); body != wantBody {
		t.Errorf("%s differs from configs/systemd/bulwark.service beyond the first line and the binary path", unitPath)
	}
	if !strings.Contains(string(unit), "\nExecStart="+binPath+" run --config "+confPath+"\n") {
		t.Errorf("%s does not run %s:\n%s", unitPath, binPath, unit)
	}
	wantGone(t, "install", "/etc/systemd/system/multi-user.target.wants/bulwark.service")
	// The binary is static, as the Dockerfile's distroless/static base needs.
	if f, err := elf.Open(binPath); err != nil {
		t.Error(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (has an ELF interpreter)", binPath)
			}
		}
		f.Close()
	}
	checkDefaultConfig(t, root)

	// An edited conffile survives the upgrade; the binary is the new one.
	orig, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	mine := append(slices.Clone(orig), []byte("## edited by the package test\n")...)
	if err := os.WriteFile(confPath, mine, 0o640); err != nil {
		t.Fatal(err)
	}
	must(t, "dpkg", "-i", deb2)
	if v, s := installedVersion(t); v != "1.1.0-1" || s != "ii" {
		t.Fatalf("after the upgrade: version %q status %q, want 1.1.0-1 ii", v, s)
	}
	wantVersion(t, "1.1.0")
	if got, err := os.ReadFile(confPath); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("the upgrade changed the edited %s (err %v):\n%s", confPath, err, got)
	}
	wantGone(t, "upgrade", confPath+".dpkg-new")

	// Remove keeps the config; purge deletes it and the state.
	must(t, "dpkg", "-r", pkgName)
	if _, s := installedVersion(t); s != "rc" {
		t.Errorf("after dpkg -r: status %q, want rc (config files left)", s)
	}
	wantGone(t, "dpkg -r", binPath)
	wantGone(t, "dpkg -r", unitPath)
	if got, err := os.ReadFile(confPath); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("dpkg -r did not keep the edited %s (err %v)", confPath, err)
	}
	must(t, "dpkg", "-P", pkgName)
	if v, s := installedVersion(t); v != "" || s != "" {
		t.Errorf("after dpkg -P: dpkg still knows %s (%q %q)", pkgName, v, s)
	}
	for _, p := range []string{confDir, stateDir, "/var/log/bulwark", refPath, f2bAction, f2bJail} {
		wantGone(t, "dpkg -P", p)
	}
}

// checkDefaultConfig checks that the installed config is the packaging one, is valid, is in monitor mode and names
// an interface that does not exist, so the unit's `bulwark config check` refuses to start the agent until the
// operator sets one.
func checkDefaultConfig(t *testing.T, root string) {
	t.Helper()
	src, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, "configs/packaging/bulwark.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(src, want) {
		t.Errorf("%s is not configs/packaging/bulwark.hcl", confPath)
	}
	cfg, diags := config.ParseWithOptions(confPath, src, config.Options{Offline: true})
	if diags.HasErrors() {
		t.Fatalf("the default config is invalid: %v", diags)
	}
	if cfg.Mode != "monitor" {
		t.Errorf("the default config's mode is %q, want monitor", cfg.Mode)
	}
	must(t, binPath, "config", "check", "--offline", confPath)
	out, err := run(t, binPath, "config", "check", confPath)
	if err == nil || !strings.Contains(out, "CHANGEME") {
		t.Errorf("bulwark config check accepts the default config on this host (err %v):\n%s", err, out)
	}
}

func TestRPMContents(t *testing.T) {
	_, rpm := buildPackages(t, "1.1.0")
	if got := must(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE}", rpm); got != "bulwark 1.1.0-1" {
		t.Errorf("rpm name and version: %q, want %q", got, "bulwark 1.1.0-1")
	}
	// One line per file: name, permissions and FILEFLAGS (c = %config, n = noreplace, d = documentation).
	files := map[string][]string{}
	for _, line := range strings.Split(must(t, "rpm", "-qp", "--qf",
		"[%{FILENAMES} %{FILEMODES:perms} %{FILEFLAGS:fflags}\n]", rpm), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			files[f[0]] = f[1:]
		}
	}
	want := map[string]string{
		binPath:  "-rwxr-xr-x",
		unitPath: "-rw-r--r--",
		confDir:  "drwxr-x---",
		confPath: "-rw-r----- cn",
		refPath:  "-rw-r--r--",
		license:  "-rw-r--r--",
		stateDir: "drwx------",
		rotate:   "-rw-r--r-- cn",
		bashComp: "-rw-r--r--",
		zshComp:  "-rw-r--r--",
		fishComp: "-rw-r--r--",
		manPage:  "-rw-r--r--",
		// f2bAction: a conffile that an upgrade does not overwrite once edited.
		f2bAction: "-rw-r--r-- cn",
		f2bJail:   "-rw-r--r--",
	}
	for name, w := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("the rpm lacks %s", name)
			continue
		}
		// nfpm may or may not flag files under /usr/share/doc as documentation; that does not matter here.
		if g := strings.TrimSuffix(strings.Join(got, " "), " d"); g != w {
			t.Errorf("rpm %s: %q, want %q", name, g, w)
		}
	}
	if len(files) != len(want) {
		t.Errorf("the rpm holds %d files, want %d: %v", len(files), len(want), files)
	}
	scripts := must(t, "rpm", "-qp", "--scripts", rpm)
	for _, w := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
		"systemctl try-restart bulwark.service"} {
		if !strings.Contains(scripts, w) {
			t.Errorf("rpm --scripts lacks %q:\n%s", w, scripts)
		}
	}
}

// TestScripts runs each package script with the arguments dpkg and rpm pass it, in a mount namespace where
// /run/systemd/system exists (systemd "is running") and systemctl is a stand-in that logs its arguments. An upgrade
// may only try-restart (which restarts a running agent and starts no stopped one); a removal stops and disables;
// nothing else stops the agent.
func TestScripts(t *testing.T) {
	testutil.RequireRoot(t)
	root := repoRoot(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "systemctl.log")
	fake := "#!/bin/sh\necho \"$*\" >>" + log + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	const reload, tryRestart = "daemon-reload", "try-restart bulwark.service"
	const stop, disable = "stop bulwark.service", "--no-reload disable bulwark.service"
	for _, c := range []struct {
		script string
		args   []string
		want   []string
	}{
		{"postinstall", []string{"configure", ""}, []string{reload}},                    // deb install
		{"postinstall", []string{"configure", "1.0.0-1"}, []string{reload, tryRestart}}, // deb upgrade
		{"postinstall", []string{"1"}, []string{reload}},                                // rpm install
		{"postinstall", []string{"2"}, []string{reload, tryRestart}},                    // rpm upgrade
		{"preremove", []string{"upgrade", "1.1.0-1"}, nil},                              // deb upgrade
		{"preremove", []string{"1"}, nil},                                               // rpm upgrade
		{"preremove", []string{"remove"}, []string{stop, disable}},                      // deb removal
		{"preremove", []string{"0"}, []string{stop, disable}},                           // rpm removal
		{"postremove", []string{"upgrade", "1.1.0-1"}, nil},                             // deb upgrade
		{"postremove", []string{"1"}, nil},                                              // rpm upgrade
		{"postremove", []string{"remove"}, []string{reload}},                            // deb removal
		{"postremove", []string{"0"}, []string{reload}},                                 // rpm removal
	} {
		_ = os.Remove(log)
		script := filepath.Join(root, "configs/packaging/scripts", c.script+".sh")
		// The mount namespace is private (unshare's default), so the tmpfs on /run is seen by this script alone.
		shell := `mount -t tmpfs bulwark-pkg-test /run && mkdir -p /run/systemd/system && PATH="$0:$PATH" exec sh "$@"`
		args := append([]string{"--mount", "sh", "-c", shell, dir, script}, c.args...)
		if out, err := run(t, "unshare", args...); err != nil {
			t.Errorf("%s %q: %v\n%s", c.script, c.args, err, out)
			continue
		}
		var got []string
		if b, err := os.ReadFile(log); err == nil {
			got = strings.Split(strings.TrimSpace(string(b)), "\n")
		}
		if !slices.Equal(got, c.want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(c.want)
			t.Errorf("%s %q: systemctl calls %s, want %s", c.script, c.args, gj, wj)
		}
	}
}
