/*
 * sv2shm multi-process API: a pool whose region lives in memfds shared
 * between processes, slices handed to consumer processes as 32-byte
 * descriptors, and releases that travel back through io_uring.
 *
 *   producer process                           consumer process
 *   ----------------                           ----------------
 *   sv2shm_producer_new()                      sv2shm_consumer_new(sock)
 *   sv2shm_producer_add_consumer(sock)  --->   (setup: memfds, ring, wake socket
 *                                               over SCM_RIGHTS, once)
 *   write with sv2shm_producer_buffer()
 *   sv2shm_buffer_get_data_owned()
 *   sv2shm_producer_publish(slice, ids) --->   sv2shm_consumer_recv() -> slice
 *        (descriptor ring in shared memory)    read slice.data in place
 *   slot frees when the last holder     <---   sv2shm_slice_release()
 *   lets go; a waiting producer is woken        (records the release in its
 *                                                own ring; wakes the producer
 *                                                through io_uring only when it
 *                                                waits)
 *
 * The `sock` is a connected AF_UNIX SOCK_SEQPACKET socket (socketpair(), or a
 * connection the broker made). The producer's private records plus each
 * consumer's release records (in memory only that consumer and the producer
 * map) are the truth; notifications are only wake-ups.
 *
 * What a hostile peer can and cannot do is in docs/ARCHITECTURE.md ("Trust").
 * In short: a consumer can only hurt itself (and, while it lives, pin up to
 * its limit of slots); no call of either side blocks past its timeout
 * because of anything the other side does.
 *
 * Errors are negative errno values, as in sv2shm.h.
 */
#ifndef SV2SHM_IPC_H
#define SV2SHM_IPC_H

#include "sv2shm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/* Descriptors                                                                */
/* ------------------------------------------------------------------------- */

/** Encoded size of a descriptor (little-endian, fixed). */
#define SV2SHM_DESC_SIZE 32
/** Descriptor format version. */
#define SV2SHM_DESC_VERSION 1

/** What a descriptor names. */
enum sv2shm_desc_kind {
	SV2SHM_DESC_POOL = 0,     /**< a slot of the shared region */
	SV2SHM_DESC_OVERFLOW = 1, /**< an alloc-mode slice in its own memfd, sent over the socket */
};

/**
 * A descriptor, decoded. Wire form (32 bytes, little-endian):
 *   0 u8 version | 1 u8 kind | 2 u16 slot | 4 u32 generation |
 *   8 u64 region_id | 16 u64 offset | 24 u64 length
 */
struct sv2shm_desc {
	uint8_t version;
	uint8_t kind;
	uint16_t slot;
	uint32_t generation;
	uint64_t region_id;
	uint64_t offset;
	uint64_t length;
};

/** Encode d into out. Returns 0, or -EINVAL (NULL argument). */
SV2SHM_EXPORT int sv2shm_desc_encode(const struct sv2shm_desc *d, uint8_t out[SV2SHM_DESC_SIZE]);

/**
 * Decode in into *d. Only the format is checked here (not the region).
 * Returns 0, or -EINVAL (NULL argument), -EPROTO (unknown version or kind).
 */
SV2SHM_EXPORT int sv2shm_desc_decode(const uint8_t in[SV2SHM_DESC_SIZE], struct sv2shm_desc *d);

/* ------------------------------------------------------------------------- */
/* Shared regions (the consumer's view)                                       */
/* ------------------------------------------------------------------------- */

struct sv2shm_region;

/** sv2shm_region_attach() flag: map the data read-write (refused once the
 * producer has sealed it with F_SEAL_FUTURE_WRITE, i.e. always for consumers). */
#define SV2SHM_ATTACH_WRITABLE 1u

