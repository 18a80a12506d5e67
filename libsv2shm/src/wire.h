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
#define SV2SHM_RING_VERSION 2u
#define SV2SHM_RING_MAX_ENTRIES 65536u

struct sv2shm_ring {
	/* line 0: identity, written by the producer before the consumer sees it */
	uint32_t magic;     /* SV2SHM_RING_MAGIC */
	uint32_t version;   /* SV2SHM_RING_VERSION */
	uint32_t nentries;  /* power of two, <= SV2SHM_RING_MAX_ENTRIES */
	uint32_t entry_size;/* SV2SHM_DESC_SIZE */
	uint64_t region_id; /* the region its descriptors name */
	uint8_t reserved0[SV2SHM_CACHE_LINE - 24];

	/* line 1: written by the producer only (absolute values) */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t head; /* next entry the producer fills */
	_Atomic uint32_t waiting; /* the producer's wait epoch; odd: it waits for a free slot */
	_Atomic uint32_t missed;  /* slices this consumer missed at its limit (SV2SHM_LIMIT_SKIP) */
	_Atomic uint32_t wake_seq; /* futex word: bumped, then FUTEX_WAKE, for a consumer sleeping on it */
	uint8_t reserved1[SV2SHM_CACHE_LINE - 16];

	/* line 2: written by the consumer only */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t tail; /* next entry the consumer reads */
	_Atomic uint32_t consumer_sleeping; /* SLEEP_FUTEX: wake me with FUTEX_WAKE on wake_seq;
	                                       SLEEP_SOCKET: with a datagram on the wake socket */
	uint8_t reserved2[SV2SHM_CACHE_LINE - 8];

	/* lines 3..6: written by the consumer only. released[s] is the last
	 * generation of slot s this consumer let go of: the consumer's whole
	 * side of the release protocol (slots.c). Only this consumer and the
	 * producer map this memfd, so no other consumer can forge it. */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t released[64];

	/* lines 7..: slots[nentries][SV2SHM_DESC_SIZE] */
	alignas(SV2SHM_CACHE_LINE) uint8_t slots[];
};

/* consumer_sleeping values */
enum { SLEEP_NO = 0, SLEEP_FUTEX = 1, SLEEP_SOCKET = 2 };

static_assert(offsetof(struct sv2shm_ring, head) == 64, "ring head on its own line");
static_assert(offsetof(struct sv2shm_ring, tail) == 128, "ring tail on its own line");
static_assert(offsetof(struct sv2shm_ring, released) == 192, "release records after the tail line");
static_assert(offsetof(struct sv2shm_ring, slots) == 448, "ring entries after seven lines");

static inline size_t ring_bytes(uint32_t entries)
{
	return offsetof(struct sv2shm_ring, slots) + (size_t)entries * SV2SHM_DESC_SIZE;
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
