/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-source state: the tracking key, the state created under the ceiling
 * on new sources, what the scorer observes of each packet, and step 4 of
 * the decision: the rate limits that take from it.
 */
#ifndef BULWARK_SOURCES_H
#define BULWARK_SOURCES_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "maps.h"
#include "parse.h"
#include "ratelimit.h"
#include "stats.h"

/* The source's tracking key: IPv6 masked to the configured prefix. */
static __always_inline void source_key(struct dp_settings *s, struct packet *p, struct src_key *k)
{
	__builtin_memcpy(k->addr, p->src.addr, 16);
	if (p->family == 6) {
		__u64 *w = (__u64 *)k->addr;
		w[0] &= s->v6_mask_hi;
		w[1] &= s->v6_mask_lo;
	}
}

/* The source's state, created if new. A new source first takes a token
 * from the global ceiling on new sources; over it, *limited is set and no
 * state is created, so a flood of spoofed sources cannot churn the table
 * and push out the sources already tracked. count: the packet's decision
 * rests on this (the rate-limit step), so the rule's counters count it. */
static __always_inline struct src_state *source_state(struct src_key *k, __u64 now, int *limited,
						      int count)
{
	struct src_state *st = bpf_map_lookup_elem(&sources, k);
	if (st)
		return st;
	__u32 id = RULE_NEW_SOURCES, zero = 0, contended = 0;
	struct rule *nr = bpf_map_lookup_elem(&rules, &id);
	if (nr && nr->pps) {
		struct rule_state *g = bpf_map_lookup_elem(&new_sources, &zero);
		struct rule_counter *rs = count ? bpf_map_lookup_elem(&rule_stats, &id) : 0;
		if (rs)
			rs->matched += 1;
		if (g && !gcra_take(&g->tat_pps, now, gcra_interval(1, nr->pps, 1000), nr->pps_depth_ns,
				    &contended)) {
			if (rs)
				rs->dropped += 1;
			misc_inc(MISC_NEW_SOURCE_LIMITED);
			*limited = 1;
			return 0;
		}
	}
	struct src_state init = { .first_seen_ns = now, .last_seen_ns = now };
	return find_or_create(&sources, k, &init);
}

/* What the scorer reads of each passing packet. Plain increments, not
 * atomic ones: a locked add costs about 5 ns on the pass path, and three of
 * them were a fifth of it. The price: when two CPUs update the same source
 * at the same instant, one increment may overwrite the other, so these
 * counters may run slightly low (never high) under a one-source flood that
 * the NIC spreads over CPUs (up to 0.5 % measured with two CPUs sending only
 * that source; docs/datapath.md). The scorer reads rates, for which that is
 * noise; decisions never read these counters. The buckets (compare-and-
 * swap) and the drop counters stay atomic and exact. */
/* A word of a UDP datagram's payload for observe's sameness: the 4 bytes at
 * payload offset 32 (past a QUIC header and its connection IDs, in the
 * encrypted part), or at 0 in a datagram too short for that; 0 in one of
 * under 4 bytes, or whose payload starts past byte 1024 of the frame. Read
 * as the CPU reads memory (little-endian), with a direct packet access: a
 * bpf_xdp_load_bytes call cost about 8 ns on the pass path. */
static __always_inline __u32 udp_word(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = (__u32)p->l4_off + 8;
	if (off > 1024)
		return 0;
	if (data + off + 36 <= data_end)
		off += 32;
	void *w = data + off;
	if (w + 4 > data_end)
		return 0;
	return *(__u32 *)w;
}

