/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the XDP program and the Go side. bpf2go generates the Go
 * declarations from the BTF of these types (see gen.go); the maps package
 * gives them public names, and a test checks the layouts still match.
 * No packed structs: every hole is an explicit padding field.
 */
#ifndef BULWARK_COMMON_H
#define BULWARK_COMMON_H

#include <linux/types.h>

/* What happened to a packet. */
enum action {
	ACTION_PASS = 0,
	ACTION_DROP = 1,
	ACTION_WOULD_DROP = 2, /* monitor mode: a drop computed, not done */
	ACTION_MAX = 3,
};

/* Why; the step of the decision order that decided. */
enum reason {
	REASON_PASSED = 0,
	REASON_ALLOWLIST = 1,
	REASON_BLOCKLIST = 2,
	REASON_VERDICT = 3,
	REASON_RATELIMIT = 4,
	REASON_MALFORMED = 5,
	REASON_NON_IP = 6,
	REASON_SIGNATURE = 7,
	REASON_MAX = 8,
};

/* Index into the stats array: action * REASON_MAX + reason. */
#define STATS_SLOTS (ACTION_MAX * REASON_MAX)

enum mode {
	MODE_ENFORCE = 0,
	MODE_MONITOR = 1,
};

enum verdict_action {
	VERDICT_NONE = 0,
	VERDICT_BLOCK = 1,
	VERDICT_THROTTLE = 2,
};

/* Bits of settings.present: which lookup maps hold entries. Userspace sets a
 * bit before it writes the first entry and clears it after the map is empty,
 * so the packet path skips lookups into empty maps without missing one. */
enum present_bits {
	PRESENT_ALLOW_HOSTS4 = 1 << 0,
	PRESENT_ALLOW_HOSTS6 = 1 << 1,
	PRESENT_ALLOW_NETS4 = 1 << 2,
	PRESENT_ALLOW_NETS6 = 1 << 3,
	PRESENT_BLOCK_HOSTS4 = 1 << 4,
	PRESENT_BLOCK_HOSTS6 = 1 << 5,
	PRESENT_BLOCK_NETS4 = 1 << 6,
	PRESENT_BLOCK_NETS6 = 1 << 7,
	PRESENT_CLASSES4 = 1 << 8,
	PRESENT_CLASSES6 = 1 << 9,
	PRESENT_VERDICTS = 1 << 10,
	PRESENT_PORT_RULES = 1 << 11,
	PRESENT_AGGREGATE = 1 << 12, /* the per-prefix aggregate limit is on */
	PRESENT_SIGNATURES = 1 << 13, /* the signature table holds a rule */
};

/* Port tables: one rule id per (table, destination port). */
enum port_table {
	PORT_TABLE_TCP = 0,     /* every TCP segment */
	PORT_TABLE_UDP = 1,     /* every UDP datagram */
	PORT_TABLE_TCP_SYN = 2, /* TCP with SYN set and ACK clear */
	PORT_TABLES = 3,
};

/* Sizes and ids fixed by the datapath. An enum, not macros, so they are in
 * the object's BTF and bpf2go gives Go the same values (maps/ names them).
 * Eight ports per port_rules slot; the array has PORT_TABLES * 65536 / 8
 * slots. Rule ids are one byte; rule 0 is the default limit, 1..253
 * configured rules, and two ids are the limits that hold when per-source
 * state does not: the per-prefix aggregate and the ceiling on new sources.
 * EVENT_SNAP is how many bytes of a dropped frame a sample carries;
 * LIST_SLOT4, LIST_SLOT6 and LIST_MID6 the prefix lengths of the slots
 * whose masks say which list prefix lengths hold entries (lists.h), and
 * LIST_SLOT6_HASH_BITS the bits of the IPv6 slot hashes. */
enum limits {
	PORTS_PER_SLOT = 8,
	PORT_SLOTS = PORT_TABLES * 65536 / 8,
	MAX_RULES = 256,
	RULE_AGGREGATE = 254,
	RULE_NEW_SOURCES = 255,
	EVENT_SNAP = 128,
	LIST_SLOT4 = 16,
	LIST_SLOT6 = 64,
	LIST_MID6 = 32,
	LIST_SLOT6_HASH_BITS = 16,
	MAX_SIGNATURES = 16,
	SIG_DATA = 16,
};

