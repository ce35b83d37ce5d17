package configs_test

// Tests of the deployment artefacts: the Kubernetes manifest (strict decode into the API types, the embedded HCL
// through Bulwark's own parser, the security posture) and the systemd unit (systemd-analyze verify, hardening).

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
)

const (
	manifestPath = "kubernetes/daemonset.yaml"
	unitPath     = "systemd/bulwark.service"
	namespace    = "bulwark"
	configMapKey = "bulwark.hcl"
	configDir    = "/etc/bulwark"
)

// manifest is a set of Kubernetes documents (daemonset.yaml, or the Helm chart's output) decoded into the API
// types.
type manifest struct {
	name string // where it comes from, for messages
	ns   *corev1.Namespace
	sa   *corev1.ServiceAccount
	cm   *corev1.ConfigMap
	ds   *appsv1.DaemonSet
	pm   *monitoringv1.PodMonitor
	raw  map[string][]byte // document per kind
}

// strict decodes one YAML document into v, rejecting unknown and duplicate fields.
func strict(t *testing.T, kind string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: strict decode into the API type: %v", kind, err)
	}
}

func loadManifest(t *testing.T) *manifest {
	t.Helper()
	data, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeManifest(t, manifestPath, data)
	if m.ns == nil || m.pm != nil {
		t.Fatalf("%s: want a Namespace and no PodMonitor; got %v", manifestPath, keys(m.raw))
	}
	return m
}

// decodeManifest decodes the documents of data strictly, each into its API type: a ServiceAccount, a ConfigMap
// and a DaemonSet, perhaps a Namespace and a PodMonitor, nothing else.
func decodeManifest(t *testing.T, name string, data []byte) *manifest {
	t.Helper()
	m := &manifest{name: name, raw: map[string][]byte{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue // a comment block
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		key := tm.APIVersion + "/" + tm.Kind
		if _, dup := m.raw[key]; dup {
			t.Fatalf("%s: two %s documents", name, key)
		}
		m.raw[key] = doc
		switch key {
		case "v1/Namespace":
			m.ns = &corev1.Namespace{}
			strict(t, key, doc, m.ns)
		case "v1/ServiceAccount":
			m.sa = &corev1.ServiceAccount{}
			strict(t, key, doc, m.sa)
		case "v1/ConfigMap":
			m.cm = &corev1.ConfigMap{}
			strict(t, key, doc, m.cm)
		case "apps/v1/DaemonSet":
			m.ds = &appsv1.DaemonSet{}
			strict(t, key, doc, m.ds)
		case "monitoring.coreos.com/v1/PodMonitor":
			m.pm = &monitoringv1.PodMonitor{}
			strict(t, key, doc, m.pm)
		default:
			t.Fatalf("%s: unexpected document %q", name, key)
		}
	}
	if m.sa == nil || m.cm == nil || m.ds == nil {
		t.Fatalf("%s: want ServiceAccount, ConfigMap and DaemonSet; got %v", name, keys(m.raw))
	}
	return m
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes()
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// container returns the DaemonSet's only container.
func (m *manifest) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want 1 container, got %d", len(cs))
	}
	if n := len(m.ds.Spec.Template.Spec.InitContainers); n != 0 {
		t.Fatalf("want no init containers, got %d", n)
	}
	return &cs[0]
}

// nodeIP is the node IP the tests give the config's env("NODE_IP") (the downward API's status.hostIP).
const nodeIP = "198.18.0.7"

// parseConfig runs the ConfigMap's HCL through Bulwark's config parser (interfaces are the nodes', not ours),
// with NODE_IP set as the DaemonSet's downward API sets it.
func (m *manifest) parseConfig(t *testing.T) *config.Config {
	t.Helper()
	t.Setenv("NODE_IP", nodeIP)
	src, ok := m.cm.Data[configMapKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q (keys: %v)", m.cm.Name, configMapKey, slices.Sorted(maps.Keys(m.cm.Data)))
	}
	cfg, diags := config.ParseWithOptions(configMapKey, []byte(src), config.Options{SkipInterfaceCheck: true})
	if len(diags) != 0 { // warnings count too
		t.Fatalf("ConfigMap %s: %s is not a clean Bulwark config:\n%s", m.cm.Name, configMapKey, config.FormatDiagnostics(diags))
	}
	if cfg == nil {
		t.Fatal("config.ParseWithOptions returned no config and no diagnostics")
	}
	return cfg
}

