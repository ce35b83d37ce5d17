// Package natstest starts real NATS servers for the fleet tests: the
// nats-server pinned in go.mod as a Go tool (built once per test binary),
// or Debian's packaged one for the compatibility test, as a JetStream
// cluster of n processes on loopback or inside given network namespaces,
// each with unique ports and a temporary store directory, killed and
// removed when the test ends, also when it fails.
package natstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ServerModule is the Go module of the nats-server tool that Binary builds.
const ServerModule = "github.com/nats-io/nats-server/v2"

// EnvBinary names a nats-server binary that Binary uses instead of building
// the pinned one.
const EnvBinary = "BULWARK_NATS_SERVER"

// DebianBinary is where Debian 12's nats-server package (2.9) installs the
// server; scripts/deps.sh installs it.
const DebianBinary = "/usr/sbin/nats-server"

// readyTimeout bounds how long a server may take to start (a busy machine
// builds and tests in parallel).
const readyTimeout = 60 * time.Second

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of the pinned nats-server: $BULWARK_NATS_SERVER
// if set, else ServerModule at the version go.mod pins, built with `go
// build` into the user's cache directory as nats-server-VERSION (a cache:
// later runs reuse it; a build goes to a temporary name and is renamed, so
// parallel test binaries never see half a file). Once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	build.once.Do(func() { build.path, build.err = buildServer() })
	if build.err != nil {
		t.Fatalf("natstest: %v", build.err)
	}
	return build.path
}

// buildServer builds ServerModule with the go command from the module that
// contains the working directory, unless that version is already built.
func buildServer() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	goCmd := func(args ...string) (string, error) {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
		}
		return strings.TrimSpace(string(b)), nil
	}
	version, err := goCmd("list", "-m", "-f", "{{.Version}}", ServerModule)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "bulwark-natstest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nats-server build directory: %w", err)
	}
	out := filepath.Join(dir, "nats-server-"+version)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp := fmt.Sprintf("%s.%d", out, os.Getpid())
	if _, err := goCmd("build", "-o", tmp, ServerModule); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("nats-server build: %w", err)
	}
	return out, nil
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Debian returns Debian's packaged nats-server (2.9.x), and fails the test
// when it is not installed (scripts/deps.sh installs it).
func Debian(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(DebianBinary); err != nil {
		t.Fatalf("natstest: Debian's nats-server: %v (scripts/deps.sh installs the nats-server package)", err)
	}
	return DebianBinary
}

// Options shape a cluster; the zero value is a loopback cluster of the
// pinned server.
type Options struct {
	// Binary is the nats-server to run; empty: Binary(t).
	Binary string
	// Netns, when set, names the network namespace each server runs in
	// (`ip netns exec NAME`), one per server; Hosts must then give the
	// address each listens on inside its namespace.
	Netns []string
	// Hosts are the addresses the servers listen on, one per server;
	// empty: 127.0.0.1 for every server.
	Hosts []string
	// Config is appended to every server's configuration file, e.g. a tls
	// or authorization block.
	Config string
	// NoAdvertise keeps the servers of a cluster from telling clients the
	// other servers' URLs: a client then knows only the servers it was
	// given, so stopping them cuts it off.
	NoAdvertise bool
}

// Servers is a running set of NATS servers with JetStream; with more than
// one they form a JetStream cluster.
type Servers struct {
	t       testing.TB
	bin     string
	dir     string
	servers []*server
}

type server struct {
	name, ns    string
	host        string
	port, cport int
	conf, log   string
	store       string
	cmd         *exec.Cmd
	done        chan struct{}
	logFrom     int64 // the log's size when the running process started
}

// Cluster starts n JetStream servers (a cluster when n > 1) and waits until
// each is ready and, for a cluster, a metadata leader is elected. The
// servers are killed and their directories removed when the test ends.
func Cluster(t testing.TB, n int, opts Options) *Servers {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: %d servers", n)
	}
	if opts.Netns != nil && (len(opts.Netns) != n || len(opts.Hosts) != n) {
		t.Fatalf("natstest: %d servers need %d namespaces and hosts, got %d and %d", n, n, len(opts.Netns), len(opts.Hosts))
	}
	if opts.Hosts != nil && len(opts.Hosts) != n {
		t.Fatalf("natstest: %d servers, %d hosts", n, len(opts.Hosts))
	}
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	s := &Servers{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.stopAll)
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	for i := range n {
		host := "127.0.0.1"
		if opts.Hosts != nil {
			host = opts.Hosts[i]
		}
		sv := &server{name: fmt.Sprintf("n%d", i), host: host, port: ports[2*i], cport: ports[2*i+1]}
		if opts.Netns != nil {
			sv.ns = opts.Netns[i]
		}
		dir := filepath.Join(s.dir, sv.name)
		sv.conf, sv.log, sv.store = filepath.Join(dir, "nats.conf"), filepath.Join(dir, "nats.log"), filepath.Join(dir, "js")
		if err := os.MkdirAll(sv.store, 0o755); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		s.servers = append(s.servers, sv)
	}
	for _, sv := range s.servers {
		if err := os.WriteFile(sv.conf, []byte(s.config(sv, opts)), 0o600); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		if err := s.start(sv); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	for _, sv := range s.servers {
		if err := s.waitLog(sv, "Server is ready"); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	if n > 1 {
		// Every server must know the metadata leader, or a stream of n
		// replicas finds no peers to be placed on.
		for _, sv := range s.servers {
			if err := s.waitLog(sv, metaLeaderLogs...); err != nil {
				t.Fatalf("natstest: %v", err)
			}
		}
	}
	return s
}

// metaLeaderLogs are the log lines of a server that knows the JetStream
// cluster's metadata leader (itself or another).
var metaLeaderLogs = []string{"Self is new JetStream cluster metadata leader", "JetStream cluster new metadata leader",
	"JetStream cluster new remote metadata leader"}

// config is the configuration file of one server.
func (s *Servers) config(sv *server, opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nlisten: %q\n", sv.name, net.JoinHostPort(sv.host, fmt.Sprint(sv.port)))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 256MB\n  max_file_store: 8GB\n}\n", sv.store)
	if len(s.servers) > 1 {
		var routes []string
		for _, o := range s.servers {
			if o != sv {
				routes = append(routes, fmt.Sprintf("%q", "nats-route://"+net.JoinHostPort(o.host, fmt.Sprint(o.cport))))
			}
		}
		fmt.Fprintf(&b, "cluster {\n  name: \"bulwark-test\"\n  listen: %q\n  routes: [%s]\n  no_advertise: %t\n}\n",
			net.JoinHostPort(sv.host, fmt.Sprint(sv.cport)), strings.Join(routes, ", "), opts.NoAdvertise)
	}
	b.WriteString(opts.Config)
	b.WriteString("\n")
	return b.String()
}