/* The single entry of the settings map. Everything a reload may change. */
struct dp_settings {
	__u32 mode;           /* enum mode */
	__u32 malformed_pass; /* 1: malformed packets pass; 0: dropped */
	__u32 present;        /* enum present_bits */
	__u32 throttle_pm;    /* throttle tier: limits times throttle_pm / 1000 */
	__u32 icmp_rule;      /* rule id for ICMP, 0 = none */
	__u32 icmp6_rule;     /* rule id for ICMPv6, 0 = none */
	__u32 sample_every;   /* sample 1 in N drops into the event ring; 0 = off */
	__u32 sample_max_per_sec; /* at most this many samples per second */
	__u32 ipv6_prefix;    /* IPv6 sources are tracked per this prefix */
	__u32 agg4_mask;      /* aggregate limit: IPv4 prefix mask, memory order */
	__u64 v6_mask_hi;     /* the prefix as a mask over address bytes 0-7 */
	__u64 v6_mask_lo;     /* ... and bytes 8-15, in memory order */
	__u64 agg6_mask_hi;   /* aggregate limit: IPv6 prefix mask */
	__u64 agg6_mask_lo;
	__u32 scan_shift;     /* a scan generation spans 2^scan_shift ns (bpf/scans.h) */
	__u32 scan_pad;
};

/* A limit: packets and bytes per second, each with its bucket depth. */
struct rule {
	__u64 pps;          /* packets per second; 0 = no packet limit */
	__u64 pps_depth_ns; /* burst * 1e9 / pps: the bucket as time */
	__u64 bps;          /* bytes per second; 0 = no byte limit */
	__u64 bps_depth_ns; /* byte burst * 1e9 / bps */
};

struct port_slot {
	__u8 rule[PORTS_PER_SLOT];
};

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr; /* network byte order */
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Value of allow and block entries, hosts and prefixes alike. */
struct list_value {
	__u32 list_id;     /* which list the entry came from (per-list counters) */
	__u32 prefixlen;   /* the entry's own prefix length */
	__u64 expires_ns;  /* CLOCK_MONOTONIC; 0 = never expires */
};

/* Source address: IPv4 as ::ffff:a.b.c.d, IPv6 masked to settings.ipv6_prefix. */
struct src_key {
	__u8 addr[16];
};

/* A dynamic verdict on one source. */
struct verdict {
	__u64 expires_ns; /* CLOCK_MONOTONIC; ignored once passed */
	__u32 action;     /* enum verdict_action */
	__u16 origin;     /* who set it (userspace meaning) */
	__u16 score;      /* the score that caused it, 0-100 */
};

struct class_value {
	__u32 class_id;
	__u32 mult_pm; /* limits times mult_pm / 1000 */
};

/* Per-source state: default-limit buckets and observations for the scorer.
 * Buckets are GCRA: tat is the theoretical arrival time, equivalent to a
 * token bucket (see README, "Token buckets"). */
struct src_state {
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 packets;
	__u64 bytes;
	__u64 syns;            /* TCP SYN without ACK */
	__u64 drops_ratelimit;
	__u64 malformed;
	__u64 tat_pps;
	__u64 tat_bps;
	__u64 port_bits[4];    /* destination ports hashed into 256 bits, this window */
	__u32 port_window;     /* window (monotonic ns >> 30, ~1.07 s) of port_bits */
	__u32 ports_prev;      /* bits set in the previous window */
	/* Scans over a long window (bpf/scans.h): the destination ports and
	 * addresses of the source's connection attempts, hashed into two
	 * generations of 2^scan_shift ns each: 56 bytes. */
	__u64 scan_ports[2][2]; /* [generation][word]: 128 bits per generation */
	__u64 scan_addrs[2];    /* [generation]: 64 bits per generation */
	__u32 scan_epoch;       /* now >> scan_shift of the last attempt; its generation is scan_epoch & 1 */
	__u16 scan_dport;       /* destination port of the last TCP or UDP attempt */
	__u16 scan_last;        /* 1: the last attempt was that port's, to scan_daddr; 0 after an echo request */
	/* Sameness of UDP (agent/reputation/uniform.go): a flood of one
	 * datagram shape to one port is told from a busy client by it. */
	__u64 udp;             /* UDP datagrams (first fragments included) */
	__u64 udp_same;        /* of those, the shape of the source's previous one */
	__u32 udp_shape;       /* shape of the last: port, length, a payload word */
	__u32 scan_daddr;      /* destination address of the last TCP or UDP attempt, as scans.h hashes it */
};

struct rule_key {
	struct src_key src;
	__u32 rule;
};

