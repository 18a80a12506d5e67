/*
 * sv2shm broker client: connect to sv2shmd, register a producer pool by
 * name, subscribe to one by name, read the broker's status.
 *
 *   producer process                        consumer process
 *   ----------------                        ----------------
 *   sv2shm_client_connect(&o, &c)           sv2shm_client_connect(&o, &c)
 *   sv2shm_client_register(c, "shares",     sv2shm_client_subscribe(c, "shares",
 *                          &ro, &prod)                              NULL, 5000, &cons)
 *   loop:                                   loop:
 *     write a slice, publish it:              sv2shm_consumer_recv(cons, &s, ms)
 *     sv2shm_producer_publish_all(prod, &s)   ... sv2shm_slice_release(&s)
 *     sv2shm_producer_process(prod) when
 *     sv2shm_producer_fd(prod) is readable
 *
 * The broker introduces a consumer to a producer (a socketpair whose ends go
 * to each) and then stays out of the data path. A producer made by
 * sv2shm_client_register() handles the broker's introductions in
 * sv2shm_producer_process() (its fd, sv2shm_producer_fd(), becomes readable
 * when one arrives) and while it waits for room (SV2SHM_POOL_WAIT): a
 * producer must call one of them regularly, or a subscription times out.
 *
 * If the broker goes away, producers and consumers already introduced go on
 * exchanging slices; the client reconnects by itself (with backoff, from
 * sv2shm_client_process() and sv2shm_producer_process()) and registers again
 * what it had, so the broker's status shows it again.
 *
 * Errors are negative errno values, as everywhere in sv2shm.
 */
#ifndef SV2SHM_CLIENT_H
#define SV2SHM_CLIENT_H

#include <sys/types.h>

#include "ipc.h"
#include "sv2shm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest pool name (bytes, without the NUL); names are [A-Za-z0-9._-]. */
#define SV2SHM_NAME_MAX 63
/** Most uids / gids a producer may allow besides its own uid. */
#define SV2SHM_ALLOW_MAX 8

/**
 * The broker's default socket: $XDG_RUNTIME_DIR/sv2shm/sv2shmd.sock when
 * XDG_RUNTIME_DIR is set (and absolute), else /run/sv2shm/sv2shmd.sock.
 * Writes it into buf (NUL-terminated). Returns 0, -EINVAL (NULL buf) or
 * -ENAMETOOLONG (does not fit, or longer than a socket address holds).
 */
SV2SHM_EXPORT int sv2shm_default_socket(char *buf, size_t size);

/** Client options; zero-initialise, then set what you need. */
struct sv2shm_client_options {
	const char *socket_path; /**< NULL: sv2shm_default_socket() */
	int timeout_ms;          /**< each request's answer, ms; 0 = 5000 */
};

struct sv2shm_client;

/**
 * Connect to the broker. Returns 0 and sets *out, or -EINVAL (NULL out,
 * bad path), -ENAMETOOLONG, -ENOENT (no socket there: is sv2shmd running?),
 * -ECONNREFUSED (a stale socket, nobody listening), -EACCES (not allowed to
 * connect), -ENOMEM.
 */
SV2SHM_EXPORT int sv2shm_client_connect(const struct sv2shm_client_options *o, struct sv2shm_client **out);

/**
 * Close the broker connection and free the client. Producers and consumers
 * made through it must be destroyed / freed first (-EBUSY otherwise).
 * Returns 0 (NULL is a no-op) or -EBUSY.
 */
SV2SHM_EXPORT int sv2shm_client_close(struct sv2shm_client *c);

/** True while connected to the broker (it reconnects by itself after a broker restart). */
SV2SHM_EXPORT bool sv2shm_client_connected(const struct sv2shm_client *c);

/**
 * The broker connection's fd, to poll for POLLIN (then call
 * sv2shm_client_process()), or -ENOTCONN while disconnected (call
 * sv2shm_client_process() from time to time: it reconnects). -EINVAL for NULL.
 */
SV2SHM_EXPORT int sv2shm_client_fd(const struct sv2shm_client *c);

/**
 * Handle what the broker sent (introductions for this client's producers,
 * "pool gone" for its consumers) without blocking, and reconnect and
 * register again when the broker went away (at most once per backoff
 * interval: 100 ms doubling to 5 s). Returns the number of messages
 * handled, or -EINVAL. Never blocks past a few ms.
 */
SV2SHM_EXPORT int sv2shm_client_process(struct sv2shm_client *c);

/** How a producer registers a pool. Zero-initialise, then set what you need. */
struct sv2shm_register_options {
	struct sv2shm_producer_options producer; /**< the pool and its limits (see ipc.h) */
	unsigned n_uids;                         /**< 0..SV2SHM_ALLOW_MAX */
	uid_t uids[SV2SHM_ALLOW_MAX];            /**< may subscribe besides our own uid */
	unsigned n_gids;                         /**< 0..SV2SHM_ALLOW_MAX */
	gid_t gids[SV2SHM_ALLOW_MAX];            /**< may subscribe when it is the consumer's primary gid */
};

/**
 * Create a producer (as sv2shm_producer_new()) and register its pool under
 * `name`. Consumers that subscribe to `name` are added to it as they come
 * (their ids: sv2shm_producer_consumers()); by default only processes of
 * our uid may subscribe.
 * Returns 0 and sets *out, or -EINVAL (bad name or options), -EEXIST (a
 * live producer has that name), -ENOTCONN (no broker), -ETIMEDOUT (no
 * answer), an error of sv2shm_producer_new().
 * Destroy the producer with sv2shm_producer_destroy() (the broker learns it
 * is gone and tells the consumers).
 */
