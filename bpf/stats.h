/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counting: the per-CPU counters, the sampling of drops into the event ring
 * and the datapath's one exit (finish), which records every decision.
 */
#ifndef BULWARK_STATS_H
#define BULWARK_STATS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "maps.h"
#include "clock.h"

#define NSEC_PER_SEC 1000000000ULL

static __always_inline void misc_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&misc, &idx);
	if (v)
		*v += 1;
}

/* Fills an event's time, interface, length and frame (its first
 * EVENT_SNAP bytes). */
static __always_inline void event_fill(struct xdp_md *ctx, struct drop_event *ev, __u64 now, __u32 len)
{
	/* Re-read from ctx: 32-bit loads the verifier knows are zero-extended. */
	__u64 cap = ctx->data_end - ctx->data;
	asm volatile("" : "+r"(cap));
	if (cap > EVENT_SNAP)
		cap = EVENT_SNAP;
	ev->ts_ns = now;
	ev->ifindex = ctx->ingress_ifindex;
	ev->pkt_len = len;
	ev->cap_len = cap;
	if (cap == 0 || cap > EVENT_SNAP || bpf_xdp_load_bytes(ctx, 0, ev->data, cap) < 0)
		ev->cap_len = 0;
}

static __always_inline void sample_drop(struct xdp_md *ctx, struct dp_settings *s, __u32 action,
					__u32 reason, __u32 rule, __u32 len)
{
	__u32 zero = 0;

	if (!s->sample_every)
		return;
	__u64 *countdown = bpf_map_lookup_elem(&sample_countdown, &zero);
	if (!countdown)
		return;
	if (*countdown > 1) {
		*countdown -= 1;
		return;
	}
	*countdown = s->sample_every;

	__u64 now = now_ns(ctx);
	struct sample_window *w = bpf_map_lookup_elem(&sample_window, &zero);
	if (!w)
		return;
	__u64 second = now / NSEC_PER_SEC;
	if (w->second != second) {
		w->second = second;
		w->count = 0;
	}
	if (__sync_fetch_and_add(&w->count, 1) >= s->sample_max_per_sec) {
		misc_inc(MISC_SAMPLE_CAPPED);
		return;
	}

	struct drop_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		misc_inc(MISC_SAMPLE_LOST);
		return;
	}
	event_fill(ctx, ev, now, len);
	ev->rule = rule;
	ev->action = action;
	ev->reason = reason;
	bpf_ringbuf_submit(ev, 0);
	misc_inc(MISC_SAMPLED);
}

/* The one exit: count the packet under (action, reason) and return.
 * detail is the rule (ratelimit) or the list id (allow and block lists). */
static __always_inline int finish(struct xdp_md *ctx, struct dp_settings *s, __u32 action,
				  __u32 reason, __u32 detail, __u32 len)
{
	if (action == ACTION_DROP && s->mode == MODE_MONITOR)
		action = ACTION_WOULD_DROP;
	if (replay_mode) {
		struct replay_io *io = replay_io(ctx);
		if (io) {
			io->action = action;
			io->reason = reason;
			io->detail = detail;
		}
	}

	__u32 slot = action * REASON_MAX + reason;
	struct counter *c = bpf_map_lookup_elem(&stats, &slot);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
	if (action != ACTION_PASS)
		sample_drop(ctx, s, action, reason, detail, len);
	return action == ACTION_DROP ? XDP_DROP : XDP_PASS;
}

static __always_inline void count_list(__u32 list_id)
{
	__u64 *hits = bpf_map_lookup_elem(&list_hits, &list_id);
	if (hits)
		*hits += 1;
}

#endif