func (m *manifest) volume(t *testing.T, name string) *corev1.Volume {
	t.Helper()
	for i, v := range m.ds.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &m.ds.Spec.Template.Spec.Volumes[i]
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

// hostPathMount returns the container's mount of the volume whose hostPath is hostPath.
func (m *manifest) hostPathMount(t *testing.T, hostPath string) (*corev1.Volume, *corev1.VolumeMount) {
	t.Helper()
	c := m.container(t)
	for i, v := range m.ds.Spec.Template.Spec.Volumes {
		if v.HostPath == nil || path.Clean(v.HostPath.Path) != hostPath {
			continue
		}
		for j, vm := range c.VolumeMounts {
			if vm.Name == v.Name {
				return &m.ds.Spec.Template.Spec.Volumes[i], &c.VolumeMounts[j]
			}
		}
		t.Fatalf("hostPath volume %q (%s) is not mounted in the container", v.Name, hostPath)
	}
	t.Fatalf("no hostPath volume for %s", hostPath)
	return nil, nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	p, dir = path.Clean(p), path.Clean(dir)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func TestManifestDecodesStrictly(t *testing.T) {
	m := loadManifest(t)

	// Names and namespaces, with apimachinery's validators.
	for _, o := range []struct {
		kind string
		meta metav1.ObjectMeta
	}{
		{"Namespace", m.ns.ObjectMeta},
		{"ServiceAccount", m.sa.ObjectMeta},
		{"ConfigMap", m.cm.ObjectMeta},
		{"DaemonSet", m.ds.ObjectMeta},
	} {
		if errs := validation.IsDNS1123Label(o.meta.Name); len(errs) != 0 {
			t.Errorf("%s name %q: %v", o.kind, o.meta.Name, errs)
		}
		if o.kind == "Namespace" {
			if o.meta.Namespace != "" {
				t.Errorf("Namespace has a namespace %q", o.meta.Namespace)
			}
			continue
		}
		if o.meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.meta.Name, o.meta.Namespace, namespace)
		}
		errs := metav1validation.ValidateLabels(o.meta.Labels, field.NewPath(o.kind, "metadata", "labels"))
		for _, e := range errs {
			t.Errorf("%v", e)
		}
	}
	if m.ns.Name != namespace {
		t.Errorf("Namespace %q, want %q", m.ns.Name, namespace)
	}
	// hostNetwork, hostPath and capabilities need the "privileged" Pod Security level for the namespace.
	if got := m.ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("Namespace label pod-security.kubernetes.io/enforce = %q, want privileged (PSA rejects the pod otherwise)", got)
	}
	if m.cm.Name != "bulwark-config" {
		t.Errorf("ConfigMap name %q, want bulwark-config", m.cm.Name)
	}
	for k := range m.cm.Data {
		if errs := validation.IsConfigMapKey(k); len(errs) != 0 {
			t.Errorf("ConfigMap key %q: %v", k, errs)
		}
	}

	ps := m.ds.Spec.Template.Spec
	if ps.ServiceAccountName != m.sa.Name {
		t.Errorf("DaemonSet serviceAccountName %q, want the manifest's ServiceAccount %q", ps.ServiceAccountName, m.sa.Name)
	}

	// The selector is valid and selects the template's labels (the API server requires it).
	sel := m.ds.Spec.Selector
	if sel == nil {
		t.Fatal("DaemonSet has no selector")
	}
	for _, e := range metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("spec", "selector")) {
		t.Errorf("%v", e)
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	if s.Empty() || !s.Matches(labelSet(m.ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the template's labels %v", s, m.ds.Spec.Template.Labels)
	}

	// Every mount names a declared volume; volume and port names are valid.
	c := m.container(t)
	declared := map[string]bool{}
	for _, v := range ps.Volumes {
		if errs := validation.IsDNS1123Label(v.Name); len(errs) != 0 {
			t.Errorf("volume name %q: %v", v.Name, errs)
		}
		if declared[v.Name] {
			t.Errorf("volume %q declared twice", v.Name)
		}
		declared[v.Name] = true
	}
	seenPaths := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		if !declared[vm.Name] {
			t.Errorf("volumeMount %q names no volume", vm.Name)
		}
		if !path.IsAbs(vm.MountPath) || seenPaths[vm.MountPath] {
			t.Errorf("volumeMount %q: mountPath %q not absolute or duplicated", vm.Name, vm.MountPath)
		}
		seenPaths[vm.MountPath] = true
	}
	for _, p := range c.Ports {
		if errs := validation.IsValidPortName(p.Name); len(errs) != 0 {
			t.Errorf("port name %q: %v", p.Name, errs)
		}
		if errs := validation.IsValidPortNum(int(p.ContainerPort)); len(errs) != 0 {
			t.Errorf("port %q: %v", p.Name, errs)
		}
		// With hostNetwork the API server requires hostPort == containerPort when set.
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			t.Errorf("port %q: hostPort %d != containerPort %d under hostNetwork", p.Name, p.HostPort, p.ContainerPort)
		}
	}
	if c.Image == "" {
		t.Error("container has no image")
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

func TestManifestConfigMapIsValidBulwarkConfig(t *testing.T) {
	m := loadManifest(t)
	cfg := m.parseConfig(t)

	if len(cfg.Interfaces) == 0 {
		t.Fatal("config has no interface")
	}
	// Every node has a default route, not every node an eth0.
	if cfg.Interfaces[0].Name != config.InterfaceAuto || cfg.Interfaces[0].Attach != "auto" {
		t.Errorf("interface %q attach %q, want auto attach auto", cfg.Interfaces[0].Name, cfg.Interfaces[0].Attach)
	}
	m.checkNodeIPMetrics(t, cfg)

	// Every path the agent writes is on a hostPath mount (the root filesystem is read-only).
	for _, p := range []struct{ what, path, host string }{
		{"pin_dir", cfg.PinDir, "/sys/fs/bpf"},
		{"control.socket", cfg.Control.Socket, "/run/bulwark"},
		{"log.audit_file", cfg.Log.AuditFile, "/var/log/bulwark"},
	} {
		if p.path == "" {
			continue
		}
		_, vm := m.hostPathMount(t, p.host)
		if !within(p.path, vm.MountPath) {
			t.Errorf("%s %q is not under the %s hostPath mount at %q", p.what, p.path, p.host, vm.MountPath)
		}
		if vm.ReadOnly {
			t.Errorf("%s: mount %q is read-only", p.what, vm.MountPath)
		}
	}
	if cfg.DetachOnExit {
		t.Error("detach_on_exit = true: a rolling update would leave each node unfiltered while its pod restarts")
	}
}

// checkNodeIPMetrics checks that the agent's metrics listen on the node IP, from the downward API: the kubelet
// probes the pod IP (= the node IP under hostNetwork), and the node's other addresses (an edge node's public
// ones) do not serve them.
func (m *manifest) checkNodeIPMetrics(t *testing.T, cfg *config.Config) {
	t.Helper()
	host, _, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		t.Fatalf("metrics.listen %q: %v", cfg.Metrics.Listen, err)
	}
	if host != nodeIP {
		t.Errorf("metrics.listen %q with NODE_IP=%s: want the node IP, through env(\"NODE_IP\")", cfg.Metrics.Listen, nodeIP)
	}
	var found bool
	for _, e := range m.container(t).Env {
		if e.Name == "NODE_IP" {
			found = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP"
		}
	}
	if !found {
		t.Errorf("%s: the container's env NODE_IP is not the downward API's status.hostIP", m.name)
	}
}

