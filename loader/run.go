package loader

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// progRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr
// (include/uapi/linux/bpf.h, struct test).
type progRunAttr struct {
	progFd      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      unsafe.Pointer
	dataOut     unsafe.Pointer
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       unsafe.Pointer
	ctxOut      unsafe.Pointer
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// Runner runs frames through the program one BPF_PROG_TEST_RUN syscall
// each: replay's hot loop. cilium/ebpf's Program.Run masks and unmasks
// SIGPROF around every run (to keep the profiler from interrupting the
// verifier), which triples the syscalls per frame; a replay does not need
// that, and a run of one frame is not restarted by a signal on current
// kernels. Not safe for concurrent use.
type Runner struct {
	attr progRunAttr
}

// NewRunner makes a Runner of d's program.
func (d *Datapath) NewRunner() *Runner {
	return &Runner{attr: progRunAttr{progFd: uint32(d.objs.Bulwark.FD()), repeat: 1}}
}

// Run passes one frame (at least 14 bytes) through the program and returns
// its XDP verdict.
func (r *Runner) Run(frame []byte) (uint32, error) {
	if len(frame) == 0 {
		return 0, errors.New("empty frame")
	}
	a := &r.attr
	a.dataIn, a.dataSizeIn = unsafe.Pointer(&frame[0]), uint32(len(frame))
	// The kernel writes the output sizes back: no output is asked for.
	a.dataSizeOut, a.ctxSizeOut, a.retval, a.duration = 0, 0, 0, 0
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(a)), unsafe.Sizeof(*a))
	runtime.KeepAlive(frame)
	ret := a.retval
	a.dataIn = nil
	if errno != 0 && errno != unix.EINTR {
		return 0, fmt.Errorf("test run: %w", errno)
	}
	return ret, nil
}
