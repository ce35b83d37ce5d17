package fleet

import (
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/natstest"
)

// TestServerVersions runs the same publish, apply, revoke and expiry
// against Debian 12's nats-server 2.9 (no per-key TTL: the bucket gets
// MaxAge) and the pinned current one (per-key TTL).
func TestServerVersions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bin       func(testing.TB) string
		perKeyTTL bool
	}{
		{"debian-2.9", natstest.Debian, false},
		{"pinned", natstest.Binary, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := natstest.Cluster(t, 1, natstest.Options{Binary: tc.bin(t)})
			a := start(t, testOptions("a", c.URLs(), 1))
			b := start(t, testOptions("b", c.URLs(), 1))
			mustPublish(t, a, block(nthTarget(1), time.Hour))
			mustPublish(t, b, block(nthTarget(2), time.Hour))
			// Long enough to be seen on both before it expires on a busy
			// machine (2 s expired first once under CI load, and the
			// convergence on 3 could not happen).
			mustPublish(t, a, block(nthTarget(3), 15*time.Second))
			converged(t, 3, a, b)
			a.c.mu.Lock()
			perKeyTTL := a.c.perKeyTTL
			a.c.mu.Unlock()
			if perKeyTTL != tc.perKeyTTL {
				t.Errorf("per-key TTL %v, want %v", perKeyTTL, tc.perKeyTTL)
			}
			st, err := rawKV(t, c.URL(0)).Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if wantAge := map[bool]time.Duration{false: DefaultOptions().MaxTTL}[tc.perKeyTTL]; st.TTL() != wantAge {
				t.Errorf("bucket MaxAge %s, want %s", st.TTL(), wantAge)
			}
			mustPublish(t, b, Verdict{Target: nthTarget(1), Action: ActionRevoke})
			waitFor(t, "the revoke and the expiry reach both", func() bool {
				for _, n := range []*node{a, b} {
					_, one := n.rec.get(nthTarget(1))
					_, three := n.rec.get(nthTarget(3))
					if one || three {
						return false
					}
				}
				return true
			})
			converged(t, 1, a, b)
		})
	}
}