static __always_inline void observe(struct xdp_md *ctx, struct src_state *st, struct packet *p, __u64 now,
				    __u32 len)
{
	st->packets += 1;
	st->bytes += len;
	st->last_seen_ns = now;
	if (p->proto == IPPROTO_TCP && !p->nonfirst_frag &&
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		st->syns += 1;

	if ((p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) && !p->nonfirst_frag) {
		__u32 window = now >> 30; /* ~1.07 s */
		if (st->port_window != window) {
			__u32 n = 0;
#pragma unroll
			for (int i = 0; i < 4; i++)
				n += __builtin_popcountll(st->port_bits[i]);
			st->ports_prev = st->port_window + 1 == window ? n : 0;
			st->port_window = window;
#pragma unroll
			for (int i = 0; i < 4; i++)
				st->port_bits[i] = 0;
		}
		__u32 h = ((__u32)p->dport * 2654435761u) >> 24; /* Fibonacci hash to 8 bits */
		st->port_bits[(h >> 6) & 3] |= 1ULL << (h & 63);
	}
	if (p->proto == IPPROTO_UDP && !p->nonfirst_frag) {
		/* The shape: destination port, length and a payload word. A
		 * flood of one datagram repeats it; clients' queries, QUIC's
		 * encrypted packets and NATed hosts vary. */
		__u32 shape = ((__u32)p->dport << 16 | (len & 0xffff)) ^ (udp_word(ctx, p) * 2654435761u);
		st->udp += 1;
		if (st->udp_shape == shape)
			st->udp_same += 1;
		st->udp_shape = shape;
	}
}

/* The rules a packet takes from, by its protocol and port: *a from the
 * protocol's port table, *b from the SYN table (TCP SYN without ACK) or
 * the ICMP rule of its family. Non-first fragments have no port: none. */
static __always_inline void rules_for(struct dp_settings *s, struct packet *p, __u32 *a, __u32 *b)
{
	if (p->nonfirst_frag)
		return;
	if (p->proto == IPPROTO_TCP) {
		if (s->present & PRESENT_PORT_RULES) {
			*a = port_rule(PORT_TABLE_TCP, p->dport);
			if ((p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
				*b = port_rule(PORT_TABLE_TCP_SYN, p->dport);
		}
	} else if (p->proto == IPPROTO_UDP) {
		if (s->present & PRESENT_PORT_RULES)
			*a = port_rule(PORT_TABLE_UDP, p->dport);
	} else if (p->proto == IPPROTO_ICMP && p->family == 4) {
		*b = s->icmp_rule;
	} else if (p->proto == IPPROTO_ICMPV6_ && p->family == 6) {
		*b = s->icmp6_rule;
	}
}

/* Step 4: the packet's rules in their per-source buckets, then the default
 * limit in the source's own state, then the aggregate of its prefix. The
 * first limit exceeded is returned (its rule id; 0 is the default), or
 * MAX_RULES when the packet conforms to all. */
static __always_inline __u32 rate_limit(struct dp_settings *s, struct packet *p,
					struct src_key *key, struct src_state *st, __u64 now,
					__u32 len, __u64 mult_pm, __u64 cmult)
{
	__u32 rule_a = 0, rule_b = 0, contended = 0, zero = 0;
	__u32 over = MAX_RULES;

	rules_for(s, p, &rule_a, &rule_b);
	if (rule_a && !limit_by_rule(rule_a, key, now, len, mult_pm, &contended))
		over = rule_a;
	else if (rule_b && !limit_by_rule(rule_b, key, now, len, mult_pm, &contended))
		over = rule_b;
	else {
		struct rule *def = bpf_map_lookup_elem(&rules, &zero);
		if (def && (def->pps || def->bps)) {
			struct rule_counter *rs = bpf_map_lookup_elem(&rule_stats, &zero);
			if (rs)
				rs->matched += 1;
			if (!take_rule(def, &st->tat_pps, &st->tat_bps, now, len, mult_pm,
				       &contended, 1)) {
				over = 0;
				if (rs)
					rs->dropped += 1;
			}
		}
	}
	if (over == MAX_RULES && (s->present & PRESENT_AGGREGATE) &&
	    !limit_aggregate(s, p, now, len, cmult, &contended))
		over = RULE_AGGREGATE;
	if (contended)
		misc_inc(MISC_CONTENDED);
	return over;
}

#endif
