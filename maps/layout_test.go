package maps

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// TestLayout checks that the Go types this package reads and writes have the
// sizes the object's maps declare, and that the structs bpf2go generated
// still match the BTF (tetragon's alignchecker idea). It needs no kernel.
func TestLayout(t *testing.T) {
	spec, err := bpf.LoadBulwark()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		m          string
		key, value any // nil: not checked (percpu values are checked per CPU)
	}{
		{MapSettings, uint32(0), bpf.BulwarkDpSettings{}},
		{MapRules, uint32(0), bpf.BulwarkRule{}},
		{MapPortRules, uint32(0), bpf.BulwarkPortSlot{}},
		{MapAllowHosts4, [4]byte{}, bpf.BulwarkListValue{}},
		{MapAllowHosts6, [16]byte{}, bpf.BulwarkListValue{}},
		{MapAllowNets4, bpf.BulwarkLpmV4Key{}, bpf.BulwarkListValue{}},
		{MapAllowNets6, bpf.BulwarkLpmV6Key{}, bpf.BulwarkListValue{}},
		{MapBlockHosts4, [4]byte{}, bpf.BulwarkListValue{}},
		{MapBlockHosts6, [16]byte{}, bpf.BulwarkListValue{}},
		{MapBlockNets4, bpf.BulwarkLpmV4Key{}, bpf.BulwarkListValue{}},
		{MapBlockNets6, bpf.BulwarkLpmV6Key{}, bpf.BulwarkListValue{}},
		{MapAllowSlots4, uint32(0), uint32(0)},
		{MapBlockSlots4, uint32(0), uint32(0)},
		{MapAllowSlots6, uint32(0), uint64(0)},
		{MapBlockSlots6, uint32(0), uint64(0)},
		{MapAllowMid6, uint32(0), uint64(0)},
		{MapBlockMid6, uint32(0), uint64(0)},
		{MapAllowShort, uint32(0), bpf.BulwarkListShort{}},
		{MapBlockShort, uint32(0), bpf.BulwarkListShort{}},
		{MapClasses4, bpf.BulwarkLpmV4Key{}, bpf.BulwarkClassValue{}},
		{MapClasses6, bpf.BulwarkLpmV6Key{}, bpf.BulwarkClassValue{}},
		{MapVerdicts, bpf.BulwarkSrcKey{}, bpf.BulwarkVerdict{}},
		{MapSources, bpf.BulwarkSrcKey{}, bpf.BulwarkSrcState{}},
		{MapRuleBuckets, bpf.BulwarkRuleKey{}, bpf.BulwarkRuleState{}},
		{MapStats, uint32(0), bpf.BulwarkCounter{}},
		{MapRuleStats, uint32(0), bpf.BulwarkRuleCounter{}},
		{MapListHits, uint32(0), uint64(0)},
		{MapAggBuckets, bpf.BulwarkSrcKey{}, bpf.BulwarkRuleState{}},
		{MapNewSources, uint32(0), bpf.BulwarkRuleState{}},
		{MapMisc, uint32(0), uint64(0)},
		{MapSignatures, uint32(0), bpf.BulwarkSigRule{}},
		{MapSigBuckets, uint32(0), uint64(0)},
		{MapSigStats, uint32(0), bpf.BulwarkRuleCounter{}},
		{MapSigSettings, uint32(0), bpf.BulwarkSigSampling{}},
		{MapSigDests, uint32(0), bpf.BulwarkSigDest{}},
		{MapSigBudget, uint32(0), bpf.BulwarkSigBudget{}},
	}
	for _, tt := range tests {
		ms, ok := spec.Maps[tt.m]
		if !ok {
			t.Errorf("object has no map %q", tt.m)
			continue
		}
		if got := binary.Size(tt.key); got != int(ms.KeySize) {
			t.Errorf("map %s: Go key %T is %d bytes, BTF says %d", tt.m, tt.key, got, ms.KeySize)
		}
		if got := binary.Size(tt.value); got != int(ms.ValueSize) {
			t.Errorf("map %s: Go value %T is %d bytes, BTF says %d", tt.m, tt.value, got, ms.ValueSize)
		}
	}

	structs := map[string]any{
		"dp_settings": bpf.BulwarkDpSettings{}, "src_state": bpf.BulwarkSrcState{},
		"drop_event": bpf.BulwarkDropEvent{}, "verdict": bpf.BulwarkVerdict{},
		"rule_key": bpf.BulwarkRuleKey{}, "list_value": bpf.BulwarkListValue{},
	}
	for name, v := range structs {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Errorf("BTF struct %s: %v", name, err)
			continue
		}
		if got := binary.Size(v); uint32(got) != st.Size {
			t.Errorf("struct %s: Go %T is %d bytes, BTF says %d", name, v, got, st.Size)
		}
	}

	// The Go constants are derived from the generated ones; what is left
	// to check is what Go lists by hand: one name per enum value.
	if len(Actions) != numActions || len(Reasons) != numReasons {
		t.Errorf("Actions/Reasons list %d/%d values, common.h has %d/%d", len(Actions), len(Reasons), numActions, numReasons)
	}
	if n := reflect.TypeOf(Misc{}).NumField(); n != int(bpf.BulwarkMiscCounterMISC_MAX) {
		t.Errorf("Misc has %d fields, common.h has %d misc counters", n, bpf.BulwarkMiscCounterMISC_MAX)
	}
	if spec.Maps[MapRules].MaxEntries != uint32(ruleSlots) || spec.Maps[MapPortRules].MaxEntries != uint32(portSlots) {
		t.Errorf("rules/port_rules sizes differ from common.h")
	}
}
