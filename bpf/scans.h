/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Scans over a long window, per source: the distinct destination ports and
 * destination addresses of the source's connection attempts, for the
 * scorer's port_scan_long and horizontal_scan components
 * (agent/reputation/scan.go, docs/reputation.md "Scans").
 *
 * A connection attempt is what a scanner sends and an established flow does
 * not: TCP without ACK and without RST (SYN, FIN, NULL and Xmas probes);
 * UDP, except a reply from a service port (below 1024) to an ephemeral one
 * (1024 and up: DNS, NTP and QUIC answers to the host's own queries); ICMP
 * and ICMPv6 echo requests (addresses only: they have no port). Non-first
 * fragments carry no L4 header and are not attempts.
 *
 * Each is hashed (murmur3's 32-bit finaliser) into 128 bits for the port
 * and 64 bits for the address, in the generation of the packet's epoch
 * (now >> scan_shift); the first attempt of a new epoch clears the
 * generation it reuses (and both after a gap of two epochs or more). The
 * scorer reads the current epoch's generation and the one before: between
 * one and two epochs of attempts. 56 bytes per source (bpf/common.h).
 */
#ifndef BULWARK_SCANS_H
#define BULWARK_SCANS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "parse.h"

#define TCP_FLAG_RST_ 0x04
#define ICMP_ECHO_ 8
#define ICMPV6_ECHO_REQUEST_ 128

static __always_inline __u32 scan_hash(__u32 x)
{
	x ^= x >> 16;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	x *= 0xc2b2ae35u;
	x ^= x >> 16;
	return x;
}

/* Records p in st's scan sketches if it is a connection attempt, at time
 * now with epochs of 2^shift ns. parse_packet has checked that the IP
 * header and the fixed L4 header lie inside the frame. A global function:
 * the verifier checks it once, not once per path through the caller; it
 * must accept NULL pointers, which no caller passes. */
__noinline int observe_scan(struct xdp_md *ctx, struct src_state *st, const struct packet *p, __u64 now,
			    __u32 shift)
{
	if (!st || !p || p->nonfirst_frag)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, l4 = p->l4_off;
	if (l3 > 64 || l4 > 512)
		return 0;
	__u8 *ip = data + l3, *th = data + l4;
	if ((void *)(th + 8) > data_end)
		return 0;
	int port = 1;
	switch (p->proto) {
	case IPPROTO_TCP:
		if (p->tcp_flags & (TCP_FLAG_ACK | TCP_FLAG_RST_))
			return 0;
		break;
	case IPPROTO_UDP:
		if (((__u16)th[0] << 8 | th[1]) < 1024 && p->dport >= 1024)
			return 0;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		if (th[0] != (p->family == 4 ? ICMP_ECHO_ : ICMPV6_ECHO_REQUEST_))
			return 0;
		port = 0;
		break;
	default:
		return 0;
	}

	__u32 daddr;
	if (p->family == 4) {
		if ((void *)(ip + 20) > data_end)
			return 0;
		daddr = *(__u32 *)(ip + 16);
	} else {
		if ((void *)(ip + 40) > data_end)
			return 0;
		__u32 *a = (__u32 *)(ip + 24);
		/* a polynomial over the four words: a xor fold would let
		 * equal differences in two words cancel */
		daddr = ((a[0] * 0x9e3779b1u + a[1]) * 0x9e3779b1u + a[2]) * 0x9e3779b1u + a[3];
	}

	__u32 epoch = now >> (shift & 63);
	/* The last attempt again (a client's next datagram to its service),
	 * in the same epoch: its bits are set, and nothing clears them
	 * before the epoch changes. */
	if (port && st->scan_last && st->scan_epoch == epoch && st->scan_dport == p->dport &&
	    st->scan_daddr == daddr)
		return 0;
	__u32 g = epoch & 1;
	if (st->scan_epoch != epoch) {
		if (st->scan_epoch + 1 != epoch) {
			st->scan_ports[g ^ 1][0] = 0;
			st->scan_ports[g ^ 1][1] = 0;
			st->scan_addrs[g ^ 1] = 0;
		}
		st->scan_ports[g][0] = 0;
		st->scan_ports[g][1] = 0;
		st->scan_addrs[g] = 0;
		st->scan_epoch = epoch;
	}
	st->scan_addrs[g] |= 1ULL << (scan_hash(daddr) >> 26);
	if (port) {
		__u32 h = scan_hash(p->dport) >> 25;
		st->scan_ports[g][h >> 6] |= 1ULL << (h & 63);
		st->scan_dport = p->dport;
		st->scan_daddr = daddr;
	}
	st->scan_last = port;
	return 0;
}

/* Whether p may be an attempt: established TCP (ACK or RST set), most of
 * a TCP host's traffic, is decided here without calling observe_scan. */
static __always_inline int scan_candidate(const struct packet *p)
{
	return !(p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_ACK | TCP_FLAG_RST_)));
}

#endif
