package agent

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// keptCapabilities is what the agent needs once it runs: map operations on
// the maps it holds open (CAP_BPF; kernels before 6.5 check it on every
// bpf() call). Attaching, pinning and mounting bpffs are done by then; a
// reload never re-attaches (an interface change needs a restart).
var keptCapabilities = []uint{unix.CAP_BPF}

// dropPrivileges keeps only keptCapabilities, on every thread of the
// process, and sets no_new_privs so none can be regained by exec. It needs
// a binary built without cgo (make build): with cgo, Go cannot change every
// thread's credentials and an error says so.
func dropPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	var next [2]unix.CapUserData
	for _, c := range keptCapabilities {
		bit := uint32(1) << (c % 32)
		if cur[c/32].Permitted&bit != 0 {
			next[c/32].Permitted |= bit
			next[c/32].Effective |= bit
		}
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno != 0 {
		if errors.Is(errno, syscall.ENOTSUP) {
			return errors.New("this binary was built with cgo, so capabilities cannot be dropped on every thread: build it with CGO_ENABLED=0 (make build)")
		}
		return fmt.Errorf("set no_new_privs: %w", errno)
	}
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&next[0])), 0); errno != 0 {
		return fmt.Errorf("drop capabilities: %w", errno)
	}
	return nil
}
