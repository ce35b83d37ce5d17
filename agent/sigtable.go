package agent

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
)

// Origins of a signature.
const (
	sigFromConfig = "config"
	sigFromCLI    = "cli"
	sigFromDetect = "detect"
)

// sigEntry is one signature of the table and what explains it.
type sigEntry struct {
	name    string
	origin  string
	sig     maps.Signature
	added   time.Time
	expires time.Time // zero: never
	// What detection estimated (Detected is false otherwise).
	detected   bool
	coverage   float64 // share of the attack sample it matches
	collateral float64 // share of the pre-attack sample it matches
	why        string
}

// sigTable owns the datapath's signature table: which signature is in which
// slot, for every interface. Writers (the config reconcile, the control
// API, detection) hold the agent's writers' lock and pass the interfaces;
// the table's own lock lets readers list it at any time.
type sigTable struct {
	mu    sync.Mutex
	slots [maps.MaxSignatures]*sigEntry
}

// Refusals of put: every slot taken, or the name is another origin's.
var (
	errSigFull  = errors.New("the signature table is full")
	errSigTaken = errors.New("the name is taken")
)

// writeSlot writes slot (its entry, or empty) into every interface.
func writeSlot(ifaces []*iface, slot int, e *sigEntry) error {
	for _, it := range ifaces {
		var err error
		if e == nil {
			err = it.dp.Maps.DeleteSignature(slot)
		} else {
			sig := e.sig
			if !e.expires.IsZero() {
				sig.ExpiresNS = monotonicNow() + uint64(max(time.Until(e.expires), time.Nanosecond))
			}
			err = it.dp.Maps.PutSignature(slot, sig)
		}
		if err != nil {
			return fmt.Errorf("signature slot %d on %s: %w", slot, it.name, err)
		}
	}
	return nil
}

// put adds e, or replaces the entry of the same name when it has e's
// origin; a name of another origin is refused.
func (t *sigTable) put(ifaces []*iface, e *sigEntry) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slot := -1
	for i, x := range t.slots {
		if x != nil && x.name == e.name {
			if x.origin != e.origin {
				return -1, fmt.Errorf("signature %q exists (from %s): %w", e.name, x.origin, errSigTaken)
			}
			slot = i
			break
		}
	}
	for i := 0; slot < 0 && i < len(t.slots); i++ {
		if t.slots[i] == nil {
			slot = i
		}
	}
	if slot < 0 {
		return -1, errSigFull
	}
	if err := writeSlot(ifaces, slot, e); err != nil {
		return -1, err
	}
	t.slots[slot] = e
	return slot, nil
}

// renew moves the expiry of the signature name of origin to expires in
// every interface, its bucket and counters untouched; false when there is
// no such signature or its match is not sig's (then put it).
func (t *sigTable) renew(ifaces []*iface, name, origin string, sig maps.Signature, expires time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.slots {
		if x == nil || x.name != name || x.origin != origin || !sameSignature(x.sig, sig) {
			continue
		}
		mono := monotonicNow() + uint64(max(time.Until(expires), time.Nanosecond))
		for _, it := range ifaces {
			if err := it.dp.Maps.RenewSignature(i, mono); err != nil {
				return false, fmt.Errorf("signature slot %d on %s: %w", i, it.name, err)
			}
		}
		e := *x // readers may hold x
		e.expires = expires
		t.slots[i] = &e
		return true, nil
	}
	return false, nil
}

// del removes the signature name of origin (any origin when ""); false
// when there is none.
func (t *sigTable) del(ifaces []*iface, name, origin string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.slots {
		if x != nil && x.name == name && (origin == "" || x.origin == origin) {
			if err := writeSlot(ifaces, i, nil); err != nil {
				return false, err
			}
			t.slots[i] = nil
			return true, nil
		}
	}
	return false, nil
}

