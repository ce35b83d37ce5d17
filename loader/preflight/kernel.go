package preflight

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf"
)

// version is a Linux release, major.minor.
type version struct{ major, minor int }

func (v version) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v version) code() uint32 { return uint32(v.major)<<16 | uint32(v.minor)<<8 }

// helperSince is the first Linux release with each helper the datapath
// calls (the kernel's include/uapi/linux/bpf.h history); a test checks every
// helper of the object is here.
var helperSince = map[asm.BuiltinFunc]version{
	asm.FnMapLookupElem:     {3, 19},
	asm.FnMapUpdateElem:     {3, 19},
	asm.FnMapDeleteElem:     {3, 19},
	asm.FnGetSmpProcessorId: {4, 1},
	asm.FnRingbufReserve:    {5, 8},
	asm.FnRingbufSubmit:     {5, 8},
	asm.FnKtimeGetCoarseNs:  {5, 11},
	asm.FnLoop:              {5, 17},
	asm.FnXdpLoadBytes:      {5, 18},
}

// mapTypeSince is the first Linux release with each map type the datapath
// uses; a test checks every map type of the object is here.
var mapTypeSince = map[ebpf.MapType]version{
	ebpf.Array:       {3, 19},
	ebpf.Hash:        {3, 19},
	ebpf.PerCPUArray: {4, 6},
	ebpf.PerCPUHash:  {4, 6},
	ebpf.LRUHash:     {4, 10},
	ebpf.LPMTrie:     {4, 11},
	ebpf.RingBuf:     {5, 8},
}

// Releases of the other kernel facts the datapath relies on.
var (
	xdpSince        = version{4, 8}  // BPF_PROG_TYPE_XDP
	noPreallocSince = version{4, 6}  // BPF_F_NO_PREALLOC
	xdpLinkSince    = version{5, 9}  // bpf_link for XDP (BPF_LINK_CREATE with BPF_XDP)
	memcgSince      = version{5, 11} // BPF memory charged to the memory cgroup, not RLIMIT_MEMLOCK
)

// btfPath is where the kernel publishes its own BTF.
const btfPath = "/sys/kernel/btf/vmlinux"

// requirement is one kernel feature the datapath needs and how to probe it.
type requirement struct {
	what  string
	since version
	probe func() error
}

// requirements lists what the datapath object needs of the kernel: its
// program type, every helper its program calls and every map type (and the
// no-prealloc flag) its maps use, read from the object itself.
func requirements() ([]requirement, error) {
	spec, err := bpf.LoadBulwark()
	if err != nil {
		return nil, fmt.Errorf("read embedded datapath object: %w", err)
	}
	reqs := []requirement{{"XDP program type", xdpSince, func() error { return features.HaveProgramType(ebpf.XDP) }}}
	helpers := map[asm.BuiltinFunc]bool{}
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ins.IsBuiltinCall() {
				helpers[asm.BuiltinFunc(ins.Constant)] = true
			}
		}
	}
	types := map[ebpf.MapType]bool{}
	noPrealloc := false
	for _, m := range spec.Maps {
		types[m.Type] = true
		noPrealloc = noPrealloc || m.Flags&unix.BPF_F_NO_PREALLOC != 0
	}
	for _, fn := range sortedKeys(helpers) {
		reqs = append(reqs, requirement{"helper " + helperName(fn), helperSince[fn], func() error {
			return features.HaveProgramHelper(ebpf.XDP, fn)
		}})
	}
	for _, t := range sortedKeys(types) {
		reqs = append(reqs, requirement{"map type " + t.String(), mapTypeSince[t], func() error {
			return features.HaveMapType(t)
		}})
	}
	if noPrealloc {
		reqs = append(reqs, requirement{"map flag BPF_F_NO_PREALLOC", noPreallocSince, func() error {
			return features.HaveMapFlag(features.BPF_F_NO_PREALLOC)
		}})
	}
	return reqs, nil
}

