/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing. Each parse_* bounds-checks its header against the end of
 * the frame and against the length the enclosing header declares, and says
 * PARSE_OK, PARSE_NON_IP or PARSE_MALFORMED. The Go model (bpf/model) mirrors
 * this file rule for rule; change both together.
 */
#ifndef BULWARK_PARSE_H
#define BULWARK_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#define MAX_VLAN_TAGS 3
#define MAX_IPV6_EXT 8
/* The furthest an L4 header can start: 3 tags, 40 bytes of IPv6 and 8
 * extension headers of at most 2048 bytes make 16450. The verifier wants
 * a bound, and one under half its own 0xffff. */
#define MAX_L4_OFF 0x7fff

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60

#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1fff

/* Malformed by deliberate choice, though a Linux host might deliver it
 * (the README's "Malformed rules" table has every rule):
 * - a fourth VLAN tag (MAX_VLAN_TAGS) and a ninth IPv6 extension header
 *   (MAX_IPV6_EXT): the verifier needs bounds; real traffic stays far below;
 * - a TCP first fragment too short for the 20-byte TCP header, and a TCP
 *   fragment at offset 8 bytes: RFC 1858's tiny fragment attack, which
 *   hides the flags from a filter. IPv6 hosts drop such a first fragment
 *   anyway (RFC 8200 4.5), and Linux refuses overlapping fragments, so an
 *   offset-8 fragment can only complete a datagram whose first fragment
 *   was tiny. */

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

enum parse_result {
	PARSE_OK = 0,
	PARSE_NON_IP = 1,
	PARSE_MALFORMED = 2,
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* What the decision needs from a packet. */
struct packet {
	struct src_key src; /* IPv4 as ::ffff:a.b.c.d; IPv6 in full */
	__u8 family;        /* 4 or 6 once the IP header parsed, else 0 */
	__u8 proto;         /* L4 protocol (after IPv6 extension headers) */
	__u8 nonfirst_frag; /* no L4 header here: L3 decisions only */
	__u8 tcp_flags;
	__u16 dport;        /* host byte order; TCP and UDP only */
	__u8 first_frag;    /* offset 0, more fragments follow: the L4 header
			     * is here, the datagram's lengths are not */
	__u8 pad;
	__u16 l3_off;       /* where the IP header starts in the frame */
	__u16 l4_off;       /* where the L4 header starts (parse_l4 reached it) */
};

struct cursor {
	void *start;
	void *pos;
	void *end;
};

static __always_inline int parse_eth(struct cursor *c, __u16 *ethertype)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > c->end)
		return PARSE_MALFORMED;
	c->pos = eth + 1;
	__u16 proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = c->pos;
		if ((void *)(vh + 1) > c->end)
			return PARSE_MALFORMED;
		c->pos = vh + 1;
		proto = vh->encap_proto;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PARSE_MALFORMED; /* a fourth tag */
	*ethertype = proto;
	return PARSE_OK;
}

/* *rem is set to the L4 bytes the IP header declares. */
static __always_inline int parse_ipv4(struct cursor *c, struct packet *p, __u32 *rem)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > c->end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	__u32 avail = c->end - c->pos;
	if (hlen > avail || tot < hlen || tot > avail)
		return PARSE_MALFORMED;

	p->family = 4;
	p->src.addr[10] = 0xff;
	p->src.addr[11] = 0xff;
	__builtin_memcpy(&p->src.addr[12], &ip->saddr, 4);
	p->proto = ip->protocol;
	__u16 frag = bpf_ntohs(ip->frag_off);
	if (frag & IP_OFFSET_) {
		p->nonfirst_frag = 1;
		if ((frag & IP_OFFSET_) == 1 && ip->protocol == IPPROTO_TCP)
			return PARSE_MALFORMED; /* RFC 1858: a deliberate choice, above */
	} else if (frag & IP_MF_) {
		p->first_frag = 1;
	}

	c->pos += hlen;
	*rem = tot - hlen;
	return PARSE_OK;
}

struct ipv6_ext {
	__u8 nexthdr;
	__u8 len;
	__be16 frag_off; /* fragment header only */
};

