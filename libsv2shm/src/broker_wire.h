/*
 * The broker protocol, whole: what sv2shmd and its clients (libsv2shm's
 * client.c) say to each other on the broker's AF_UNIX SOCK_SEQPACKET socket.
 *
 * One message per datagram, fixed size per opcode, little-endian (host order:
 * the socket is local), every message starts with struct bmsg_hdr. Fds travel
 * with SCM_RIGHTS on the messages that say so, at most one per message.
 *
 * Conversation (C = client library, B = broker, P = producer's client,
 * K = consumer's client):
 *
 *   P -> B  REGISTER {name, geometry, policy, allow lists}   + fd: control memfd
 *   B -> P  RESULT {0 | -errno, text}
 *   K -> B  SUBSCRIBE {name}
 *   B -> P  INTRODUCE {name, token, consumer pid/uid/gid}    + fd: one end of a new socketpair
 *   P       sv2shm_producer_add_consumer(end) sends the library's SETUP on it
 *   P -> B  INTRODUCED {token, id or -errno, holder}          + fd: the consumer's ring memfd
 *   B -> K  SUBSCRIBED {0 | -errno, text, id, holder}         + fd: the other end (on success)
 *   K       sv2shm_consumer_new(end) reads the SETUP
 *   P -> B  CONSUMER_GONE {id, reason, held}                  (a removal the producer saw)
 *   P -> B  UNREGISTER {name}                                 (the producer is destroyed)
 *   B -> K  POOL_GONE {name}                                  (its producer went away)
 *   C -> B  STATUS {}
 *   B -> C  STATUS_POOL {...} per pool, STATUS_CONSUMER {...} per consumer, STATUS_END {...}
 *   P -> B  REATTACH_PRODUCER / K -> B REATTACH_CONSUMER       (after a broker restart)
 *
 * Rules the broker enforces (and clients may rely on):
 *   - unsolicited messages (INTRODUCE, POOL_GONE) carry seq 0;
 *   - any malformed request (SUBSCRIBE and STATUS included) may be answered
 *     with RESULT -errno (-EPROTO, -EINVAL, -EBADMSG) and a text; eight of
 *     them and the client is disconnected;
 *   - CONSUMER_GONE, and INTRODUCED with an unknown token, get no reply;
 *   - unused uids[]/gids[] entries and every `reserved` field must be 0;
 *   - INTRODUCED with result > 0 must have holder == result % 32;
 *   - SUBSCRIBED's result may also be -EAGAIN (too many subscriptions in
 *     flight) or -EPROTO (the producer's answer or ring was malformed);
 *   - REGISTER may fail with -EEXIST (a live producer has the name),
 *     -ENOSPC (256 pools), -EINVAL (the control memfd is not a
 *     write-sealed control block of that geometry);
 *   - REATTACH_CONSUMER from a producer: -ESRCH for a dead pid; from a
 *     consumer: -ENOENT until its producer has re-attached it (retry),
 *     -EPERM when the pid is not its own;
 *   - a client whose socket fills up (it does not read) is disconnected.
 *
 * After SUBSCRIBED the broker is out of the data path: descriptors, releases
 * and wake-ups go between producer and consumer directly. What it keeps: the
 * control memfd (read-only: slot map, counters for STATUS) and each
 * consumer's ring memfd (to record the releases of a consumer that died, so
 * its slots are free at once whatever the producer is doing: see
 * docs/ARCHITECTURE.md, "Broker").
 */
#ifndef SV2SHM_BROKER_WIRE_H
#define SV2SHM_BROKER_WIRE_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define BMSG_MAGIC UINT32_C(0x6b726273) /* "sbrk" */
#define BMSG_VERSION 1u

/* A pool name: 1..63 bytes of [A-Za-z0-9._-], NUL-padded to 64. */
#define BMSG_NAME_MAX 64
#define BMSG_TEXT_MAX 96   /* a human-readable reason, NUL-terminated */
#define BMSG_ALLOW_MAX 8   /* uids and gids a producer may allow besides its own uid */

enum bmsg_opcode {
	/* client -> broker */
	BOP_REGISTER = 1,
	BOP_SUBSCRIBE = 2,
	BOP_STATUS = 3,
	BOP_INTRODUCED = 4,
	BOP_CONSUMER_GONE = 5,
	BOP_REATTACH_PRODUCER = 6,
	BOP_REATTACH_CONSUMER = 7,
	BOP_UNREGISTER = 8,
	/* broker -> client */
	BOP_RESULT = 64,
	BOP_INTRODUCE = 65,
	BOP_SUBSCRIBED = 66,
	BOP_POOL_GONE = 67,
	BOP_STATUS_POOL = 68,
	BOP_STATUS_CONSUMER = 69,
	BOP_STATUS_END = 70,
};

