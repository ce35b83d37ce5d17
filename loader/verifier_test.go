package loader

import (
	"os"
	"testing"
)

// insnBudget is the verifier's work the datapath may take, a tenth of the
// kernel's 1M limit: a change that needs more should be looked at, not
// slip in (the figure is in make bench's report).
const insnBudget = 100_000

func TestVerifierBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF)")
	}
	for _, replay := range []bool{false, true} {
		st, err := MeasureVerifier(replay)
		if err != nil {
			t.Fatalf("replay=%v: %v", replay, err)
		}
		t.Logf("replay=%v: %d instructions processed, load %v (%s)", replay, st.Insns, st.Load, st.LogLine)
		if st.Insns <= 0 || st.Insns > insnBudget {
			t.Errorf("replay=%v: the verifier processed %d instructions; the budget is %d", replay, st.Insns, insnBudget)
		}
	}
}