/**
 * Attach to a region from its control and data memfds (the fds are dup'ed;
 * the caller keeps its own). Checks the control block's magic, version, sizes
 * and slot count, the memfds' sizes, and that both are sealed against shrink,
 * grow, writes and further sealing (the data only against writes unless
 * SV2SHM_ATTACH_WRITABLE). Maps both read-only (the data read-write with
 * SV2SHM_ATTACH_WRITABLE). Slices opened from a region attached by hand are
 * released locally only: the producer learns of releases through a
 * consumer's ring (sv2shm_consumer_new() attaches that way).
 *
 * Returns 0 and sets *out, or
 *   -EINVAL   NULL out, negative fd, unknown flags;
 *   -EBADF    an fd is not open;
 *   -EPROTO   bad magic or version in the control block;
 *   -EMSGSIZE sizes disagree (control block, capacity, slot count, fd sizes);
 *   -EPERM    a required seal is missing;
 *   -EACCES   SV2SHM_ATTACH_WRITABLE on a write-sealed data memfd;
 *   -ENOMEM   mapping failed.
 */
SV2SHM_EXPORT int sv2shm_region_attach(int ctl_fd, int data_fd, unsigned flags, struct sv2shm_region **out);

/**
 * Turn a descriptor into a readable slice (kind SV2SHM_SLICE_SHARED) held by
 * holder bit `holder` (1..31). Every field is validated before any byte of
 * the data is touched, in this order:
 *   -EINVAL   NULL argument, holder out of range;
 *   -EPROTO   unknown version or kind (or an OVERFLOW descriptor here);
 *   -ENXIO    region_id is not this region;
 *   -ERANGE   slot >= slot count;
 *   -ESTALE   generation is not the slot's current one;
 *   -EACCES   the slot is not held by `holder`;
 *   -EFAULT   offset/length outside the data area, or not the slot's range;
 *   -ENOENT   this consumer already let go of that slot generation (a
 *             descriptor seen again after its release);
 *   -EEXIST   this process already holds an open slice of that slot and
 *             generation (the same descriptor twice).
 * A refused descriptor changes nothing here. (sv2shm_consumer_recv(), for
 * which each ring entry stands for one hold, gives a refused entry's hold
 * back, so a bad descriptor leaks no slot.)
 * Release the slice with sv2shm_slice_release().
 */
SV2SHM_EXPORT int sv2shm_region_open(struct sv2shm_region *r, const uint8_t desc[SV2SHM_DESC_SIZE], unsigned holder,
				     struct sv2shm_slice *out);

/** Detach (unmap, close). Refused with -EBUSY while slices opened from it are live. */
SV2SHM_EXPORT int sv2shm_region_detach(struct sv2shm_region *r);

/** The region's control (which == 0) or data (which == 1) memfd, or -EINVAL. */
SV2SHM_EXPORT int sv2shm_region_fd(const struct sv2shm_region *r, int which);

/* ------------------------------------------------------------------------- */
/* Producer                                                                    */
/* ------------------------------------------------------------------------- */

/**
 * How a releasing consumer wakes a waiting producer: a FUTEX_WAKE on a word
 * of the control block (IORING_OP_FUTEX_WAKE through the consumer's io_uring,
 * or futex(2)), or a 1-byte datagram on the consumer's own end of a
 * socketpair, sent with MSG_DONTWAIT (IORING_OP_SEND, or send(2)). Neither
 * can block the waker, and neither needs memory a consumer can write. The
 * eventfd of earlier versions is gone: a peer could make it block
 * (O_NONBLOCK lives on the shared file description); see
 * docs/ARCHITECTURE.md, "Release notifications".
 */
enum sv2shm_notify {
	SV2SHM_NOTIFY_DEFAULT = 0, /**< FUTEX where the producer's io_uring has futex ops, else SOCKET */
	SV2SHM_NOTIFY_SOCKET = 1,  /**< a datagram on the consumer's wake socket */
	SV2SHM_NOTIFY_FUTEX = 2,   /**< a FUTEX_WAKE on a word of the write-sealed control block: the
	                                producer queues an io_uring FUTEX_WAIT on it before its last look
	                                for a free slot, so the waker needs no write access (kernel 6.7+;
	                                falls back to SOCKET where the producer's io_uring lacks it) */
};

