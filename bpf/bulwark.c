//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bulwark's XDP program. Decision order, first match wins:
 *   malformed -> non-IP -> allow list -> block list -> dynamic verdict ->
 *   per-source rate limits -> pass.
 * The README ("How the datapath decides") explains each step; bpf/model is
 * the same procedure in Go, and the differential tests hold the two together.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "ratelimit.h"

/* Set by the loader for `bulwark replay`: take the time from the frame's
 * metadata (struct replay_io, which BPF_PROG_TEST_RUN places in front of
 * the frame) instead of the kernel's clock, and write each decision back
 * there. The I/O travels with each run, so runs on several CPUs at once do
 * not share it. A constant, so the verifier prunes the branches the
 * production program does not take: they cost it nothing. */
volatile const __u32 replay_mode = 0;

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

/* The replay I/O in front of the frame; NULL if there is none. */
static __always_inline struct replay_io *replay_io(struct xdp_md *ctx)
{
	struct replay_io *io = (void *)(long)ctx->data_meta;
	if ((void *)(io + 1) > (void *)(long)ctx->data)
		return 0;
	return io;
}

static __always_inline __u64 now_ns(struct xdp_md *ctx)
{
	if (replay_mode) {
		struct replay_io *io = replay_io(ctx);
		return io ? io->now : 0;
	}
	return bpf_ktime_get_coarse_ns();
}

static __always_inline void misc_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&misc, &idx);
	if (v)
		*v += 1;
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
	/* Re-read from ctx: 32-bit loads the verifier knows are zero-extended. */
	__u64 cap = ctx->data_end - ctx->data;
	asm volatile("" : "+r"(cap));
	if (cap > EVENT_SNAP)
		cap = EVENT_SNAP;
	ev->ts_ns = now;
	ev->ifindex = ctx->ingress_ifindex;
	ev->pkt_len = len;
	ev->rule = rule;
	ev->action = action;
	ev->reason = reason;
	ev->cap_len = cap;
	if (cap == 0 || cap > EVENT_SNAP || bpf_xdp_load_bytes(ctx, 0, ev->data, cap) < 0)
		ev->cap_len = 0;
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

/* An entry applies unless it has an expiry that has passed. */
static __always_inline int entry_live(struct xdp_md *ctx, struct list_value *v, __u64 *now)
{
	if (!v->expires_ns)
		return 1;
	if (!*now)
		*now = now_ns(ctx);
	return v->expires_ns > *now;
}

/* Looks p's source up in one list (hosts hash, then prefix trie). bit is the
 * list's PRESENT_*_HOSTS4 bit; the other three follow it in enum order. */
static __always_inline struct list_value *list_lookup(struct xdp_md *ctx, struct dp_settings *s,
						      struct packet *p,
						      void *hosts4, void *hosts6, void *nets4,
						      void *nets6, __u32 bit, __u64 *now)
{
	struct list_value *v = 0;

	if (p->family == 4) {
		__u32 addr;
		__builtin_memcpy(&addr, &p->src.addr[12], 4);
		if (s->present & bit)
			v = bpf_map_lookup_elem(hosts4, &addr);
		if (v && entry_live(ctx, v, now))
			return v;
		if (s->present & (bit << 2)) {
			struct lpm_v4_key k = { .prefixlen = 32, .addr = addr };
			/* An expired longest match must not hide a shorter live
			 * one: look again just above the expired prefix. */
			for (int i = 0; i <= LPM_EXPIRED_RETRIES; i++) {
				v = bpf_map_lookup_elem(nets4, &k);
				if (!v)
					break;
				if (entry_live(ctx, v, now))
					return v;
				if (v->prefixlen == 0 || v->prefixlen > 32)
					break;
				k.prefixlen = v->prefixlen - 1;
			}
		}
		return 0;
	}
	if (s->present & (bit << 1))
		v = bpf_map_lookup_elem(hosts6, &p->src);
	if (v && entry_live(ctx, v, now))
		return v;
	if (s->present & (bit << 3)) {
		struct lpm_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, p->src.addr, 16);
		for (int i = 0; i <= LPM_EXPIRED_RETRIES; i++) {
			v = bpf_map_lookup_elem(nets6, &k);
			if (!v)
				break;
			if (entry_live(ctx, v, now))
				return v;
			if (v->prefixlen == 0 || v->prefixlen > 128)
				break;
			k.prefixlen = v->prefixlen - 1;
		}
	}
	return 0;
}

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
	bpf_map_update_elem(&sources, k, &init, BPF_NOEXIST);
	st = bpf_map_lookup_elem(&sources, k);
	if (!st)
		misc_inc(MISC_STATE_FAILED);
	return st;
}

