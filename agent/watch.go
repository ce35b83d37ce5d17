package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
)

// watchInterval is how often the config watcher reads the config (watch_config); a change is reloaded once it
// has read the same for two polls in a row, so a file caught half written is not applied.
const watchInterval = 2 * time.Second

// configSum is the digest of the config at path as config.Load reads it: the names and contents of its files.
func configSum(path string) ([sha256.Size]byte, error) {
	paths, err := config.Paths(path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

// watchConfig reloads the config when watch_config is on and the config's files changed since they were last
// loaded (by the start, a signal, the API or this watcher), until ctx is done. A rejected config is audited and
// counted by Reload, and not tried again until the files change again.
func (a *Agent) watchConfig(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	var seen [sha256.Size]byte // what the last poll read
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		on, loaded := a.cfg.WatchConfig, a.loadedSum
		a.mu.Unlock()
		if !on {
			seen = [sha256.Size]byte{}
			continue
		}
		sum, err := configSum(a.cfgPath)
		if err != nil {
			a.log.Warn("config watch: cannot read the config; the running config stays", "error", err)
			continue
		}
		if sum == loaded || sum != seen {
			seen = sum
			continue
		}
		if err := a.Reload("watch"); err != nil {
			a.log.Error("config changed on disk but its reload was rejected; the running config stays", "error", err)
		}
	}
}
