package fleet_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/maps"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// The poll of the kernel maps: a round reads what the publisher announced,
// then, on each agent, looks up the verdicts from the first one not yet
// seen onwards, in order, until it has missed pollWindow of them; rounds
// are pollEvery apart. Verdicts reach a map in the order they were
// published, batch by batch, so a round costs about one lookup per new
// arrival and pollWindow more per agent, however many are on their way.
const (
	pollEvery  = time.Millisecond
	pollWindow = 8
)

// announced is what the publisher said: verdict k's target and the
// CLOCK_MONOTONIC time of its Publish call, for k < n; when the stream
// stored it (Unix ns), for stored of them; rest is its output that was no
// such line.
type announced struct {
	target        []netip.Addr
	sent, stored  []int64
	n, nStored    int
	partial, rest bytes.Buffer
}

// parse takes the publisher's output b (any part of it): "sent K TARGET
// MONO_NS" lines, in order of K, then "stored K UNIX_NS" lines.
func (a *announced) parse(b []byte) error {
	a.partial.Write(b)
	for {
		line, err := a.partial.ReadBytes('\n')
		if err != nil { // an incomplete line: keep it for the next read
			a.partial.Write(line)
			return nil
		}
		var k int
		var target string
		var sent int64
		if _, err := fmt.Sscanf(string(line), "stored %d %d\n", &k, &sent); err == nil {
			if k < 0 || k >= a.n || a.stored[k] != 0 {
				return fmt.Errorf("publisher line %q: not one of the %d verdicts sent, or twice", line, a.n)
			}
			a.stored[k] = sent
			a.nStored++
			continue
		}
		if _, err := fmt.Sscanf(string(line), "sent %d %s %d\n", &k, &target, &sent); err != nil {
			a.rest.Write(line)
			continue
		}
		addr, err := netip.ParseAddr(target)
		if err != nil || k != a.n || k >= len(a.sent) {
			return fmt.Errorf("publisher line %q: want verdict %d of %d with an address (%v)", line, a.n, len(a.sent), err)
		}
		a.target[k], a.sent[k] = addr, sent
		a.n++
	}
}

// polled is one agent's view of the verdicts, in CLOCK_MONOTONIC ns: when
// each was first seen in its kernel map and when a lookup last missed it
// (or, for one seen at its first lookup, when the round before began:
// it arrived after that), the first not yet seen, and how many were seen
// past one still missing.
type polled struct {
	v          *testbed.Verdicts
	seen, miss []int64
	firstLook  []bool
	lo         int
	outOfOrder int
}

// look runs one round on p's agent (see pollEvery); prev is when the round
// before began.
func (p *polled) look(a *announced, prev int64) {
	missed := 0
	for k := p.lo; k < a.n && missed < pollWindow; k++ {
		if p.seen[k] != 0 {
			continue
		}
		act, _, ok := p.v.Get(a.target[k])
		now := int64(testbed.MonoNow())
		if !ok || act != maps.VerdictBlock {
			p.miss[k] = now
			missed++
			continue
		}
		p.seen[k] = now
		if p.miss[k] == 0 {
			p.miss[k], p.firstLook[k] = max(prev, a.sent[k]), true
		}
		if missed > 0 {
			p.outOfOrder++
		}
	}
	for p.lo < a.n && p.seen[p.lo] != 0 {
		p.lo++
	}
}

// pollAll polls every agent's map (ps) round after round, reading the
// publisher's announcements from out (its stdout's read end), until every
// agent has seen every one of total verdicts, or for 2 minutes after the
// publisher's output ended; it then closes polled, and returns once it has
// read that output to its end. It
// runs on an OS thread of its own, which ends with it, in the real-time
// class (SCHED_FIFO, the lowest priority): it wakes on time whatever else
// the machine runs (a nice value would not do: with autogroup it ranks the
// thread only within its session), so its own lateness stays out of the
// figures; each round sleeps, so it never holds a CPU. It returns the
// number of rounds.
func pollAll(ps []*polled, an *announced, out *os.File, total int, polled chan<- struct{}) (int, error) {
	polling := true
	defer func() {
		if polling {
			close(polled)
		}
	}()
	runtime.LockOSThread() // never unlocked: the thread, with its class, ends with the goroutine
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0); err != nil {
		return 0, fmt.Errorf("poller: SCHED_FIFO: %w", err)
	}
	fd := int(out.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		return 0, fmt.Errorf("publisher output: %w", err)
	}
	buf := make([]byte, 64<<10)
	pause := unix.NsecToTimespec(pollEvery.Nanoseconds())
	var prev int64
	var eof time.Time
	rounds := 0
	for {
		start := int64(testbed.MonoNow())
		// Everything written before start: a verdict not yet announced
		// is published after start.
		for eof.IsZero() {
			n, err := unix.Read(fd, buf)
			if n > 0 {
				if err := an.parse(buf[:n]); err != nil {
					return rounds, err
				}
				continue
			}
			if n == 0 && err == nil {
				eof = time.Now()
			} else if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				return rounds, fmt.Errorf("publisher output: %w", err)
			}
			break
		}
		if polling {
			rounds++
			all := true
			for _, p := range ps {
				p.look(an, prev)
				all = all && p.lo == total
			}
			if all || (!eof.IsZero() && time.Since(eof) > 2*time.Minute) {
				polling = false
				close(polled)
			}
		}
		if !polling && !eof.IsZero() {
			return rounds, nil
		}
		prev = start
		// A raw nanosleep: the thread keeps the runtime's P while it
		// sleeps. Through the runtime's syscall path the P is handed to
		// another thread, and getting one back waits on threads of the
		// ordinary class: rounds came up to 13 ms apart on a busy
		// machine. (EINTR, e.g. the runtime's preemption signal: a
		// shorter pause.)
		_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&pause)), 0, 0)
	}
}
