package configs_test

// Tests of the Helm chart configs/helm/bulwark: `helm template` (helm's Go module, a pinned tool of go.mod) over
// the chart with each values file of helm/testdata; every document of the output decoded strictly into the API
// types, the ConfigMap's HCL through Bulwark's own parser and compile step.

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/bulwark-filter/bulwark/agent/desired"
)

const chartDir = "helm/bulwark"

// chartMeta is what the tests read of Chart.yaml.
type chartMeta struct {
	APIVersion  string `json:"apiVersion"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	Version     string `json:"version"`
	AppVersion  string `json:"appVersion"`
	Home        string `json:"home"`
}

func readChart(t *testing.T) chartMeta {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c chartMeta
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	if c.APIVersion != "v2" || c.Name != "bulwark" || c.AppVersion == "" || c.Version == "" {
		t.Fatalf("Chart.yaml: %+v, want apiVersion v2, name bulwark, a version and an appVersion", c)
	}
	return c
}

// helmBin is the path of the helm binary `go tool` builds (once: the first build of helm takes minutes).
var helmBin = sync.OnceValues(func() (string, error) {
	out, err := exec.Command(goToolPath(), "tool", "-n", "helm").Output()
	return strings.TrimSpace(string(out)), err
})

// helmTemplate renders the chart with values (a file of helm/testdata) as release "bulwark" in namespace
// "bulwark".
func helmTemplate(t *testing.T, values string) []byte {
	t.Helper()
	bin, err := helmBin()
	if err != nil || bin == "" {
		t.Fatalf("go tool -n helm: %q, %v", bin, err)
	}
	cmd := exec.Command(bin, "template", "bulwark", chartDir, "--namespace", namespace,
		"--values", filepath.Join("helm/testdata", values))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("helm template -f %s: %v\n%s", values, err, stderr)
	}
	return out
}

// chartValues is what a values file of helm/testdata sets that the tests check, over the chart's defaults.
type chartValues struct {
	image, iface, attach string
	port                 int
	podMonitor           bool
	pmLabels             map[string]string
	resources            corev1.ResourceRequirements
	tolerations          []corev1.Toleration
}

func res(cpuReq, memReq, cpuLim, memLim string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuReq), corev1.ResourceMemory: resource.MustParse(memReq)},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLim), corev1.ResourceMemory: resource.MustParse(memLim)},
	}
}

func TestHelmChartRenders(t *testing.T) {
	chart := readChart(t)
	defaultImage := "ghcr.io/bulwark-filter/bulwark:" + chart.AppVersion
	everyTaint := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	cases := map[string]chartValues{
		"defaults.yaml": {image: defaultImage, iface: "auto", attach: "auto", port: 9740,
			resources: res("50m", "128Mi", "1", "512Mi"), tolerations: everyTaint},
		"podmonitor.yaml": {image: defaultImage, iface: "auto", attach: "auto", port: 9740, podMonitor: true,
			pmLabels: map[string]string{"release": "kube-prometheus-stack"}, resources: res("50m", "128Mi", "1", "512Mi"), tolerations: everyTaint},
		"custom.yaml": {image: "registry.example.internal/bulwark:0.1.0-rc1", iface: "en*", attach: "native", port: 9741,
			resources: res("20m", "96Mi", "500m", "256Mi"),
			tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoSchedule}}},
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			m := decodeManifest(t, "helm template -f "+file, helmTemplate(t, file))
			checkChartOutput(t, m, want)
		})
	}
}

func checkChartOutput(t *testing.T, m *manifest, want chartValues) {
	t.Helper()
	ds, c := m.ds, m.container(t)
	for _, o := range []struct{ kind, ns string }{{"ServiceAccount", m.sa.Namespace}, {"ConfigMap", m.cm.Namespace}, {"DaemonSet", ds.Namespace}} {
		if o.ns != namespace {
			t.Errorf("%s in namespace %q, want the release's %q", o.kind, o.ns, namespace)
		}
	}
	if c.Image != want.image {
		t.Errorf("image %q, want %q (pinned: the chart's appVersion unless values set a tag)", c.Image, want.image)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.ServiceAccountName != m.sa.Name || (pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken) {
		t.Errorf("pod: hostNetwork %v, service account %q (want %q) without a token", pod.HostNetwork, pod.ServiceAccountName, m.sa.Name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!reflect.DeepEqual(capNames(sc.Capabilities.Add), []string{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}) ||
		!reflect.DeepEqual(capNames(sc.Capabilities.Drop), []string{"ALL"}) {
		t.Errorf("securityContext %+v: want not privileged, all capabilities dropped but BPF, NET_ADMIN, PERFMON and SYS_ADMIN", sc)
	}
	if !reflect.DeepEqual(c.Resources, want.resources) {
		t.Errorf("resources %+v, want %+v", c.Resources, want.resources)
	}
	if !reflect.DeepEqual(pod.Tolerations, want.tolerations) {
		t.Errorf("tolerations %+v, want %+v", pod.Tolerations, want.tolerations)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the DaemonSet's selector %v does not select its pods' labels %v (%v)", ds.Spec.Selector, ds.Spec.Template.Labels, err)
	}

	// The config: Bulwark's parser and compile step accept it; interface and metrics as the values say.
	cfg := m.parseConfig(t)
	if _, diags := desired.Compile(cfg); diags.HasErrors() {
		t.Errorf("the ConfigMap's config does not compile: %v", diags)
	}
	if len(cfg.Interfaces) != 1 || cfg.Interfaces[0].Name != want.iface || cfg.Interfaces[0].Attach != want.attach {
		t.Errorf("interfaces %+v, want %q attach %q", cfg.Interfaces, want.iface, want.attach)
	}
	m.checkNodeIPMetrics(t, cfg)
	if cfg.Metrics.Listen != nodeIP+":"+strconv.Itoa(want.port) {
		t.Errorf("metrics.listen %q, want %s:%d", cfg.Metrics.Listen, nodeIP, want.port)
	}
	var metricsPort *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = &c.Ports[i]
		}
	}
	if metricsPort == nil || int(metricsPort.ContainerPort) != want.port || metricsPort.HostPort != metricsPort.ContainerPort {
		t.Errorf("container port metrics %+v, want %d (host port the same)", metricsPort, want.port)
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v: want an HTTP probe on the metrics port", pr)
		}
	}
	if !cfg.WatchConfig || cfg.DetachOnExit {
		t.Errorf("watch_config %v, detach_on_exit %v: want the ConfigMap's changes picked up, and fail-static", cfg.WatchConfig, cfg.DetachOnExit)
	}
	_, mount := m.hostPathMount(t, "/sys/fs/bpf")
	if !within(cfg.PinDir, mount.MountPath) {
		t.Errorf("pin_dir %q is not on the node's bpffs mount %q", cfg.PinDir, mount.MountPath)
	}

	// The PodMonitor: only when enabled; it selects the DaemonSet's pods and scrapes their metrics port.
	if (m.pm != nil) != want.podMonitor {
		t.Fatalf("PodMonitor rendered: %v, want %v", m.pm != nil, want.podMonitor)
	}
	if m.pm == nil {
		return
	}
	pm := m.pm
	if pm.Namespace != namespace || !reflect.DeepEqual(pm.Spec.Selector.MatchLabels, ds.Spec.Selector.MatchLabels) {
		t.Errorf("PodMonitor in %q selecting %v, want %q selecting %v", pm.Namespace, pm.Spec.Selector.MatchLabels, namespace, ds.Spec.Selector.MatchLabels)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port == nil ||
		*pm.Spec.PodMetricsEndpoints[0].Port != "metrics" || pm.Spec.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want the metrics port, /metrics", pm.Spec.PodMetricsEndpoints)
	}
	for k, v := range want.pmLabels {
		if pm.Labels[k] != v {
			t.Errorf("PodMonitor label %s = %q, want %q", k, pm.Labels[k], v)
		}
	}
}

// TestManifestImageIsTheChartsAppVersion: the plain DaemonSet runs the image the chart pins.
func TestManifestImageIsTheChartsAppVersion(t *testing.T) {
	chart := readChart(t)
	if img := loadManifest(t).container(t).Image; img != "ghcr.io/bulwark-filter/bulwark:"+chart.AppVersion {
		t.Errorf("daemonset.yaml image %q, want the chart's appVersion %s", img, chart.AppVersion)
	}
}