struct bmsg_hdr {
	uint32_t magic;   /* BMSG_MAGIC */
	uint16_t version; /* BMSG_VERSION */
	uint16_t opcode;  /* enum bmsg_opcode */
	uint32_t length;  /* the whole message, header included: sizeof its struct */
	uint32_t seq;     /* a request's number; its reply carries the same */
};

/* REGISTER (fd: the pool's control memfd, sealed write: the broker maps it
 * read-only). Reply: RESULT. A name already registered by a live producer is
 * -EEXIST; one whose producer died is taken over. */
struct bmsg_register {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
	uint64_t capacity;  /* bytes (as the control block says: checked) */
	uint32_t slots;     /* 1..64 (checked likewise) */
	uint32_t policy;    /* SV2SHM_POOL_*, for STATUS */
	uint32_t n_uids;    /* 0..BMSG_ALLOW_MAX */
	uint32_t n_gids;    /* 0..BMSG_ALLOW_MAX */
	uint32_t uids[BMSG_ALLOW_MAX]; /* may subscribe besides the owner's uid */
	uint32_t gids[BMSG_ALLOW_MAX]; /* may subscribe when it is the consumer's primary gid */
};

/* UNREGISTER (the producer is destroyed; its pool goes, consumers are told
 * POOL_GONE). Reply: RESULT. A producer's pool also goes when its process
 * dies or its broker connection closes. */
struct bmsg_unregister {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
};

/* SUBSCRIBE. Reply: SUBSCRIBED (after the producer answered, or a timeout). */
struct bmsg_subscribe {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
};

/* STATUS. Reply: STATUS_POOL x n, STATUS_CONSUMER x m, STATUS_END. */
struct bmsg_status {
	struct bmsg_hdr hdr;
};

/* INTRODUCE (broker -> producer; fd: the producer's end of the consumer's
 * channel). The producer answers INTRODUCED with the same token. */
struct bmsg_introduce {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX]; /* the pool (a client may have registered several) */
	uint64_t token;
	int32_t pid; /* the consumer, from SO_PEERCRED */
	uint32_t uid;
	uint32_t gid;
	uint32_t reserved;
};

/* INTRODUCED (producer -> broker; fd: the consumer's ring memfd on success). */
struct bmsg_introduced {
	struct bmsg_hdr hdr;
	uint64_t token;
	int32_t result; /* the consumer's id (> 0), or -errno (-EMFILE: 31 consumers) */
	uint32_t holder; /* its holder bit, 1..31 */
};

/* CONSUMER_GONE (producer -> broker): the producer removed a consumer.
 * No reply. */
struct bmsg_consumer_gone {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX]; /* its pool (ids are per pool) */
	int32_t id;
	int32_t reason; /* enum sv2shm_event_reason */
	uint32_t held;  /* slots it held (reclaimed) */
	uint32_t reserved;
};

/* REATTACH_PRODUCER (after the broker restarted; fd: control memfd): the
 * same as REGISTER, and the consumers it already has follow as
 * REATTACH_CONSUMER messages from the producer (fd: ring memfd) — the broker
 * learns their pids from them. Reply: RESULT. */
struct bmsg_reattach_consumer {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
	int32_t id;
	uint32_t holder;
	int32_t pid; /* sent by the producer: the pid INTRODUCE gave it; by a consumer: ignored (SO_PEERCRED) */
	uint32_t reserved;
};

/* RESULT: the answer to REGISTER, REATTACH_*, a bad message. */
struct bmsg_result {
	struct bmsg_hdr hdr;
	int32_t result; /* 0 or -errno */
	uint32_t reserved;
	char text[BMSG_TEXT_MAX];
};

/* SUBSCRIBED (fd on success: the consumer's end of its channel). */
struct bmsg_subscribed {
	struct bmsg_hdr hdr;
	int32_t result; /* 0 or -errno: -ENOENT no such pool, -EACCES not allowed,
	                   -EMFILE the pool has 31 consumers, -ETIMEDOUT the producer did not answer */
	int32_t id;      /* the producer's id for us */
	uint32_t holder; /* our holder bit */
	uint32_t reserved;
	char text[BMSG_TEXT_MAX];
};

/* POOL_GONE (broker -> consumer): the producer of `name` is gone. */
struct bmsg_pool_gone {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
};