/** What publish does with a consumer at its limit (slots held, or ring full). */
enum sv2shm_limit_policy {
	SV2SHM_LIMIT_SKIP = 0,       /**< that consumer misses the slice; its missed count grows
	                                  (sv2shm_consumer_missed()); the others get it */
	SV2SHM_LIMIT_DISCONNECT = 1, /**< that consumer is removed (event SV2SHM_EVENT_LIMIT); the
	                                  others get the slice */
	SV2SHM_LIMIT_REFUSE = 2,     /**< publish returns -EAGAIN and delivers to nobody (back-pressure
	                                  for a producer that retries; one stuck consumer then stops
	                                  everyone: opt-in only) */
};

/*
 * Threads: a producer, and sv2shm_pool_* on its pool (stats, slot map), belong
 * to one thread, the one that writes and publishes (they read and update its
 * private records); only sv2shm_slice_release() of its slices may come from
 * any thread.
 */

/** Producer options; zero-initialise, then set what you need. */
struct sv2shm_producer_options {
	struct sv2shm_pool_options pool; /**< capacity, slots, policy (FALLBACK, FAIL or WAIT) */
	unsigned ring_entries;           /**< descriptors per consumer ring, power of 2; 0 = 256 */
	int notify;                      /**< enum sv2shm_notify */
	bool no_io_uring;                /**< use plain syscalls even where io_uring works */
	bool socket_transport;           /**< the plain fallback: descriptors travel over the socket
	                                      (a syscall per slice and consumer), not the shared ring */
	unsigned max_held;               /**< most slots one consumer may hold when a slice is published
	                                      to it (1..slots); 0 = slots - 1 (at least 1), so a
	                                      consumer that stops reading leaves a slot to the others
	                                      (bytes are another matter: docs/ARCHITECTURE.md);
	                                      slots = no limit */
	int on_limit;                    /**< enum sv2shm_limit_policy, for a consumer at max_held or
	                                      with a full ring */
};

struct sv2shm_producer;

/**
 * Create a producer: the shared pool (control and data memfds, sealed, data
 * pre-faulted so a memory limit shows here and not as SIGBUS later).
 * Returns 0 and sets *out, or -EINVAL (bad options), -ENOMEM (region could
 * not be allocated), or the failing syscall's -errno.
 */
SV2SHM_EXPORT int sv2shm_producer_new(const struct sv2shm_producer_options *o, struct sv2shm_producer **out);

/**
 * Destroy the producer. Slices consumers still hold stay readable in their
 * mappings (the region outlives its producer). Slices the producer itself
 * still holds (taken, not published or released) make this fail with -EBUSY.
 * Returns 0 (NULL is a no-op) or -EBUSY.
 */
SV2SHM_EXPORT int sv2shm_producer_destroy(struct sv2shm_producer *p);

/** The producer's pool: the same API as an in-process pool (mode, slot map, stats). */
SV2SHM_EXPORT struct sv2shm_pool *sv2shm_producer_pool(struct sv2shm_producer *p);

/** Shortcut for sv2shm_pool_buffer(sv2shm_producer_pool(p)). */
SV2SHM_EXPORT struct sv2shm_buffer *sv2shm_producer_buffer(struct sv2shm_producer *p);

/**
 * Hand the region to a consumer over the connected SOCK_SEQPACKET socket
 * `sock` (the producer owns it from now on, even on failure).
 * Returns the consumer's id (> 0), or -EINVAL (bad fd or not SOCK_SEQPACKET),
 * -EMFILE (31 consumers already), or -errno. The id names this connection
 * only: the holder bit (1..31, what sv2shm_consumer_id() returns on the
 * other side) is id % 32, and a later consumer that gets the same bit gets
 * a different id, so a stale id is refused with -ESRCH and never reaches it.
 * The first consumer on each bit gets id == bit.
 */
SV2SHM_EXPORT int sv2shm_producer_add_consumer(struct sv2shm_producer *p, int sock);

