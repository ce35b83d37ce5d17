/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Allow and block lists: single hosts in hashes, true prefixes in one hash
 * per family keyed by (length, masked address). One lookup serves both
 * families and both lists.
 *
 * A prefix lookup probes only the lengths that can match. A slot mask says
 * which lengths have an entry inside the source's /LIST_SLOT4 (IPv4
 * lengths LIST_SLOT4-31) or in the /LIST_SLOT6s that hash like the
 * source's (IPv6 lengths LIST_SLOT6-127), a mid mask the same for the
 * /LIST_MID6s that hash like the source's (IPv6 lengths LIST_MID6 to
 * LIST_SLOT6 - 1); the list's short masks say which shorter lengths have
 * an entry anywhere.
 * Lengths are probed longest first, so the first live entry is the longest
 * live match: an expired longest match never hides a shorter live one.
 * The host hash is probed only when the source's IPv4 slot mask, or IPv6
 * mid mask, has its hosts bit: a list holds a host there. Most sources of
 * a small list's family then cost the list array reads, not a hash probe.
 * Userspace sets a bit before it writes the first entry of that length (or
 * host) and clears it after the last one is gone, so no entry in a map is
 * skipped.
 *
 * In front of all that, a per-CPU cache of recent results (list_lookup):
 * two entries per set (a line), a source in its own set or, when that is
 * full, its buddy (the adjacent set), keyed by the source, each tagged with the list's
 * generation (list_gen), which userspace advances after every write to the
 * list, so a result made before a write is never used after it. A hit also
 * keeps its entry's expiry, checked on every use.
 */
#ifndef BULWARK_LISTS_H
#define BULWARK_LISTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "maps.h"
#include "clock.h"
#include "parse.h"

/* The hosts bits: a slot mask's (IPv4) and a mid mask's (IPv6) bit that
 * says a host entry lies in the slot. Above the lengths' bits; maps/lengths.go
 * has the same. */
#define SLOT4_HOSTS (1u << 31)
#define MID6_HOSTS (1ull << 63)
#define MID6_LENGTHS 0xffffffffull

/* An entry applies unless it has an expiry that has passed. */
static __always_inline int entry_live(struct xdp_md *ctx, struct list_value *v, __u64 *now)
{
	if (!v->expires_ns)
		return 1;
	if (!*now)
		*now = now_ns(ctx);
	return v->expires_ns > *now;
}

/* Masks list lengths longest first: bit i of a mask whose longest length is
 * top stands for length top - i, so the lowest set bit is the longest
 * length. low_bit is that bit's index (a de Bruijn sequence: the datapath
 * is built for BPF ISA v3, which has no count-zeros instruction). */
static const __u8 debruijn64[64] = {
	0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,
	62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
	46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6,
};

static __always_inline __u32 low_bit(__u64 m)
{
	return debruijn64[((m & -m) * 0x03f79d71b4cb0a89ull) >> 58];
}

/* The state of one probe loop (bpf_loop, so the verifier checks the loop
 * body once, not once per length): the lengths still to probe, longest
 * first, and the list id of the live entry found. */
struct probe {
	struct xdp_md *ctx;
	void *nets;
	__u64 *now;
	__u64 mask;
	__u64 hi, lo; /* the address: IPv4 in hi, network order */
	__u64 exp; /* the expiry of the entry found */
	__u32 top;
	__u32 id;
	int found;
};

/* Probes the key of one length: continues the loop (0) unless the key's
 * entry is live. */
static __always_inline long probe_key(struct probe *pr, void *key)
{
	struct list_value *v = bpf_map_lookup_elem(pr->nets, key);

	if (!v || !entry_live(pr->ctx, v, pr->now))
		return 0;
	pr->id = v->list_id;
	pr->exp = v->expires_ns;
	pr->found = 1;
	return 1;
}

/* One length of an IPv4 probe: the longest of mask. */
static long probe4(__u64 i, void *data)
{
	struct probe *pr = data;
	struct lpm_v4_key k = {};
	__u32 len;

	if (!pr->mask)
		return 1;
	len = pr->top - low_bit(pr->mask);
	pr->mask &= pr->mask - 1;
	k.prefixlen = len;
	k.addr = (__u32)pr->hi & bpf_htonl(len ? ~0u << ((32 - len) & 31) : 0);
	return probe_key(pr, &k);
}

