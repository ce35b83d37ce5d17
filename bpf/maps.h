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

/* Allow and block lists: single hosts in hashes, true prefixes in tries.
 * Only userspace writes them, so none is preallocated: memory follows the
 * entries, not the configured maximum. */
HOST_MAP(allow_hosts4, __u32);
HOST_MAP(allow_hosts6, struct src_key);
NET_MAP(allow_nets4, struct lpm_v4_key, struct list_value);
NET_MAP(allow_nets6, struct lpm_v6_key, struct list_value);
HOST_MAP(block_hosts4, __u32);
HOST_MAP(block_hosts6, struct src_key);
NET_MAP(block_nets4, struct lpm_v4_key, struct list_value);
NET_MAP(block_nets6, struct lpm_v6_key, struct list_value);

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
