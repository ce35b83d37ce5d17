package main

import (
	"fmt"
	"runtime"
	"strings"
)

// numOf reads a number of a bench step's JSON (0 when absent).
func numOf(r map[string]any) func(k string) float64 {
	return func(k string) float64 { v, _ := r[k].(float64); return v }
}

// cellsOf formats numbers of a bench step's JSON (0 when absent) for a
// table cell: format's verbs take the keys' numbers in order.
func cellsOf(r map[string]any) func(format string, keys ...string) string {
	num := numOf(r)
	return func(format string, keys ...string) string {
		vs := make([]any, len(keys))
		for i, k := range keys {
			vs[i] = num(k)
		}
		return fmt.Sprintf(format, vs...)
	}
}

// writeTable writes a Markdown table: the header row, the separator and
// the rows, each as many cells as the header.
func writeTable(w *strings.Builder, header []string, rows ...[]string) {
	w.WriteString("| " + strings.Join(header, " | ") + " |\n|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		w.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
}

// writeFleetAgents writes the section of TestFleetPropagationBench's
// figures: propagation to real agents on the fleet testbed.
func writeFleetAgents(w *strings.Builder, r map[string]any) {
	num := numOf(r)
	fmt.Fprintf(w, "\n## Fleet: propagation to %.0f real agents (test/fleet testbed: %.0f-node NATS JetStream cluster, replicas %.0f; "+
		"each agent a `bulwark run` in its own namespace with XDP on its veth, small maps)\n\n", num("agents"), num("servers"), num("replicas"))
	cell := cellsOf(r)
	writeTable(w, []string{"agents", "verdicts/s", "verdicts", "published in s", "samples", "missed", "p50 ms", "p99 ms", "max ms",
		"last agent p50 / p99 / max ms"}, []string{cell("%.0f", "agents"), cell("%.0f", "rate_per_s"), cell("%.0f", "verdicts"),
		cell("%.1f", "publish_seconds"), cell("%.0f", "samples"), cell("%.0f", "missed"), cell("%.1f", "propagation_p50_ms"),
		cell("%.1f", "propagation_p99_ms"), cell("%.1f", "propagation_max_ms"),
		cell("%.1f / %.1f / %.1f", "last_agent_p50_ms", "last_agent_p99_ms", "last_agent_max_ms")})
	fmt.Fprintf(w, "\nWhere the time went: from the Publish call to the stream's timestamp (stamped by the stream leader as it "+
		"takes the message, before it replicates it) p50 %.1f ms, p99 %.1f ms, max %.1f ms per verdict; from that "+
		"timestamp to each agent's kernel map (replication, delivery, the agent's fleet client, the kernel write) p50 %.1f "+
		"ms, p99 %.1f ms, max %.1f ms per (agent, verdict).\n\n", num("publish_to_stored_p50_ms"), num("publish_to_stored_p99_ms"),
		num("publish_to_stored_max_ms"), num("stored_to_kernel_p50_ms"), num("stored_to_kernel_p99_ms"), num("stored_to_kernel_max_ms"))
	writeTable(w, []string{"", "agent (each, mean)", "servers (together)"},
		[]string{"CPU per verdict, less the idle rate", cell("%.1f us", "agent_cpu_us_per_verdict"), cell("%.1f us", "server_cpu_us_per_verdict")},
		[]string{"CPU per second of the run", cell("%.3f s", "agent_cpu_s_per_s"), cell("%.3f s", "server_cpu_s_per_s")},
		[]string{"waiting for a CPU (run queue, summed over threads) per second of the run", cell("%.3f s", "agent_runqueue_wait_s_per_s"),
			cell("%.3f s", "server_runqueue_wait_s_per_s")},
		[]string{"bytes on the wire per verdict, less the idle rate", cell("%.0f into each", "agent_wire_bytes_per_verdict"),
			cell("%.0f out of them", "server_wire_bytes_per_verdict")})
	fmt.Fprintf(w, "\nPropagation is from the publisher's Publish call (test/fleet/publisher: the real fleet client, one issuer, on a "+
		"host of the fabric, paced at the rate) to the first lookup that found the verdict in an agent's kernel verdict map, "+
		"read through its pin, over every (agent, verdict) pair; \"last agent\" is per verdict, to the last agent that had "+
		"it. The publisher writes each verdict's CLOCK_MONOTONIC time to the benchmark before it publishes it. The benchmark's "+
		"poller runs on a thread of the real-time class (so that the machine's load does not delay it) and, every %.0f ms "+
		"(%.0f rounds), looks up on each agent the verdicts from the first one not yet seen onwards until it has missed %.0f. "+
		"A verdict arrived between the last lookup that missed it (for one found at its first lookup, %.0f samples, the start "+
		"of the round before) and the one that found it: that span, each sample's error, was %.2f ms p50, %.2f ms p99, %.2f "+
		"ms max; %.0f samples were found past one still missing (a batch written out of order; the error above includes "+
		"them). The poller used %.2f CPU-seconds per second. CPU is each process's user + system time; \"less the idle "+
		"rate\" subtracts its rate over %.1f s idle before the run (agents %.3f, servers %.3f CPU-s/s). Bytes are Ethernet "+
		"frames on the fabric links; out of the servers they count the deliveries to %.0f clients (the agents and the "+
		"publisher), the replication and the acknowledgements.\n",
		num("poll_pause_ms"), num("poll_rounds"), num("poll_window"), num("first_look_samples"), num("poll_bound_p50_ms"),
		num("poll_bound_p99_ms"), num("poll_bound_max_ms"), num("out_of_order_samples"), num("poller_cpu_s_per_s"),
		num("idle_seconds"), num("agent_idle_cpu_s_per_s"), num("server_idle_cpu_s_per_s"), num("bucket_clients"))
}

// cpuAsked is the CPU-seconds per second the agents and servers of a
// TestFleetPropagationBench run asked for, from their CPU per verdict.
func cpuAsked(r map[string]any) float64 {
	num := numOf(r)
	return (num("agents")*num("agent_cpu_us_per_verdict") + num("server_cpu_us_per_verdict")) * num("rate_per_s") / 1e6
}

// fleetAgentTargets checks TestFleetPropagationBench's figures against
// the propagation target.
func fleetAgentTargets(r map[string]any) []target {
	if r == nil {
		return nil
	}
	num := numOf(r)
	p99 := num("propagation_p99_ms")
	t := target{fmt.Sprintf("fleet propagation p99 within 250 ms (%.0f agents with XDP, %.0f verdicts/s for %.0f s; Publish call -> "+
		"every agent's kernel verdict map)", num("agents"), num("rate_per_s"), num("verdicts")/num("rate_per_s")),
		fmt.Sprintf("%.1f ms (p50 %.1f, max %.1f over %.0f samples, %.0f missed)", p99, num("propagation_p50_ms"),
			num("propagation_max_ms"), num("samples"), num("missed")), p99 <= 250 && num("missed") == 0, ""}
	switch {
	case num("missed") > 0:
		t.Why = fmt.Sprintf("%.0f (agent, verdict) pairs never reached a kernel map", num("missed"))
	case !t.Met:
		t.Why = fmt.Sprintf("the time went %s: from the Publish call to the stream's timestamp p99 %.1f ms, from there to the "+
			"kernel maps p99 %.1f ms. The agents spent %.1f us of CPU per verdict each and the servers %.1f us together, "+
			"%.2f CPU-seconds per second at %.0f verdicts/s of the VM's %d CPUs; during the run each agent used %.3f CPU-s/s "+
			"and waited %.3f s/s for a CPU, the servers %.3f and %.3f summed over their threads (run-queue wait: time runnable "+
			"but not running, the machine's other load)",
			where(r), num("publish_to_stored_p99_ms"), num("stored_to_kernel_p99_ms"), num("agent_cpu_us_per_verdict"),
			num("server_cpu_us_per_verdict"), cpuAsked(r), num("rate_per_s"), runtime.NumCPU(), num("agent_cpu_s_per_s"),
			num("agent_runqueue_wait_s_per_s"), num("server_cpu_s_per_s"), num("server_runqueue_wait_s_per_s"))
	}
	return []target{t}
}

// where says which part of the propagation held its p99: the way into the
// stream, the way from it to the kernel maps, or both alike (within a
// factor of 2).
func where(r map[string]any) string {
	num := numOf(r)
	in, out := num("publish_to_stored_p99_ms"), num("stored_to_kernel_p99_ms")
	switch {
	case in > 2*out:
		return "mostly before the stream stored the verdicts (the publisher's client, the stream leader's intake)"
	case out > 2*in:
		return "mostly after the stream stored the verdicts (replication, delivery, the agents' clients, the kernel writes)"
	}
	return "in both halves alike"
}

// writeFleet writes the section of TestFleetBench's figures: the fan-out
// simulation and the cold sync.
func writeFleet(w *strings.Builder, r map[string]any) {
	num := numOf(r)
	w.WriteString("\n## Fleet: fan-out simulation and cold sync (real fleet.Client code in one process, real 3-node NATS JetStream cluster, no XDP)\n\n")
	cell := cellsOf(r)
	writeTable(w, []string{"clients", "verdicts/s", "verdicts", "published in s", "samples", "p50 ms", "p99 ms", "max ms",
		"client CPU us per verdict", "CPU-s/s asked", "cold sync verdicts", "cold sync s"}, []string{cell("%.0f", "clients"),
		cell("%.0f", "rate_per_s"), cell("%.0f", "verdicts"), cell("%.1f", "publish_seconds"), cell("%.0f", "samples"),
		cell("%.1f", "propagation_p50_ms"), cell("%.1f", "propagation_p99_ms"), cell("%.1f", "propagation_max_ms"),
		cell("%.1f", "client_cpu_us_per_verdict"), fmt.Sprintf("%.2f", fanoutAsked(r)), cell("%.0f", "coldsync_verdicts"),
		cell("%.2f", "coldsync_seconds")})
	fmt.Fprintf(w, "\nThe fan-out simulates a large fleet's load on the servers: lightweight clients, each the real fleet client "+
		"with an Applier that records when each verdict arrived, all in one process on this %d-CPU VM beside the servers. It "+
		"is no propagation figure for a fleet (the 250 ms target is on real agents, above): its clients ask for clients x rate "+
		"x client CPU per verdict = %.0f x %.0f x %.1f us = %.2f CPU-seconds per second, so on this machine its delays are "+
		"queueing for the CPU. Propagation is from the publisher's put call to the verdict's Apply on each client, over every "+
		"(client, verdict) pair. Client CPU is the benchmark process's CPU time during the fan-out (every client and the "+
		"publisher) over clients x verdicts. The cold sync fills one server's bucket and times a fresh client until it has "+
		"applied every verdict.\n", runtime.NumCPU(), num("clients"), num("rate_per_s"), num("client_cpu_us_per_verdict"), fanoutAsked(r))
	if num("coldsync_cpu_seconds") > 0 {
		fmt.Fprintf(w, "\nDuring the cold sync the fresh client used %.2f CPU-seconds (%.2f per 1M verdicts, the machine-independent "+
			"figure) and the server %.2f; the client then held %.0f bytes of heap per verdict.\n", num("coldsync_cpu_seconds"),
			coldCPUPerMillion(r), num("coldsync_server_cpu_seconds"), num("coldsync_heap_bytes_per_verdict"))
	}
}

// coldCPUPerMillion is the cold sync client's CPU-seconds per 1M verdicts.
func coldCPUPerMillion(r map[string]any) float64 {
	num := numOf(r)
	if num("coldsync_verdicts") == 0 {
		return 0
	}
	return num("coldsync_cpu_seconds") * 1e6 / num("coldsync_verdicts")
}

// fanoutAsked is the CPU-seconds per second the fan-out's clients asked
// for.
func fanoutAsked(r map[string]any) float64 {
	num := numOf(r)
	return num("clients") * num("rate_per_s") * num("client_cpu_us_per_verdict") / 1e6
}

// fleetTargets checks TestFleetBench's figures against the issue's
// targets: the cold sync (the fan-out is a simulation, with no target).
func fleetTargets(r map[string]any) []target {
	if r == nil {
		return nil
	}
	num := numOf(r)
	cold := target{fmt.Sprintf("cold sync of %.0f verdicts within 10 s", num("coldsync_verdicts")),
		fmt.Sprintf("%.2f s", num("coldsync_seconds")), num("coldsync_seconds") <= 10, ""}
	if !cold.Met {
		cold.Why = fmt.Sprintf("one client reads the bucket on one ordered consumer and decodes, merges and applies each value: "+
			"%.0f verdicts/s here; docs/fleet.md says where its CPU goes", num("coldsync_verdicts")/num("coldsync_seconds"))
	}
	return []target{cold}
}

// writeFleetColdAgent writes the section of TestFleetColdSyncAgentBench's
// figures, beside the lightweight client's cold sync (fl, may be nil).
func writeFleetColdAgent(w *strings.Builder, r, fl map[string]any) {
	num := numOf(r)
	fmt.Fprintf(w, "\n## Fleet: cold sync of a real agent (test/fleet testbed: %.0f-node NATS JetStream cluster, replicas %.0f; "+
		"a `bulwark run` with XDP on its veth, verdict map of %.0f, audit log on)\n\n", num("servers"), num("replicas"), num("verdict_map_size"))
	cell := cellsOf(r)
	light := "-"
	if fl != nil {
		light = fmt.Sprintf("%.2f", numOf(fl)("coldsync_seconds"))
	}
	writeTable(w, []string{"verdicts", "bucket filled in s", "agent answering after s", "all in its kernel map after s",
		"agent CPU s", "audit records", "lightweight client (above) s"}, []string{cell("%.0f", "verdicts"), cell("%.1f", "fill_seconds"),
		cell("%.2f", "ready_seconds"), cell("%.2f", "kernel_seconds"), cell("%.2f", "agent_cpu_seconds"), cell("%.0f", "audit_records"), light})
	w.WriteString("\nThe bucket is filled straight (test/fleet/publisher -raw: 100 issuers' encoded values) before the agent " +
		"starts; the time is from the agent's start to the first count of its kernel verdict map, read through the pin in " +
		"batches, that finds every verdict in force. On the way the agent's fleet client reads and merges the bucket, and its " +
		"applier looks up the sources its kernel map may hold an entry on (a local verdict that wins is kept; a filter of the " +
		"sources written tells the others apart), writes the verdicts in batch writes and one audit " +
		"record per verdict, written together. The lightweight client's figure is the same read with an Applier that only " +
		"records arrivals, against one server.\n")
}

// fleetColdAgentTargets checks TestFleetColdSyncAgentBench's figures
// against the cold sync target, beside the lightweight client's
// (fl, may be nil).
func fleetColdAgentTargets(r, fl map[string]any) []target {
	if r == nil {
		return nil
	}
	num := numOf(r)
	got := fmt.Sprintf("%.2f s", num("kernel_seconds"))
	if fl != nil {
		got += fmt.Sprintf(" (lightweight client %.2f s)", numOf(fl)("coldsync_seconds"))
	}
	t := target{fmt.Sprintf("cold sync of %.0f verdicts into a real agent's kernel map within 10 s (bulwark run, XDP, audit on; "+
		"from its start)", num("verdicts")), got, num("kernel_seconds") <= 10 && num("audit_records") == num("verdicts"), ""}
	switch {
	case num("audit_records") != num("verdicts"):
		t.Why = fmt.Sprintf("%.0f audit records of fleet verdicts applied, want one per verdict", num("audit_records"))
	case !t.Met:
		t.Why = fmt.Sprintf("the agent used %.2f CPU-seconds (%.2f us per verdict) beside the 3 servers on this %d-CPU VM: "+
			"its fleet client's read and merge, and the applier's batch writes and audit records (docs/fleet.md)",
			num("agent_cpu_seconds"), num("agent_cpu_seconds")*1e6/max(num("verdicts"), 1), runtime.NumCPU())
	}
	return []target{t}
}

// fleetFigures are the fleet's figures beside the targets: the per-verdict
// costs on real agents and the fan-out simulation.
func fleetFigures(fa, fl map[string]any) []figure {
	var out []figure
	if fa != nil {
		num := numOf(fa)
		out = append(out, figure{fmt.Sprintf("fleet, %.0f agents at %.0f verdicts/s: to the last agent; CPU per verdict; bytes per verdict into an agent",
			num("agents"), num("rate_per_s")), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms; agent %.1f us each, servers %.1f us; %.0f B",
			num("last_agent_p50_ms"), num("last_agent_p99_ms"), num("last_agent_max_ms"), num("agent_cpu_us_per_verdict"),
			num("server_cpu_us_per_verdict"), num("agent_wire_bytes_per_verdict"))})
	}
	if fl != nil {
		num := numOf(fl)
		out = append(out, figure{fmt.Sprintf("fleet fan-out simulation: %.0f lightweight clients in one process (no XDP), %.0f verdicts/s",
			num("clients"), num("rate_per_s")), fmt.Sprintf("p50 %.0f ms, p99 %.0f ms, max %.0f ms; %.1f us of CPU per verdict per client: "+
			"%.2f CPU-s/s asked of %d CPUs", num("propagation_p50_ms"), num("propagation_p99_ms"), num("propagation_max_ms"),
			num("client_cpu_us_per_verdict"), fanoutAsked(fl), runtime.NumCPU())})
	}
	return out
}

