package fleet

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// benchEntry is a bucket entry as a watcher delivers it, for
// BenchmarkResync1M.
type benchEntry struct {
	key   string
	value []byte
	rev   uint64
}

func (e *benchEntry) Bucket() string                  { return "bench" }
func (e *benchEntry) Key() string                     { return e.key }
func (e *benchEntry) Value() []byte                   { return e.value }
func (e *benchEntry) Revision() uint64                { return e.rev }
func (e *benchEntry) Created() time.Time              { return t0 }
func (e *benchEntry) Delta() uint64                   { return 0 }
func (e *benchEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// countApplier counts the puts it is given.
type countApplier struct{ puts int }

func (a *countApplier) Apply(changes []Change) map[netip.Prefix]string {
	for _, c := range changes {
		if !c.Remove {
			a.puts++
		}
	}
	return nil
}

// BenchmarkResync1M is a Client's cold sync of 1M verdicts of 100 issuers
// without the bus: the entries are read in batches of batchEntries as the
// watch reads them (read, then settle), and the apply loop takes what
// was merged every 8 batches. It reports the CPU time per verdict of the
// merge and the hand-over, the part of a cold sync that is the Client's.
func BenchmarkResync1M(b *testing.B) {
	const n = 1 << 20
	es := make([]*benchEntry, n)
	exp := time.Now().Add(time.Hour)
	for i := range es {
		v := Verdict{Target: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32),
			Action: ActionBlock, Issuer: fmt.Sprintf("n%d", i%100), Origin: "scorer", Reason: "bench", Score: 80,
			IssuedAt: exp.Add(-time.Minute).UTC(), Expires: exp.UTC()}
		if i >= 1<<16 {
			v.Target = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 0, 2, 15: byte(i), 14: byte(i >> 8), 13: byte(i >> 16)}), 128)
		}
		data, err := encode(v)
		if err != nil {
			b.Fatal(err)
		}
		es[i] = &benchEntry{Key(v.Issuer, v.Target), data, uint64(i + 1)}
	}
	opts := DefaultOptions()
	opts.Node, opts.Servers = "bench", []string{"nats://127.0.0.1:4222"}
	opts.IssuerRate, opts.IssuerBurst, opts.MaxActive = 1e6, n, n
	b.ResetTimer()
	for range b.N {
		a := &countApplier{}
		c, err := New(opts, a, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.mu.Lock()
		c.resync = true
		c.st.beginResync()
		c.st.grow(n)
		c.mu.Unlock()
		for i := 0; i < n; i += batchEntries {
			c.mu.Lock()
			for _, e := range es[i:min(n, i+batchEntries)] {
				c.read(e)
			}
			if i+batchEntries >= n {
				c.st.endResync()
				c.resync = false
			}
			c.settle()
			c.mu.Unlock()
			if (i/batchEntries)%8 == 7 {
				c.applyPending()
			}
		}
		c.applyPending()
		if a.puts != n {
			b.Fatalf("%d puts applied, want %d", a.puts, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/verdict")
}
