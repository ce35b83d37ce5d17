package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/bulwark-filter/bulwark/agent/api"
)

// topCmd is bulwark top: a live view of the busiest and riskiest sources,
// from GET /v1/sources and GET /v1/status.
type topCmd struct {
	Sort     string        `help:"Sort key: pps (rate in), dropped (rate-limit drops) or score." enum:"pps,dropped,score" default:"pps"`
	Limit    int           `help:"Rows to show, 1 to 1000 (default: fit the terminal height, else 20)."`
	Interval time.Duration `help:"Refresh interval (at least 200ms)." default:"1s"`
	Once     bool          `help:"Print one snapshot and exit."`
	JSON     bool          `name:"json" help:"With --once: print the snapshot as JSON (the API's SourcesReply)."`
}

func (topCmd) Help() string {
	return "Keys in the live view: p sort by pps, d by dropped, s by score, q or Ctrl-C quit.\n\n" +
		"Plain text (a table per interval) when stdout is not a terminal.\n\n" +
		"Examples:\n" +
		"  bulwark top\n" +
		"  bulwark top --sort score --limit 50\n" +
		"  bulwark top --once --json --sort dropped | jq '.sources[0]'"
}

const (
	topMinInterval = 200 * time.Millisecond
	topMaxLimit    = api.MaxSources
	topDefaultRows = 20
	// topChromeRows is how many terminal rows the header, the table's
	// title row and the key help take.
	topChromeRows = 6
	// topGiveUp is how long the live view keeps retrying an agent that
	// stopped answering before it exits with the error.
	topGiveUp = 10 * time.Second
)

