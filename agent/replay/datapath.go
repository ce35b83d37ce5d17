package replay

import (
	"context"
	"fmt"
	"net/netip"
	"os"

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
	ld, err := loader.Load(loader.Options{Sizes: sizes, ReplayClock: true, Logger: log})
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
	if err := m.Allow.Add(entries(want.Allow)); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	if err := m.Block.Add(entries(want.Block)); err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	for i, s := range want.Signatures {
		if err := m.PutSignature(i, s.Sig); err != nil {
			return nil, fmt.Errorf("signature %s: %w", s.Name, err)
		}
	}
	d.sigs, d.sigFirst = newSigStage(cfg), len(want.Signatures)
	scoreFeeds, err := loadFeeds(cfg, want, m, log)
	if err != nil {
		return nil, err
	}
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

type scoreFeed struct {
	name   string
	weight float64
	set    *reputation.PrefixSet
}

// loadFeeds loads the config's feeds that have a path (a replay fetches
// nothing from the network), screened by the safety rails as in the agent
// (but for the host's own addresses): block feeds into the block list under
// their list ids, score feeds as evidence.
func loadFeeds(cfg *config.Config, want *desired.State, m *maps.Set, log hclog.Logger) ([]scoreFeed, error) {
	var out []scoreFeed
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
			return nil, fmt.Errorf("feed %q: %w", f.Name, err)
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
		id := want.FeedIDs[f.Name]
		var es []maps.Entry
		for _, p := range kept {
			es = append(es, maps.Entry{Prefix: p, ListID: id})
		}
		if err := m.Block.Add(es); err != nil {
			return nil, fmt.Errorf("feed %q: %w", f.Name, err)
		}
	}
	return out, nil
}
