package preflight

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/loader"
)

// interfaceChecks checks one interface: it exists, its driver, the XDP
// program already on it (Bulwark's own, adopted in place, or another's,
// which makes the attach fail) and, with attachTest, whether native XDP
// attaches.
func interfaceChecks(i Interface, pinRoot string, attachTest bool) []Check {
	prefix := "interface " + i.Name
	l, err := netlink.LinkByName(i.Name)
	if err != nil {
		return []Check{{Name: prefix, Status: Fail, Blocking: true, Detail: fmt.Sprintf("not found: %v", err),
			Fix: "name an existing interface in the config (`ip -br link` lists them)"}}
	}
	drv := driver(i.Name)
	out := []Check{{Name: prefix + ": driver", Status: OK, Detail: drv}}

	x := l.Attrs().Xdp
	ownID, ours := loader.PinnedProgramID(loader.PinDir(pinRoot, i.Name))
	xc := Check{Name: prefix + ": xdp programs", Status: OK, Detail: "none attached"}
	switch {
	case x == nil || !x.Attached || x.ProgId == 0:
	case ours && ownID == x.ProgId:
		xc.Detail = fmt.Sprintf("Bulwark's own program (id %d, %s mode) is attached through the link pinned in %s; it is swapped in place",
			x.ProgId, modeName(x.AttachMode), loader.PinDir(pinRoot, i.Name))
	default:
		xc.Status, xc.Blocking = Fail, true
		xc.Detail = fmt.Sprintf("another XDP program is attached: id %d%s, %s mode; the kernel allows one, so Bulwark's attach would fail",
			x.ProgId, progName(x.ProgId), modeName(x.AttachMode))
		xc.Fix = fmt.Sprintf("find its owner (`bpftool net show dev %s`, `ip link show dev %s`) and remove it if it is not needed: "+
			"`ip link set dev %s xdp off` (a program attached through a bpf_link goes when its owner closes or unpins the link)",
			i.Name, i.Name, i.Name)
	}
	out = append(out, xc)

	mc := Check{Name: prefix + ": native xdp", Status: OK}
	switch {
	case x != nil && x.Attached && (x.AttachMode == nl.XDP_ATTACHED_DRV || x.AttachMode == nl.XDP_ATTACHED_HW):
		mc.Detail = fmt.Sprintf("supported (a program is attached in native mode); driver %s", drv)
	case x != nil && x.Attached:
		mc.Detail = "not tested: a program is attached in generic mode already"
	case attachTest:
		mc = attachCheck(mc, l.Attrs().Index, drv, i.Attach)
	default:
		mc.Detail = fmt.Sprintf("not tested (driver %s; `bulwark preflight --attach-test` tries it); with attach = \"auto\" the agent falls back to generic mode and says so", drv)
	}
	return append(out, mc)
}

// driver is the interface's driver name as ethtool reports it, or what
// sysfs says when the ioctl fails.
func driver(name string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(fd)
		if info, err := unix.IoctlGetEthtoolDrvinfo(fd, name); err == nil {
			return unix.ByteSliceToString(info.Driver[:])
		}
	}
	if p, err := os.Readlink(filepath.Join("/sys/class/net", name, "device", "driver")); err == nil {
		return filepath.Base(p)
	}
	return "unknown"
}

// progName is ", name N" for a program id, or "" when the kernel does not
// say.
func progName(id uint32) string {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return ""
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil || info.Name == "" {
		return ""
	}
	return ", name " + info.Name
}

func modeName(m uint32) string {
	switch m {
	case nl.XDP_ATTACHED_DRV:
		return "native"
	case nl.XDP_ATTACHED_SKB:
		return "generic"
	case nl.XDP_ATTACHED_HW:
		return "offload"
	}
	return fmt.Sprintf("unknown (%d)", m)
}

// attachCheck attaches a program that passes every packet in native mode,
// then, if that fails, in generic mode, and detaches it at once.
func attachCheck(c Check, ifindex int, drv string, want loader.AttachMode) Check {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bulwark_probe", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		c.Status, c.Detail = Fail, fmt.Sprintf("load the test program: %v", err)
		c.Fix = "run as root"
		return c
	}
	defer prog.Close()
	try := func(flags link.XDPAttachFlags) error {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
		if err != nil {
			return err
		}
		return l.Close()
	}
	nerr := try(link.XDPDriverMode)
	if nerr == nil {
		c.Detail = fmt.Sprintf("supported: a test program attached in native mode and was detached (driver %s)", drv)
		return c
	}
	gerr := try(link.XDPGenericMode)
	switch {
	case gerr != nil:
		c.Status, c.Blocking, c.Detail = Fail, true, fmt.Sprintf("no XDP attach works: native: %v; generic: %v", nerr, gerr)
		c.Fix = "check that the interface is up and not enslaved to a bond or bridge that holds XDP"
	case want == loader.AttachNative:
		c.Status, c.Blocking, c.Detail = Fail, true, fmt.Sprintf("driver %s does not support native XDP (%v), and the config says attach = \"native\"", drv, nerr)
		c.Fix = "set attach = \"auto\" or \"generic\" (generic mode works, slower), or use a NIC whose driver supports XDP"
	default:
		c.Status, c.Detail = Warn, fmt.Sprintf("driver %s does not support native XDP (%v); the agent attaches in generic mode, which works but costs more CPU per packet", drv, nerr)
		c.Fix = "for full speed use a NIC whose driver supports native XDP (e.g. mlx5, i40e, ice, ixgbe, virtio_net, veth)"
	}
	return c
}
