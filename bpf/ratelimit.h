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
 */
#ifndef BULWARK_RATELIMIT_H
#define BULWARK_RATELIMIT_H

#include "common.h"

#define NSEC_PER_SEC 1000000000ULL
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
 * packet conforms (and has paid), 0 when it is over the limit.
 * A global function: the verifier checks its compare-and-swap loop once,
 * not at each of the five places that take from a bucket. It must accept
 * NULL pointers, which no caller passes. */
__noinline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u64 depth, __u32 *contended)
{
	if (!tat || !contended)
		return 1;
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

#endif
