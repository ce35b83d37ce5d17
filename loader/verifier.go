package loader

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/bpf"
)

// VerifierStats is what the kernel's verifier reports for one load of the
// datapath program.
type VerifierStats struct {
	Insns     int           // instructions processed ("processed N insns")
	Load      time.Duration // maps and program created, verification included
	LogLine   string        // the verifier's statistics line, as it wrote it
	ReplayRun bool          // loaded for replay (ReplayClock)
}

var processed = regexp.MustCompile(`processed (\d+) insns`)

// MeasureVerifier loads the datapath once, with the object's placeholder
// map sizes, and returns the verifier's statistics. Nothing is attached or
// pinned; everything loaded is closed before it returns.
func MeasureVerifier(replay bool) (VerifierStats, error) {
	st := VerifierStats{ReplayRun: replay}
	spec, err := bpf.LoadBulwark()
	if err != nil {
		return st, fmt.Errorf("read embedded datapath object: %w", err)
	}
	if replay {
		if err := spec.Variables["replay_mode"].Set(uint32(1)); err != nil {
			return st, fmt.Errorf("set replay clock: %w", err)
		}
	}
	start := time.Now()
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	st.Load = time.Since(start)
	if err != nil {
		return st, explainLoadError(err, hclog.NewNullLogger())
	}
	defer coll.Close()
	log := coll.Programs["bulwark"].VerifierLog
	m := processed.FindStringSubmatch(log)
	if m == nil {
		return st, fmt.Errorf("verifier log has no instruction count: %q", log)
	}
	st.Insns, _ = strconv.Atoi(m[1])
	for _, l := range strings.Split(log, "\n") {
		if processed.MatchString(l) {
			st.LogLine = strings.TrimSpace(l)
		}
	}
	return st, nil
}
