package bench

import "github.com/bulwark-filter/bulwark/test/bench/nft"

// The figures of TestCrowdSecBench (crowdsec_test.go), which the report
// (test/bench/report) reads.

// CrowdSecRun is one import of N decisions watched by both bouncers.
type CrowdSecRun struct {
	Decisions int     `json:"decisions"`
	ImportS   float64 `json:"import_s"` // cscli decisions import, all files, start to return
	// From the import's return (the LAPI holds every decision) until the
	// kernel maps (Bulwark) or the nft set (the bouncer) hold all of them,
	// at the start of the count that saw them all; 0 when that count began
	// before the import returned. -1: not within the bound.
	BulwarkS float64 `json:"bulwark_s"`
	BouncerS float64 `json:"bouncer_s"`
	// The same from the import's start.
	BulwarkFromStartS float64 `json:"bulwark_from_start_s"`
	BouncerFromStartS float64 `json:"bouncer_from_start_s"`
	// The longest `nft -j list set` count of the run.
	BouncerCountMaxS float64 `json:"bouncer_count_max_s"`
	// The bouncer's last count, and when it had not all of them: the time
	// after the import when the watch gave up (its count stalled, or the
	// bound passed).
	BouncerHeld    int     `json:"bouncer_held"`
	BouncerGaveUpS float64 `json:"bouncer_gave_up_s,omitempty"`
	// The agent's own figures of its last full pull once all were in
	// force (bulwark crowdsec status): how long the LAPI took to begin
	// its answer (its listing), and the apply.
	BulwarkAnswerS float64 `json:"bulwark_lapi_answer_s"`
	BulwarkApplyS  float64 `json:"bulwark_apply_s"`
}

// CrowdSecSize is the runs of one size, folded: medians, lowest and highest.
type CrowdSecSize struct {
	Decisions int     `json:"decisions"`
	Runs      int     `json:"runs"`
	ImportS   float64 `json:"import_median_s"`
	BulwarkS  float64 `json:"bulwark_median_s"`
	BulwarkLo float64 `json:"bulwark_min_s"`
	BulwarkHi float64 `json:"bulwark_max_s"`
	// Medians of the runs' BulwarkAnswerS and BulwarkApplyS.
	BulwarkAnswerS float64 `json:"bulwark_lapi_answer_median_s"`
	BulwarkApplyS  float64 `json:"bulwark_apply_median_s"`
	BouncerS       float64 `json:"bouncer_median_s"`
	BouncerLo      float64 `json:"bouncer_min_s"`
	BouncerHi      float64 `json:"bouncer_max_s"`
	// BouncerMissed: runs where the bouncer never held every decision;
	// their time counts as when the watch gave up, a lower bound.
	BouncerMissed int `json:"bouncer_missed"`
	// Sooner: the bouncer's median over Bulwark's, Bulwark's taken as at
	// least its poll interval; a lower bound when BouncerMissed > 0.
	Sooner float64 `json:"sooner"`
	// CPU per packet on the veth testbed with these decisions (medians of
	// the rounds): Bulwark's verdicts, the bouncer's set in nft.
	BulwarkNsPerPkt float64 `json:"bulwark_ns_per_pkt,omitempty"`
	NFTNsPerPkt     float64 `json:"nft_bouncer_ns_per_pkt,omitempty"`
	CPURatio        float64 `json:"cpu_ratio,omitempty"` // nft's over Bulwark's
}

// CrowdSecFigures is what TestCrowdSecBench writes.
type CrowdSecFigures struct {
	PullIntervalS  float64        `json:"pull_interval_s"`
	PollBulwarkS   float64        `json:"poll_bulwark_s"`
	PollBouncerS   float64        `json:"poll_bouncer_s"`
	BouncerVersion string         `json:"bouncer"`
	Sizes          []CrowdSecSize `json:"sizes"`
	Runs           []CrowdSecRun  `json:"runs"`
	CPU            *nft.Report    `json:"cpu,omitempty"`
}