SV2SHM_EXPORT int sv2shm_client_register(struct sv2shm_client *c, const char *name,
					 const struct sv2shm_register_options *o, struct sv2shm_producer **out);

/**
 * Subscribe to the pool `name`: wait up to timeout_ms (< 0: the client's
 * timeout) for the broker to introduce us to its producer, then attach (as
 * sv2shm_consumer_new()). Returns 0 and sets *out, or
 *   -EINVAL     bad name or arguments;
 *   -ENOENT     no pool of that name;
 *   -EACCES     our uid/gid is not allowed by its producer;
 *   -EMFILE     the pool has its 31 consumers already;
 *   -ETIMEDOUT  no answer in time (the producer does not call
 *               sv2shm_producer_process(), or the broker is slow);
 *   -ENOTCONN   no broker; or an error of sv2shm_consumer_new().
 * Free it with sv2shm_consumer_free(). When its producer goes away, recv
 * returns -EPIPE once the ring is drained; subscribe again to the same name
 * when a producer registers it again.
 */
SV2SHM_EXPORT int sv2shm_client_subscribe(struct sv2shm_client *c, const char *name,
					  const struct sv2shm_consumer_options *o, int timeout_ms,
					  struct sv2shm_consumer **out);

/** A pool's counters, as its producer keeps them in the control block. */
struct sv2shm_pool_counters {
	uint64_t published;     /**< slices published (pool and alloc-mode) */
	uint64_t bytes;         /**< bytes published */
	uint64_t releases;      /**< slots freed (the last holder let go) */
	uint64_t reclaimed;     /**< holds reclaimed from consumers that were removed or died */
	uint64_t fallbacks;     /**< slices served from system memory (alloc mode) */
	uint64_t waits;         /**< sleeps for a free slot (SV2SHM_POOL_WAIT) */
	uint64_t wait_ns;       /**< time spent in them */
	uint64_t mode_switches; /**< changes of mode */
	uint64_t hw_slots;      /**< high-water mark: most slots in use at once */
	uint64_t hw_bytes;      /**< high-water mark: most bytes of the region in use at once */
	uint64_t live;          /**< slots in use now */
	uint64_t bytes_in_use;  /**< bytes of the region in use now */
};

/** A consumer, as the broker knows it. */
struct sv2shm_status_consumer {
	int id;          /**< the producer's id for it */
	unsigned holder; /**< its holder bit */
	pid_t pid;
	uid_t uid;
	unsigned held;   /**< slots it holds, as its producer last published them */
};

/** A pool, as the broker knows it. */
struct sv2shm_status_pool {
	char name[SV2SHM_NAME_MAX + 1];
	pid_t pid;         /**< its producer */
	uid_t uid;
	uint64_t capacity;
	unsigned slots;
	int policy;        /**< SV2SHM_POOL_* */
	int mode;          /**< SV2SHM_MODE_* */
	char slot_map[SV2SHM_MAX_SLOTS + 1]; /**< as sv2shm_pool_slot_map() */
	struct sv2shm_pool_counters counters;
	unsigned nconsumers;
	struct sv2shm_status_consumer consumers[31];
};

/** The broker's status. */
struct sv2shm_status {
	char version[16];
	char event_loop[64]; /**< "io_uring", or "epoll (...)" with the reason */
	uint64_t uptime_ms;
	uint64_t refused;    /**< connections or requests refused */
	unsigned clients;
	unsigned npools;
	struct sv2shm_status_pool *pools; /**< npools entries */
};

/**
 * Ask the broker for its status (every pool this client may see: its uid's
 * and those that allow it). Returns 0 and sets *out (free it with
 * sv2shm_status_free()), or -ENOTCONN, -ETIMEDOUT, -EPROTO, -ENOMEM.
 */
SV2SHM_EXPORT int sv2shm_client_status(struct sv2shm_client *c, struct sv2shm_status **out);

/** Free a status. NULL is a no-op. */
SV2SHM_EXPORT void sv2shm_status_free(struct sv2shm_status *s);

/* --- publishing to the consumers a broker brought ----------------------------- */

/**
 * The ids of the producer's consumers now, in the order they came, into
 * ids[0..cap). Returns how many there are (may be more than cap), or -EINVAL.
 */
SV2SHM_EXPORT int sv2shm_producer_consumers(const struct sv2shm_producer *p, int *ids, unsigned cap);

/**
 * Publish to every consumer (fan-out). Returns as sv2shm_producer_publish(),
 * or -ENOENT when there is no consumer (the slice is still the caller's).
 */
SV2SHM_EXPORT int sv2shm_producer_publish_all(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned flags);

/**
 * Publish to one consumer, the next in turn (round-robin, for work sharing);
 * a consumer at its limit is passed over for the next. Returns the id it went
 * to (> 0), -ENOENT (no consumer), -EAGAIN (every consumer at its limit: the
 * slice is still the caller's), -ECONNRESET (the chosen consumer's socket
 * filled between the check and the send: the slice is consumed, counted in
 * its missed count), or an error of sv2shm_producer_publish().
 */
SV2SHM_EXPORT int sv2shm_producer_publish_next(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* SV2SHM_CLIENT_H */
