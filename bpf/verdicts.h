/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Dynamic verdicts: block or throttle one source until an expiry.
 */
#ifndef BULWARK_VERDICTS_H
#define BULWARK_VERDICTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"
#include "maps.h"

/* The live verdict on the source key k at now, or VERDICT_NONE. An expired
 * verdict is deleted on the way. */
static __always_inline __u32 verdict_on(struct dp_settings *s, struct src_key *k, __u64 now)
{
	if (!(s->present & PRESENT_VERDICTS))
		return VERDICT_NONE;
	struct verdict *v = bpf_map_lookup_elem(&verdicts, k);
	if (!v)
		return VERDICT_NONE;
	if (v->expires_ns > now)
		return v->action;
	bpf_map_delete_elem(&verdicts, k);
	return VERDICT_NONE;
}

#endif
