/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Allow and block lists: single hosts in hashes, true prefixes in LPM
 * tries, per family. One lookup serves both families and both lists.
 */
#ifndef BULWARK_LISTS_H
#define BULWARK_LISTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "maps.h"
#include "clock.h"
#include "parse.h"

/* An entry applies unless it has an expiry that has passed. */
static __always_inline int entry_live(struct xdp_md *ctx, struct list_value *v, __u64 *now)
{
	if (!v->expires_ns)
		return 1;
	if (!*now)
		*now = now_ns(ctx);
	return v->expires_ns > *now;
}

/* One family of one list: the host in the hash (if has_hosts), then the
 * longest live prefix in the trie (if has_nets). net_key is an lpm_v4_key or
 * lpm_v6_key, whose first field is the prefix length, set to maxlen here.
 * An expired longest match must not hide a shorter live one: the trie is
 * asked again just above the expired prefix. */
static __always_inline struct list_value *lookup_family(struct xdp_md *ctx, void *hosts,
							void *host_key, int has_hosts, void *nets,
							void *net_key, __u32 maxlen, int has_nets,
							__u64 *now)
{
	struct list_value *v = 0;
	__u32 *prefixlen = net_key;

	if (has_hosts)
		v = bpf_map_lookup_elem(hosts, host_key);
	if (v && entry_live(ctx, v, now))
		return v;
	if (!has_nets)
		return 0;
	*prefixlen = maxlen;
	for (int i = 0; i <= LPM_EXPIRED_RETRIES; i++) {
		v = bpf_map_lookup_elem(nets, net_key);
		if (!v)
			break;
		if (entry_live(ctx, v, now))
			return v;
		if (v->prefixlen == 0 || v->prefixlen > maxlen)
			break;
		*prefixlen = v->prefixlen - 1;
	}
	return 0;
}

/* Looks p's source up in one list. bit is the list's PRESENT_*_HOSTS4 bit;
 * hosts6, nets4 and nets6 follow it in enum order. */
static __always_inline struct list_value *list_lookup(struct xdp_md *ctx, struct dp_settings *s,
						      struct packet *p, void *hosts4, void *hosts6,
						      void *nets4, void *nets6, __u32 bit, __u64 *now)
{
	if (p->family == 4) {
		struct lpm_v4_key k = {};
		__builtin_memcpy(&k.addr, &p->src.addr[12], 4);
		return lookup_family(ctx, hosts4, &k.addr, s->present & bit, nets4, &k, 32,
				     s->present & (bit << 2), now);
	}
	struct lpm_v6_key k = {};
	__builtin_memcpy(k.addr, p->src.addr, 16);
	return lookup_family(ctx, hosts6, &p->src, s->present & (bit << 1), nets6, &k, 128,
			     s->present & (bit << 3), now);
}

#endif
