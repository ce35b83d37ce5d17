package agent

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/detect"
	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
)

// fleetDetection is the agent's part in fleet-wide detection: it collects
// this host's window summaries from the sources the scorer reads, publishes
// them and, with role aggregate, aggregates the fleet's into verdicts. A
// nil *fleetDetection is role none (or no fleet block).
type fleetDetection struct {
	cfg  detect.Config
	opts fleet.Options
	coll *summary.Collector
	pub  *detect.Publisher
	agg  *detect.Aggregator // nil unless role aggregate
	log  hclog.Logger
}

// newFleetDetection prepares the detection of settings; nil for role none.
func newFleetDetection(settings *desired.Fleet, log hclog.Logger) (*fleetDetection, error) {
	if settings == nil || settings.Detection.Role == detect.RoleNone {
		return nil, nil
	}
	opts, err := fleetOptions(settings)
	if err != nil {
		return nil, err
	}
	cfg := settings.Detection
	coll, err := summary.NewCollector(opts.Node, cfg.Window, 0)
	if err != nil {
		return nil, err
	}
	d := &fleetDetection{cfg: cfg, opts: opts, coll: coll, log: log,
		pub: detect.NewPublisher(opts.SummaryStream, opts.Node, opts.Replicas, cfg.Window, coll, log)}
	if cfg.Role == detect.RoleAggregate {
		if d.agg, err = detect.NewAggregator(opts.SummaryStream, opts.Bucket, cfg, log.Named("aggregate"), nil); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// collectors are the detection's metrics, none for role none.
func (d *fleetDetection) collectors() []prometheus.Collector {
	if d == nil {
		return nil
	}
	return detect.Collectors(d.pub, d.agg)
}

// observer is the scorer's hook that feeds the collector, nil for none.
func (d *fleetDetection) observer() sourceObserver {
	if d == nil {
		return nil
	}
	return d.coll.Observe
}

// dialDetection connects for fleet-wide detection as node.
func dialDetection(opts fleet.Options) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := detect.Dial(opts, "bulwark-detect-"+opts.Node)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("fleet detection: %w", err)
	}
	return nc, js, nil
}

// RunAggregator runs a standalone fleet aggregator (`bulwark fleet
// aggregate`) with the fleet block settings (its detection sub-block's
// window, rule, action and ttl; its role is not used) until ctx ends.
func RunAggregator(ctx context.Context, settings *desired.Fleet, log hclog.Logger) error {
	opts, err := fleetOptions(settings)
	if err != nil {
		return err
	}
	nc, js, err := dialDetection(opts)
	if err != nil {
		return err
	}
	defer nc.Close()
	agg, err := detect.NewAggregator(opts.SummaryStream, opts.Bucket, settings.Detection, log, nil)
	if err != nil {
		return err
	}
	log.Info("fleet aggregator running", "servers", opts.Servers, "stream", opts.SummaryStream, "bucket", opts.Bucket,
		"window", settings.Detection.Window, "min_hosts", settings.Detection.Rule.MinHosts, "min_ports", settings.Detection.Rule.MinPorts)
	return agg.Run(ctx, js)
}

// run publishes the summaries and, with role aggregate, aggregates, over
// its own connection, until ctx ends. Detection never touches what the
// agent enforces: with the bus down the windows are dropped.
func (d *fleetDetection) run(ctx context.Context) {
	nc, js, err := dialDetection(d.opts)
	if err != nil {
		d.log.Error("fleet detection off", "error", err)
		return
	}
	defer nc.Close()
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.pub.Run(ctx, js) })
	if d.agg != nil {
		wg.Go(func() { _ = d.agg.Run(ctx, js) })
	}
	wg.Wait()
}

// fleetFindings keeps the aggregator's verdicts in force on this host
// (origin aggregate), by target, for `bulwark explain`; at most max_active.
type fleetFindings struct {
	mu sync.Mutex
	m  map[netip.Prefix]fleet.Verdict
}

// note records the outcome of one change the applier made: an aggregate
// verdict in force is kept, anything else on its target forgotten.
func (r *fleetFindings) note(c fleet.Change, applied bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if applied && !c.Remove && c.Winner.Origin == detect.Origin {
		if r.m == nil {
			r.m = map[netip.Prefix]fleet.Verdict{}
		}
		r.m[c.Target] = *c.Winner
		return
	}
	delete(r.m, c.Target)
}

// explain is the fleet component of addr's explanation: the aggregate
// verdict in force on the narrowest target holding it, or nil.
func (r *fleetFindings) explain(addr netip.Addr, now time.Time) *api.FleetFinding {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return nil
	}
	addr = addr.Unmap()
	for bits := addr.BitLen(); bits >= 0; bits-- {
		p, _ := addr.Prefix(bits)
		if v, ok := r.m[p]; ok && v.Expires.After(now) {
			return &api.FleetFinding{Target: v.Target.String(), Action: string(v.Action), Issuer: v.Issuer,
				Reason: v.Reason, IssuedAt: v.IssuedAt, Expires: v.Expires}
		}
	}
	return nil
}
