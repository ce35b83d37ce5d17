package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Map names, as in bpf/maps.h; the loader sizes and pins them by these names.
const (
	MapSettings        = "settings"
	MapRules           = "rules"
	MapPortRules       = "port_rules"
	MapAllowHosts4     = "allow_hosts4"
	MapAllowHosts6     = "allow_hosts6"
	MapAllowNets4      = "allow_nets4"
	MapAllowNets6      = "allow_nets6"
	MapBlockHosts4     = "block_hosts4"
	MapBlockHosts6     = "block_hosts6"
	MapBlockNets4      = "block_nets4"
	MapBlockNets6      = "block_nets6"
	MapAllowSlots4     = "allow_slots4"
	MapAllowSlots6     = "allow_slots6"
	MapAllowMid6       = "allow_mid6"
	MapAllowShort      = "allow_short"
	MapBlockSlots4     = "block_slots4"
	MapBlockSlots6     = "block_slots6"
	MapBlockMid6       = "block_mid6"
	MapBlockShort      = "block_short"
	MapClasses4        = "classes4"
	MapClasses6        = "classes6"
	MapVerdicts        = "verdicts"
	MapSources         = "sources"
	MapRuleBuckets     = "rule_buckets"
	MapStats           = "stats"
	MapRuleStats       = "rule_stats"
	MapListHits        = "list_hits"
	MapMisc            = "misc"
	MapSampleCountdown = "sample_countdown"
	MapSampleWindow    = "sample_window"
	MapEvents          = "events"
	MapAggBuckets      = "agg_buckets"
	MapNewSources      = "new_sources"
	MapAllowCache      = "allow_cache"
	MapBlockCache      = "block_cache"
	MapListGen         = "list_gen"
)

// Present bits, as in bpf/common.h enum present_bits.
const (
	presentAllowHosts4 = uint32(bpf.BulwarkPresentBitsPRESENT_ALLOW_HOSTS4)
	presentBlockHosts4 = uint32(bpf.BulwarkPresentBitsPRESENT_BLOCK_HOSTS4)
	presentClasses4    = uint32(bpf.BulwarkPresentBitsPRESENT_CLASSES4)
	presentClasses6    = uint32(bpf.BulwarkPresentBitsPRESENT_CLASSES6)
	presentVerdicts    = uint32(bpf.BulwarkPresentBitsPRESENT_VERDICTS)
	presentPortRules   = uint32(bpf.BulwarkPresentBitsPRESENT_PORT_RULES)
	presentAggregate   = uint32(bpf.BulwarkPresentBitsPRESENT_AGGREGATE)
)

// Set is typed access to one loaded datapath's maps. Writers are serialised
// by the Set; readers may run at any time.
type Set struct {
	mu       sync.Mutex
	m        *bpf.BulwarkMaps
	settings bpf.BulwarkDpSettings
	vf       verdictFilter // the sources the verdict map may hold (MayHoldVerdicts)

	// Allow and Block are the two prefix lists.
	Allow *List
	Block *List
}

// New wraps loaded maps. It reads the settings the maps hold, so a Set made
// over adopted (pinned) maps continues from their state.
func New(m *bpf.BulwarkMaps) (*Set, error) { return newSet(m, true) }

// NewEmpty wraps maps that were all just created, so every list is empty
// and its masks are zero: unlike New it does not read the lists back nor
// rewrite every mask of both lists (a few hundred thousand array slots, tens
// of ms: a replay loads a fresh datapath for each run).
func NewEmpty(m *bpf.BulwarkMaps) (*Set, error) { return newSet(m, false) }