/* One length of an IPv6 probe. */
static long probe6(__u64 i, void *data)
{
	struct probe *pr = data;
	struct lpm_v6_key k = {};
	__u64 mhi, mlo;
	__u32 len;

	if (!pr->mask)
		return 1;
	len = pr->top - low_bit(pr->mask);
	pr->mask &= pr->mask - 1;
	mhi = len >= 64 ? ~0ull : (len ? ~0ull << ((64 - len) & 63) : 0);
	mlo = len <= 64 ? 0 : ~0ull << ((128 - len) & 63);
	k.prefixlen = len;
	mhi = pr->hi & bpf_cpu_to_be64(mhi);
	mlo = pr->lo & bpf_cpu_to_be64(mlo);
	__builtin_memcpy(k.addr, &mhi, 8);
	__builtin_memcpy(&k.addr[8], &mlo, 8);
	return probe_key(pr, &k);
}

/* Probes the lengths in pr->mask, longest first, below top. No length
 * costs nothing and one length a direct call: the helper call of bpf_loop
 * is paid only when two or more lengths are in use. */
static __always_inline void probe_lengths(struct probe *pr, __u32 top, int v6)
{
	if (!pr->mask)
		return;
	pr->top = top;
	if (!(pr->mask & (pr->mask - 1))) {
		if (v6)
			probe6(0, pr);
		else
			probe4(0, pr);
		return;
	}
	bpf_loop(v6 ? LIST_SLOT6 : LIST_SLOT4, v6 ? probe6 : probe4, pr, 0);
}

/* The longest live prefix of one family holding pr's address: the lengths
 * of its slot mask (slot, lengths down to top_slot), for IPv6 then those
 * of its mid mask (mid), then the list's shorter ones. */
static __always_inline int probe_family(struct probe *pr, __u64 slot, __u64 mid, void *shorts,
					int v6)
{
	struct list_short *sh;
	__u32 zero = 0;

	pr->mask = slot;
	probe_lengths(pr, v6 ? 127 : 31, v6);
	if (pr->found)
		return 1;
	if (v6) {
		pr->mask = mid;
		probe_lengths(pr, LIST_SLOT6 - 1, 1);
		if (pr->found)
			return 1;
	}
	sh = bpf_map_lookup_elem(shorts, &zero);
	if (!sh)
		return 0;
	pr->mask = v6 ? sh->v6 : sh->v4;
	probe_lengths(pr, v6 ? LIST_MID6 - 1 : LIST_SLOT4 - 1, v6);
	return pr->found;
}

/* The host entry of key in hosts, if on and live. */
static __always_inline int host_hit(struct xdp_md *ctx, void *hosts, void *key, int on,
				    __u64 *now, __u32 *id, __u64 *exp)
{
	struct list_value *v = on ? bpf_map_lookup_elem(hosts, key) : 0;

	if (!v || !entry_live(ctx, v, now))
		return 0;
	*id = v->list_id;
	*exp = v->expires_ns;
	return 1;
}

/* The IPv6 slot of an address whose bytes 0-7, loaded from memory, are hi:
 * a multiplicative hash (Fibonacci hashing) to LIST_SLOT6_HASH_BITS bits.
 * maps/lengths.go computes the same. */
static __always_inline __u32 slot6(__u64 hi)
{
	return (hi * 0x9e3779b97f4a7c15ull) >> (64 - LIST_SLOT6_HASH_BITS);
}

/* The IPv6 mid slot: the same hash of the address's bytes 0-3 (the low
 * half of hi). */
static __always_inline __u32 mid6(__u64 hi)
{
	return slot6(hi & 0xffffffffull);
}

/* The maps of one list, by its name prefix (allow, block). */
#define LIST_MAPS(l)                                                           \
	&l##_hosts4, &l##_hosts6, &l##_nets4, &l##_nets6, &l##_slots4, &l##_slots6, &l##_mid6, \
		&l##_short, &l##_cache