/** Publish flag: more descriptors follow; do not wake sleeping consumers yet.
 * The next publish without it wakes every consumer with entries pending (not
 * only those it delivers to, even when it delivers to none), as do
 * sv2shm_producer_flush(), a publish refused with -EAGAIN, a
 * sv2shm_producer_publish_next() that finds every consumer at its limit,
 * and a get_writable that waits for room or fails for want of it. A stream of
 * slices published with it skips the wake-up check's full fence for all but
 * the last. */
#define SV2SHM_PUBLISH_MORE 1u

/**
 * Publish slice *s (taken from this producer's buffer) to consumers ids[0..n)
 * and give up the producer's own hold: the slot frees when the last of them
 * releases it. A SYSTEM slice (alloc mode) is copied once into its own sealed
 * memfd and sent over the socket. Never blocks.
 *
 * A consumer at its limit (max_held slots held, its ring full, or its socket
 * full) is handled by the on_limit policy: SKIP leaves it out (its missed
 * count grows), DISCONNECT removes it (an event says so), REFUSE fails the
 * whole call with -EAGAIN before anything is published. A consumer found
 * broken (ring indices that make no sense), or whose socket is closed when a
 * message is sent to it, is removed (event). (A hang-up is otherwise noticed
 * by sv2shm_producer_process() and by a WAIT for room, not by publish.)
 * Whatever the outcome, *s is consumed (cleared) unless an error is returned
 * before anything was published (-EINVAL, -ESRCH, -EAGAIN under REFUSE), so
 * that a retry can never deliver a slice twice.
 *
 * Returns 0 (every consumer got it), a positive count of consumers that did
 * not get it (skipped or removed; the rest did), or
 *   -EINVAL   NULL argument, n == 0, a slice not from this producer, an id
 *             that was never handed out, or a duplicate id;
 *   -ESRCH    an id whose consumer was removed (see sv2shm_producer_next_event());
 *   -EAGAIN   SV2SHM_LIMIT_REFUSE and a consumer at its limit: nothing published;
 *   -ENOMEM   (overflow memfd) or another -errno.
 */
SV2SHM_EXPORT int sv2shm_producer_publish(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids,
					  unsigned n, unsigned flags);

/** Wake consumers that sleep with descriptors pending (published with
 * SV2SHM_PUBLISH_MORE since). Never blocks. Returns 0 or -EINVAL. */
SV2SHM_EXPORT int sv2shm_producer_flush(struct sv2shm_producer *p);

/**
 * An fd that becomes readable when a consumer hangs up (or sends a wake-up):
 * call sv2shm_producer_process() then. (An epoll fd over the consumer sockets.)
 */
SV2SHM_EXPORT int sv2shm_producer_fd(const struct sv2shm_producer *p);

/**
 * Handle consumer hang-ups without blocking: every consumer whose socket
 * closed is removed and every hold it had is gone at once (the slots come
 * back as soon as no one else holds them), and an event is queued for it.
 * Stray wake-ups are drained. A producer blocked in get_writable (WAIT)
 * does this by itself: its sleep ends on a hang-up too.
 * Returns the number of consumers removed, or -EINVAL.
 */
SV2SHM_EXPORT int sv2shm_producer_process(struct sv2shm_producer *p);

/**
 * Remove consumer `id` now and reclaim what it held (its socket is closed;
 * an event with reason SV2SHM_EVENT_REMOVED is queued). Returns the number
 * of slots it held, or -EINVAL (never handed out), -ESRCH (already removed).
 */
SV2SHM_EXPORT int sv2shm_producer_remove_consumer(struct sv2shm_producer *p, int id);

/** Why a consumer was removed. */
enum sv2shm_event_reason {
	SV2SHM_EVENT_HANGUP = 1,   /**< its socket closed (it exited or was killed) */
	SV2SHM_EVENT_PROTOCOL = 2, /**< it broke the protocol (ring indices out of range) */
	SV2SHM_EVENT_LIMIT = 3,    /**< at its limit under SV2SHM_LIMIT_DISCONNECT */
	SV2SHM_EVENT_REMOVED = 4,  /**< sv2shm_producer_remove_consumer() */
};