struct rule_state {
	__u64 tat_pps;
	__u64 tat_bps;
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct rule_counter {
	__u64 matched; /* packets that reached this rule's buckets */
	__u64 dropped; /* of those, over the limit (dropped or would drop) */
};

/* Attack signatures (bpf/signatures.h): which fields of a sig_rule must
 * match. A rule with any L4 field never matches a non-first fragment; DF
 * and IP ID only match IPv4. */
enum sig_fields {
	SIG_PROTO = 1 << 0,     /* L4 protocol equals proto */
	SIG_DPORT = 1 << 1,     /* TCP/UDP destination port in [dport_lo, dport_hi] */
	SIG_SPORT = 1 << 2,     /* TCP/UDP source port in [sport_lo, sport_hi] */
	SIG_TTL = 1 << 3,       /* IPv4 TTL or IPv6 hop limit in [ttl_lo, ttl_hi] */
	SIG_IPLEN = 1 << 4,     /* IP total length (IPv6: payload + 40) in [len_lo, len_hi] */
	SIG_DF = 1 << 5,        /* IPv4 don't-fragment bit equals df */
	SIG_IPID = 1 << 6,      /* IPv4 ID zero (ipid_zero 1) or nonzero (0) */
	SIG_TCP_FLAGS = 1 << 7, /* TCP flags & tcp_mask == tcp_value */
	SIG_WINDOW = 1 << 8,    /* TCP window in [win_lo, win_hi] */
	SIG_TCP_OPTLEN = 1 << 9, /* TCP options length (doff * 4 - 20) equals optlen */
	SIG_ICMP_TYPE = 1 << 10, /* ICMP or ICMPv6 type equals icmp_type */
	SIG_DATA_PREFIX = 1 << 11, /* the first data_len bytes after the fixed L4
				    * header (TCP: options then payload; UDP and
				    * ICMP: payload), masked by data_mask, equal data */
	SIG_FIELDS_ALL = (1 << 12) - 1,
};

enum sig_action {
	SIG_ACTION_COUNT = 0, /* counted only (shadow): the packet goes on */
	SIG_ACTION_DROP = 1,
	SIG_ACTION_LIMIT = 2, /* one aggregate bucket for every matching packet */
};

/* One slot of the signature table; fields == 0 is an empty slot. */
struct sig_rule {
	__u32 fields;     /* enum sig_fields */
	__u32 action;     /* enum sig_action */
	__u64 expires_ns; /* CLOCK_MONOTONIC; 0 = never */
	__u64 pps;        /* SIG_ACTION_LIMIT: packets per second */
	__u64 depth_ns;   /* ... burst * 1e9 / pps */
	__u16 dport_lo;
	__u16 dport_hi;
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 len_lo;
	__u16 len_hi;
	__u16 win_lo;
	__u16 win_hi;
	__u8 proto;
	__u8 ttl_lo;
	__u8 ttl_hi;
	__u8 df;
	__u8 ipid_zero;
	__u8 tcp_mask;
	__u8 tcp_value;
	__u8 optlen;
	__u8 icmp_type;
	__u8 data_len;    /* bytes of data that must be present, <= SIG_DATA */
	__u8 pad[6];
	__u8 data[SIG_DATA];
	__u8 data_mask[SIG_DATA];
};

/* The header fields of one packet that signatures look at. */
struct sig_pkt {
	__u16 dport;
	__u16 sport;
	__u16 iplen;
	__u16 window;
	__u8 family;
	__u8 proto;
	__u8 ttl;
	__u8 df;
	__u8 ipid_zero;
	__u8 tcp_flags;
	__u8 optlen;
	__u8 icmp_type;
	__u8 has_l4;   /* the L4 header is in this packet */
	__u8 data_len; /* bytes of data read, <= SIG_DATA */
	__u8 pad[6];
	__u8 data[SIG_DATA];
};

/* Indexes of the misc counters array. */
enum misc_counter {
	MISC_SAMPLED = 0,        /* drop events written to the ring */
	MISC_SAMPLE_CAPPED = 1,  /* sampled but over the per-second cap */
	MISC_SAMPLE_LOST = 2,    /* ring full */
	MISC_STATE_FAILED = 3,   /* per-source state could not be created */
	MISC_CONTENDED = 4,      /* bucket update lost its race four times */
	MISC_NEW_SOURCE_LIMITED = 5, /* packets of untracked sources over the new-source ceiling */
	MISC_MAX = 6,
};

/* A sampled drop, as written to the event ring. */
struct drop_event {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 pkt_len;
	__u32 rule;           /* the rule (ratelimit) or the list id (block list) */
	__u16 cap_len;
	__u8 action;
	__u8 reason;
	__u8 data[EVENT_SNAP];
};

/* Replay I/O, used only when the program is loaded for replay: the XDP
 * metadata in front of each test-run frame. Userspace sets the time the
 * program sees; the program writes its decision. */
struct replay_io {
	__u64 now;
	__u32 action;
	__u32 reason;
	__u32 detail; /* the rule (ratelimit) or the list id (allow/block list) */
	__u32 pad;
};

struct sample_window {
	__u64 second;
	__u64 count;
};

#endif
