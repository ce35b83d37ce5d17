/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The datapath's clock: the kernel's coarse monotonic clock, or, when the
 * loader set replay_mode for `bulwark replay`, the capture time userspace
 * puts in front of each test-run frame (struct replay_io).
 */
#ifndef BULWARK_CLOCK_H
#define BULWARK_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"

/* Set by the loader for `bulwark replay`: take the time from the frame's
 * metadata (struct replay_io, which BPF_PROG_TEST_RUN places in front of
 * the frame) instead of the kernel's clock, and write each decision back
 * there. The I/O travels with each run, so runs on several CPUs at once do
 * not share it. A constant, so the verifier prunes the branches the
 * production program does not take: they cost it nothing. */
volatile const __u32 replay_mode = 0;

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

#endif
