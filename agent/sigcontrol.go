package agent

import (
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/sigspec"
)

// sigName is what a signature's name must match (as config names do).
var sigName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// maxSigTTL bounds a signature's life set through the API.
const maxSigTTL = 30 * 24 * time.Hour

func (s *controlServer) handleSignaturesGet(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	if st == nil {
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
		return
	}
	v, err := s.sigs.view(st.ifaces)
	if err != nil {
		fail(w, http.StatusInternalServerError, "read signatures: %v", err)
		return
	}
	if v == nil {
		v = []api.Signature{}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *controlServer) handleSignatureAdd(w http.ResponseWriter, r *http.Request) {
	var req api.SignatureRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !sigName.MatchString(req.Name) {
		fail(w, http.StatusBadRequest, "signature name %q: want ^[a-z0-9][a-z0-9_.-]{0,31}$", req.Name)
		return
	}
	sig, err := sigspec.Parse(req.Match)
	if err == nil {
		if req.Action == "" {
			req.Action = "drop"
		}
		err = sigspec.ParseAction(req.Action, req.PPS, req.Burst, &sig)
	}
	if err != nil {
		fail(w, http.StatusBadRequest, "signature %s: %v", req.Name, err)
		return
	}
	e := &sigEntry{name: req.Name, origin: sigFromCLI, sig: sig, added: time.Now()}
	if req.TTL != "" {
		ttl, err := config.ParseDuration(req.TTL)
		if err != nil || ttl <= 0 || ttl > maxSigTTL {
			fail(w, http.StatusBadRequest, "ttl %q: want a duration from 1s to 30d", req.TTL)
			return
		}
		e.expires = e.added.Add(ttl)
	}
	st, ok := s.lockWriters(w)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	rec := AuditRecord{Who: "cli", What: "signature.add", Target: []string{req.Name}, TTL: req.TTL,
		Detail: sig.Action.String() + " " + sig.String(), Result: "ok"}
	if _, err := s.sigs.put(st.ifaces, e); err != nil {
		rec.Result = "rejected"
		rec.Why = err.Error()
		s.auditf(rec)
		code := http.StatusConflict
		if !errors.Is(err, errSigFull) && !errors.Is(err, errSigTaken) {
			code = http.StatusInternalServerError
			s.mapErrs.WithLabelValues("signatures").Inc()
		}
		fail(w, code, "%v", err)
		return
	}
	s.auditf(rec)
	v, err := s.sigs.view(st.ifaces)
	if err != nil {
		fail(w, http.StatusInternalServerError, "read signatures: %v", err)
		return
	}
	for _, x := range v {
		if x.Name == req.Name {
			writeJSON(w, http.StatusOK, x)
			return
		}
	}
	fail(w, http.StatusInternalServerError, "signature %s not in the table after it was written", req.Name)
}

func (s *controlServer) handleSignatureDel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, ok := s.lockWriters(w)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	for _, e := range s.sigs.list() {
		if e.name == name && e.origin == sigFromConfig {
			fail(w, http.StatusConflict, "signature %s is in the config: remove it there and reload", name)
			return
		}
	}
	gone, err := s.sigs.del(st.ifaces, name, "")
	if err != nil {
		s.mapErrs.WithLabelValues("signatures").Inc()
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	n := 0
	if gone {
		n = 1
		s.auditf(AuditRecord{Who: "cli", What: "signature.del", Target: []string{name}, Result: "ok"})
	}
	writeJSON(w, http.StatusOK, api.Deleted{Deleted: n})
}
