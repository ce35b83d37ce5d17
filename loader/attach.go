package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// AttachMode is how the program hooks the interface.
type AttachMode string

// Attach modes. Auto tries native and falls back to generic with a warning.
const (
	AttachAuto    AttachMode = "auto"
	AttachNative  AttachMode = "native"
	AttachGeneric AttachMode = "generic"
)

// linkPin is the name of the pinned bpf_link in the pin directory.
const linkPin = "link"

// DefaultPinRoot is where per-interface pin directories live.
const DefaultPinRoot = "/sys/fs/bpf/bulwark"

// PinDir is the pin directory of one interface under root.
func PinDir(root, iface string) string { return filepath.Join(root, iface) }

// EnsureBPFFS mounts bpffs at /sys/fs/bpf when root lies under it and it is
// not mounted yet.
func EnsureBPFFS(root string) error {
	const mnt = "/sys/fs/bpf"
	rel, err := filepath.Rel(mnt, root)
	if err != nil || rel == ".." || (len(rel) > 2 && rel[:3] == "../") {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", mnt, err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", mnt, err)
	}
	return nil
}

// Attach attaches the program to the interface with a bpf_link, or, when a
// link is pinned in the pin directory already, swaps the program in that
// link atomically: the interface is never without a program. It returns the
// mode in effect.
func (d *Datapath) Attach(iface string, mode AttachMode) (AttachMode, error) {
	nl, err := netlink.LinkByName(iface)
	if err != nil {
		return "", fmt.Errorf("interface %s: %w", iface, err)
	}
	ifindex := nl.Attrs().Index

	var pinPath string
	if d.pinDir != "" {
		pinPath = filepath.Join(d.pinDir, linkPin)
		if old, err := link.LoadPinnedLink(pinPath, nil); err == nil {
			defer old.Close()
			current := attachedMode(nl)
			if mode == AttachAuto || mode == current {
				if err := old.Update(d.objs.Bulwark); err != nil {
					return "", fmt.Errorf("swap program in pinned link %s: %w", pinPath, err)
				}
				d.log.Info("adopted attached link, program swapped", "interface", iface, "mode", current)
				return current, nil
			}
			// A mode change: attach in the new mode first (native and
			// generic programs may coexist), then drop the old link.
			l, got, err := d.attachNew(ifindex, mode)
			if err != nil {
				return "", err
			}
			if err := old.Unpin(); err != nil {
				l.Close()
				return "", fmt.Errorf("unpin old link: %w", err)
			}
			if err := l.Pin(pinPath); err != nil {
				l.Close()
				return "", fmt.Errorf("pin link: %w", err)
			}
			l.Close()
			d.log.Info("attach mode changed", "interface", iface, "from", current, "to", got)
			return got, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("open pinned link %s: %w", pinPath, err)
		}
	}

	l, got, err := d.attachNew(ifindex, mode)
	if err != nil {
		return "", err
	}
	if pinPath != "" {
		if err := l.Pin(pinPath); err != nil {
			l.Close()
			return "", fmt.Errorf("pin link: %w", err)
		}
		l.Close() // the pin holds it
	} else {
		d.links = append(d.links, l)
	}
	return got, nil
}

func (d *Datapath) attachNew(ifindex int, mode AttachMode) (link.Link, AttachMode, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: d.objs.Bulwark, Interface: ifindex, Flags: flags})
	}
	switch mode {
	case AttachNative:
		l, err := try(link.XDPDriverMode)
		if err != nil {
			return nil, "", fmt.Errorf("attach in native mode (the driver may not support XDP; try attach = \"generic\"): %w", err)
		}
		return l, AttachNative, nil
	case AttachGeneric:
		l, err := try(link.XDPGenericMode)
		if err != nil {
			return nil, "", fmt.Errorf("attach in generic mode: %w", err)
		}
		return l, AttachGeneric, nil
	case AttachAuto, "":
		l, err := try(link.XDPDriverMode)
		if err == nil {
			return l, AttachNative, nil
		}
		d.log.Warn("native XDP unavailable on this interface, falling back to generic mode (slower)", "ifindex", ifindex, "error", err)
		l, err2 := try(link.XDPGenericMode)
		if err2 != nil {
			return nil, "", fmt.Errorf("attach: native mode: %v; generic mode: %w", err, err2)
		}
		return l, AttachGeneric, nil
	}
	return nil, "", fmt.Errorf("attach mode %q: want auto, native or generic", mode)
}

// attachedMode reads the XDP mode attached to an interface.
func attachedMode(l netlink.Link) AttachMode {
	if x := l.Attrs().Xdp; x != nil {
		switch x.AttachMode {
		case nl.XDP_ATTACHED_SKB:
			return AttachGeneric
		case nl.XDP_ATTACHED_DRV, nl.XDP_ATTACHED_HW:
			return AttachNative
		}
	}
	return ""
}

// Detach removes the program from the interface and every pin in its pin
// directory, then the directory. It needs no running agent.
func Detach(pinDir string) error {
	entries, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("nothing pinned at %s", pinDir)
	}
	if err != nil {
		return fmt.Errorf("read pin directory: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(pinDir, e.Name())
		if e.Name() == linkPin {
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				return fmt.Errorf("open pinned link %s: %w", p, err)
			}
			err = l.Unpin()
			l.Close()
			if err != nil {
				return fmt.Errorf("unpin link: %w", err)
			}
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove pin %s: %w", p, err)
		}
	}
	if err := os.Remove(pinDir); err != nil {
		return fmt.Errorf("remove pin directory: %w", err)
	}
	return nil
}
