package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
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

// xdpMD is struct xdp_md, the context given to a test run: data is where
// the frame starts after the metadata.
type xdpMD struct {
	data, dataEnd, dataMeta, ingressIfindex, rxQueueIndex, egressIfindex uint32
}

// Runner runs frames through the program one BPF_PROG_TEST_RUN syscall
// each: replay's hot loop. cilium/ebpf's Program.Run masks and unmasks
// SIGPROF around every run (to keep the profiler from interrupting the
// verifier), which triples the syscalls per frame; a replay does not need
// that, and a run of one frame is not restarted by a signal on current
// kernels. A Runner is not safe for concurrent use; Runners of one
// program may run at the same time (each run carries its own clock and
// decision).
type Runner struct {
	attr   progRunAttr
	ctx    xdpMD
	buf    []byte // RunAt: the metadata, then the frame
	replay bool
}

// NewRunner makes a Runner of d's program.
func (d *Datapath) NewRunner() *Runner {
	return &Runner{attr: progRunAttr{progFd: uint32(d.objs.Bulwark.FD()), repeat: 1}, replay: d.replay}
}

// Run passes one frame (at least 14 bytes) through the program and returns
// its XDP verdict.
func (r *Runner) Run(frame []byte) (uint32, error) {
	if len(frame) == 0 {
		return 0, errors.New("empty frame")
	}
	a := &r.attr
	a.dataIn, a.dataSizeIn = unsafe.Pointer(&frame[0]), uint32(len(frame))
	a.dataOut, a.ctxIn, a.ctxSizeIn = nil, nil, 0
	ret, err := r.run(0)
	runtime.KeepAlive(frame)
	return ret, err
}

// ReplayHeadroom is the room RunIn needs in front of a frame: the size of
// struct replay_io, which travels as XDP metadata.
var ReplayHeadroom = binary.Size(bpf.BulwarkReplayIo{})

// RunAt passes one frame (at least 14 bytes) through a program loaded for
// replay at time now (ns on the datapath's clock) and returns the program's
// decision and XDP verdict. The time goes in, and the decision comes out,
// in struct replay_io placed as XDP metadata in front of the frame.
func (r *Runner) RunAt(frame []byte, now uint64) (maps.Decision, uint32, error) {
	n := ReplayHeadroom + len(frame)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	copy(b[ReplayHeadroom:], frame)
	return r.RunIn(b, now)
}

// RunIn is RunAt for a frame that starts ReplayHeadroom bytes into buf:
// the headroom is overwritten, the frame is not copied.
func (r *Runner) RunIn(buf []byte, now uint64) (maps.Decision, uint32, error) {
	if !r.replay {
		return maps.Decision{}, 0, errors.New("the datapath was not loaded for replay")
	}
	if len(buf) <= ReplayHeadroom {
		return maps.Decision{}, 0, errors.New("empty frame")
	}
	clear(buf[:ReplayHeadroom])
	binary.LittleEndian.PutUint64(buf[ioNow:], now)
	r.ctx = xdpMD{data: uint32(ReplayHeadroom), dataEnd: uint32(len(buf))}

	a := &r.attr
	a.dataIn, a.dataSizeIn = unsafe.Pointer(&buf[0]), uint32(len(buf))
	// The frame comes back with the metadata (the program does not change
	// it). Asking for less would not do: for a frame longer than the
	// kernel's linear buffer the kernel then reports no verdict.
	a.dataOut = unsafe.Pointer(&buf[0])
	a.ctxIn, a.ctxSizeIn = unsafe.Pointer(&r.ctx), uint32(unsafe.Sizeof(r.ctx))
	ret, err := r.run(uint32(len(buf)))
	runtime.KeepAlive(buf)
	if err != nil {
		return maps.Decision{}, 0, err
	}
	le := binary.LittleEndian
	return maps.Decision{Action: maps.Action(le.Uint32(buf[ioAction:])), Reason: maps.Reason(le.Uint32(buf[ioReason:])),
		Detail: le.Uint32(buf[ioDetail:])}, ret, nil
}

// Offsets of struct replay_io's fields, from the generated type.
const (
	ioNow    = unsafe.Offsetof(bpf.BulwarkReplayIo{}.Now)
	ioAction = unsafe.Offsetof(bpf.BulwarkReplayIo{}.Action)
	ioReason = unsafe.Offsetof(bpf.BulwarkReplayIo{}.Reason)
	ioDetail = unsafe.Offsetof(bpf.BulwarkReplayIo{}.Detail)
)

// run makes the syscall; out is the room in dataOut (0: no output).
func (r *Runner) run(out uint32) (uint32, error) {
	a := &r.attr
	// The kernel writes the output sizes back.
	a.dataSizeOut, a.ctxSizeOut, a.retval, a.duration = out, 0, 0, 0
	// Not a raw syscall: on an overloaded machine (load 40) a replay's run
	// stage took 16-34 s with one against 9-21 s with this, side by side
	// (a thread descheduled inside a raw syscall keeps its P).
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(a)), unsafe.Sizeof(*a))
	ret := a.retval
	a.dataIn, a.dataOut, a.ctxIn = nil, nil, nil
	if errno != 0 && errno != unix.EINTR {
		return 0, fmt.Errorf("test run: %w", errno)
	}
	return ret, nil
}