static __always_inline __u32 port_rule(__u32 table, __u16 port)
{
	__u32 idx = (table * 65536 + port) / PORTS_PER_SLOT;
	struct port_slot *slot = bpf_map_lookup_elem(&port_rules, &idx);
	if (!slot)
		return 0;
	return slot->rule[port % PORTS_PER_SLOT];
}

/* The buckets of one rule: packets first, then bytes. 1 = conforms. */
static __always_inline int take_rule(struct rule *r, __u64 *tat_pps, __u64 *tat_bps, __u64 now,
				     __u32 len, __u64 mult_pm, __u32 *contended)
{
	if (r->pps &&
	    !gcra_take(tat_pps, now, gcra_interval(1, r->pps, mult_pm), r->pps_depth_ns, contended))
		return 0;
	if (r->bps &&
	    !gcra_take(tat_bps, now, gcra_interval(len, r->bps, mult_pm), r->bps_depth_ns, contended))
		return 0;
	return 1;
}

/* A configured rule (id > 0) in its own per-source bucket. 1 = conforms. */
static __always_inline int limit_by_rule(__u32 id, struct src_key *k, __u64 now, __u32 len,
					 __u64 mult_pm, __u32 *contended)
{
	__u32 key = id;
	struct rule *r = bpf_map_lookup_elem(&rules, &key);
	if (!r)
		return 1;
	struct rule_counter *rs = bpf_map_lookup_elem(&rule_stats, &key);
	if (rs)
		rs->matched += 1;

	struct rule_key rk = { .src = *k, .rule = id };
	struct rule_state *st = bpf_map_lookup_elem(&rule_buckets, &rk);
	if (!st) {
		struct rule_state init = {};
		bpf_map_update_elem(&rule_buckets, &rk, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&rule_buckets, &rk);
		if (!st) {
			misc_inc(MISC_STATE_FAILED);
			return 1;
		}
	}
	if (take_rule(r, &st->tat_pps, &st->tat_bps, now, len, mult_pm, contended))
		return 1;
	if (rs)
		rs->dropped += 1;
	return 0;
}

/* The aggregate limit of the source's prefix (IPv4 /24, IPv6 /48 by
 * default), scaled by the source's class but not by a throttle verdict (a
 * verdict is on one source, not on its neighbours). 1 = conforms. */
static __always_inline int limit_aggregate(struct dp_settings *s, struct packet *p, __u64 now,
					   __u32 len, __u64 cmult, __u32 *contended)
{
	__u32 id = RULE_AGGREGATE;
	struct rule *r = bpf_map_lookup_elem(&rules, &id);
	if (!r)
		return 1;
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
	struct rule_counter *rs = bpf_map_lookup_elem(&rule_stats, &id);
	if (rs)
		rs->matched += 1;
	struct rule_state *st = bpf_map_lookup_elem(&agg_buckets, &k);
	if (!st) {
		struct rule_state init = {};
		bpf_map_update_elem(&agg_buckets, &k, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&agg_buckets, &k);
		if (!st) {
			misc_inc(MISC_STATE_FAILED);
			return 1;
		}
	}
	if (take_rule(r, &st->tat_pps, &st->tat_bps, now, len, cmult ? cmult : 1, contended))
		return 1;
	if (rs)
		rs->dropped += 1;
	return 0;
}

