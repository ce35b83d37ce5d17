package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sender transmits crafted Ethernet frames on the client veth through an
// AF_PACKET socket, so any source address can be used.
type Sender struct {
	fd      int
	ifindex int
}

// NewSender opens a raw packet socket in the client namespace, bound to the
// client veth. Close it when done.
func (tb *Testbed) NewSender() (*Sender, error) {
	s := &Sender{fd: -1, ifindex: tb.ClientIndex}
	err := tb.InClient(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		// Protocol 0: transmit only, nothing is queued for receiving.
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: tb.ClientIndex}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the socket.
func (s *Sender) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Send transmits frames round robin until count frames are sent or the
// deadline passes, pausing gap between frames (0: as fast as possible).
// It returns how many frames were sent of each of frames, and the time from
// the first to the last send. A transient ENOBUFS is retried.
func (s *Sender) Send(frames [][]byte, count int, deadline time.Time, gap time.Duration) ([]int, time.Duration, error) {
	sent := make([]int, len(frames))
	if len(frames) == 0 || count <= 0 {
		return sent, 0, nil
	}
	sa := &unix.SockaddrLinklayer{Ifindex: s.ifindex}
	var first, last time.Time
	for i := 0; i < count; i++ {
		now := time.Now()
		if now.After(deadline) {
			break
		}
		k := i % len(frames)
		for {
			err := unix.Sendto(s.fd, frames[k], 0, sa)
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				if time.Now().After(deadline) {
					return sent, last.Sub(first), nil
				}
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				return sent, last.Sub(first), fmt.Errorf("send frame %d: %w", i, err)
			}
			break
		}
		last = time.Now()
		if first.IsZero() {
			first = now
		}
		sent[k]++
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	return sent, last.Sub(first), nil
}

// Arrival is one datagram the Receiver counted.
type Arrival struct {
	Source netip.Addr
	Seq    uint64
	At     time.Time
}

// Receiver counts UDP datagrams carrying Magic delivered to a socket in the
// server namespace: proof that XDP_PASS hands them to the stack.
type Receiver struct {
	Port uint16

	conn   *net.UDPConn
	mu     sync.Mutex
	counts map[netip.Addr]int
	log    []Arrival
	keep   bool
	done   chan struct{}
}

// NewReceiver listens on [::]:port (IPv4 and IPv6) in the server namespace
// with a large receive buffer. keepLog records every arrival with its time.
func (tb *Testbed) NewReceiver(port uint16, keepLog bool) (*Receiver, error) {
	r := &Receiver{Port: port, counts: map[netip.Addr]int{}, keep: keepLog, done: make(chan struct{})}
	err := tb.InServer(func() error {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)})
		if err != nil {
			return fmt.Errorf("listen udp: %w", err)
		}
		rc, err := c.SyscallConn()
		if err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
			})
		}
		r.conn = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	go r.loop()
	return r, nil
}

func (r *Receiver) loop() {
	defer close(r.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 16 || [8]byte(buf[:8]) != Magic {
			continue
		}
		at := time.Now()
		src := from.Addr().Unmap()
		r.mu.Lock()
		r.counts[src]++
		if r.keep {
			r.log = append(r.log, Arrival{src, binary.BigEndian.Uint64(buf[8:16]), at})
		}
		r.mu.Unlock()
	}
}

// Count is how many datagrams from src arrived.
func (r *Receiver) Count(src netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[src]
}

// Total is how many datagrams arrived from any source.
func (r *Receiver) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

// Log is a copy of the arrivals recorded (keepLog).
func (r *Receiver) Log() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Arrival(nil), r.log...)
}

// Settle waits until the total count has not changed for quiet with no
// datagram waiting in the socket, or until max, and returns it: frames
// sent are handled synchronously, but the reading goroutine may lag, the
// more on a busy machine.
func (r *Receiver) Settle(quiet, max time.Duration) int {
	end := time.Now().Add(max)
	last, since := r.Total(), time.Now()
	for time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
		n := r.Total()
		if n != last || r.pending() {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return last
}

// pending tells whether a datagram waits in the socket, not yet read.
func (r *Receiver) pending() bool {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// WaitFor waits until src's count reaches want or max passes, and returns it.
func (r *Receiver) WaitFor(src netip.Addr, want int, max time.Duration) int {
	end := time.Now().Add(max)
	for {
		n := r.Count(src)
		if n >= want || time.Now().After(end) {
			return n
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Close stops the receiver.
func (r *Receiver) Close() error {
	err := r.conn.Close()
	<-r.done
	return err
}