// newSet wraps m; adopted: m's maps may hold entries (New).
func newSet(m *bpf.BulwarkMaps, adopted bool) (*Set, error) {
	s := &Set{m: m}
	if err := m.Settings.Lookup(uint32(0), &s.settings); err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	gens, err := mapListGens(m.ListGen, s)
	if err != nil {
		return nil, err
	}
	s.Allow = &List{set: s, name: "allow", bit: presentAllowHosts4, gens: gens, gen: 0,
		hosts4: m.AllowHosts4, hosts6: m.AllowHosts6, nets4: m.AllowNets4, nets6: m.AllowNets6,
		slots4: m.AllowSlots4, slots6: m.AllowSlots6, mid6: m.AllowMid6, short: m.AllowShort}
	s.Block = &List{set: s, name: "block", bit: presentBlockHosts4, gens: gens, gen: 1,
		hosts4: m.BlockHosts4, hosts6: m.BlockHosts6, nets4: m.BlockNets4, nets6: m.BlockNets6,
		slots4: m.BlockSlots4, slots6: m.BlockSlots6, mid6: m.BlockMid6, short: m.BlockShort}
	for _, l := range []*List{s.Allow, s.Block} {
		if !adopted {
			l.lens, l.tally.ttl = map[lenKey]int{}, map[netip.Prefix]uint64{}
			continue
		}
		if err := l.recount(); err != nil {
			return nil, err
		}
		// Maps adopted from a run that wrote them without advancing
		// (an older build) leave no cached result standing.
		l.advance()
	}
	return s, nil
}

// writeSettingsLocked writes the cached settings; s.mu must be held.
func (s *Set) writeSettingsLocked() error {
	if err := s.m.Settings.Put(uint32(0), &s.settings); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	return nil
}

// setPresentLocked marks maps as holding entries before they get them.
func (s *Set) setPresentLocked(bits uint32) error {
	if s.settings.Present&bits == bits {
		return nil
	}
	s.settings.Present |= bits
	return s.writeSettingsLocked()
}

// clearIfEmptyLocked clears the bit of each map that holds no entry.
func (s *Set) clearIfEmptyLocked(bitMaps map[uint32]*ebpf.Map) error {
	present := s.settings.Present
	for bit, m := range bitMaps {
		if present&bit == 0 {
			continue
		}
		var k []byte = make([]byte, m.KeySize())
		if err := m.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
			present &^= bit
		} else if err != nil {
			return fmt.Errorf("check map %s: %w", mapName(m), err)
		}
	}
	if present == s.settings.Present {
		return nil
	}
	s.settings.Present = present
	return s.writeSettingsLocked()
}

func mapName(m *ebpf.Map) string {
	if info, err := m.Info(); err == nil {
		return info.Name
	}
	return m.String()
}

// v6Mask returns the two 64-bit words masking an address to bits, in the
// datapath's memory order.
func v6Mask(prefix int) (hi, lo uint64) {
	var b [16]byte
	for i := 0; i < prefix; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return binary.LittleEndian.Uint64(b[0:8]), binary.LittleEndian.Uint64(b[8:16])
}