func TestManifestCommandReadsTheConfigMap(t *testing.T) {
	m := loadManifest(t)
	c := m.container(t)

	v := m.volume(t, "config")
	if v.ConfigMap == nil || v.ConfigMap.Name != m.cm.Name {
		t.Fatalf("volume config is not the ConfigMap %q: %+v", m.cm.Name, v.VolumeSource)
	}
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == v.Name {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatal("the config volume is not mounted")
	}
	if mount.MountPath != configDir {
		t.Errorf("config volume mounted at %q, want %q", mount.MountPath, configDir)
	}
	if mount.SubPath != "" {
		t.Errorf("config volume uses subPath %q: ConfigMap updates would never reach the pod", mount.SubPath)
	}
	// The file name in the volume: the key itself, unless items map it.
	file := configMapKey
	if len(v.ConfigMap.Items) > 0 {
		file = ""
		for _, it := range v.ConfigMap.Items {
			if it.Key == configMapKey {
				file = it.Path
			}
		}
		if file == "" {
			t.Fatalf("config volume items do not include key %q", configMapKey)
		}
	}
	want := path.Join(mount.MountPath, file)

	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) < 2 || path.Base(argv[0]) != "bulwark" || argv[1] != "run" {
		t.Fatalf("command %q: want bulwark run --config ...", argv)
	}
	var got string
	for i, a := range argv {
		switch {
		case a == "--config" && i+1 < len(argv):
			got = argv[i+1]
		case strings.HasPrefix(a, "--config="):
			got = strings.TrimPrefix(a, "--config=")
		}
	}
	if got == "" {
		t.Fatalf("command %q has no --config", argv)
	}
	if !within(got, mount.MountPath) || path.Clean(got) != want {
		t.Errorf("--config %q, want %q (key %q of ConfigMap %q at %q)", got, want, configMapKey, m.cm.Name, mount.MountPath)
	}
}