static __always_inline void observe(struct src_state *st, struct packet *p, __u64 now, __u32 len)
{
	__sync_fetch_and_add(&st->packets, 1);
	__sync_fetch_and_add(&st->bytes, len);
	st->last_seen_ns = now;
	if (p->proto == IPPROTO_TCP && !p->nonfirst_frag &&
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		__sync_fetch_and_add(&st->syns, 1);

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
}

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
	struct list_value *lv = list_lookup(ctx, s, &p, &allow_hosts4, &allow_hosts6, &allow_nets4,
					    &allow_nets6, PRESENT_ALLOW_HOSTS4, &now);
	if (lv) {
		count_list(lv->list_id);
		EXIT(ACTION_PASS, REASON_ALLOWLIST, lv->list_id);
	}

	/* 2. block list */
	lv = list_lookup(ctx, s, &p, &block_hosts4, &block_hosts6, &block_nets4, &block_nets6,
			 PRESENT_BLOCK_HOSTS4, &now);
	if (lv) {
		count_list(lv->list_id);
		EXIT(ACTION_DROP, REASON_BLOCKLIST, lv->list_id);
	}

	/* 3. dynamic verdicts */
	struct src_key key;
	source_key(s, &p, &key);
	if (!now)
		now = now_ns(ctx);
	__u64 mult_pm = 1000; /* 64 bits: throttle x class may pass 2^32 per mille */
	if (s->present & PRESENT_VERDICTS) {
		struct verdict *v = bpf_map_lookup_elem(&verdicts, &key);
		if (v && v->expires_ns > now) {
			if (v->action == VERDICT_BLOCK)
				EXIT(ACTION_DROP, REASON_VERDICT, 0);
			if (v->action == VERDICT_THROTTLE)
				mult_pm = s->throttle_pm;
		} else if (v) {
			bpf_map_delete_elem(&verdicts, &key);
		}
	}

	/* 4. per-source rate limits: matching rules first, then the default,
	 * then the aggregate of the source's prefix */
	int new_limited = 0;
	struct src_state *st = source_state(&key, now, &new_limited, 1);
	if (new_limited)
		EXIT(ACTION_DROP, REASON_RATELIMIT, RULE_NEW_SOURCES);
	if (!st)
		EXIT(ACTION_PASS, REASON_PASSED, 0);
	observe(st, &p, now, len);

	__u64 cmult = class_mult(s, &p);
	mult_pm = mult_pm * cmult / 1000;
	if (mult_pm == 0)
		mult_pm = 1;

	__u32 rule_a = 0, rule_b = 0, contended = 0;
	if (!p.nonfirst_frag) {
		if (p.proto == IPPROTO_TCP) {
			if (s->present & PRESENT_PORT_RULES) {
				rule_a = port_rule(PORT_TABLE_TCP, p.dport);
				if ((p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
					rule_b = port_rule(PORT_TABLE_TCP_SYN, p.dport);
			}
		} else if (p.proto == IPPROTO_UDP) {
			if (s->present & PRESENT_PORT_RULES)
				rule_a = port_rule(PORT_TABLE_UDP, p.dport);
		} else if (p.proto == IPPROTO_ICMP && p.family == 4) {
			rule_b = s->icmp_rule;
		} else if (p.proto == IPPROTO_ICMPV6_ && p.family == 6) {
			rule_b = s->icmp6_rule;
		}
	}

	__u32 over = MAX_RULES; /* the rule whose limit was exceeded, if any */
	if (rule_a && !limit_by_rule(rule_a, &key, now, len, mult_pm, &contended))
		over = rule_a;
	else if (rule_b && !limit_by_rule(rule_b, &key, now, len, mult_pm, &contended))
		over = rule_b;
	else {
		struct rule *def = bpf_map_lookup_elem(&rules, &zero);
		if (def && (def->pps || def->bps)) {
			struct rule_counter *rs = bpf_map_lookup_elem(&rule_stats, &zero);
			if (rs)
				rs->matched += 1;
			if (!take_rule(def, &st->tat_pps, &st->tat_bps, now, len, mult_pm,
				       &contended)) {
				over = 0;
				if (rs)
					rs->dropped += 1;
			}
		}
	}
	if (over == MAX_RULES && (s->present & PRESENT_AGGREGATE) &&
	    !limit_aggregate(s, &p, now, len, cmult, &contended))
		over = RULE_AGGREGATE;
	if (contended)
		misc_inc(MISC_CONTENDED);
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