// freePorts returns n distinct TCP ports that were free on loopback.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start runs one server process, its output appended to its log file.
func (s *Servers) start(sv *server) error {
	logf, err := os.OpenFile(sv.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return err
	}
	sv.logFrom = st.Size()
	args := []string{s.bin, "-c", sv.conf}
	if sv.ns != "" {
		args = append([]string{"ip", "netns", "exec", sv.ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", sv.name, err)
	}
	sv.cmd, sv.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(sv.done)
	return nil
}

// waitLog waits until the server's log since its last start has one of
// wants.
func (s *Servers) waitLog(sv *server, wants ...string) error {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		for _, want := range wants {
			if s.logHas(sv, want) {
				return nil
			}
		}
		select {
		case <-sv.done:
			return fmt.Errorf("%s exited before %q: %s", sv.name, wants[0], s.tail(sv))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no %q within %s: %s", sv.name, wants[0], readyTimeout, s.tail(sv))
}

func (s *Servers) logHas(sv *server, want string) bool {
	b, err := os.ReadFile(sv.log)
	if err != nil || int64(len(b)) < sv.logFrom {
		return false
	}
	return bytes.Contains(b[sv.logFrom:], []byte(want))
}

// tail is the last lines of a server's log, for failure messages.
func (s *Servers) tail(sv *server) string {
	f, err := os.Open(sv.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// URLs are the client URLs of every server, running or not, in order.
func (s *Servers) URLs() []string {
	var urls []string
	for i := range s.servers {
		urls = append(urls, s.URL(i))
	}
	return urls
}

// URL is the client URL of server i.
func (s *Servers) URL(i int) string {
	sv := s.servers[i]
	return "nats://" + net.JoinHostPort(sv.host, fmt.Sprint(sv.port))
}

// Len is the number of servers.
func (s *Servers) Len() int { return len(s.servers) }

// Pid is the process id of server i, 0 when it is not running: the
// server's own (`ip netns exec` execs it), e.g. to read its CPU time.
func (s *Servers) Pid(i int) int {
	if cmd := s.servers[i].cmd; cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Kill stops server i at once (SIGKILL) and waits for it to exit; its
// store is kept for Restart.
func (s *Servers) Kill(i int) {
	s.t.Helper()
	if err := s.signal(s.servers[i], syscall.SIGKILL); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
}

// Stop stops server i gracefully (SIGTERM) and waits for it to exit.
func (s *Servers) Stop(i int) {
	s.t.Helper()
	if err := s.signal(s.servers[i], syscall.SIGTERM); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
}

func (s *Servers) signal(sv *server, sig syscall.Signal) error {
	if sv.cmd == nil {
		return nil
	}
	if err := sv.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", sv.name, err)
	}
	select {
	case <-sv.done:
	case <-time.After(readyTimeout):
		_ = sv.cmd.Process.Kill()
		<-sv.done
	}
	sv.cmd = nil
	return nil
}

// Restart starts server i again (killing it first if it runs) with the
// same ports, configuration and store, and waits until it is ready.
func (s *Servers) Restart(i int) {
	s.t.Helper()
	sv := s.servers[i]
	s.Kill(i)
	if err := s.start(sv); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	if err := s.waitLog(sv, "Server is ready"); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
}

// Log is server i's log (every start), for a failing test to show.
func (s *Servers) Log(i int) string {
	b, _ := os.ReadFile(s.servers[i].log)
	return string(b)
}

// stopAll kills every running server (the test's cleanup).
func (s *Servers) stopAll() {
	for _, sv := range s.servers {
		if err := s.signal(sv, syscall.SIGKILL); err != nil {
			s.t.Log(err)
		}
	}
	if s.t.Failed() {
		for _, sv := range s.servers {
			s.t.Logf("natstest: %s log tail:\n%s", sv.name, s.tail(sv))
		}
	}
}