// writeFleetEstimate writes what a 1,000-host fleet needs, computed from
// TestFleetPropagationBench's per-verdict figures (docs/fleet.md explains
// the method and its limits).
func writeFleetEstimate(w *strings.Builder, r map[string]any) {
	num := numOf(r)
	const hosts = 1000
	agentUS, bytesIn := num("agent_cpu_us_per_verdict"), num("agent_wire_bytes_per_verdict")
	// Server CPU per delivery: the servers' CPU per verdict over the
	// clients it went to; it also carries the intake and the replication,
	// which do not grow with the hosts, so it is an upper bound.
	perDelivery := num("server_cpu_us_per_verdict") / max(num("bucket_clients"), 1)
	w.WriteString("\n## What a 1,000-host fleet needs, from the figures of the real agents above (an estimate, not a measurement at that size)\n\n")
	fmt.Fprintf(w, "Inputs: %.1f us of agent CPU per verdict, %.0f bytes on the wire into each host per verdict, %.1f us of "+
		"server CPU per delivery (the servers' %.1f us per verdict over its %.0f deliveries: an upper bound, as intake and "+
		"replication are in it). Every verdict goes to every host.\n\n", agentUS, bytesIn, perDelivery,
		num("server_cpu_us_per_verdict"), num("bucket_clients"))
	var rows [][]string
	for _, rate := range []float64{10, 1000} {
		rows = append(rows, []string{fmt.Sprintf("%.0f", rate), fmt.Sprintf("%.2f %% of a CPU", rate*agentUS/1e4),
			fmt.Sprintf("%.0f", rate*hosts), fmt.Sprintf("%.1f Mbit/s", rate*hosts*bytesIn*8/1e6),
			fmt.Sprintf("%.2f CPUs", rate*hosts*perDelivery/1e6)})
	}
	writeTable(w, []string{"fleet-wide verdicts/s", "per host: CPU", "deliveries/s", "out of the servers", "server CPU (all servers)"}, rows...)
}
