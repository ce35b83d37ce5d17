package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// AuditRecord is one line of the audit log: a change of policy.
type AuditRecord struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`              // config, cli, scorer, feed
	What   string    `json:"what"`             // e.g. block.add, allow.del, reload
	Target []string  `json:"target,omitempty"` // CIDRs or sources
	Why    string    `json:"why,omitempty"`
	TTL    string    `json:"ttl,omitempty"`
	Result string    `json:"result"` // ok, rejected, error
	Detail string    `json:"detail,omitempty"`
	// Score and Components explain a scorer's verdict.
	Score      float64            `json:"score,omitempty"`
	Components map[string]float64 `json:"components,omitempty"`
}

// Audit appends JSON lines to the audit file (0600, O_APPEND). A nil
// *Audit, or one with no file, discards records. Reopen starts a new file at
// the same path, after a log rotation moved the old one away.
type Audit struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenAudit opens (creating) the audit file; "" disables auditing.
func OpenAudit(path string) (*Audit, error) {
	if path == "" {
		return &Audit{}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit log directory: %w", err)
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	return &Audit{path: path, f: f}, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return f, nil
}

// Reopen opens the audit file's path again (creating it) and writes there
// from now on; the old file is synced and closed. Every record is in one of
// the two: a write waits for the swap. When the path cannot be opened, the
// old file stays in use and the error is returned.
func (a *Audit) Reopen() error {
	if !a.enabled() {
		return nil
	}
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	if err := old.Sync(); err != nil {
		old.Close()
		return fmt.Errorf("audit log: sync the rotated file: %w", err)
	}
	return old.Close()
}

// Write appends one record; errors are returned for the caller to log.
func (a *Audit) Write(r AuditRecord) error {
	if !a.enabled() {
		return nil
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return a.writeLines(append(b, '\n'))
}

// writeLines appends lines, whole JSON lines of records, in one write.
func (a *Audit) writeLines(lines []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.f.Write(lines)
	return err
}

// Record writes r and logs a failed write to log: the change it records
// stands either way.
func (a *Audit) Record(log hclog.Logger, r AuditRecord) {
	if err := a.Write(r); err != nil {
		log.Error("audit log write failed", "error", err)
	}
}

// enabled reports whether records are written anywhere.
func (a *Audit) enabled() bool { return a != nil && a.f != nil }

// recordLines appends lines, whole JSON lines of records, in one write,
// and logs a failed write to log.
func (a *Audit) recordLines(log hclog.Logger, lines []byte) {
	if !a.enabled() || len(lines) == 0 {
		return
	}
	if err := a.writeLines(lines); err != nil {
		log.Error("audit log write failed", "error", err)
	}
}

// Close flushes and closes the file.
func (a *Audit) Close() error {
	if !a.enabled() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.f.Sync(); err != nil {
		a.f.Close()
		return err
	}
	return a.f.Close()
}