// helperName is the C name of a helper, e.g. bpf_xdp_load_bytes.
func helperName(fn asm.BuiltinFunc) string {
	s := strings.TrimPrefix(fn.String(), "Fn")
	var b strings.Builder
	b.WriteString("bpf")
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func sortedKeys[K ~uint32](m map[K]bool) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// minimum is the newest release among reqs and what needs it.
func minimum(reqs []requirement) (version, string) {
	var v version
	var what string
	for _, r := range reqs {
		if r.since.code() > v.code() {
			v, what = r.since, r.what
		}
	}
	if xdpLinkSince.code() > v.code() {
		v, what = xdpLinkSince, "bpf_link for XDP"
	}
	return v, what
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelCode is the running kernel's version code, 0 if unknown.
func kernelCode() uint32 {
	v, err := features.LinuxVersionCode()
	if err != nil {
		return 0
	}
	return v
}

// kernelChecks checks the kernel's version, every feature the datapath
// needs (probed), bpf_link for XDP and BTF.
func kernelChecks() []Check {
	reqs, err := requirements()
	if err != nil {
		return []Check{{Name: "bpf features", Status: Fail, Blocking: true, Detail: err.Error(), Fix: "rebuild bulwark (make generate build)"}}
	}
	minV, minWhat := minimum(reqs)
	code := kernelCode()
	kc := Check{Name: "kernel version", Status: OK,
		Detail: fmt.Sprintf("Linux %s; the datapath needs %s or later (for %s)", kernelRelease(), minV, minWhat)}
	if code != 0 && code < minV.code() {
		kc.Status = Warn
		kc.Detail = fmt.Sprintf("Linux %s is older than %s, which the datapath needs (for %s); the feature checks below say what is missing", kernelRelease(), minV, minWhat)
		kc.Fix = fmt.Sprintf("upgrade to Linux %s or later (Debian 12 has 6.1, Ubuntu 22.04 has 5.15: use its HWE kernel, RHEL 9 has 5.14 with backports)", minV)
	}
	out := []Check{kc}

	var missing, unprobed []string
	for _, r := range reqs {
		err := r.probe()
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			missing = append(missing, fmt.Sprintf("%s (Linux %s)", r.what, r.since))
		default:
			unprobed = append(unprobed, fmt.Sprintf("%s: %v", r.what, err))
		}
	}
	fc := Check{Name: "bpf features", Status: OK,
		Detail: fmt.Sprintf("all %d present (%s)", len(reqs), names(reqs))}
	switch {
	case len(unprobed) > 0:
		fc.Status, fc.Blocking, fc.Detail = Fail, true, "cannot probe: "+strings.Join(unprobed, "; ")
		fc.Fix = "run as root (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON) and check that the kernel has CONFIG_BPF_SYSCALL"
	case len(missing) > 0:
		fc.Status, fc.Blocking, fc.Detail = Fail, true, "missing: "+strings.Join(missing, ", ")
		fc.Fix = fmt.Sprintf("run Linux %s or later with CONFIG_BPF_SYSCALL and CONFIG_BPF_JIT", minV)
	}
	out = append(out, fc)

	lc := Check{Name: "bpf_link for XDP", Status: OK, Detail: "present (Linux " + xdpLinkSince.String() + " or later)"}
	if code != 0 && code < xdpLinkSince.code() {
		lc.Status, lc.Blocking, lc.Detail = Fail, true, "Linux "+kernelRelease()+" has no bpf_link for XDP, with which Bulwark attaches and pins"
		lc.Fix = "upgrade to Linux " + minV.String() + " or later"
	}
	out = append(out, lc)

	bc := Check{Name: "kernel BTF", Status: OK, Detail: btfPath + " present"}
	if _, err := os.Stat(btfPath); err != nil {
		bc.Status = Warn
		bc.Detail = btfPath + " absent: the datapath loads without it (it uses no CO-RE relocations), but bpftool and the kernel's own tools see less"
		bc.Fix = "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's default since 2021)"
	}
	return append(out, bc)
}

func names(reqs []requirement) string {
	s := make([]string, len(reqs))
	for i, r := range reqs {
		s[i] = r.what
	}
	return strings.Join(s, ", ")
}