/* Counters the broker reads from a pool's control block (layout.h). */
struct bmsg_counters {
	uint64_t published, bytes, releases, reclaimed, fallbacks, waits, wait_ns, mode_switches;
	uint64_t hw_slots, hw_bytes, live, bytes_in_use;
};

/* STATUS_POOL: one pool. */
struct bmsg_status_pool {
	struct bmsg_hdr hdr;
	char name[BMSG_NAME_MAX];
	int32_t pid; /* the producer */
	uint32_t uid;
	uint64_t capacity;
	uint32_t slots;
	uint32_t policy;
	uint32_t mode;     /* SV2SHM_MODE_* */
	uint32_t consumers;
	char slot_map[72]; /* as sv2shm_pool_slot_map() draws it, NUL-terminated */
	struct bmsg_counters counters;
};

/* STATUS_CONSUMER: one consumer of the pool named. */
struct bmsg_status_consumer {
	struct bmsg_hdr hdr;
	char pool[BMSG_NAME_MAX];
	int32_t id;
	uint32_t holder;
	int32_t pid;
	uint32_t uid;
	uint32_t held; /* slots it holds, as the producer last published them */
	uint32_t reserved;
};

/* STATUS_END: the broker itself. */
struct bmsg_status_end {
	struct bmsg_hdr hdr;
	uint32_t pools;
	uint32_t clients;
	char version[16];
	char event_loop[64]; /* "io_uring" or "epoll (io_uring: <why not>)" */
	uint64_t uptime_ms;
	uint64_t refused;    /* connections or requests refused (credentials, bad messages) */
};

static_assert(sizeof(struct bmsg_hdr) == 16, "broker header");
static_assert(sizeof(struct bmsg_register) == 16 + 64 + 8 + 16 + 64, "register");
static_assert(sizeof(struct bmsg_subscribed) == 16 + 16 + BMSG_TEXT_MAX, "subscribed");
static_assert(sizeof(struct bmsg_status_pool) % 8 == 0, "status pool");

/* Largest message: receive buffers are this big. */
#define BMSG_MAX 512
static_assert(sizeof(struct bmsg_status_pool) <= BMSG_MAX, "status pool fits");
static_assert(sizeof(struct bmsg_status_end) <= BMSG_MAX, "status end fits");

/* The size each opcode's message must have (0: unknown opcode). */
static inline size_t bmsg_size(unsigned opcode)
{
	switch (opcode) {
	case BOP_REGISTER:
	case BOP_REATTACH_PRODUCER:
		return sizeof(struct bmsg_register);
	case BOP_SUBSCRIBE:
		return sizeof(struct bmsg_subscribe);
	case BOP_UNREGISTER:
		return sizeof(struct bmsg_unregister);
	case BOP_STATUS:
		return sizeof(struct bmsg_status);
	case BOP_INTRODUCED:
		return sizeof(struct bmsg_introduced);
	case BOP_CONSUMER_GONE:
		return sizeof(struct bmsg_consumer_gone);
	case BOP_REATTACH_CONSUMER:
		return sizeof(struct bmsg_reattach_consumer);
	case BOP_RESULT:
		return sizeof(struct bmsg_result);
	case BOP_INTRODUCE:
		return sizeof(struct bmsg_introduce);
	case BOP_SUBSCRIBED:
		return sizeof(struct bmsg_subscribed);
	case BOP_POOL_GONE:
		return sizeof(struct bmsg_pool_gone);
	case BOP_STATUS_POOL:
		return sizeof(struct bmsg_status_pool);
	case BOP_STATUS_CONSUMER:
		return sizeof(struct bmsg_status_consumer);
	case BOP_STATUS_END:
		return sizeof(struct bmsg_status_end);
	default:
		return 0;
	}
}

/* Fill a header for `opcode` (its length from bmsg_size). */
static inline void bmsg_init(struct bmsg_hdr *h, unsigned opcode, uint32_t seq)
{
	h->magic = BMSG_MAGIC;
	h->version = BMSG_VERSION;
	h->opcode = (uint16_t)opcode;
	h->length = (uint32_t)bmsg_size(opcode);
	h->seq = seq;
}

/* Is `name` (NUL-padded, BMSG_NAME_MAX bytes) a valid pool name? */
static inline int bmsg_name_ok(const char name[BMSG_NAME_MAX])
{
	size_t n = 0;
	while (n < BMSG_NAME_MAX && name[n])
		n++;
	if (n == 0 || n >= BMSG_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	for (size_t i = n; i < BMSG_NAME_MAX; i++)
		if (name[i])
			return 0;
	return 1;
}

#endif /* SV2SHM_BROKER_WIRE_H */