/* The maps' own lookup of list_lookup (below), without the cache; the
 * entry's expiry in *exp. */
static __always_inline int list_probe(struct xdp_md *ctx, struct dp_settings *s,
				      struct packet *p, void *hosts4, void *hosts6, void *nets4,
				      void *nets6, void *slots4, void *slots6, void *mids6,
				      void *shorts, __u32 bit, __u64 *now, __u32 *id, __u64 *exp)
{
	struct probe pr = {.ctx = ctx, .now = now};
	__u32 slot, mid;
	__u64 sm = 0, mm = 0;

	if (p->family == 4) {
		__u32 addr, *m;

		if (!(s->present & (bit | bit << 2)))
			return 0;
		slot = (__u32)p->src.addr[12] << 8 | p->src.addr[13];
		m = bpf_map_lookup_elem(slots4, &slot);
		if (m)
			sm = *m;
		__builtin_memcpy(&addr, &p->src.addr[12], 4);
		if ((sm & SLOT4_HOSTS) && host_hit(ctx, hosts4, &addr, s->present & bit, now, id, exp))
			return 1;
		if (!(s->present & (bit << 2)))
			return 0;
		pr.nets = nets4;
		pr.hi = addr;
		if (!probe_family(&pr, sm & ~SLOT4_HOSTS, 0, shorts, 0))
			return 0;
	} else {
		__u64 *m;

		if (!(s->present & (bit << 1 | bit << 3)))
			return 0;
		__builtin_memcpy(&pr.hi, p->src.addr, 8);
		mid = mid6(pr.hi);
		m = bpf_map_lookup_elem(mids6, &mid);
		if (m)
			mm = *m;
		if ((mm & MID6_HOSTS) && host_hit(ctx, hosts6, &p->src, s->present & (bit << 1), now, id, exp))
			return 1;
		if (!(s->present & (bit << 3)))
			return 0;
		pr.nets = nets6;
		__builtin_memcpy(&pr.lo, &p->src.addr[8], 8);
		slot = slot6(pr.hi);
		m = bpf_map_lookup_elem(slots6, &slot);
		if (m)
			sm = *m;
		if (!probe_family(&pr, sm, mm & MID6_LENGTHS, shorts, 1))
			return 0;
	}
	*id = pr.id;
	*exp = pr.exp;
	return 1;
}

/* The log2 of the cache sets per CPU; set at load (the loader sizes the
 * cache maps to match). */
volatile const __u32 list_cache_bits = 0;

/* A cache tag's low bits: the IPv6 bit, the used bit (set on the entry's
 * first use after it was kept) and the hit's list id + 1. */
#define CACHE_V6 (1ull << 23)
#define CACHE_USED (1ull << 22)
#define CACHE_ID 0x3fffffull
/* A list_gen value: bit 63 turns the list's cache on (userspace sets it
 * for lists large enough to gain from it); the generation is the low 40
 * bits (a tag keeps them above its 24 low bits). */
#define CACHE_ON (1ull << 63)
#define CACHE_GEN ((1ull << 40) - 1)

/* Whether cache entry e, which holds the source, still answers: 1 a live
 * hit (its list id in *id), 0 a miss, -1 neither (the hit's entry has
 * expired since: look again, for a shorter live prefix). An answer marks
 * the entry used (one write, the first time). The clock is read into a
 * local, not *now: a *now set on some paths out of the lookup and not on
 * others would split the verification of everything after it. */
static __always_inline int cache_answer(struct xdp_md *ctx, struct list_cache_entry *e,
					__u64 *now, __u32 *id)
{
	__u64 tag = e->tag;

	if (tag & CACHE_ID && e->when && e->when <= (*now ? *now : now_ns(ctx)))
		return -1;
	if (!(tag & CACHE_USED))
		e->tag = tag | CACHE_USED;
	if (!(tag & CACHE_ID))
		return 0;
	*id = (tag & CACHE_ID) - 1;
	return 1;
}

