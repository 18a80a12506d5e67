/*
 * Everything two processes agree on, in one place: the descriptor ring in
 * shared memory and the messages on the SOCK_SEQPACKET channel. All integers
 * are little-endian on the wire (the rings are only shared on one host, so
 * they use the host's order — checked by the magic).
 */
#ifndef SV2SHM_WIRE_H
#define SV2SHM_WIRE_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "sv2shm/ipc.h"

/* --- descriptor ring (one per consumer, in its own memfd) ----------------- */

#define SV2SHM_RING_MAGIC UINT32_C(0x676e6972) /* "ring" */
#define SV2SHM_RING_VERSION 3u
#define SV2SHM_RING_MAX_ENTRIES 65536u
#define SV2SHM_RING_ENTRY_SIZE 64u /* a descriptor and its sequence word, a cache line */
#define RING_ENTRY_SEQ 32u          /* offset of the sequence word in an entry */

struct sv2shm_ring {
	/* line 0: identity, written by the producer before the consumer sees it */
	uint32_t magic;     /* SV2SHM_RING_MAGIC */
	uint32_t version;   /* SV2SHM_RING_VERSION */
	uint32_t nentries;  /* power of two, <= SV2SHM_RING_MAX_ENTRIES */
	uint32_t entry_size;/* SV2SHM_RING_ENTRY_SIZE */
	uint64_t region_id; /* the region its descriptors name */
	uint8_t reserved0[SV2SHM_CACHE_LINE - 24];

	/*
	 * The hot words each have a line of their own, apart from the words
	 * written only around a sleep, so that streaming moves no line the
	 * other side did not need: the producer reads tail only when the ring
	 * looks full, the consumer reads head only when it ran out of entries,
	 * and the sleep words stay in both caches while nobody sleeps.
	 */
	/* line 1: written by the producer only */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t head; /* next entry the producer fills */
	uint8_t reserved1[SV2SHM_CACHE_LINE - 4];

	/* line 2: written by the consumer only */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t tail; /* next entry the consumer reads */
	uint8_t reserved2[SV2SHM_CACHE_LINE - 4];

	/* line 3: written by the producer only (absolute values), rarely */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t waiting; /* the producer's wait epoch; odd: it waits for a free slot */
	_Atomic uint32_t missed;  /* slices this consumer missed at its limit (SV2SHM_LIMIT_SKIP) */
	_Atomic uint32_t wake_seq; /* futex word: bumped, then FUTEX_WAKE, for a consumer sleeping on it */
	_Atomic uint32_t revoked;  /* 1: the producer removed this consumer (before it took back its holds):
	                              the entries left in the ring name slots that are no longer ours */
	uint8_t reserved3[SV2SHM_CACHE_LINE - 16];

	/* line 4: written by the consumer only, around a sleep */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t consumer_sleeping; /* SLEEP_FUTEX: wake me with FUTEX_WAKE on wake_seq;
	                                                                   SLEEP_SOCKET: with a datagram on the wake socket */
	uint8_t reserved4[SV2SHM_CACHE_LINE - 4];

	/* lines 5..8: written by the consumer only. released[s] is the last
	 * generation of slot s this consumer let go of: the consumer's whole
	 * side of the release protocol (slots.c). Only this consumer and the
	 * producer map this memfd, so no other consumer can forge it. */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t released[64];

	/* lines 9..: slots[nentries][SV2SHM_RING_ENTRY_SIZE], one entry per
	 * cache line: a descriptor (SV2SHM_DESC_SIZE bytes), then at
	 * RING_ENTRY_SEQ its sequence word (index + 1), stored last with
	 * release. A spinning consumer watches the next entry's sequence word
	 * itself — one line moves per slice, not the head's line and then the
	 * entry's. head still counts what was published: a sleeping consumer
	 * re-checks it after it announced its sleep (the producer stores it,
	 * then a seq_cst fence, then reads consumer_sleeping: once per
	 * publish without SV2SHM_PUBLISH_MORE, not once per entry). */
	alignas(SV2SHM_CACHE_LINE) uint8_t slots[];
};

