/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What live signature detection (agent/sigdetect) reads of the traffic:
 * per destination (L4 protocol, destination port) a packet counter and a
 * new-source counter, per CPU, in a bounded hash (SIG_DESTS entries; a
 * destination beyond it is not counted), and a sample of the packets that
 * reach the signature step (after the allow list), 1 in sig_sampling.every
 * per destination and CPU, at most sig_sampling.budget per CPU per second,
 * into their own ring (sig_ring): the flight recorder's ring keeps drops.
 * All of it is off (one array lookup per packet) while every is 0: the
 * agent sets it when the signatures block's detect is shadow or enforce.
 */
#ifndef BULWARK_SIGSAMPLE_H
#define BULWARK_SIGSAMPLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "clock.h"
#include "stats.h"

#define SIG_DESTS 4096

/* The sampling settings: the single entry of sig_settings. */
struct sig_sampling {
	__u32 every;  /* sample 1 in every packets per destination and CPU; 0 = off */
	__u32 budget; /* at most this many samples per CPU per second */
};

/* One destination's counters on one CPU. Key: proto << 16 | port (port 0
 * for protocols without ports and for non-first fragments). */
struct sig_dest {
	__u64 packets;     /* packets that reached the signature step */
	__u64 new_sources; /* of those, from sources with no state yet */
	__u64 countdown;   /* packets to the next sample */
};

/* The per-CPU budget window. */
struct sig_budget {
	__u64 second;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sig_sampling);
} sig_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SIG_DESTS);
	__type(key, __u32);
	__type(value, struct sig_dest);
} sig_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sig_budget);
} sig_budget SEC(".maps");

/* Samples, as struct drop_event with action PASS and reason 0: the packet
 * had not been decided when it was sampled. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 19);
} sig_ring SEC(".maps");

/* Writes the first EVENT_SNAP bytes of the frame into sig_ring, within
 * the CPU's budget for the second of now. */
static __always_inline void sig_sample(struct xdp_md *ctx, __u32 budget, __u64 now)
{
	__u32 zero = 0;
	struct sig_budget *b = bpf_map_lookup_elem(&sig_budget, &zero);
	if (!b)
		return;
	__u64 second = now / 1000000000ULL;
	if (b->second != second) {
		b->second = second;
		b->count = 0;
	}
	if (b->count >= budget)
		return;
	b->count += 1;
	struct drop_event *ev = bpf_ringbuf_reserve(&sig_ring, sizeof(*ev), 0);
	if (!ev)
		return;
	event_fill(ctx, ev, now, ctx->data_end - ctx->data);
	ev->rule = 0;
	ev->action = ACTION_PASS;
	ev->reason = 0;
	bpf_ringbuf_submit(ev, 0);
}

/* Counts the packet under its destination and samples it. Returns the
 * destination's counters (to count a new source into), or NULL when
 * sampling is off or the table is full. *now is read when still 0. */
static __always_inline struct sig_dest *sig_observe(struct xdp_md *ctx, struct packet *p, __u64 *now)
{
	__u32 zero = 0;
	struct sig_sampling *c = bpf_map_lookup_elem(&sig_settings, &zero);
	if (!c || !c->every)
		return 0;
	__u32 key = (__u32)p->proto << 16;
	if ((p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) && !p->nonfirst_frag)
		key |= p->dport;
	struct sig_dest *d = bpf_map_lookup_elem(&sig_dests, &key);
	if (!d) {
		struct sig_dest init = {};
		bpf_map_update_elem(&sig_dests, &key, &init, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&sig_dests, &key);
		if (!d)
			return 0;
	}
	d->packets += 1;
	if (d->countdown > 1) {
		d->countdown -= 1;
		return d;
	}
	d->countdown = c->every;
	if (!*now)
		*now = now_ns(ctx);
	sig_sample(ctx, c->budget, *now);
	return d;
}

/* Counts a packet from a source with no state yet under its destination. */
static __always_inline void sig_new_source(struct sig_dest *d)
{
	if (d)
		d->new_sources += 1;
}

#endif