/* Whether e holds the source (a, b) under tag (generation and family). */
static __always_inline int cache_holds(struct list_cache_entry *e, __u64 a, __u64 b, __u64 tag)
{
	return e->a == a && e->b == b && (e->tag & ~(CACHE_ID | CACHE_USED)) == tag;
}

/* The entry of set and its buddy set that holds the source (a, b) under
 * tag, else 0. */
static __always_inline struct list_cache_entry *cache_holder(struct list_cache_set *set,
							     struct list_cache_set *buddy, __u64 a,
							     __u64 b, __u64 tag)
{
	if (cache_holds(&set->e[0], a, b, tag))
		return &set->e[0];
	if (cache_holds(&set->e[1], a, b, tag))
		return &set->e[1];
	if (cache_holds(&buddy->e[0], a, b, tag))
		return &buddy->e[0];
	if (cache_holds(&buddy->e[1], a, b, tag))
		return &buddy->e[1];
	return 0;
}

/* An answer to keep (list_cache_keep). */
struct cache_keep_args {
	__u64 a, b;   /* the source */
	__u64 tag;    /* the generation and family it is kept under */
	__u64 h;      /* the source's hash */
	__u64 when;   /* a hit's expiry (0: never, or a miss) */
	__u64 low;    /* a hit's list id + 1 (0: a miss) */
};

/* Keeps answer k in the source's set or its buddy (the other set of the
 * same 128 bytes), in the first of: the entry that held the source, one
 * made under another generation, one not used since it was kept (the
 * set's, then the buddy's), else the set's entry a bit of the source's
 * hash picks, and the other three are marked unused (not recently used:
 * a burst of sources seen once does not push out those that come back).
 * A global function: the verifier checks it once, not once for each way
 * out of the probe. */
__noinline int list_cache_keep(struct list_cache_set *set, struct list_cache_set *buddy,
			       struct cache_keep_args *k)
{
	struct list_cache_entry *e;
	__u64 gen;

	if (!set || !buddy || !k)
		return 0;
	gen = k->tag >> 24;
	e = cache_holder(set, buddy, k->a, k->b, k->tag);
	if (e)
		;
	else if (set->e[0].tag >> 24 != gen)
		e = &set->e[0];
	else if (set->e[1].tag >> 24 != gen)
		e = &set->e[1];
	else if (buddy->e[0].tag >> 24 != gen)
		e = &buddy->e[0];
	else if (buddy->e[1].tag >> 24 != gen)
		e = &buddy->e[1];
	else if (!(set->e[0].tag & CACHE_USED))
		e = &set->e[0];
	else if (!(set->e[1].tag & CACHE_USED))
		e = &set->e[1];
	else if (!(buddy->e[0].tag & CACHE_USED))
		e = &buddy->e[0];
	else if (!(buddy->e[1].tag & CACHE_USED))
		e = &buddy->e[1];
	else {
		set->e[0].tag &= ~CACHE_USED;
		set->e[1].tag &= ~CACHE_USED;
		buddy->e[0].tag &= ~CACHE_USED;
		buddy->e[1].tag &= ~CACHE_USED;
		e = k->h & (1ull << 47) ? &set->e[1] : &set->e[0];
	}
	e->a = k->a;
	e->b = k->b;
	e->when = k->when;
	e->tag = k->tag | CACHE_USED | k->low;
	return 0;
}

/* The cache set of source (a, b) on this CPU, and its hash in *h. */
static __always_inline __u32 cache_index(struct packet *p, __u64 *a, __u64 *b, __u64 *h)
{
	__u32 idx;

	__builtin_memcpy(a, p->src.addr, 8);
	__builtin_memcpy(b, &p->src.addr[8], 8);
	/* The halves folded first, then the top bits of a Fibonacci
	 * product: a product's bits depend only on the input's bits below
	 * them, so without the fold, and with any bits but the top, sources
	 * that differ only in their last bytes (an IPv4 /24, an IPv6 /120)
	 * would all share one set. */
	*h = *a ^ *b;
	*h = (*h ^ *h >> 32) * 0x9e3779b97f4a7c15ull;
	idx = *h >> (63 - list_cache_bits) >> 1;
	return idx | bpf_get_smp_processor_id() << list_cache_bits;
}

