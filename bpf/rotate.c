//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmarks only, never attached: rotate overwrites the frame's source
 * address with the next of rotate_addrs (slot rotate_pos & rotate_mask, the
 * position counting every run) and tail-calls the program in rotate_next[0],
 * Bulwark's or the floor's. BPF_PROG_TEST_RUN repeats one frame; through
 * rotate each repetition comes from another address, so a case does not keep
 * one hash bucket hot. The floor is measured through rotate as well, so the
 * rotation's cost is in both sides of the ratio. Bulwark's own object does
 * not change. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct rotate_addr {
	__u8 b[16]; /* an IPv4 address is the first 4 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set at load: rotate_mask + 1 */
	__type(key, __u32);
	__type(value, struct rotate_addr);
} rotate_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rotate_next SEC(".maps");

/* The number of slots less one, a power of two less one; set at load. */
volatile const __u32 rotate_mask = 0;
/* Runs so far; BPF_PROG_TEST_RUN runs on one CPU. */
__u32 rotate_pos = 0;

SEC("xdp")
int rotate(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 i = rotate_pos++ & rotate_mask;
	struct rotate_addr *a = bpf_map_lookup_elem(&rotate_addrs, &i);

	if (!a || (void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (data + ETH_HLEN + 20 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data + ETH_HLEN + 12, a->b, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if (data + ETH_HLEN + 40 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data + ETH_HLEN + 8, a->b, 16);
	} else {
		return XDP_ABORTED;
	}
	bpf_tail_call(ctx, &rotate_next, 0);
	return XDP_ABORTED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