func TestManifestSecurity(t *testing.T) {
	m := loadManifest(t)
	ps := m.ds.Spec.Template.Spec
	c := m.container(t)

	if !ps.HostNetwork {
		t.Error("hostNetwork must be true: XDP attaches to the node's interfaces")
	}
	if ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want %q with hostNetwork", ps.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
	}
	if ps.HostPID || ps.HostIPC {
		t.Error("hostPID/hostIPC are not needed")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the agent does not use the Kubernetes API: automountServiceAccountToken must be false")
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container is privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0 (the pins, the 0600 socket and the audit log are root's on the node)")
	}
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
		t.Error("runAsNonRoot contradicts runAsUser 0")
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		t.Errorf("procMount %q", *sc.ProcMount)
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	add := capNames(sc.Capabilities.Add)
	if want := []string{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}; !slices.Equal(add, want) {
		t.Errorf("capabilities.add %v, want exactly %v", add, want)
	}
	if drop := capNames(sc.Capabilities.Drop); !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", drop)
	}
	if psc := ps.SecurityContext; psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		t.Error("pod seccomp Unconfined is not needed")
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		t.Error("container seccomp Unconfined is not needed")
	}

	// Host mounts.
	bpf, bpfMount := m.hostPathMount(t, "/sys/fs/bpf")
	if bpfMount.MountPath != "/sys/fs/bpf" {
		t.Errorf("bpffs mounted at %q, want /sys/fs/bpf", bpfMount.MountPath)
	}
	if bpf.HostPath.Type == nil || (*bpf.HostPath.Type != corev1.HostPathDirectoryOrCreate && *bpf.HostPath.Type != corev1.HostPathDirectory) {
		t.Errorf("bpffs hostPath type %v, want Directory or DirectoryOrCreate", bpf.HostPath.Type)
	}
	if _, vm := m.hostPathMount(t, "/run/bulwark"); vm.ReadOnly {
		t.Error("/run/bulwark must be writable (control socket)")
	}
	if _, vm := m.hostPathMount(t, "/var/log/bulwark"); vm.ReadOnly {
		t.Error("/var/log/bulwark must be writable (audit log)")
	}
	// The API server rejects Bidirectional propagation unless the container is privileged
	// (k8s.io/kubernetes/pkg/apis/core/validation: "Bidirectional mount propagation is available only to
	// privileged containers"); reproduce that check here.
	for _, vm := range c.VolumeMounts {
		if vm.MountPropagation == nil {
			continue
		}
		switch *vm.MountPropagation {
		case corev1.MountPropagationNone, corev1.MountPropagationHostToContainer:
		case corev1.MountPropagationBidirectional:
			t.Errorf("volumeMount %q: Bidirectional propagation needs a privileged container", vm.Name)
		default:
			t.Errorf("volumeMount %q: unknown mountPropagation %q", vm.Name, *vm.MountPropagation)
		}
	}
	// Only the expected host paths.
	allowed := []string{"/sys/fs/bpf", "/run/bulwark", "/var/log/bulwark"}
	for _, v := range ps.Volumes {
		if v.HostPath != nil && !slices.Contains(allowed, path.Clean(v.HostPath.Path)) {
			t.Errorf("unexpected hostPath volume %q: %s", v.Name, v.HostPath.Path)
		}
	}
}