// ApplyPolicy writes settings, rules, port tables and classes. Entries that
// stay are overwritten in place; stale classes are deleted after the new
// ones are written, so no moment lacks an entry that stays.
func (s *Set) ApplyPolicy(p *Policy) error {
	pt, err := p.Compile()
	if err != nil {
		return err
	}
	prefix := p.SourcePrefix()
	if prefix < 1 || prefix > 128 {
		return fmt.Errorf("ipv6 prefix %d out of range 1-128", prefix)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	rules := make([]bpf.BulwarkRule, ruleSlots)
	rules[0] = ruleValue(p.Default)
	for i, r := range p.Rules {
		rules[i+1] = ruleValue(r.Limit)
	}
	rules[RuleAggregate] = ruleValue(p.Aggregate)
	if p.NewSources.BytesPerSec != 0 {
		return errors.New("the new-sources ceiling counts packets only")
	}
	rules[RuleNewSources] = ruleValue(p.NewSources)
	agg4, agg6 := p.AggregatePrefixes()
	if agg4 < 1 || agg4 > 32 || agg6 < 1 || agg6 > 128 {
		return fmt.Errorf("aggregate prefixes /%d and /%d: want 1-32 and 1-128", agg4, agg6)
	}
	keys := make([]uint32, len(rules))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := s.m.Rules.BatchUpdate(keys, rules, nil); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}

	if pt.Any {
		if err := s.setPresentLocked(presentPortRules); err != nil {
			return err
		}
	}
	slots := make([]bpf.BulwarkPortSlot, portSlots)
	for t := range pt.Table {
		for port := range pt.Table[t] {
			idx := (t*65536 + port) / portsPerSlot
			slots[idx].Rule[port%portsPerSlot] = pt.Table[t][port]
		}
	}
	skeys := make([]uint32, len(slots))
	for i := range skeys {
		skeys[i] = uint32(i)
	}
	if _, err := s.m.PortRules.BatchUpdate(skeys, slots, nil); err != nil {
		return fmt.Errorf("write port rules: %w", err)
	}

	if err := s.applyClassesLocked(p.Classes); err != nil {
		return err
	}

	st := &s.settings
	st.Mode = uint32(p.Mode)
	st.MalformedPass = b2u(p.MalformedPass)
	st.ThrottlePm = p.ThrottlePermille()
	st.IcmpRule = uint32(pt.ICMPRule)
	st.Icmp6Rule = uint32(pt.ICMPv6Rule)
	st.SampleEvery = p.SampleEvery
	st.SampleMaxPerSec = p.SampleMaxPerSec
	st.ScanShift = ScanShift(p.ScanWindow)
	st.Ipv6Prefix = uint32(prefix)
	st.V6MaskHi, st.V6MaskLo = v6Mask(prefix)
	st.Agg6MaskHi, st.Agg6MaskLo = v6Mask(agg6)
	hi, _ := v6Mask(agg4) // the first 4 bytes of a mask of agg4 bits
	st.Agg4Mask = uint32(hi)
	if p.Aggregate.Active() {
		st.Present |= presentAggregate
	} else {
		st.Present &^= presentAggregate
	}
	if !pt.Any {
		st.Present &^= presentPortRules
	}
	return s.writeSettingsLocked()
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Depth is a bucket of burst units refilled at rate per second, as time:
// the GCRA form of the burst (see bpf/ratelimit.h).
func Depth(burst, rate uint64) uint64 {
	if rate == 0 {
		return 0
	}
	hi, lo := bits.Mul64(burst, 1_000_000_000)
	if hi >= rate {
		return ^uint64(0)
	}
	q, _ := bits.Div64(hi, lo, rate)
	return q
}

func ruleValue(l Limit) bpf.BulwarkRule {
	return bpf.BulwarkRule{
		Pps: l.PPS, PpsDepthNs: Depth(l.Burst, l.PPS),
		Bps: l.BytesPerSec, BpsDepthNs: Depth(l.ByteBurst, l.BytesPerSec),
	}
}

func (s *Set) applyClassesLocked(classes []Class) error {
	want4 := map[bpf.BulwarkLpmV4Key]bpf.BulwarkClassValue{}
	want6 := map[bpf.BulwarkLpmV6Key]bpf.BulwarkClassValue{}
	for i, c := range classes {
		v := bpf.BulwarkClassValue{ClassId: uint32(i + 1), MultPm: Permille(c.Multiplier)}
		for _, p := range c.CIDRs {
			p = p.Masked()
			if p.Addr().Is4() {
				want4[lpm4(p)] = v
			} else {
				want6[lpm6(p)] = v
			}
		}
	}
	var bitsOn uint32
	if len(want4) > 0 {
		bitsOn |= presentClasses4
	}
	if len(want6) > 0 {
		bitsOn |= presentClasses6
	}
	if err := s.setPresentLocked(bitsOn); err != nil {
		return err
	}
	if err := reconcile(s.m.Classes4, want4); err != nil {
		return fmt.Errorf("classes (IPv4): %w", err)
	}
	if err := reconcile(s.m.Classes6, want6); err != nil {
		return fmt.Errorf("classes (IPv6): %w", err)
	}
	return s.clearIfEmptyLocked(map[uint32]*ebpf.Map{presentClasses4: s.m.Classes4, presentClasses6: s.m.Classes6})
}

// reconcile makes m hold exactly want: every wanted entry is written first,
// then the entries not wanted are deleted.
func reconcile[K comparable, V any](m *ebpf.Map, want map[K]V) error {
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("write %v: %w", k, err)
		}
	}
	var stale []K
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %v: %w", k, err)
		}
	}
	return nil
}