/** A consumer removal, as sv2shm_producer_next_event() reports it. */
struct sv2shm_producer_event {
	int id;        /**< the id add_consumer returned (never reused) */
	int reason;    /**< enum sv2shm_event_reason */
	uint32_t held; /**< slots it held when removed (reclaimed) */
	uint32_t reserved;
};

/**
 * Take the oldest pending event. Every removal queues one, whoever caused it
 * (up to 64 are kept; beyond that the oldest are dropped and counted in
 * sv2shm_producer_events_dropped()). Returns 1 (event in *ev), 0 (none), or
 * -EINVAL.
 */
SV2SHM_EXPORT int sv2shm_producer_next_event(struct sv2shm_producer *p, struct sv2shm_producer_event *ev);

/** Events dropped because nobody took them (see sv2shm_producer_next_event()). */
SV2SHM_EXPORT uint64_t sv2shm_producer_events_dropped(const struct sv2shm_producer *p);

/**
 * Slots consumer `id` holds right now (received or queued, not yet
 * released), counted from the producer's records and the consumer's own.
 * Returns the count, or -EINVAL / -ESRCH as sv2shm_producer_remove_consumer().
 */
SV2SHM_EXPORT int sv2shm_producer_held(struct sv2shm_producer *p, int id);

/** How the producer waits for release notifications: "io_uring futex-wait" (SV2SHM_NOTIFY_FUTEX)
 * or "socket-recv epoll" (wake-up datagrams and hang-ups on one epoll fd). */
SV2SHM_EXPORT const char *sv2shm_producer_notify_name(const struct sv2shm_producer *p);

/* ------------------------------------------------------------------------- */
/* Consumer                                                                    */
/* ------------------------------------------------------------------------- */

/** Default largest alloc-mode slice a consumer maps (64 MiB). */
#define SV2SHM_DEFAULT_MAX_OVERFLOW (UINT64_C(64) << 20)

/** Consumer options; zero-initialise, then set what you need. */
struct sv2shm_consumer_options {
	unsigned spin_us;      /**< wait this long before sleeping in recv: 2 us busy, then
	                            yielding the CPU between looks; halved after each idle gap
	                            longer than it, back after a short one; 0 = 50 us; use
	                            SV2SHM_SPIN_NONE to sleep at once (after one sched_yield(), which
	                            lets consumers sharing the core run first) */
	bool no_io_uring;      /**< use plain syscalls even where io_uring works */
	uint64_t max_overflow; /**< largest alloc-mode slice accepted, bytes; 0 =
	                            SV2SHM_DEFAULT_MAX_OVERFLOW; larger ones are refused (-EMSGSIZE) */
};

struct sv2shm_consumer;

/*
 * Threads: a consumer belongs to one thread at a time — recv, flush,
 * prepare_wait, free, and sv2shm_region_open() on sv2shm_consumer_region();
 * only sv2shm_slice_release() of its slices may come from any thread.
 */

/**
 * Receive the region from the producer on `sock` (waiting up to 10 s for the
 * setup message) and attach to it (see sv2shm_region_attach() for what is
 * checked; the ring memfd and the wake socket are checked too). The consumer
 * owns sock from now on, even on failure.
 * Returns 0 and sets *out, or -EPROTO (bad setup message: size, magic,
 * version, fd count, a wake fd that is not an AF_UNIX datagram socket, ring geometry), -EPIPE
 * (producer hung up), -ETIMEDOUT (no setup message), or an error of
 * sv2shm_region_attach().
 */
SV2SHM_EXPORT int sv2shm_consumer_new(int sock, const struct sv2shm_consumer_options *o, struct sv2shm_consumer **out);

