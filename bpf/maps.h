/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the datapath, in one place. The max_entries written here are
 * placeholders: the loader sets each size from the config before load.
 */
#ifndef BULWARK_MAPS_H
#define BULWARK_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_settings);
} settings SEC(".maps");

/* rules[0] is the default limit; rules[1..] the configured rules. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_SLOTS);
	__type(key, __u32);
	__type(value, struct port_slot);
} port_rules SEC(".maps");

#define HOST_MAP(name, keytype)                                                \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_HASH);                               \
		__uint(max_entries, 1);                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, keytype);                                          \
		__type(value, struct list_value);                              \
	} name SEC(".maps")

#define NET_MAP(name, keytype, valtype)                                        \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
		__uint(max_entries, 1);                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, keytype);                                          \
		__type(value, valtype);                                        \
	} name SEC(".maps")

/* An array of n length masks of type valtype (see lists.h). */
#define MASK_ARRAY(name, n, valtype)                                           \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, n);                                        \
		__type(key, __u32);                                            \
		__type(value, valtype);                                        \
	} name SEC(".maps")

/* Slot masks: IPv4, one per /LIST_SLOT4, indexed by the address's first
 * two bytes; bit i: a prefix of length 31 - i lies in the slot; bit 31
 * (SLOT4_HOSTS): a /32 does. */
#define LIST_SLOTS4(name) MASK_ARRAY(name, 1 << LIST_SLOT4, __u32)

/* IPv6, indexed by a hash of the address's /LIST_SLOT6 (lists.h slot6):
 * /64s that share an element share its mask, so a collision costs probes,
 * never a miss. Bit i: a prefix of length 127 - i. */
#define LIST_SLOTS6(name) MASK_ARRAY(name, 1 << LIST_SLOT6_HASH_BITS, __u64)

/* IPv6 lengths LIST_MID6 to LIST_SLOT6 - 1, indexed by a hash of the
 * address's /LIST_MID6 (lists.h mid6), as the slots above: bit i, a prefix
 * of length LIST_SLOT6 - 1 - i. Without it, one /48 anywhere in a list
 * cost every IPv6 packet a hash probe. Bit 63 (MID6_HOSTS): a /128 lies
 * in it. */
#define LIST_MIDS6(name) MASK_ARRAY(name, 1 << LIST_SLOT6_HASH_BITS, __u64)

/* The lengths shorter than a slot that have an entry. */
struct list_short {
	__u64 v6; /* bit i: length LIST_MID6 - 1 - i */
	__u32 v4; /* bit i: length LIST_SLOT4 - 1 - i */
	__u32 pad;
};

#define LIST_SHORT(name)                                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, 1);                                        \
		__type(key, __u32);                                            \
		__type(value, struct list_short);                              \
	} name SEC(".maps")

/* The list cache (lists.h): per CPU, LIST_CACHE_SETS sets of two entries,
 * each the result of one source's lookup in one list, valid while the
 * list's generation is the one it was made under. */
struct list_cache_entry {
	__u64 a, b;   /* the source: struct src_key's two halves */
	__u64 tag;    /* generation << 24 | IPv6 << 23 | hit list id + 1 (0: miss) */
	__u64 when;   /* hit: the entry's expiry (0: never); miss: 0 */
};

struct list_cache_set {
	struct list_cache_entry e[2];
};

/* An array of CPUs x LIST_CACHE_SETS sets (the loader sizes it and sets
 * list_cache_bits); CPU c's sets start at c << list_cache_bits.
 * BPF_F_MMAPABLE (nothing maps it) for its page-aligned values: a plain
 * array's values start 312 bytes into its memory (after struct bpf_array
 * on Linux 6.18), 56 bytes into a cache line, so every set would straddle
 * two lines; aligned, a set is one line and a set and its buddy (lists.h)
 * share 128 bytes. */
#define LIST_CACHE(name)                                                       \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, 1);                                        \
		__uint(map_flags, BPF_F_MMAPABLE);                             \
		__type(key, __u32);                                            \
		__type(value, struct list_cache_set);                          \
	} name SEC(".maps")

/* Each list's generation ([0] allow, [1] block): userspace adds one after
 * every write to the list (an atomic add on the mmapped value, so several
 * writers never lose one); bit 63 (CACHE_ON, lists.h) turns the list's
 * cache on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} list_gen SEC(".maps");

/* Allow and block lists: single hosts in hashes, true prefixes in hashes
 * keyed by (length, masked address) with their length masks (lists.h), not
 * LPM tries, whose lookups slow as they grow. Only userspace writes them, so no
 * hash is preallocated: memory follows the entries, not the configured
 * maximum. */
HOST_MAP(allow_hosts4, __u32);
HOST_MAP(allow_hosts6, struct src_key);
HOST_MAP(allow_nets4, struct lpm_v4_key);
HOST_MAP(allow_nets6, struct lpm_v6_key);
LIST_SLOTS4(allow_slots4);
LIST_SLOTS6(allow_slots6);
LIST_MIDS6(allow_mid6);
LIST_SHORT(allow_short);
LIST_CACHE(allow_cache);
HOST_MAP(block_hosts4, __u32);
HOST_MAP(block_hosts6, struct src_key);
HOST_MAP(block_nets4, struct lpm_v4_key);
HOST_MAP(block_nets6, struct lpm_v6_key);
LIST_SLOTS4(block_slots4);
LIST_SLOTS6(block_slots6);
LIST_MIDS6(block_mid6);
LIST_SHORT(block_short);
LIST_CACHE(block_cache);

/* Source classes: CIDR -> limit multiplier. */
NET_MAP(classes4, struct lpm_v4_key, struct class_value);
NET_MAP(classes6, struct lpm_v6_key, struct class_value);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct src_key);
	__type(value, struct verdict);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct src_key);
	__type(value, struct src_state);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct rule_key);
	__type(value, struct rule_state);
} rule_buckets SEC(".maps");

/* Aggregate buckets: one per IPv4 /24 or IPv6 /48 (prefixes configurable),
 * so a limit holds when a flood of sources evicts per-source state. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct src_key);
	__type(value, struct rule_state);
} agg_buckets SEC(".maps");

/* The one bucket of the ceiling on new sources (rule RULE_NEW_SOURCES). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule_state);
} new_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STATS_SLOTS);
	__type(key, __u32);
	__type(value, struct counter);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct rule_counter);
} rule_stats SEC(".maps");

/* Hits per list id; sized by the loader (maximum number of lists). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} list_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MISC_MAX);
	__type(key, __u32);
	__type(value, __u64);
} misc SEC(".maps");

/* Sampling state: a per-CPU countdown to the next sampled drop ... */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sample_countdown SEC(".maps");

/* ... and one shared window for the per-second cap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_window);
} sample_window SEC(".maps");

/* Attack signatures (bpf/signatures.h): the table, one GCRA bucket per
 * slot (its theoretical arrival time; userspace zeroes it with each rule
 * it writes) and per-CPU matched/dropped counters per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SIGNATURES);
	__type(key, __u32);
	__type(value, struct sig_rule);
} signatures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SIGNATURES);
	__type(key, __u32);
	__type(value, __u64);
} sig_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SIGNATURES);
	__type(key, __u32);
	__type(value, struct rule_counter);
} sig_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

#endif