func lpm4(p netip.Prefix) bpf.BulwarkLpmV4Key {
	a := p.Addr().As4()
	return bpf.BulwarkLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: binary.LittleEndian.Uint32(a[:])}
}

func lpm6(p netip.Prefix) bpf.BulwarkLpmV6Key {
	return bpf.BulwarkLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// IPv6Prefix is the prefix length IPv6 sources are tracked at.
func (s *Set) IPv6Prefix() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings.Ipv6Prefix == 0 {
		return 64
	}
	return int(s.settings.Ipv6Prefix)
}

// Counter is packets and bytes.
type Counter struct{ Packets, Bytes uint64 }

// Stats is the datapath's packet counters summed over CPUs.
type Stats [numActions][numReasons]Counter

// Total sums every action and reason.
func (st *Stats) Total() Counter {
	var c Counter
	for a := range st {
		for r := range st[a] {
			c.Packets += st[a][r].Packets
			c.Bytes += st[a][r].Bytes
		}
	}
	return c
}

// Stats reads the per-CPU stats and sums them.
func (s *Set) Stats() (*Stats, error) {
	var st Stats
	var per []bpf.BulwarkCounter
	for a := 0; a < numActions; a++ {
		for r := 0; r < numReasons; r++ {
			if err := s.m.Stats.Lookup(uint32(a*numReasons+r), &per); err != nil {
				return nil, fmt.Errorf("read stats: %w", err)
			}
			for _, c := range per {
				st[a][r].Packets += c.Packets
				st[a][r].Bytes += c.Bytes
			}
		}
	}
	return &st, nil
}

// RuleCounter is a rule's packets matched and dropped, summed over CPUs.
type RuleCounter struct{ Matched, Dropped uint64 }

// RuleCounters returns the counters of rule ids 0..n-1 (0 is the default).
func (s *Set) RuleCounters(n int) ([]RuleCounter, error) {
	out := make([]RuleCounter, n)
	for i := range out {
		c, err := s.RuleCounter(i)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// RuleCounter returns the counters of rule id (see Policy.RuleIDs).
func (s *Set) RuleCounter(id int) (RuleCounter, error) {
	c, err := sumCounter(s.m.RuleStats, uint32(id))
	if err != nil {
		return c, fmt.Errorf("read rule stats %d: %w", id, err)
	}
	return c, nil
}

// sumCounter reads the per-CPU rule_counter at key of m and sums it.
func sumCounter(m *ebpf.Map, key uint32) (RuleCounter, error) {
	var per []bpf.BulwarkRuleCounter
	if err := m.Lookup(key, &per); err != nil {
		return RuleCounter{}, err
	}
	var out RuleCounter
	for _, c := range per {
		out.Matched += c.Matched
		out.Dropped += c.Dropped
	}
	return out, nil
}

// ListHits returns the hits of list ids 0..n-1.
func (s *Set) ListHits(n int) ([]uint64, error) {
	if max := int(s.m.ListHits.MaxEntries()); n > max {
		n = max
	}
	out := make([]uint64, n)
	var per []uint64
	for i := 0; i < n; i++ {
		if err := s.m.ListHits.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read list hits %d: %w", i, err)
		}
		for _, c := range per {
			out[i] += c
		}
	}
	return out, nil
}

// MaxLists is the number of list ids the datapath counts hits for.
func (s *Set) MaxLists() int { return int(s.m.ListHits.MaxEntries()) }

// Misc counters: bpf/common.h enum misc_counter, in its order.
type Misc struct {
	Sampled, SampleCapped, SampleLost, StateFailed, Contended, NewSourceLimited uint64
}

// Misc reads the datapath's internal counters.
func (s *Set) Misc() (Misc, error) {
	var vals [bpf.BulwarkMiscCounterMISC_MAX]uint64
	var per []uint64
	for i := range vals {
		if err := s.m.Misc.Lookup(uint32(i), &per); err != nil {
			return Misc{}, fmt.Errorf("read misc counter %d: %w", i, err)
		}
		for _, c := range per {
			vals[i] += c
		}
	}
	return Misc{vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]}, nil
}