/* consumer_sleeping values */
enum { SLEEP_NO = 0, SLEEP_FUTEX = 1, SLEEP_SOCKET = 2 };

static_assert(offsetof(struct sv2shm_ring, head) == 64, "ring head on its own line");
static_assert(offsetof(struct sv2shm_ring, tail) == 128, "ring tail on its own line");
static_assert(offsetof(struct sv2shm_ring, waiting) == 192, "producer's sleep words on their own line");
static_assert(offsetof(struct sv2shm_ring, consumer_sleeping) == 256, "consumer's sleep word on its own line");
static_assert(offsetof(struct sv2shm_ring, released) == 320, "release records after the sleep lines");
static_assert(offsetof(struct sv2shm_ring, slots) == 576, "ring entries after nine lines");

static inline size_t ring_bytes(uint32_t entries)
{
	return offsetof(struct sv2shm_ring, slots) + (size_t)entries * SV2SHM_RING_ENTRY_SIZE;
}

/* --- channel messages (SOCK_SEQPACKET, one message per datagram) ---------- */

#define SV2SHM_MSG_MAGIC UINT32_C(0x6d766873) /* "shvm" */
#define SV2SHM_MSG_VERSION 1u

enum {
	SV2SHM_MSG_SETUP = 1,    /* producer -> consumer, once; fds: ctl, data, ring, wake socket */
	SV2SHM_MSG_OVERFLOW = 2, /* producer -> consumer; fd: the slice's memfd; ring holds a marker
	                            (socket transport: no marker) */
	SV2SHM_MSG_DESC = 3,     /* producer -> consumer, socket transport only: one descriptor */
};

/* SETUP flags */
#define SV2SHM_SETUP_SOCKET 1u /* descriptors travel over the socket, not the ring */

/* The fds of a SETUP message, in this order. The wake socket is the
 * consumer's end of an AF_UNIX SOCK_DGRAM socketpair: both directions of
 * wake-up travel on it as 1-byte datagrams sent and read with MSG_DONTWAIT,
 * so neither side can make the other's call block (a flag on a shared file
 * description, like O_NONBLOCK on an eventfd, could be cleared by the peer;
 * the ends of a socketpair are two file descriptions and MSG_DONTWAIT is
 * per call). */
enum { SETUP_FD_CTL, SETUP_FD_DATA, SETUP_FD_RING, SETUP_FD_WAKE, SETUP_NFDS };

struct sv2shm_msg_hdr {
	uint32_t magic;   /* SV2SHM_MSG_MAGIC */
	uint16_t version; /* SV2SHM_MSG_VERSION */
	uint16_t type;    /* SV2SHM_MSG_* */
};

struct sv2shm_msg_setup {
	struct sv2shm_msg_hdr hdr;
	uint32_t holder;       /* the consumer's holder bit, 1..31 */
	uint32_t notify;       /* enum sv2shm_notify in use (SV2SHM_NOTIFY_SOCKET) */
	uint64_t region_id;
	uint64_t capacity;
	uint32_t nslots;
	uint32_t ring_entries;
	uint32_t flags;        /* SV2SHM_SETUP_* */
	uint32_t reserved;     /* 0 */
};

/* OVERFLOW and DESC messages. */
struct sv2shm_msg_desc {
	struct sv2shm_msg_hdr hdr;
	uint8_t desc[SV2SHM_DESC_SIZE]; /* OVERFLOW: kind OVERFLOW, length of the memfd's slice */
};

static_assert(sizeof(struct sv2shm_msg_hdr) == 8, "message header is 8 bytes");
static_assert(sizeof(struct sv2shm_msg_setup) == 48, "setup message is 48 bytes");
static_assert(sizeof(struct sv2shm_msg_desc) == 40, "descriptor message is 40 bytes");

#endif /* SV2SHM_WIRE_H */