// syncConfig makes the config's signatures those of want: changed and new
// ones written, gone ones deleted; it returns their names. Signatures of
// other origins stay.
func (t *sigTable) syncConfig(ifaces []*iface, want []desired.NamedSignature) (added, removed []string, err error) {
	keep := map[string]bool{}
	have := map[string]maps.Signature{}
	for _, e := range t.list() {
		if e.origin == sigFromConfig {
			have[e.name] = e.sig
		}
	}
	for _, w := range want {
		keep[w.Name] = true
		if h, ok := have[w.Name]; ok && sameSignature(h, w.Sig) {
			continue
		}
		if _, err := t.put(ifaces, &sigEntry{name: w.Name, origin: sigFromConfig, sig: w.Sig, added: time.Now()}); err != nil {
			return added, removed, fmt.Errorf("signature %s: %w", w.Name, err)
		}
		added = append(added, w.Name)
	}
	for name := range have {
		if !keep[name] {
			if _, err := t.del(ifaces, name, sigFromConfig); err != nil {
				return added, removed, err
			}
			removed = append(removed, name)
		}
	}
	return added, removed, nil
}

// sameSignature compares two signatures' match and action.
func sameSignature(a, b maps.Signature) bool {
	return a.String() == b.String() && a.Action == b.Action && a.PPS == b.PPS && a.Burst == b.Burst &&
		a.ExpiresNS == b.ExpiresNS
}

// rewrite writes every slot into ifaces (an interface that starts late).
func (t *sigTable) rewrite(ifaces []*iface) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, e := range t.slots {
		if err := writeSlot(ifaces, i, e); err != nil {
			return err
		}
	}
	return nil
}

// expired removes the entries whose expiry passed and returns them.
func (t *sigTable) expired(ifaces []*iface, now time.Time) ([]*sigEntry, error) {
	var gone []*sigEntry
	for _, e := range t.list() {
		if !e.expires.IsZero() && !e.expires.After(now) {
			if _, err := t.del(ifaces, e.name, e.origin); err != nil {
				return gone, err
			}
			gone = append(gone, e)
		}
	}
	return gone, nil
}

// list returns the entries in slot order.
func (t *sigTable) list() []*sigEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*sigEntry
	for _, e := range t.slots {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// slotOf is the slot of the entry named name, -1 if none.
func (t *sigTable) slotOf(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, e := range t.slots {
		if e != nil && e.name == name {
			return i
		}
	}
	return -1
}

// view is the API's form of the table with the counters of every
// interface summed.
func (t *sigTable) view(ifaces []*iface) ([]api.Signature, error) {
	var out []api.Signature
	for _, e := range t.list() {
		s := api.Signature{Name: e.name, Origin: e.origin, Match: e.sig.String(), Action: e.sig.Action.String(),
			PPS: e.sig.PPS, Burst: e.sig.Burst, Added: e.added, Why: e.why}
		if !e.expires.IsZero() {
			exp := e.expires
			s.Expires = &exp
		}
		if e.detected {
			cov, col := e.coverage, e.collateral
			s.Coverage, s.Collateral = &cov, &col
		}
		slot := t.slotOf(e.name)
		for _, it := range ifaces {
			c, err := it.dp.Maps.SignatureCounter(slot)
			if err != nil {
				return nil, err
			}
			s.Matched += c.Matched
			s.Dropped += c.Dropped
		}
		out = append(out, s)
	}
	return out, nil
}

var (
	descSigMatched = prometheus.NewDesc("bulwark_signature_matched_packets_total",
		"Packets an attack signature matched since it was written, by signature and origin (config, cli, detect).",
		[]string{"interface", "signature", "origin"}, nil)
	descSigDropped = prometheus.NewDesc("bulwark_signature_dropped_packets_total",
		"Packets an attack signature dropped (or would drop, in monitor mode) since it was written.",
		[]string{"interface", "signature", "origin"}, nil)
)

// sigCollector exports the table's per-signature counters.
type sigCollector struct {
	t     *sigTable
	state func() *readState
}

// Describe sends the descriptors of the signature metrics.
func (c sigCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSigMatched
	ch <- descSigDropped
}

// Collect reads every signature's counters on every interface.
func (c sigCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	if st == nil {
		return
	}
	for _, e := range c.t.list() {
		slot := c.t.slotOf(e.name)
		for _, it := range st.ifaces {
			n, err := it.dp.Maps.SignatureCounter(slot)
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descSigMatched, prometheus.CounterValue, float64(n.Matched), it.name, e.name, e.origin)
			ch <- prometheus.MustNewConstMetric(descSigDropped, prometheus.CounterValue, float64(n.Dropped), it.name, e.name, e.origin)
		}
	}
}