// Decision is what a program loaded for replay decided for a frame.
type Decision struct {
	Action Action
	Reason Reason
	Detail uint32 // the rule (ratelimit) or the list id (allow and block lists)
}

// DropEvent is a sampled drop as the datapath writes it to the event ring
// (bpf/common.h struct drop_event).
type DropEvent = bpf.BulwarkDropEvent

// EventSnap is how many bytes of a dropped frame a DropEvent carries.
const EventSnap = int(bpf.BulwarkLimitsEVENT_SNAP)

// Events opens a reader of the sampled-drop ring. Close it when done.
func (s *Set) Events() (*ringbuf.Reader, error) {
	r, err := ringbuf.NewReader(s.m.Events)
	if err != nil {
		return nil, fmt.Errorf("open event ring: %w", err)
	}
	return r, nil
}

// Sizes fixed by bpf/common.h enum limits.
const (
	ruleSlots    = int(bpf.BulwarkLimitsMAX_RULES)
	portSlots    = int(bpf.BulwarkLimitsPORT_SLOTS)
	portsPerSlot = int(bpf.BulwarkLimitsPORTS_PER_SLOT)
)

// Memory returns the kernel memory (memlock) of every map by name, as the
// kernel reports it. Maps that are not preallocated (the LPM tries) report
// what their current entries use.
func (s *Set) Memory() (map[string]uint64, error) {
	all := map[string]*ebpf.Map{
		MapSettings: s.m.Settings, MapRules: s.m.Rules, MapPortRules: s.m.PortRules,
		MapAllowHosts4: s.m.AllowHosts4, MapAllowHosts6: s.m.AllowHosts6,
		MapAllowNets4: s.m.AllowNets4, MapAllowNets6: s.m.AllowNets6,
		MapBlockHosts4: s.m.BlockHosts4, MapBlockHosts6: s.m.BlockHosts6,
		MapBlockNets4: s.m.BlockNets4, MapBlockNets6: s.m.BlockNets6,
		MapAllowSlots4: s.m.AllowSlots4, MapAllowSlots6: s.m.AllowSlots6, MapAllowMid6: s.m.AllowMid6, MapAllowShort: s.m.AllowShort,
		MapBlockSlots4: s.m.BlockSlots4, MapBlockSlots6: s.m.BlockSlots6, MapBlockMid6: s.m.BlockMid6, MapBlockShort: s.m.BlockShort,
		MapClasses4: s.m.Classes4, MapClasses6: s.m.Classes6,
		MapVerdicts: s.m.Verdicts, MapSources: s.m.Sources, MapRuleBuckets: s.m.RuleBuckets,
		MapStats: s.m.Stats, MapRuleStats: s.m.RuleStats, MapListHits: s.m.ListHits, MapMisc: s.m.Misc,
		MapSampleCountdown: s.m.SampleCountdown, MapSampleWindow: s.m.SampleWindow,
		MapEvents: s.m.Events, MapAggBuckets: s.m.AggBuckets, MapNewSources: s.m.NewSources,
		MapSignatures: s.m.Signatures, MapSigBuckets: s.m.SigBuckets, MapSigStats: s.m.SigStats,
		MapSigSettings: s.m.SigSettings, MapSigDests: s.m.SigDests, MapSigBudget: s.m.SigBudget, MapSigRing: s.m.SigRing,
		MapAllowCache: s.m.AllowCache, MapBlockCache: s.m.BlockCache, MapListGen: s.m.ListGen,
	}
	out := make(map[string]uint64, len(all))
	for name, m := range all {
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s info: %w", name, err)
		}
		n, _ := info.Memlock() // not preallocated (LPM tries): grows with entries, 0 when empty
		out[name] = n
	}
	return out, nil
}
