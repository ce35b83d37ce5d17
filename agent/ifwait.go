package agent

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
)

// interfaceWait is how often a waiting agent looks for its interfaces again.
const interfaceWait = 2 * time.Second

// resolveInterfaces resolves the config's interface blocks on this host
// (config.ResolveInterface): the interfaces to attach to, each once, with
// its block's attach mode; missing lists the blocks that name none.
func resolveInterfaces(blocks []config.Interface) (ics []config.Interface, missing []api.MissingInterface) {
	seen := map[string]bool{}
	for _, b := range blocks {
		names, err := config.ResolveInterface(b.Name)
		if err != nil {
			missing = append(missing, api.MissingInterface{Config: b.Name, Detail: err.Error()})
			continue
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				ic := b
				ic.Name = n
				ics = append(ics, ic)
			}
		}
	}
	return ics, missing
}

// awaitInterfaces returns the interfaces the config's blocks name on this
// host. While a block names none the agent does not exit (a node whose NIC
// is named differently must not crash-loop): it waits, attached nowhere,
// with the control socket answering status (the missing blocks) and reload,
// the metrics listener serving bulwark_interface_missing, and looks again
// every interfaceWait, and at once on SIGHUP or `bulwark reload`, which
// re-read the config first, as does a change of its files. It returns the
// config in force then and its state; nil interfaces when ctx ended first.
func (a *Agent) awaitInterfaces(ctx context.Context, hup <-chan os.Signal, cfg *config.Config, want *desired.State) (*config.Config, *desired.State, []config.Interface, error) {
	w := &waitingStatus{started: a.started}
	var srv, msrv *http.Server
	defer func() {
		if srv != nil {
			srv.Close()
		}
		if msrv != nil {
			msrv.Close()
		}
	}()
	reloads := make(chan chan error)
	// reread re-reads the config; a bad one is refused and the last good one stays.
	reread := func(who string) error {
		c, err := a.loadConfig()
		var st *desired.State
		if err == nil {
			st, err = compile(c)
		}
		a.reloadAt.SetToCurrentTime()
		if err != nil {
			a.reloads.WithLabelValues("rejected").Inc()
			a.reloadOK.Set(0)
			a.log.Error("reload rejected; the running config is unchanged", "who", who, "error", err)
			a.auditf(AuditRecord{Who: who, What: "reload", Result: "rejected", Detail: err.Error()})
			return err
		}
		a.reloads.WithLabelValues("ok").Inc()
		a.reloadOK.Set(1)
		cfg, want = c, st
		a.auditf(AuditRecord{Who: who, What: "reload", Result: "ok", Detail: a.cfgPath})
		return nil
	}
	tick := time.NewTicker(interfaceWait)
	defer tick.Stop()
	var lastMissing string
	for {
		ics, missing := resolveInterfaces(cfg.Interfaces)
		for _, b := range cfg.Interfaces {
			a.ifMissing.WithLabelValues(b.Name).Set(0)
		}
		for _, m := range missing {
			a.ifMissing.WithLabelValues(m.Config).Set(1)
		}
		if len(missing) == 0 {
			if srv != nil {
				a.log.Info("the interfaces are there now", "interfaces", len(ics))
			}
			return cfg, want, ics, nil
		}
		w.set(cfg.Mode, missing)
		if text := missingText(missing); text != lastMissing {
			lastMissing = text
			a.log.Error("waiting for interfaces: not attached anywhere until every interface block names one", "missing", text)
		}
		if srv == nil {
			var err error
			if srv, err = a.control().serveHandler(cfg.Control.Socket, w.handler(reloads)); err != nil {
				return nil, nil, nil, err
			}
			if cfg.Metrics.Listen != "" {
				reg := prometheus.NewRegistry()
				reg.MustRegister(a.ifMissing, a.reloads, a.reloadOK, a.reloadAt, buildInfo())
				if msrv, err = a.serveMetrics(cfg.Metrics.Listen, reg); err != nil {
					return nil, nil, nil, err
				}
			}
		}
		select {
		case <-ctx.Done():
			a.log.Info("stopping while waiting for interfaces")
			return cfg, want, nil, nil
		case <-hup:
			_ = reread("signal")
		case reply := <-reloads:
			reply <- reread("cli")
		case <-tick.C:
			if sum, err := configSum(a.cfgPath); err == nil && sum != a.loadedSum && cfg.WatchConfig {
				_ = reread("watch")
			}
		}
	}
}

// missingText is missing in one line, for the log.
func missingText(missing []api.MissingInterface) string {
	parts := make([]string, len(missing))
	for i, m := range missing {
		parts[i] = m.Config + ": " + m.Detail
	}
	return strings.Join(parts, "; ")
}

// waitingStatus is what the control socket says while the agent waits for
// its interfaces.
type waitingStatus struct {
	started time.Time
	mu      sync.Mutex
	mode    string
	missing []api.MissingInterface
}

func (w *waitingStatus) set(mode string, missing []api.MissingInterface) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mode, w.missing = mode, missing
}

// handler answers GET /v1/status with the missing interfaces, POST
// /v1/reload through reloads, and everything else with 503.
func (w *waitingStatus) handler(reloads chan<- chan error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		st := api.Status{Version: Version, UptimeSeconds: time.Since(w.started).Seconds(), Mode: w.mode,
			Interfaces: []api.InterfaceStatus{}, Packets: map[string]map[string]uint64{}, Lists: map[string]map[string]int{},
			Verdicts: map[string]int{}, Missing: w.missing}
		w.mu.Unlock()
		writeJSON(rw, http.StatusOK, st)
	})
	mux.HandleFunc("POST /v1/reload", func(rw http.ResponseWriter, r *http.Request) {
		reply := make(chan error, 1)
		select {
		case reloads <- reply:
		case <-r.Context().Done():
			return
		}
		writeReload(rw, <-reply)
	})
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		text := missingText(w.missing)
		w.mu.Unlock()
		fail(rw, http.StatusServiceUnavailable, "the agent is waiting for its interfaces (%s)", text)
	})
	return mux
}