func capNames(cs []corev1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	slices.Sort(out)
	return out
}

func TestManifestProbesAndMetricsPort(t *testing.T) {
	m := loadManifest(t)
	cfg := m.parseConfig(t)
	c := m.container(t)

	_, portStr, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		t.Fatalf("metrics.listen %q: %v", cfg.Metrics.Listen, err)
	}
	listenPort, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatalf("metrics.listen %q: port %v", cfg.Metrics.Listen, err)
	}

	var metrics *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "metrics" {
			metrics = &c.Ports[i]
		}
	}
	if metrics == nil {
		t.Fatal("no container port named metrics")
	}
	if int(metrics.ContainerPort) != listenPort {
		t.Errorf("container port metrics = %d, but the ConfigMap's metrics.listen is %q", metrics.ContainerPort, cfg.Metrics.Listen)
	}
	if metrics.Protocol != "" && metrics.Protocol != corev1.ProtocolTCP {
		t.Errorf("metrics port protocol %q", metrics.Protocol)
	}

	resolve := func(p intstr.IntOrString) int {
		if p.Type == intstr.String {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					return int(cp.ContainerPort)
				}
			}
			t.Errorf("probe port %q names no container port", p.StrVal)
			return -1
		}
		return p.IntValue()
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", pr.name)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path {
			t.Errorf("%s path %q, want %q", pr.name, g.Path, pr.path)
		}
		if got := resolve(g.Port); got != listenPort {
			t.Errorf("%s port %v resolves to %d, want the metrics port %d", pr.name, g.Port.String(), got, listenPort)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s scheme %q: the metrics endpoint is plain HTTP", pr.name, g.Scheme)
		}
		if g.Host != "" {
			t.Errorf("%s host %q: leave it empty (the pod IP, i.e. the node IP)", pr.name, g.Host)
		}
	}
}

