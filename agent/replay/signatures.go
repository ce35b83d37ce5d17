package replay

import (
	"fmt"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/sigdetect"
	"github.com/bulwark-filter/bulwark/maps"
)

// The detection stage: every frame is shown to signature detection before
// the datapath decides it (detection sees the offered load, as the agent's
// sampling of drops and passes shows it), and once a second of capture
// time the signatures it finds are written into the replayed datapath's
// table, with the expiry the agent gives them.

// Signature is a signature detection wrote during the replay.
type Signature struct {
	Name       string  `json:"name"`
	Match      string  `json:"match"`
	Action     string  `json:"action"` // drop (detect = "enforce") or count ("shadow")
	At         string  `json:"at"`     // capture time it was written, from the replay's start
	Until      string  `json:"until"`  // when it expired, or "end" when it outlived the captures
	Coverage   float64 `json:"coverage"`
	Collateral float64 `json:"collateral"`
	Why        string  `json:"why"`
}

// sigStage is detection on a replay.
type sigStage struct {
	det     *sigdetect.Detector
	sd      config.Signatures
	ttl     time.Duration
	live    map[sigdetect.Key]int       // slot of each installed signature
	expires map[sigdetect.Key]time.Time // its expiry on capture time
	out     []Signature
	index   map[sigdetect.Key]int // into out
}

// newSigStage is cfg's detection; nil when it is off.
func newSigStage(cfg *config.Config) *sigStage {
	sd := cfg.SignatureDetection
	if sd.Detect == "" || sd.Detect == "off" {
		return nil
	}
	return &sigStage{det: sigdetect.New(sigdetect.FromSettings(sd)), sd: sd, ttl: sd.TTL,
		live: map[sigdetect.Key]int{}, expires: map[sigdetect.Key]time.Time{}, index: map[sigdetect.Key]int{}}
}

// tick closes the second ending at now (first is the replay's start) and
// writes, renews and retires signatures in m. Slots after the config's
// signatures are detection's.
func (s *sigStage) tick(now, first time.Time, m *maps.Set, firstSlot int) error {
	mono := func(t time.Time) uint64 { return replayBase + uint64(t.Sub(first)) }
	for _, f := range s.det.Tick(now) {
		exp := now.Add(s.ttl)
		sig := f.Sig
		sigdetect.SetAction(s.sd, s.sd.Detect == "shadow", &sig)
		sig.ExpiresNS = mono(exp)
		if slot, ok := s.live[f.Key]; ok && s.out[s.index[f.Key]].Match == sig.String() {
			// Renewed: a limiting signature keeps its bucket.
			if err := m.RenewSignature(slot, sig.ExpiresNS); err != nil {
				return fmt.Errorf("renew detected signature: %w", err)
			}
			s.expires[f.Key] = exp
			continue
		}
		slot, ok := s.live[f.Key] // a new attack on the destination within the expiry: the new match
		if !ok {
			slot = s.freeSlot(firstSlot)
		}
		if slot < 0 {
			continue // the table is full: nothing to write
		}
		s.live[f.Key] = slot
		s.index[f.Key] = len(s.out)
		s.out = append(s.out, Signature{Name: "detect-" + f.Key.String(), Match: sig.String(), Action: sig.Action.String(),
			At: now.Sub(first).String(), Coverage: f.Coverage, Collateral: f.Collateral, Why: f.Why()})
		if err := m.PutSignature(slot, sig); err != nil {
			return fmt.Errorf("write detected signature: %w", err)
		}
		s.expires[f.Key] = exp
	}
	for k, exp := range s.expires {
		if !exp.After(now) {
			s.out[s.index[k]].Until = exp.Sub(first).String()
			if err := m.DeleteSignature(s.live[k]); err != nil {
				return err
			}
			delete(s.expires, k)
			delete(s.live, k)
		}
	}
	return nil
}

func (s *sigStage) freeSlot(firstSlot int) int {
	used := map[int]bool{}
	for _, sl := range s.live {
		used[sl] = true
	}
	for i := firstSlot; i < maps.MaxSignatures; i++ {
		if !used[i] {
			return i
		}
	}
	return -1
}

// signatures is the report's list.
func (s *sigStage) signatures() []Signature {
	for i := range s.out {
		if s.out[i].Until == "" {
			s.out[i].Until = "end"
		}
	}
	return s.out
}
