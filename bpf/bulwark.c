//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bulwark's XDP program. Decision order, first match wins:
 *   malformed -> non-IP -> allow list -> attack signatures -> block list ->
 *   dynamic verdict -> per-source rate limits -> pass.
 * The README ("How the datapath decides") explains each step; bpf/model is
 * the same procedure in Go, and the differential tests hold the two together.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "maps.h"
#include "clock.h"
#include "stats.h"
#include "parse.h"
#include "lists.h"
#include "verdicts.h"
#include "ratelimit.h"
#include "sources.h"
#include "scans.h"
#include "signatures.h"
#include "sigsample.h"

/* Never used: they put these types into the object's BTF so bpf2go can
 * generate their Go declarations. */
const struct drop_event *unused_event __attribute__((unused));
const enum action *unused_action __attribute__((unused));
const enum reason *unused_reason __attribute__((unused));
const enum mode *unused_mode __attribute__((unused));
const enum verdict_action *unused_verdict_action __attribute__((unused));
const enum present_bits *unused_present __attribute__((unused));
const enum port_table *unused_port_table __attribute__((unused));
const enum misc_counter *unused_misc __attribute__((unused));
const struct replay_io *unused_replay_io __attribute__((unused));
const enum limits *unused_limits __attribute__((unused));
const enum sig_fields *unused_sig_fields __attribute__((unused));
const enum sig_action *unused_sig_action __attribute__((unused));
const struct sig_pkt *unused_sig_pkt __attribute__((unused));
const struct sig_sampling *unused_sig_sampling __attribute__((unused));
const struct sig_dest *unused_sig_dest __attribute__((unused));

SEC("xdp")
int bulwark(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	__u32 zero = 0;
	__u64 now = 0;

	__u32 action, reason, detail;
	struct dp_settings *s = bpf_map_lookup_elem(&settings, &zero);
	if (!s)
		return XDP_PASS;

/* Every decision leaves through the one exit below: the counting and
 * sampling code is in the program once, not once per decision. */
#define EXIT(a, r, d)                                                          \
	do {                                                                   \
		action = (a);                                                  \
		reason = (r);                                                  \
		detail = (d);                                                  \
		goto out;                                                      \
	} while (0)

	struct packet p = {};
	int r = parse_packet(ctx, data, data_end, &p);
	if (r == PARSE_NON_IP)
		EXIT(ACTION_PASS, REASON_NON_IP, 0);
	if (r != PARSE_OK) {
		if (p.family) {
			struct src_key k;
			source_key(s, &p, &k);
			now = now_ns(ctx);
			int limited = 0;
			struct src_state *st = source_state(&k, now, &limited, 0);
			if (st) {
				__sync_fetch_and_add(&st->malformed, 1);
				st->last_seen_ns = now;
			}
		}
		EXIT(s->malformed_pass ? ACTION_PASS : ACTION_DROP, REASON_MALFORMED, 0);
	}

	/* 1. allow list */
	__u32 list_id = 0;
	if (list_lookup(ctx, s, &p, LIST_MAPS(allow), PRESENT_ALLOW_HOSTS4, &now, &list_id)) {
		count_list(list_id);
		EXIT(ACTION_PASS, REASON_ALLOWLIST, list_id);
	}

	/* 1b. attack signatures: before any per-source state; detection's
	 * counters and samples see every packet that reaches them */
	struct sig_dest *dest = sig_observe(ctx, &p, &now);
	if (s->present & PRESENT_SIGNATURES) {
		if (!now)
			now = now_ns(ctx);
		__u32 sig = signature_step(ctx, &p, now);
		if (sig < MAX_SIGNATURES)
			EXIT(ACTION_DROP, REASON_SIGNATURE, sig);
	}

	/* 2. block list */
	if (list_lookup(ctx, s, &p, LIST_MAPS(block), PRESENT_BLOCK_HOSTS4, &now, &list_id)) {
		count_list(list_id);
		EXIT(ACTION_DROP, REASON_BLOCKLIST, list_id);
	}

	/* 3. dynamic verdicts */
	struct src_key key;
	source_key(s, &p, &key);
	if (!now)
		now = now_ns(ctx);
	__u64 mult_pm = 1000; /* 64 bits: throttle x class may pass 2^32 per mille */
	__u32 verdict = verdict_on(s, &key, now);
	if (verdict == VERDICT_BLOCK)
		EXIT(ACTION_DROP, REASON_VERDICT, 0);
	if (verdict == VERDICT_THROTTLE)
		mult_pm = s->throttle_pm;

	/* 4. per-source rate limits: matching rules first, then the default,
	 * then the aggregate of the source's prefix */
	int new_limited = 0;
	struct src_state *st = source_state(&key, now, &new_limited, 1);
	if (new_limited) {
		sig_new_source(dest);
		EXIT(ACTION_DROP, REASON_RATELIMIT, RULE_NEW_SOURCES);
	}
	if (!st)
		EXIT(ACTION_PASS, REASON_PASSED, 0);
	if (!st->packets)
		sig_new_source(dest);
	observe(ctx, st, &p, now, len);
	if (scan_candidate(&p))
		observe_scan(ctx, st, &p, now, s->scan_shift);

	__u64 cmult = class_mult(s, &p);
	if (cmult != 1000) /* BPF has no multiply-high: / 1000 is a real division */
		mult_pm = mult_pm * cmult / 1000;
	if (mult_pm == 0)
		mult_pm = 1;

	__u32 over = rate_limit(s, &p, &key, st, now, len, mult_pm, cmult);
	if (over != MAX_RULES) {
		__sync_fetch_and_add(&st->drops_ratelimit, 1);
		EXIT(ACTION_DROP, REASON_RATELIMIT, over);
	}

	/* 5. pass */
	action = ACTION_PASS;
	reason = REASON_PASSED;
	detail = 0;
out:
	return finish(ctx, s, action, reason, detail, len);
#undef EXIT
}

char _license[] SEC("license") = "Dual BSD/GPL";
