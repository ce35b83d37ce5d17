/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Attack signatures: a bounded table (MAX_SIGNATURES slots) of masked
 * header rules, checked after the allow list and before the block list and
 * per-source state, so that packets of a spoofed flood create no state.
 * Slots are checked in order; a shadow (count-only) rule is counted and the
 * search goes on; the first enforcing rule that matches decides: drop, or
 * take from the rule's one aggregate bucket (over it: drop; under it: the
 * packet goes on to the block list). The header fields are read only when
 * the table holds a rule (PRESENT_SIGNATURES), with bpf_xdp_load_bytes at
 * the offsets parse.h found, in global functions the verifier checks once.
 * docs/datapath.md ("Attack signatures") has the field semantics; bpf/model
 * (signatures.go) is the same procedure in Go.
 */
#ifndef BULWARK_SIGNATURES_H
#define BULWARK_SIGNATURES_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "maps.h"
#include "parse.h"
#include "ratelimit.h"

#define SIG_META_L4 (1 << 16)
#define IP_DF_ 0x4000

/* The data after the fixed L4 header: its offset, read into f. */
static __always_inline void sig_data(struct xdp_md *ctx, __u32 off, struct sig_pkt *f)
{
	__u64 frame = ctx->data_end - ctx->data;
	asm volatile("" : "+r"(frame));
	if (off >= frame)
		return;
	__u64 n = frame - off;
	if (n > SIG_DATA)
		n = SIG_DATA;
	if (n == 0 || bpf_xdp_load_bytes(ctx, off, f->data, n) < 0)
		return;
	f->data_len = n;
}

/* Reads the fields signatures match into f. meta is the family (bits
 * 0-7), the L4 protocol (8-15) and SIG_META_L4 when the L4 header is in
 * the packet (not a non-first fragment). 0 on success. A global function:
 * the verifier checks it once; it must accept a NULL f, which no caller
 * passes. */
__noinline int sig_extract(struct xdp_md *ctx, __u32 l3_off, __u32 l4_off, __u32 meta,
			   struct sig_pkt *f)
{
	__u8 h[20];

	if (!f)
		return -1;
	f->family = meta & 0xff;
	f->proto = (meta >> 8) & 0xff;
	if (f->family == 4) {
		if (bpf_xdp_load_bytes(ctx, l3_off & 0xffff, h, 20) < 0)
			return -1;
		f->iplen = (__u16)h[2] << 8 | h[3];
		f->ipid_zero = !h[4] && !h[5];
		f->df = (h[6] & (IP_DF_ >> 8)) ? 1 : 0;
		f->ttl = h[8];
	} else {
		if (bpf_xdp_load_bytes(ctx, l3_off & 0xffff, h, 8) < 0)
			return -1;
		f->iplen = ((__u16)h[4] << 8 | h[5]) + 40;
		f->ttl = h[7];
	}
	if (!(meta & SIG_META_L4))
		return 0;
	__u32 l4 = l4_off & 0xffff;
	switch (f->proto) {
	case IPPROTO_TCP:
		if (bpf_xdp_load_bytes(ctx, l4, h, 20) < 0)
			return -1;
		f->sport = (__u16)h[0] << 8 | h[1];
		f->dport = (__u16)h[2] << 8 | h[3];
		f->optlen = (h[12] >> 4) * 4 - 20;
		f->tcp_flags = h[13];
		f->window = (__u16)h[14] << 8 | h[15];
		sig_data(ctx, l4 + 20, f);
		break;
	case IPPROTO_UDP:
		if (bpf_xdp_load_bytes(ctx, l4, h, 8) < 0)
			return -1;
		f->sport = (__u16)h[0] << 8 | h[1];
		f->dport = (__u16)h[2] << 8 | h[3];
		sig_data(ctx, l4 + 8, f);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		if (bpf_xdp_load_bytes(ctx, l4, h, 8) < 0)
			return -1;
		f->icmp_type = h[0];
		sig_data(ctx, l4 + 8, f);
		break;
	default:
		return 0;
	}
	f->has_l4 = 1;
	return 0;
}

#define SIG_L4_FIELDS                                                          \
	(SIG_DPORT | SIG_SPORT | SIG_TCP_FLAGS | SIG_WINDOW | SIG_TCP_OPTLEN |  \
	 SIG_ICMP_TYPE | SIG_DATA_PREFIX)

