package agent

import (
	"fmt"
	"strings"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
)

// reloadHow is what a reload does with a changed config key.
type reloadHow int

const (
	// reloadLive: the reload applies the new value.
	reloadLive reloadHow = iota
	// reloadRestart: the reload is refused ("restart needed: <key>") and the running config kept.
	reloadRestart
)

// reloadKeys says, for every key of the config (config.Keys), what a reload does when it changes. A key missing
// here is refused as needing a restart; a test checks that every key is listed.
var reloadKeys = map[string]reloadHow{
	// The datapath's policy and lists: rewritten in the maps.
	"mode":                             reloadLive,
	"malformed":                        reloadLive,
	"allow.cidrs":                      reloadLive,
	"allow.files":                      reloadLive,
	"block.cidrs":                      reloadLive,
	"block.files":                      reloadLive,
	"limits.ipv6_prefix":               reloadLive, // the scorer follows the datapath (scoring.reconfigure)
	"limits.default.pps":               reloadLive,
	"limits.default.burst":             reloadLive,
	"limits.default.bandwidth":         reloadLive,
	"limits.default.bandwidth_burst":   reloadLive,
	"limits.rule":                      reloadLive,
	"limits.class":                     reloadLive,
	"limits.throttle_multiplier":       reloadLive,
	"limits.aggregate.pps":             reloadLive,
	"limits.aggregate.burst":           reloadLive,
	"limits.aggregate.bandwidth":       reloadLive,
	"limits.aggregate.bandwidth_burst": reloadLive,
	"limits.aggregate.ipv4_prefix":     reloadLive,
	"limits.aggregate.ipv6_prefix":     reloadLive,
	"limits.new_sources.pps":           reloadLive,
	"limits.new_sources.burst":         reloadLive,
	"events.sample_every":              reloadLive,
	"events.max_per_second":            reloadLive,
	// Read when the agent exits.
	"detach_on_exit": reloadLive,
	// Read by the config watcher at each poll.
	"watch_config": reloadLive,
	// The flight recorder is restarted with the new settings (flightRecorders.swap).
	"events.dir":          reloadLive,
	"events.max_file_mib": reloadLive,
	"events.max_files":    reloadLive,
	// The logger's level is shared by every named logger.
	"log.level": reloadLive,
	// The scoring engines (SetConfig, the exempt set) and the feed runners (feedSet.sync).
	"reputation.mode":                    reloadLive,
	"reputation.interval":                reloadLive,
	"reputation.throttle_score":          reloadLive,
	"reputation.block_score":             reloadLive,
	"reputation.throttle_for":            reloadLive,
	"reputation.block_for":               reloadLive,
	"reputation.max_block_for":           reloadLive,
	"reputation.max_verdicts":            reloadLive,
	"reputation.protect":                 reloadLive,
	"reputation.weights.rate_anomaly":    reloadLive,
	"reputation.weights.syn_ratio":       reloadLive,
	"reputation.weights.port_scan":       reloadLive,
	"reputation.weights.ratelimit_drops": reloadLive,
	"reputation.weights.malformed":       reloadLive,
	"reputation.weights.repeat":          reloadLive,
	"reputation.weights.port_scan_long":  reloadLive,
	"reputation.weights.horizontal_scan": reloadLive,
	// The datapath's scan epoch (policy) and the engines' with it; the
	// sketches read empty until the next attempts under the new epoch.
	"reputation.scan_window":           reloadLive,
	"reputation.weights.uniform_flood": reloadLive,
	"feed":                             reloadLive,
	// The feed runners re-screen every feed at once (feedSet.sync's kick).
	"safety.min_prefix_ipv4": reloadLive,
	"safety.min_prefix_ipv6": reloadLive,
	"safety.max_growth_ipv4": reloadLive,
	"safety.max_growth_ipv6": reloadLive,
	// The location databases are reopened (geoip.Source.Update).
	"geoip.country_database": reloadLive,
	"geoip.asn_database":     reloadLive,
	"geoip.country_weights":  reloadLive,
	"geoip.asn_weights":      reloadLive,
	// The signature table is reconciled (sigTable.syncConfig) and detection reconfigured.
	"signature":         reloadLive,
	"signatures.detect": reloadLive,
	"signatures.ttl":    reloadLive,
	// Live detection restarts with them (its baselines are learnt again).
	"signatures.limit_pps":       reloadLive,
	"signatures.limit_burst":     reloadLive,
	"signatures.min_pps":         reloadLive,
	"signatures.factor":          reloadLive,
	"signatures.min_new_sources": reloadLive,
	"signatures.sample_every":    reloadLive,
	"signatures.sample_budget":   reloadLive,

	// The program is loaded and attached, and the maps are sized and pinned, at start only.
	"interface":            reloadRestart,
	"pin_dir":              reloadRestart,
	"maps.sources":         reloadRestart,
	"maps.rule_buckets":    reloadRestart,
	"maps.verdicts":        reloadRestart,
	"maps.allow_hosts":     reloadRestart,
	"maps.allow_prefixes":  reloadRestart,
	"maps.block_hosts":     reloadRestart,
	"maps.block_prefixes":  reloadRestart,
	"maps.classes":         reloadRestart,
	"maps.aggregates":      reloadRestart,
	"maps.events_ring_kib": reloadRestart,
	// Listeners and files opened at start, before privileges are dropped.
	"control.socket": reloadRestart,
	"metrics.listen": reloadRestart,
	"log.audit_file": reloadRestart,
	// The log's format is fixed when the logger is made.
	"log.format": reloadRestart,
	// The fleet client is made, connected and bound to its bucket at start.
	"fleet": reloadRestart,
	// The CrowdSec bouncer's client is made at start.
	"crowdsec": reloadRestart,
}

// restartNeeded refuses a reload that changes keys only a restart can change, naming each such key.
func restartNeeded(old, cfg *config.Config) error {
	var keys []string
	sameSizes := desired.Sizes(old) == desired.Sizes(cfg)
	for _, k := range config.Changed(old, cfg) {
		if strings.HasPrefix(k, "maps.") && sameSizes {
			continue // set to its default, or back to unset: the maps stay as they are
		}
		if how, ok := reloadKeys[k]; !ok || how == reloadRestart {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		return fmt.Errorf("restart needed: %s (a reload cannot apply it; the running config is kept)", strings.Join(keys, ", "))
	}
	return nil
}