/* Looks p's source up in one list (its maps as LIST_MAPS gives them) and
 * returns whether a live entry holds it, with that entry's list id in *id:
 * the host, else the longest live prefix. bit is the list's
 * PRESENT_*_HOSTS4 bit; hosts6, nets4 and nets6 follow it in enum order.
 * Where the list's cache is on (never for `bulwark replay`, whose clock
 * goes back where an expired entry is live again and a cached miss would
 * hide it), the answer comes from the CPU's cache when
 * it holds one made under the list's current generation; else from the
 * maps, and is kept there. XDP runs with bottom halves off, so no other
 * run on this CPU writes the cache set while this one reads or writes it.
 *
 * list_probe has one call site, and nothing the verifier knows about the
 * cache stays live across it but scalars it never branches on again, so
 * it checks the probe once for all the ways in (cache off, cache missed,
 * no set). A list whose cache is off (a small list, or replay) pays only
 * the generation read before and after the probe: not the cache's hash
 * and set index, which are worked out again after the probe, from the
 * source, only where the answer is kept. */
static __always_inline int list_lookup(struct xdp_md *ctx, struct dp_settings *s,
				       struct packet *p, void *hosts4, void *hosts6, void *nets4,
				       void *nets6, void *slots4, void *slots6, void *mids6,
				       void *shorts, void *cache, __u32 bit, __u64 *now, __u32 *id)
{
	__u32 fam = p->family == 4 ? (bit | bit << 2) : (bit << 1 | bit << 3);
	__u32 gi = bit == PRESENT_ALLOW_HOSTS4 ? 0 : 1;
	__u32 idx;
	struct list_cache_set *set, *buddy;
	struct list_cache_entry *e;
	__u64 a, b, h, *g, gen, on, tag, exp = 0;
	int hit;

	if (!(s->present & fam))
		return 0;
	g = bpf_map_lookup_elem(&list_gen, &gi);
	if (!g)
		return 0; /* never: the array holds both keys */
	gen = *g;
	/* The branch is on a copy (gen >> 63), and a missing generation
	 * returns above rather than reading as 0: what a branch tells the
	 * verifier about gen, which the tag after the probe needs, would
	 * split the probe's verification (a bpf_loop call compares the
	 * scalars live across it by range). */
	on = gen >> 63;
	if (!replay_mode && on) {
		idx = cache_index(p, &a, &b, &h);
		tag = (gen & CACHE_GEN) << 24 | (p->family == 6 ? CACHE_V6 : 0);
		set = bpf_map_lookup_elem(cache, &idx);
		idx ^= 1;
		buddy = bpf_map_lookup_elem(cache, &idx);
		e = set && buddy ? cache_holder(set, buddy, a, b, tag) : 0;
		if (e) {
			hit = cache_answer(ctx, e, now, id);
			if (hit >= 0)
				return hit;
		}
	}
	hit = list_probe(ctx, s, p, hosts4, hosts6, nets4, nets6, slots4, slots6, mids6, shorts,
			 bit, now, id, &exp);
	/* The generation is looked up again, not tested in gen: a value
	 * branched on before and after would split the probe's verification
	 * in two. The answer keeps the tag of the generation read before the
	 * probe, so a write since (or the cache turned on since) leaves it
	 * stale. */
	g = bpf_map_lookup_elem(&list_gen, &gi);
	if (replay_mode || !g || !(*g & CACHE_ON) || (hit && *id >= CACHE_ID))
		return hit;
	idx = cache_index(p, &a, &b, &h);
	tag = (gen & CACHE_GEN) << 24 | (p->family == 6 ? CACHE_V6 : 0);
	set = bpf_map_lookup_elem(cache, &idx);
	idx ^= 1;
	buddy = bpf_map_lookup_elem(cache, &idx);
	if (set && buddy) {
		struct cache_keep_args k = {.a = a, .b = b, .tag = tag, .h = h,
					 .when = hit ? exp : 0, .low = hit ? *id + 1 : 0};

		list_cache_keep(set, buddy, &k);
	}
	return hit;
}

#endif