/* 1 when the packet's fields f match the rule r. A global function. */
__noinline int sig_match(const struct sig_rule *r, const struct sig_pkt *f)
{
	if (!r || !f)
		return 0;
	__u32 m = r->fields;
	__u8 tcp = f->proto == IPPROTO_TCP, udp = f->proto == IPPROTO_UDP;

	if ((m & SIG_PROTO) && f->proto != r->proto)
		return 0;
	if ((m & SIG_TTL) && (f->ttl < r->ttl_lo || f->ttl > r->ttl_hi))
		return 0;
	if ((m & SIG_IPLEN) && (f->iplen < r->len_lo || f->iplen > r->len_hi))
		return 0;
	if ((m & (SIG_DF | SIG_IPID)) && f->family != 4)
		return 0;
	if ((m & SIG_DF) && f->df != r->df)
		return 0;
	if ((m & SIG_IPID) && f->ipid_zero != r->ipid_zero)
		return 0;
	if (!(m & SIG_L4_FIELDS))
		return 1;
	if (!f->has_l4)
		return 0;
	if ((m & (SIG_DPORT | SIG_SPORT)) && !tcp && !udp)
		return 0;
	if ((m & SIG_DPORT) && (f->dport < r->dport_lo || f->dport > r->dport_hi))
		return 0;
	if ((m & SIG_SPORT) && (f->sport < r->sport_lo || f->sport > r->sport_hi))
		return 0;
	if ((m & (SIG_TCP_FLAGS | SIG_WINDOW | SIG_TCP_OPTLEN)) && !tcp)
		return 0;
	if ((m & SIG_TCP_FLAGS) && (f->tcp_flags & r->tcp_mask) != r->tcp_value)
		return 0;
	if ((m & SIG_WINDOW) && (f->window < r->win_lo || f->window > r->win_hi))
		return 0;
	if ((m & SIG_TCP_OPTLEN) && f->optlen != r->optlen)
		return 0;
	if ((m & SIG_ICMP_TYPE) &&
	    ((f->proto != IPPROTO_ICMP && f->proto != IPPROTO_ICMPV6_) || f->icmp_type != r->icmp_type))
		return 0;
	if (m & SIG_DATA_PREFIX) {
		if (f->data_len < r->data_len)
			return 0;
		const __u64 *a = (const __u64 *)f->data, *b = (const __u64 *)r->data;
		const __u64 *k = (const __u64 *)r->data_mask;
		if (((a[0] ^ b[0]) & k[0]) || ((a[1] ^ b[1]) & k[1]))
			return 0;
	}
	return 1;
}

/* The slot of the rule that drops a packet with fields f at now, or
 * MAX_SIGNATURES when it goes on. A global function, so the verifier walks
 * the loop once rather than once per state of the program around it. */
__noinline __u32 sig_scan(const struct sig_pkt *f, __u64 now)
{
	if (!f)
		return MAX_SIGNATURES;
	for (__u32 i = 0; i < MAX_SIGNATURES; i++) {
		__u32 k = i;
		struct sig_rule *r = bpf_map_lookup_elem(&signatures, &k);
		if (!r || !r->fields || (r->expires_ns && r->expires_ns <= now))
			continue;
		if (!sig_match(r, f))
			continue;
		struct rule_counter *c = bpf_map_lookup_elem(&sig_stats, &k);
		if (c)
			c->matched += 1;
		if (r->action == SIG_ACTION_COUNT)
			continue;
		if (r->action == SIG_ACTION_LIMIT) {
			__u64 *tat = bpf_map_lookup_elem(&sig_buckets, &k);
			__u32 contended = 0;
			int ok = !tat || gcra_take(tat, now, gcra_interval(1, r->pps, 1000), r->depth_ns,
						   &contended);
			if (contended)
				misc_inc(MISC_CONTENDED);
			if (ok)
				return MAX_SIGNATURES;
		}
		if (c)
			c->dropped += 1;
		return i;
	}
	return MAX_SIGNATURES;
}

/* The signature step. Returns the slot of the rule that drops the packet,
 * or MAX_SIGNATURES when the packet goes on. */
static __always_inline __u32 signature_step(struct xdp_md *ctx, struct packet *p, __u64 now)
{
	struct sig_pkt f = {};
	__u32 meta = p->family | (__u32)p->proto << 8 | (p->nonfirst_frag ? 0 : SIG_META_L4);

	if (sig_extract(ctx, p->l3_off, p->l4_off, meta, &f) < 0)
		return MAX_SIGNATURES;
	return sig_scan(&f, now);
}

#endif
