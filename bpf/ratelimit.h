/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Token buckets as GCRA (generic cell rate algorithm). A bucket is one u64,
 * its theoretical arrival time (tat). With rate r per second, burst b and
 * cost c, the equivalent token count at time now is
 *     tokens = b - max(0, tat - now) * r / 1e9,
 * so "the bucket holds at least c" is max(tat, now) + c*1e9/r - now <= b*1e9/r,
 * and paying is tat = max(tat, now) + c*1e9/r. A new bucket (tat = 0) is
 * full; it refills continuously at r, capped at b. Keeping the state in a
 * single word lets several CPUs update one bucket with compare-and-swap, so
 * no packet is admitted twice on the same tokens.
 *
 * A class multiplier m scales rate and burst together: the depth b*1e9/r
 * stays the same and only the interval c*1e9/(r*m) changes.
 *
 * Below the bucket arithmetic: the rules' buckets per source and per
 * aggregate prefix, each found or created in its LRU map the same way.
 */
#ifndef BULWARK_RATELIMIT_H
#define BULWARK_RATELIMIT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "maps.h"
#include "parse.h"
#include "stats.h"

#define CAS_TRIES 4

/* The time one unit of cost takes to refill, times cost, at mult_pm/1000. */
static __always_inline __u64 gcra_interval(__u64 cost, __u64 rate, __u64 mult_pm)
{
	__u64 div = rate * mult_pm;
	if (div == 0)
		return 0;
	return cost * NSEC_PER_SEC * 1000 / div;
}

/* Takes cost from the bucket at *tat if it holds enough. Returns 1 when the
 * packet conforms (and has paid), 0 when it is over the limit. Inlined on
 * the pass path's default limit only (gcra_take below elsewhere). */
static __always_inline int gcra_step(__u64 *tat, __u64 now, __u64 interval, __u64 depth, __u32 *contended)
{
	for (int i = 0; i < CAS_TRIES; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;
		__u64 next = base + interval;

		if (next - now > depth)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, next) == old)
			return 1;
	}
	*contended = 1;
	return 0;
}

/* gcra_step as a global function: the verifier checks its compare-and-swap
 * loop once, not at each of the places that take from a bucket. It must
 * accept NULL pointers, which no caller passes. */
__noinline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u64 depth, __u32 *contended)
{
	if (!tat || !contended)
		return 1;
	return gcra_step(tat, now, interval, depth, contended);
}

/* The state at key in an LRU bucket map, created from init if absent.
 * NULL (counted) only when the kernel could not create it. */
static __always_inline void *find_or_create(void *map, void *key, void *init)
{
	void *st = bpf_map_lookup_elem(map, key);
	if (st)
		return st;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	st = bpf_map_lookup_elem(map, key);
	if (!st)
		misc_inc(MISC_STATE_FAILED);
	return st;
}

/* The buckets of one rule: packets first, then bytes. 1 = conforms.
 * inline (a constant): the buckets' steps inlined, saving a call on the
 * default limit that every passing packet takes. */
static __always_inline int take_rule(struct rule *r, __u64 *tat_pps, __u64 *tat_bps, __u64 now,
				     __u32 len, __u64 mult_pm, __u32 *contended, int inline_)
{
	if (r->pps) {
		__u64 iv = gcra_interval(1, r->pps, mult_pm);
		if (!(inline_ ? gcra_step(tat_pps, now, iv, r->pps_depth_ns, contended)
			      : gcra_take(tat_pps, now, iv, r->pps_depth_ns, contended)))
			return 0;
	}
	if (r->bps) {
		__u64 iv = gcra_interval(len, r->bps, mult_pm);
		if (!(inline_ ? gcra_step(tat_bps, now, iv, r->bps_depth_ns, contended)
			      : gcra_take(tat_bps, now, iv, r->bps_depth_ns, contended)))
			return 0;
	}
	return 1;
}

/* Takes from the bucket at key in map under rule id, counting the rule's
 * matched and dropped packets. 1 = conforms (also when no state could be
 * made: a full table never drops). */
static __always_inline int limit_in(void *map, void *key, __u32 id, __u64 now, __u32 len,
				    __u64 mult_pm, __u32 *contended)
{
	__u32 rid = id;
	struct rule *r = bpf_map_lookup_elem(&rules, &rid);
	if (!r)
		return 1;
	struct rule_counter *rs = bpf_map_lookup_elem(&rule_stats, &rid);
	if (rs)
		rs->matched += 1;
	struct rule_state init = {};
	struct rule_state *st = find_or_create(map, key, &init);
	if (!st)
		return 1;
	if (take_rule(r, &st->tat_pps, &st->tat_bps, now, len, mult_pm, contended, 0))
		return 1;
	if (rs)
		rs->dropped += 1;
	return 0;
}

/* The rule id for port in a port table, 0 = none. */
static __always_inline __u32 port_rule(__u32 table, __u16 port)
{
	__u32 idx = (table * 65536 + port) / PORTS_PER_SLOT;
	struct port_slot *slot = bpf_map_lookup_elem(&port_rules, &idx);
	if (!slot)
		return 0;
	return slot->rule[port % PORTS_PER_SLOT];
}

/* A configured rule (id > 0) in its own per-source bucket. 1 = conforms. */
static __always_inline int limit_by_rule(__u32 id, struct src_key *k, __u64 now, __u32 len,
					 __u64 mult_pm, __u32 *contended)
{
	struct rule_key rk = { .src = *k, .rule = id };
	return limit_in(&rule_buckets, &rk, id, now, len, mult_pm, contended);
}

/* The aggregate limit of the source's prefix (IPv4 /24, IPv6 /48 by
 * default), scaled by the source's class but not by a throttle verdict (a
 * verdict is on one source, not on its neighbours). 1 = conforms. */
static __always_inline int limit_aggregate(struct dp_settings *s, struct packet *p, __u64 now,
					   __u32 len, __u64 cmult, __u32 *contended)
{
	struct src_key k;
	__builtin_memcpy(k.addr, p->src.addr, 16);
	__u64 *w = (__u64 *)k.addr;
	if (p->family == 4) {
		__u32 *a = (__u32 *)&k.addr[12];
		*a &= s->agg4_mask;
	} else {
		w[0] &= s->agg6_mask_hi;
		w[1] &= s->agg6_mask_lo;
	}
	return limit_in(&agg_buckets, &k, RULE_AGGREGATE, now, len, cmult ? cmult : 1, contended);
}

/* The source's class multiplier in per mille (1000 outside every class). */
static __always_inline __u32 class_mult(struct dp_settings *s, struct packet *p)
{
	struct class_value *cv = 0;

	if (p->family == 4 && (s->present & PRESENT_CLASSES4)) {
		struct lpm_v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(&k.addr, &p->src.addr[12], 4);
		cv = bpf_map_lookup_elem(&classes4, &k);
	} else if (p->family == 6 && (s->present & PRESENT_CLASSES6)) {
		struct lpm_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, p->src.addr, 16);
		cv = bpf_map_lookup_elem(&classes6, &k);
	}
	return cv && cv->mult_pm ? cv->mult_pm : 1000;
}

#endif
