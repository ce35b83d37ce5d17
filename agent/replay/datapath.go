package replay

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/feeds"
	"github.com/bulwark-filter/bulwark/agent/geoip"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// The datapath stage: a fresh copy of the datapath (nothing attached,
// nothing pinned, on the replay's clock) filled with what the config asks
// of it (policy, allow and block lists, block feeds), and the scorer that
// judges its sources.

// datapath is the replay's copy of the datapath and its scorer.
type datapath struct {
	*loader.Datapath
	engine *reputation.Engine // nil: reputation is off
	geo    *geoip.Source
	sigs   *sigStage // nil: signature detection is off
	// sigFirst is detection's first slot, after the config's signatures.
	sigFirst int
}

// Close unloads the datapath and closes the scorer's databases.
func (d *datapath) Close() {
	d.geo.Close()
	d.Datapath.Close()
}

// loadDatapath loads the datapath with sizes and fills it with want; the
// scorer is cfg's (none with reputation off).
func loadDatapath(cfg *config.Config, want *desired.State, sizes loader.Sizes, log hclog.Logger) (_ *datapath, err error) {
	// Feeds are read first: the list maps are sized to what they will hold.
	scoreFeeds, feedEntries, err := readFeeds(cfg, want, log)
	if err != nil {
		return nil, err
	}
	allow, block := entries(want.Allow), entries(want.Block)
	all := slices.Clone(block)
	for _, f := range feedEntries {
		all = append(all, f.entries...)
	}
	ld, err := loader.Load(loader.Options{Sizes: fitLists(sizes, allow, all), ReplayClock: true, Logger: log})
	if err != nil {
		return nil, err
	}
	d := &datapath{Datapath: ld, geo: &geoip.Source{}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	m := d.Maps
	// Nothing reads drop events in a replay; sampling them would only make
	// the CPUs contend for the ring. Decisions do not depend on it.
	p := want.Policy
	p.SampleEvery = 0
	if err := m.ApplyPolicy(&p); err != nil {
		return nil, err
	}
	if err := m.Allow.Add(allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	if err := m.Block.Add(block); err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	for _, f := range feedEntries {
		if err := m.Block.Add(f.entries); err != nil {
			return nil, fmt.Errorf("feed %q: %w", f.name, err)
		}
	}
	for i, s := range want.Signatures {
		if err := m.PutSignature(i, s.Sig); err != nil {
			return nil, fmt.Errorf("signature %s: %w", s.Name, err)
		}
	}
	d.sigs, d.sigFirst = newSigStage(cfg), len(want.Signatures)
	if cfg.Reputation.Mode == "off" {
		return d, nil
	}
	if err := d.geo.Update(cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase, cfg.GeoIP.CountryWeights, cfg.GeoIP.ASNWeights); err != nil {
		return nil, fmt.Errorf("geoip: %w", err)
	}
	var exemptList []netip.Prefix
	for _, p := range desired.Exempt(cfg) {
		exemptList = append(exemptList, p.Prefix)
	}
	exempt := reputation.NewPrefixSet(exemptList)
	ev := reputation.Evidence{
		Exempt: exempt.Contains, Locate: d.geo.Locate, CountryWeight: d.geo.CountryWeight, ASNWeight: d.geo.ASNWeight,
		Feeds: func(a netip.Addr) []reputation.FeedHit {
			var hits []reputation.FeedHit
			for _, f := range scoreFeeds {
				if f.set.Contains(a) {
					hits = append(hits, reputation.FeedHit{Feed: f.name, Weight: f.weight})
				}
			}
			return hits
		},
	}
	d.engine = reputation.New(desired.Scorer(cfg), ev, reputation.MapSink{Maps: m}, m.IPv6Prefix())
	return d, nil
}

// entries is a list's entries for an empty map.
func entries(want listset.Set) []maps.Entry {
	es := make([]maps.Entry, 0, len(want))
	for pfx, id := range want.All() {
		es = append(es, maps.Entry{Prefix: pfx, ListID: id})
	}
	return es
}

// fitLists sizes the list maps to the entries they will hold (allow and
// block), as scanCaptures sizes the per-source tables: only the replay
// writes them, so a map at least twice its entries decides as one of the
// config's size, loads in a fraction of the time and keeps its buckets in
// the caches (a 1M-entry map's are 16 MB). A list larger than the config's
// map keeps the config's size and fails to load, as it would live.
func fitLists(s loader.Sizes, allow, block []maps.Entry) loader.Sizes {
	count := func(es []maps.Entry) (hosts, nets int) {
		var h, n [2]int // by family: IPv4, IPv6
		for _, e := range es {
			f := 0
			if e.Prefix.Addr().Is6() {
				f = 1
			}
			if e.Prefix.IsSingleIP() {
				h[f]++
			} else {
				n[f]++
			}
		}
		return max(h[0], h[1]), max(n[0], n[1])
	}
	h, n := count(allow)
	s.AllowHosts, s.AllowPrefixes = room(h, s.AllowHosts), room(n, s.AllowPrefixes)
	h, n = count(block)
	s.BlockHosts, s.BlockPrefixes = room(h, s.BlockHosts), room(n, s.BlockPrefixes)
	return s
}

// blockFeed is a block feed's entries, under its list id.
type blockFeed struct {
	name    string
	entries []maps.Entry
}

type scoreFeed struct {
	name   string
	weight float64
	set    *reputation.PrefixSet
}

// readFeeds reads the config's feeds that have a path (a replay fetches
// nothing from the network), screened by the safety rails as in the agent
// (but for the host's own addresses): the block feeds' entries under their
// list ids, and the score feeds as evidence.
func readFeeds(cfg *config.Config, want *desired.State, log hclog.Logger) ([]scoreFeed, []blockFeed, error) {
	var out []scoreFeed
	var block []blockFeed
	g := desired.FeedGuard(cfg)
	for _, f := range cfg.Feeds {
		if f.Path == "" {
			log.Warn("replay: feed has a URL, not a path; it is left out", "feed", f.Name, "url", f.URL)
			fmt.Fprintf(os.Stderr, "replay: feed %q is fetched from a URL; replay reads feeds from files only, so it is left out\n", f.Name)
			continue
		}
		fetcher := feeds.NewFetcher(feeds.SourceFromConfig(f), nil)
		list, _, err := fetcher.Fetch(context.Background())
		if err != nil {
			return nil, nil, fmt.Errorf("feed %q: %w", f.Name, err)
		}
		// The safety rails as the agent's: a first version counts its
		// growth from nothing and is left out if it grows too much.
		if err := g.Growth(nil, list.Prefixes); err != nil {
			log.Warn("replay: feed held back by the safety rails; it is left out", "feed", f.Name, "error", err)
			fmt.Fprintf(os.Stderr, "replay: feed %q is left out: %v\n", f.Name, err)
			continue
		}
		kept, refused := g.Screen(list.Prefixes)
		if len(refused) > 0 {
			fmt.Fprintf(os.Stderr, "replay: feed %q: %d entries refused by the safety rails, e.g. %s\n", f.Name, len(refused), refused[0])
		}
		if f.Action == "score" {
			out = append(out, scoreFeed{f.Name, f.Weight, reputation.NewPrefixSet(kept)})
			continue
		}
		bf := blockFeed{name: f.Name}
		for _, p := range kept {
			bf.entries = append(bf.entries, maps.Entry{Prefix: p, ListID: want.FeedIDs[f.Name]})
		}
		block = append(block, bf)
	}
	return out, block, nil
}