// validate checks the flags that kong's tags cannot.
func (c *topCmd) validate() error {
	if c.JSON && !c.Once {
		return errors.New("top: --json needs --once (it prints one snapshot for scripts; the live view is text)")
	}
	switch c.Sort {
	case "", "pps", "dropped", "score":
	default:
		return fmt.Errorf("top: --sort %q: want pps, dropped or score", c.Sort)
	}
	if c.Limit != 0 && (c.Limit < 1 || c.Limit > topMaxLimit) {
		return fmt.Errorf("top: --limit %d: want 1 to %d", c.Limit, topMaxLimit)
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Interval < topMinInterval {
		return fmt.Errorf("top: --interval %s: want at least %s", c.Interval, topMinInterval)
	}
	return nil
}

func (c *topCmd) Run(g *cli) error {
	if err := c.validate(); err != nil {
		return usageError{err}
	}
	if c.Sort == "" {
		c.Sort = "pps"
	}
	out := os.Stdout
	isTerm := term.IsTerminal(int(out.Fd()))
	if c.Once {
		return c.once(g.Socket, out, isTerm)
	}
	if isTerm {
		return c.live(g.Socket, out)
	}
	return c.plain(g.Socket, out)
}

// topSnapshot is one refresh: the sources and the agent's status.
type topSnapshot struct {
	rep api.SourcesReply
	raw []byte // the sources reply as received
	st  *api.Status
	at  time.Time
}

// fetchTop asks the agent for the sources, sorted by key, and its status.
func fetchTop(socket, by string, limit int) (*topSnapshot, error) {
	c := api.NewClient(socket, 60*time.Second)
	s := &topSnapshot{at: time.Now()}
	var err error
	if s.rep, s.raw, err = c.Sources(context.Background(), by, limit); err != nil {
		return nil, err
	}
	// The agent concatenates the interfaces' tops; order them as a whole.
	sortSources(s.rep.Sources, by)
	st, _, err := c.Status(context.Background())
	if err != nil {
		return nil, err
	}
	s.st = &st
	return s, nil
}

// sortSources orders sources as the agent does: by the key, then by pps.
func sortSources(src []api.Source, by string) {
	less := api.SourceOrder(by)
	sort.SliceStable(src, func(i, j int) bool { return less(src[i], src[j]) })
}

func (c *topCmd) limitOr(rows int) int {
	if c.Limit > 0 {
		return c.Limit
	}
	if rows > 0 {
		return max(1, min(topMaxLimit, rows-topChromeRows))
	}
	return topDefaultRows
}

// once prints one snapshot. A fresh measurement (the agent measures rates
// only while someone watches, with the scorer off) takes a cycle or two:
// wait for it up to a few reputation intervals, then print what there is.
func (c *topCmd) once(socket string, out io.Writer, isTerm bool) error {
	width := 0
	limit := c.limitOr(0)
	if isTerm {
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			width, limit = w, c.limitOr(h)
		}
	}
	s, err := fetchTop(socket, c.Sort, limit)
	if err != nil {
		return err
	}
	if !s.rep.Measured {
		iv := time.Duration(s.rep.Interval * float64(time.Second))
		if iv <= 0 || iv > 3*time.Second {
			iv = time.Second
		}
		for deadline := time.Now().Add(3 * iv); !s.rep.Measured && time.Now().Before(deadline); {
			time.Sleep(iv / 2)
			if s, err = fetchTop(socket, c.Sort, limit); err != nil {
				return err
			}
		}
	}
	if c.JSON {
		b, err := json.MarshalIndent(s.rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	_, err = io.WriteString(out, strings.Join(renderTop(s, c.Sort, width, false), "\n")+"\n")
	return err
}

// plain prints a table per interval, separated by blank lines, until a
// signal or an error.
func (c *topCmd) plain(socket string, out io.Writer) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	for first := true; ; first = false {
		s, err := fetchTop(socket, c.Sort, c.limitOr(0))
		if err != nil {
			return err
		}
		var b strings.Builder
		if !first {
			b.WriteString("\n")
		}
		b.WriteString(strings.Join(renderTop(s, c.Sort, 0, false), "\n") + "\n")
		if _, err := io.WriteString(out, b.String()); err != nil {
			return err // a closed pipe (| head): stop
		}
		select {
		case <-sigs:
			return nil
		case <-tick.C:
		}
	}
}

// Terminal control sequences.
const (
	escAltScreenOn  = "\x1b[?1049h"
	escAltScreenOff = "\x1b[?1049l"
	escHideCursor   = "\x1b[?25l"
	escShowCursor   = "\x1b[?25h"
	escHome         = "\x1b[H"
	escClearEOL     = "\x1b[K"
	escClearEOS     = "\x1b[J"
)

type fetchResult struct {
	s   *topSnapshot
	err error
	by  string
}

// live is the interactive view: alternate screen, raw keys, a redraw per
// interval. The terminal is restored however it ends.
func (c *topCmd) live(socket string, out *os.File) error {
	outFd := int(out.Fd())
	width, height, err := term.GetSize(outFd)
	if err != nil {
		width, height = 80, 24
	}
	// Fail before touching the screen if the agent does not answer.
	first, err := fetchTop(socket, c.Sort, c.limitOr(height))
	if err != nil {
		return err
	}

	inFd := int(os.Stdin.Fd())
	keys := make(chan byte, 16)
	if term.IsTerminal(inFd) {
		old, err := term.MakeRaw(inFd)
		if err != nil {
			return fmt.Errorf("top: raw mode: %w", err)
		}
		defer term.Restore(inFd, old)
		go func() {
			buf := make([]byte, 64)
			for {
				n, err := os.Stdin.Read(buf)
				for _, k := range buf[:n] {
					keys <- k
				}
				if err != nil {
					return
				}
			}
		}()
	}
	// Signals: raw mode turns Ctrl-C into a key, but a kill (SIGTERM, or a
	// SIGINT from elsewhere) must still restore the terminal; SIGWINCH
	// redraws at the new size.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	io.WriteString(out, escAltScreenOn+escHideCursor)
	defer io.WriteString(out, escAltScreenOff+escShowCursor)
	// A panic must not leave the terminal raw either: the defers above run
	// when it unwinds, and the panic continues after them.

	by := c.Sort
	snap := first
	var lastErr error
	var failingSince time.Time
	draw := func() {
		lines := renderTop(snap, by, width, true)
		if lastErr != nil {
			lines = append(lines, "", fitLine("agent: "+lastErr.Error()+" (retrying)", width))
		}
		if height > 0 && len(lines) > height {
			lines = lines[:height]
		}
		var b strings.Builder
		b.WriteString(escHome)
		for i, l := range lines {
			if i > 0 {
				b.WriteString("\r\n")
			}
			b.WriteString(l + escClearEOL)
		}
		b.WriteString(escClearEOS)
		io.WriteString(out, b.String())
	}
	draw()

	results := make(chan fetchResult, 1)
	inFlight := false
	refresh := func() {
		if inFlight {
			return
		}
		inFlight = true
		want, limit := by, c.limitOr(height)
		go func() {
			s, err := fetchTop(socket, want, limit)
			results <- fetchResult{s, err, want}
		}()
	}
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	for {
		select {
		case k := <-keys:
			switch k {
			case 'q', 'Q', 3, 4: // q, Ctrl-C, Ctrl-D
				return nil
			case 'p', 'P':
				by = "pps"
			case 'd', 'D':
				by = "dropped"
			case 's', 'S':
				by = "score"
			default:
				continue
			}
			// Re-sort what is on screen now; the next reply brings the
			// agent's top for the new key.
			sortSources(snap.rep.Sources, by)
			draw()
			refresh()
		case sig := <-sigs:
			if sig == syscall.SIGWINCH {
				if w, h, err := term.GetSize(outFd); err == nil {
					width, height = w, h
				}
				draw()
				continue
			}
			return nil
		case <-tick.C:
			refresh()
		case r := <-results:
			inFlight = false
			if r.err != nil {
				if lastErr == nil {
					failingSince = time.Now()
				}
				lastErr = r.err
				if time.Since(failingSince) >= topGiveUp {
					return r.err
				}
				draw()
				continue
			}
			lastErr = nil
			snap = r.s
			if r.by != by { // a key changed the sort meanwhile
				sortSources(snap.rep.Sources, by)
				refresh()
			}
			draw()
		}
	}
}

// topColumn is one column of the table.
type topColumn struct {
	title string
	key   string // the sort key it shows, if any
	left  bool   // left-aligned
	drop  int    // the order in which columns go when the width is short (0: never)
	cell  func(v api.Source) string
}

var topColumns = []topColumn{
	{title: "SOURCE", left: true, cell: func(v api.Source) string { return v.Source }},
	{title: "IN pps", key: "pps", cell: func(v api.Source) string { return fmtRate(v.PPS) }},
	{title: "DELIVERED pps", drop: 6, cell: func(v api.Source) string { return fmtRate(v.DeliveredPPS) }},
	{title: "RATELIMIT pps", key: "dropped", drop: 5, cell: func(v api.Source) string { return fmtRate(v.RatelimitPPS) }},
	{title: "SYN%", drop: 2, cell: func(v api.Source) string { return fmtPercent(v.SYNShare) }},
	{title: "PORTS/s", drop: 1, cell: func(v api.Source) string { return strconv.Itoa(v.Ports) }},
	{title: "SCORE", key: "score", drop: 7, cell: func(v api.Source) string { return strconv.FormatFloat(v.Score, 'f', 1, 64) }},
	{title: "VERDICT", left: true, drop: 4, cell: func(v api.Source) string { return orDash(v.Verdict) }},
	{title: "TTL", drop: 3, cell: func(v api.Source) string {
		if v.Verdict == "" {
			return "-"
		}
		return fmtTTL(v.TTLSeconds)
	}},
}

// sortMark follows the title of the column the table is sorted by.
const sortMark = "▼"

// renderTop renders a snapshot as lines: the header, then the table fitted
// to width (0: no limit). keysHelp adds the live view's key line.
func renderTop(s *topSnapshot, by string, width int, keysHelp bool) []string {
	var lines []string
	lines = append(lines, topHeader(s, by)...)
	if keysHelp {
		lines = append(lines, "keys: p sort by pps, d by dropped, s by score, q quit")
	}
	lines = append(lines, "")
	switch {
	case !s.rep.Measured:
		lines = append(lines, fmt.Sprintf("measuring... (rates come after the first scoring cycles, every %s)", fmtSeconds(s.rep.Interval)))
	case len(s.rep.Sources) == 0:
		lines = append(lines, "no traffic in the last cycle")
	default:
		lines = append(lines, renderTable(s.rep.Sources, by, width)...)
	}
	for i := range lines {
		lines[i] = fitLine(lines[i], width)
	}
	return lines
}

// topHeader is the agent line and the totals by action and reason.
func topHeader(s *topSnapshot, by string) []string {
	first := "bulwark top"
	if st := s.st; st != nil {
		first = fmt.Sprintf("bulwark %s, mode %s, up %s", st.Version, st.Mode, fmtUptime(st.UptimeSeconds))
		var ifs []string
		for _, i := range st.Interfaces {
			ifs = append(ifs, fmt.Sprintf("%s (%s)", i.Name, i.Attach))
		}
		if len(ifs) > 0 {
			first += ", " + strings.Join(ifs, " ")
		}
	}
	first += fmt.Sprintf(" | %s | sort %s", s.at.Format("15:04:05"), by)
	totals := "packets: none yet"
	if s.st != nil && len(s.st.Packets) > 0 {
		var parts []string
		for _, act := range topActionOrder(s.st.Packets) {
			var sum uint64
			var rs []string
			for _, r := range sortedKeys(s.st.Packets[act]) {
				n := s.st.Packets[act][r]
				sum += n
				rs = append(rs, fmt.Sprintf("%s %d", r, n))
			}
			parts = append(parts, fmt.Sprintf("%s %d (%s)", act, sum, strings.Join(rs, ", ")))
		}
		totals = "packets: " + strings.Join(parts, "  ")
	}
	return []string{first, totals}
}

// topActionOrder puts drop first, then would_drop, pass, then the rest.
func topActionOrder(m map[string]map[string]uint64) []string {
	rank := map[string]int{"drop": 0, "would_drop": 1, "pass": 2}
	keys := sortedKeys(m)
	sort.SliceStable(keys, func(i, j int) bool {
		ri, ok := rank[keys[i]]
		if !ok {
			ri = 9
		}
		rj, ok := rank[keys[j]]
		if !ok {
			rj = 9
		}
		return ri < rj
	})
	return keys
}

// renderTable lays out the sources; when the widest layout does not fit
// width, columns go in their drop order (never SOURCE nor the sort key's),
// and last the SOURCE column is cut.
func renderTable(src []api.Source, by string, width int) []string {
	cols := make([]topColumn, len(topColumns))
	copy(cols, topColumns)
	titles := func(c topColumn) string {
		if c.key == by {
			return c.title + sortMark
		}
		return c.title
	}
	cells := make([][]string, len(src))
	for i, v := range src {
		for _, c := range cols {
			cells[i] = append(cells[i], c.cell(v))
		}
	}
	widths := func(keep []bool) ([]int, int) {
		ws := make([]int, len(cols))
		total := 0
		n := 0
		for j, c := range cols {
			if !keep[j] {
				continue
			}
			ws[j] = utf8.RuneCountInString(titles(c))
			for i := range cells {
				ws[j] = max(ws[j], utf8.RuneCountInString(cells[i][j]))
			}
			total += ws[j]
			n++
		}
		return ws, total + 2*(n-1)
	}
	keep := make([]bool, len(cols))
	for j := range keep {
		keep[j] = true
	}
	ws, total := widths(keep)
	for width > 0 && total > width {
		// Drop the column with the lowest drop order left.
		best := -1
		for j, c := range cols {
			if keep[j] && c.drop > 0 && c.key != by && (best < 0 || c.drop < cols[best].drop) {
				best = j
			}
		}
		if best < 0 {
			break
		}
		keep[best] = false
		ws, total = widths(keep)
	}
	if width > 0 && total > width {
		// Cut the SOURCE column (at least 8 wide); fitLine does the rest.
		ws[0] = max(8, ws[0]-(total-width))
	}
	row := func(get func(j int) string) string {
		var b strings.Builder
		for j, c := range cols {
			if !keep[j] {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("  ")
			}
			b.WriteString(pad(cut(get(j), ws[j]), ws[j], c.left))
		}
		return strings.TrimRight(b.String(), " ")
	}
	lines := []string{row(func(j int) string { return titles(cols[j]) })}
	for i := range cells {
		lines = append(lines, row(func(j int) string { return cells[i][j] }))
	}
	return lines
}

func pad(s string, w int, left bool) string {
	n := w - utf8.RuneCountInString(s)
	if n <= 0 {
		return s
	}
	if left {
		return s + strings.Repeat(" ", n)
	}
	return strings.Repeat(" ", n) + s
}

// cut shortens s to w runes, marking the cut with "…".
func cut(s string, w int) string {
	if w <= 0 || utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	if w == 1 {
		return string(r[:1])
	}
	return string(r[:w-1]) + "…"
}

// fitLine cuts a line to width runes (0: no limit).
func fitLine(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	return string([]rune(s)[:width])
}

// fmtRate writes packets per second compactly: 7.5, 950, 12.3k, 1.25M.
func fmtRate(v float64) string {
	switch {
	case v <= 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v < 1e3:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v < 1e6:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	default:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	}
}

// fmtPercent writes a 0..1 share as a whole percentage.
func fmtPercent(share float64) string {
	return strconv.FormatFloat(share*100, 'f', 0, 64) + "%"
}

// fmtTTL writes a verdict's remaining time: 45s, 4m05s, 2h03m, 1d04h.
func fmtTTL(sec float64) string {
	if sec <= 0 {
		return "expired"
	}
	s := int64(sec + 0.5)
	if sec < 1 {
		return strconv.FormatFloat(sec, 'f', 1, 64) + "s"
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

func fmtUptime(sec float64) string {
	return time.Duration(sec * float64(time.Second)).Round(time.Second).String()
}

func fmtSeconds(sec float64) string {
	if sec <= 0 {
		return "interval"
	}
	return time.Duration(sec * float64(time.Second)).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
