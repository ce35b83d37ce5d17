package agent

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

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
	coll, err := summary.NewCollector(opts.Node, settings.Detection.Window, 0)
	if err != nil {
		return nil, err
	}
	return &fleetDetection{cfg: settings.Detection, opts: opts, coll: coll, log: log}, nil
}

// observer is the scorer's hook that feeds the collector, nil for none.
func (d *fleetDetection) observer() sourceObserver {
	if d == nil {
		return nil
	}
	return d.coll.Observe
}

// run publishes the summaries and, with role aggregate, aggregates, over
// its own connection, until ctx ends. Detection never touches what the
// agent enforces: with the bus down the windows are dropped.
func (d *fleetDetection) run(ctx context.Context) {
	nc, err := detect.Dial(d.opts, "bulwark-detect-"+d.opts.Node)
	if err != nil {
		d.log.Error("fleet detection off", "error", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		d.log.Error("fleet detection off", "error", err)
		return
	}
	var wg sync.WaitGroup
	pub := detect.NewPublisher(js, d.opts.SummaryStream, d.opts.Node, d.opts.Replicas, d.cfg.Window, d.coll, d.log)
	wg.Go(func() { _ = pub.Run(ctx) })
	if d.cfg.Role == detect.RoleAggregate {
		agg, err := detect.NewAggregator(js, d.opts.SummaryStream, d.opts.Bucket, d.cfg, d.log.Named("aggregate"), nil)
		if err != nil {
			d.log.Error("fleet aggregator off", "error", err)
		} else {
			wg.Go(func() { _ = agg.Run(ctx) })
		}
	}
	wg.Wait()
}