func TestManifestScheduling(t *testing.T) {
	m := loadManifest(t)
	spec := m.ds.Spec
	ps := spec.Template.Spec
	c := m.container(t)

	if spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || spec.UpdateStrategy.RollingUpdate == nil ||
		spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil || spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("updateStrategy %+v, want RollingUpdate maxUnavailable 1", spec.UpdateStrategy)
	}
	if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds != 15 {
		t.Error("terminationGracePeriodSeconds must be 15")
	}
	if ps.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", ps.PriorityClassName)
	}
	tolerateAll := false
	for _, tol := range ps.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("want a toleration {operator: Exists} that tolerates every taint")
	}
	if len(ps.NodeSelector) != 0 || ps.Affinity != nil {
		t.Error("the DaemonSet must run on every node: no nodeSelector or affinity")
	}
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := r.Requests[name]; !ok {
			t.Errorf("no %s request", name)
		}
	}
	lim, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit")
	}
	if req := r.Requests[corev1.ResourceMemory]; req.Cmp(lim) > 0 {
		t.Errorf("memory request %s above limit %s", req.String(), lim.String())
	}
	// The preallocated LRU maps are charged to the container's memory cgroup (Linux >= 5.11): the limit must
	// cover them. ~184 bytes per source entry, ~88 per rule bucket (element header, key, value), plus slack.
	want, diags := desired.Compile(m.parseConfig(t))
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	need := int64(want.Sizes.Sources)*184 + int64(want.Sizes.RuleBuckets)*88 + 64<<20
	if lim.Value() < need {
		t.Errorf("memory limit %s is below the ~%d MiB the configured maps and the agent need", lim.String(), need>>20)
	}
}

// --- systemd ---

func goTool(t *testing.T) string {
	t.Helper()
	p := goToolPath()
	if p == "" {
		t.Fatal("no go tool on PATH (or in $GOROOT/bin, /usr/local/go/bin) to build bulwark")
	}
	return p
}

// goToolPath is the go command's path, "" when there is none.
func goToolPath() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// go test sets GOROOT for the test binary's environment only when asked to; fall back to the usual install.
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if _, err := os.Stat(p); err == nil && filepath.IsAbs(p) {
			return p
		}
	}
	return ""
}

func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("SKIPPED: systemd-analyze is not installed, so configs/systemd/bulwark.service was NOT verified " +
			"(install systemd to run this test)")
	}
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/bulwark"
	if !bytes.Contains(src, []byte(installed)) {
		t.Fatalf("%s does not reference %s", unitPath, installed)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "bulwark")
	build := exec.Command(goTool(t), "build", "-o", bin, "github.com/bulwark-filter/bulwark/cmd/bulwark")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit := bytes.ReplaceAll(src, []byte(installed), []byte(bin))
	if bytes.Contains(unit, []byte("/usr/local/bin/")) {
		t.Fatalf("unit still references /usr/local/bin after rewriting:\n%s", unit)
	}
	for _, key := range []string{"ExecStart=", "ExecStartPre=", "ExecReload="} {
		if !bytes.Contains(unit, []byte(key+bin+" ")) {
			t.Errorf("%s does not run the rewritten binary", key)
		}
	}
	unitFile := filepath.Join(dir, "bulwark.service")
	if err := os.WriteFile(unitFile, unit, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(analyze, "verify", "--man=no", unitFile)
	out, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze verify %s:\n%s", unitFile, out)
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
	// systemd-analyze exits 0 on warnings ("Unknown key ..., ignoring"); any line about our unit fails the test.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, unitFile) || strings.Contains(line, "bulwark.service") || strings.Contains(line, bin) {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}

// unitKeys parses a unit file into section -> key -> values (in order).
func unitKeys(t *testing.T, src []byte) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if out[section] == nil {
				out[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", unitPath, i+1, line)
			}
			k = strings.TrimSpace(k)
			out[section][k] = append(out[section][k], strings.TrimSpace(v))
		}
	}
	return out
}