/**
 * Receive the next slice: spin up to spin_us, then sleep until one arrives,
 * the timeout passes (timeout_ms < 0: forever; 0: do not wait), or the
 * producer is gone. The slice (kind SHARED, or MAPPED for an alloc-mode
 * slice) is readable in place; release it with sv2shm_slice_release() from
 * any thread. Every descriptor is validated: kind, version, region, slot, that
 * its bytes lie inside the region, and that it does not name a generation
 * this consumer released already. Entries of the ring are not cross-checked
 * with the control block's slot record (the producer writes both; see
 * docs/ARCHITECTURE.md, Trust); descriptors on the socket transport are, as
 * sv2shm_region_open() does.
 *
 * Never blocks past timeout_ms, whatever the producer does.
 *
 * Returns 1 (slice in *out), 0 (timeout), or
 *   -EPIPE   the producer is gone (or the channel was reported broken) and
 *            nothing is left to read, or the producer removed this consumer
 *            (what is left in its ring is void then): permanent;
 *   -EPROTO  the channel is broken (ring indices out of range): reported
 *            once; the consumer hangs up (so the producer reclaims its holds)
 *            and every later call returns -EPIPE;
 *   skippable: one descriptor or message was bad and is dropped (its hold
 *   given back); the next call goes on:
 *   -EBADMSG  undecodable descriptor, unexpected message, an alloc-mode
 *             marker with no message or a message with no marker, a memfd
 *             that is not sealed or not of the announced size;
 *   -EMSGSIZE an alloc-mode slice larger than max_overflow;
 *   -ENXIO, -ERANGE, -ESTALE, -ENOENT, -EFAULT, -EEXIST as sv2shm_region_open()
 *   (-EACCES and a slot record that disagrees: socket transport only).
 */
SV2SHM_EXPORT int sv2shm_consumer_recv(struct sv2shm_consumer *c, struct sv2shm_slice *out, int timeout_ms);

/**
 * Reap finished release-notification submissions. Notifications coalesce on
 * their own: a release sends one only when it freed a slot the producer is
 * waiting for, once per producer wait (one io_uring submission however many
 * releases happen meanwhile). Returns 0, or -EINVAL for NULL.
 */
SV2SHM_EXPORT int sv2shm_consumer_flush(struct sv2shm_consumer *c);

/**
 * For event loops: the fd to poll for POLLIN (an epoll fd over the wake
 * wake socket and the channel socket, so a producer hang-up wakes it too). Call
 * sv2shm_consumer_prepare_wait() first; when it returns 0, poll; when the
 * fd is readable, call sv2shm_consumer_recv(c, out, 0) until it returns 0
 * (or -EPIPE: the producer is gone).
 */
SV2SHM_EXPORT int sv2shm_consumer_fd(const struct sv2shm_consumer *c);

/** Announce that the caller is about to poll. Returns 0 (nothing pending:
 * poll now), 1 (something is pending: recv first), or -EINVAL. Flushes
 * batched release notifications. */
SV2SHM_EXPORT int sv2shm_consumer_prepare_wait(struct sv2shm_consumer *c);

/** The consumer's id (its holder bit), or -EINVAL. */
SV2SHM_EXPORT int sv2shm_consumer_id(const struct sv2shm_consumer *c);

/** Slices this consumer missed because it was at its limit (SV2SHM_LIMIT_SKIP), as the producer counts them. */
SV2SHM_EXPORT uint64_t sv2shm_consumer_missed(const struct sv2shm_consumer *c);

/** The attached region (for tools and tests). */
SV2SHM_EXPORT struct sv2shm_region *sv2shm_consumer_region(struct sv2shm_consumer *c);

/** Name of the release-notification path in use (see sv2shm_producer_notify_name()). */
SV2SHM_EXPORT const char *sv2shm_consumer_notify_name(const struct sv2shm_consumer *c);

/** Free the consumer: refused with -EBUSY while slices it received are live. */
SV2SHM_EXPORT int sv2shm_consumer_free(struct sv2shm_consumer *c);

#ifdef __cplusplus
}
#endif

#endif /* SV2SHM_IPC_H */