static __always_inline int parse_ipv6(struct xdp_md *ctx, struct cursor *c, struct packet *p,
				      __u32 *rem)
{
	struct ipv6hdr *ip6 = c->pos;
	if ((void *)(ip6 + 1) > c->end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	c->pos = ip6 + 1;
	__u32 avail = c->end - c->pos;
	__u32 plen = bpf_ntohs(ip6->payload_len);
	if (plen > avail)
		return PARSE_MALFORMED;
	/* RFC 2675: a jumbogram's length is in a hop-by-hop option, so its
	 * payload is the rest of the frame. Linux reads a zero length without
	 * a hop-by-hop header as an empty payload, and so does this. */
	if (plen == 0 && ip6->nexthdr == IPPROTO_HOPOPTS_)
		plen = avail;

	p->family = 6;
	__builtin_memcpy(p->src.addr, &ip6->saddr, 16);
	__u8 nh = ip6->nexthdr;
	if (nh != IPPROTO_HOPOPTS_ && nh != IPPROTO_ROUTING_ && nh != IPPROTO_DSTOPTS_ &&
	    nh != IPPROTO_FRAGMENT_ && nh != IPPROTO_AH_) {
		p->proto = nh; /* the common case: no extension header */
		*rem = plen;
		return PARSE_OK;
	}

	/* The walk reads each header with bpf_xdp_load_bytes at a plain
	 * offset, not through a packet pointer: the verifier then needs no
	 * exact bounds of the offset and checks the loop body a few times
	 * instead of once per combination of header lengths. */
	__u64 off = c->pos - c->start;
	/* The verifier knows nothing of a difference of packet pointers;
	 * bound it in a way the compiler keeps. */
	asm volatile("%0 &= 0xffff" : "+r"(off));
	for (int i = 0; i < MAX_IPV6_EXT + 1; i++) {
		__u32 len;
		struct ipv6_ext ext;

		if (nh != IPPROTO_HOPOPTS_ && nh != IPPROTO_ROUTING_ && nh != IPPROTO_DSTOPTS_ &&
		    nh != IPPROTO_FRAGMENT_ && nh != IPPROTO_AH_)
			break; /* an upper layer, ESP, no-next-header or unknown: the walk ends */
		if (i == MAX_IPV6_EXT)
			return PARSE_MALFORMED; /* a ninth extension header */
		if (plen < 8 || bpf_xdp_load_bytes(ctx, off, &ext, sizeof(ext)) < 0)
			return PARSE_MALFORMED;
		if (nh == IPPROTO_FRAGMENT_)
			len = 8;
		else if (nh == IPPROTO_AH_)
			len = ((__u32)ext.len + 2) * 4;
		else
			len = ((__u32)ext.len + 1) * 8;
		if (len > plen)
			return PARSE_MALFORMED;
		if (nh == IPPROTO_FRAGMENT_) {
			__u16 fo = bpf_ntohs(ext.frag_off);
			if (fo & 0xfff8) {
				p->nonfirst_frag = 1;
				p->proto = ext.nexthdr;
				*rem = 0;
				if ((fo >> 3) == 1 && ext.nexthdr == IPPROTO_TCP)
					return PARSE_MALFORMED; /* RFC 1858, as for IPv4 */
				return PARSE_OK;
			}
			/* M set: a first fragment, whose headers up to the upper
			 * layer's must all be here (RFC 8200 4.5, RFC 7112); the
			 * walk goes on. M clear: an atomic fragment, a whole
			 * packet. */
			if (fo & 1)
				p->first_frag = 1;
		}
		nh = ext.nexthdr;
		plen -= len;
		off += len;
	}
	/* off lies inside the frame (plen <= avail bounded every step) and
	 * under MAX_L4_OFF; the check only tells the verifier so. */
	if (off > MAX_L4_OFF)
		return PARSE_MALFORMED;
	c->pos = c->start + off;
	p->proto = nh;
	*rem = plen;
	return PARSE_OK;
}

/* The L4 header must lie inside both the frame and the IP payload (rem).
 * A first fragment holds the L4 header but not the whole datagram: the
 * lengths its L4 header declares (TCP options, UDP length) may reach into
 * the fragments after it; the receiver checks them after reassembly. */
static __always_inline int parse_l4(struct cursor *c, struct packet *p, __u32 rem)
{
	if (p->nonfirst_frag)
		return PARSE_OK;

	switch (p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = c->pos;
		/* Also a tiny first fragment (RFC 1858), a deliberate choice. */
		if ((void *)(th + 1) > c->end || rem < sizeof(*th))
			return PARSE_MALFORMED;
		if (th->doff < 5)
			return PARSE_MALFORMED;
		if ((__u32)th->doff * 4 > rem && !p->first_frag)
			return PARSE_MALFORMED;
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		return PARSE_OK;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = c->pos;
		if ((void *)(uh + 1) > c->end || rem < sizeof(*uh))
			return PARSE_MALFORMED;
		__u32 ulen = bpf_ntohs(uh->len);
		/* Over IPv6 a zero length means the rest of the payload (RFC
		 * 2675 for jumbograms; Linux accepts it on any IPv6 packet).
		 * A length short of the payload leaves trailing bytes, which
		 * the receiver trims. */
		if (!(ulen == 0 && p->family == 6) &&
		    (ulen < sizeof(*uh) || (ulen > rem && !p->first_frag)))
			return PARSE_MALFORMED;
		p->dport = bpf_ntohs(uh->dest);
		return PARSE_OK;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		/* type, code, checksum and the 4-byte rest of header; the
		 * packet an error quotes is not parsed, so a quote cut short
		 * (as RFC 792 and RFC 4443 allow) is fine */
		if (c->pos + 8 > c->end || rem < 8)
			return PARSE_MALFORMED;
		return PARSE_OK;
	}
	return PARSE_OK;
}

static __always_inline int parse_packet(struct xdp_md *ctx, void *data, void *data_end,
					struct packet *p)
{
	struct cursor c = { .start = data, .pos = data, .end = data_end };
	__u16 ethertype;
	__u32 rem = 0;
	int r;

	r = parse_eth(&c, &ethertype);
	if (r != PARSE_OK)
		return r;
	p->l3_off = c.pos - c.start;
	if (ethertype == bpf_htons(ETH_P_IP))
		r = parse_ipv4(&c, p, &rem);
	else if (ethertype == bpf_htons(ETH_P_IPV6))
		r = parse_ipv6(ctx, &c, p, &rem);
	else
		return PARSE_NON_IP;
	if (r != PARSE_OK)
		return r;
	p->l4_off = c.pos - c.start;
	return parse_l4(&c, p, rem);
}

#endif