func TestSystemdUnitHardening(t *testing.T) {
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	u := unitKeys(t, src)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("no [Service] section")
	}
	one := func(k string) string {
		t.Helper()
		v := svc[k]
		if len(v) != 1 {
			t.Errorf("%s: want exactly one value, got %q", k, v)
			return ""
		}
		return v[0]
	}
	for k, want := range map[string]string{
		"Type":                 "notify",
		"NoNewPrivileges":      "yes",
		"ProtectSystem":        "strict",
		"ProtectHome":          "yes",
		"PrivateTmp":           "yes",
		"ProtectKernelModules": "yes",
		"Restart":              "on-failure",
		"KillSignal":           "SIGTERM",
	} {
		if got := one(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}

	if start := one("ExecStart"); !strings.HasSuffix(strings.Fields(start + " x")[0], "/bulwark") ||
		!strings.Contains(start, " run ") || !strings.Contains(start, "--config /etc/bulwark/bulwark.hcl") {
		t.Errorf("ExecStart=%q, want bulwark run --config /etc/bulwark/bulwark.hcl", start)
	}
	if pre := one("ExecStartPre"); !strings.Contains(pre, "/bulwark config check ") || !strings.Contains(pre, "/etc/bulwark/bulwark.hcl") {
		t.Errorf("ExecStartPre=%q, want bulwark config check /etc/bulwark/bulwark.hcl", pre)
	}
	// kill -HUP succeeds whatever the agent makes of the config; `bulwark reload` waits for its answer and
	// fails on a rejection (test/agent TestSystemdExecReload runs this line against an agent). It talks to
	// the default control socket, which must be the config's default, in the unit's RuntimeDirectory.
	start, rel := strings.Fields(one("ExecStart")+" x"), strings.Fields(one("ExecReload")+" x")
	if !slices.Equal(rel, []string{start[0], "reload", "x"}) {
		t.Errorf("ExecReload=%q, want %s reload (the ExecStart binary)", one("ExecReload"), start[0])
	}
	if path.Dir(config.DefaultControlSocket) != "/run/"+one("RuntimeDirectory") {
		t.Errorf("the default control socket %s is not in RuntimeDirectory=%s", config.DefaultControlSocket, one("RuntimeDirectory"))
	}

	// Capabilities: the needed ones, and nothing dangerous beyond them.
	caps := strings.Fields(one("CapabilityBoundingSet"))
	slices.Sort(caps)
	if want := []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN"}; !slices.Equal(caps, want) {
		t.Errorf("CapabilityBoundingSet=%v, want exactly %v", caps, want)
	}
	for _, bad := range []string{"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_NET_RAW", "CAP_SYS_BOOT"} {
		if slices.Contains(caps, bad) {
			t.Errorf("CapabilityBoundingSet contains %s", bad)
		}
	}
	if strings.HasPrefix(one("CapabilityBoundingSet"), "~") {
		t.Error("CapabilityBoundingSet is a deny list (~...): want an allow list")
	}
	if amb := strings.Fields(strings.Join(svc["AmbientCapabilities"], " ")); len(amb) > 0 {
		for _, c := range amb {
			if !slices.Contains(caps, c) {
				t.Errorf("AmbientCapabilities %s is not in the bounding set", c)
			}
		}
	}

	// ProtectSystem=strict: the agent's writable paths must be opened up.
	rw := strings.Fields(strings.Join(svc["ReadWritePaths"], " "))
	if !slices.Contains(rw, "/sys/fs/bpf") {
		t.Errorf("ReadWritePaths=%v lacks /sys/fs/bpf (pins)", rw)
	}
	if one("RuntimeDirectory") != "bulwark" {
		t.Error("RuntimeDirectory=bulwark (the /run/bulwark control socket) is missing")
	}
	if !slices.Contains(rw, "/var/log/bulwark") && one("LogsDirectory") != "bulwark" {
		t.Error("/var/log/bulwark (audit log) is not writable")
	}
	if fams := svc["RestrictAddressFamilies"]; len(fams) > 0 && !strings.Contains(strings.Join(fams, " "), "AF_NETLINK") {
		t.Errorf("RestrictAddressFamilies=%v lacks AF_NETLINK (XDP attach)", fams)
	}
	if sf := strings.Join(svc["SystemCallFilter"], " "); sf != "" && !strings.Contains(" "+sf+" ", " bpf ") {
		t.Errorf("SystemCallFilter=%q does not allow bpf()", sf)
	}
	if inst := u["Install"]; inst == nil || len(inst["WantedBy"]) == 0 {
		t.Error("no [Install] WantedBy")
	}
}
