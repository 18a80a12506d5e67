/*
 * The consumer: attaches to the producer's region from the setup message,
 * reads descriptors from its ring (spinning briefly, then sleeping on its
 * wake socket after announcing it), validates each, and hands out slices
 * that are read in place. A release is recorded in the consumer's own ring;
 * when the producer waits for room, the release also wakes it through the
 * consumer's io_uring (a datagram on the wake socket).
 *
 * Nothing here blocks on the producer: every receive is MSG_DONTWAIT on our
 * own socket ends, after an epoll_wait bounded by the caller's timeout.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "client_priv.h"
#include "notify.h"
#include "pool.h"
#include "region.h"
#include "stamps.h"

enum { EV_WAKE = 1, EV_SOCK = 2 };

/* How long sv2shm_consumer_new() waits for the producer's setup message. */
#define SETUP_TIMEOUT_MS 10000

struct sv2shm_consumer {
	int sock;
	int epfd;     /* wake eventfd + socket: what sv2shm_consumer_fd() exposes */
	uint64_t orphan_since; /* a socket message seen with no ring marker (ns) */
	int wake;     /* our end of the wake socketpair */
	int ring_fd;
	struct sv2shm_region *region;
	struct sv2shm_ring *ring;
	size_t ring_size;
	uint32_t entries;
	uint32_t tail; /* private copy of ring->tail */
	unsigned holder;
	unsigned spin_us;
	uint64_t spin_ns; /* this recv's spin budget: spin_us, halved after each idle sleep longer
	                     than spin_us, back to spin_us once a wait was short (see spin()) */
	bool socket_transport; /* descriptors arrive as DESC messages */
	bool producer_gone;    /* -EPIPE once the ring is drained */
	bool broken;           /* the channel was reported broken: -EPIPE from now on */
	uint64_t max_overflow;
	pthread_mutex_t notify_lock; /* releases may come from any thread */
	/* recv sleeps on its ring's wake_seq through its own io_uring (kernel
	 * 6.7+ futex ops): FUTEX_WAIT plus a poll of the channel (hang-up), one
	 * syscall per sleep, woken by a FUTEX_WAKE that never blocks the
	 * producer. Else, and for event loops, it sleeps on the wake socket. */
	bool futex_sleep;
	bool futex_armed, poll_armed;
	struct io_uring wring;
	/* Made by sv2shm_client_subscribe(): the client that keeps its record. */
	struct sv2shm_client *client;
	struct notifier notifier;
};

/* The region calls this after a release freed a slot the producer waits for. */
static void consumer_wake_producer(struct sv2shm_region *r)
{
	struct sv2shm_consumer *c = r->wake_user;
	pthread_mutex_lock(&c->notify_lock);
	notifier_signal(&c->notifier);
	pthread_mutex_unlock(&c->notify_lock);
}

/* The wake fd of the setup message must be an AF_UNIX datagram socket: we
 * only ever send and receive on it with MSG_DONTWAIT (and MSG_NOSIGNAL), so
 * nothing the producer does to its own end can block or signal us. */
static int check_wake_socket(int fd)
{
	struct stat st;
	int type = 0, domain = 0;
	socklen_t tl = sizeof(type), dl = sizeof(domain);
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 || type != SOCK_DGRAM || domain != AF_UNIX)
		return -EPROTO;
	return 0;
}

static int check_ring(const struct sv2shm_ring *ring, size_t size, const struct sv2shm_msg_setup *m)
{
	if (ring->magic != SV2SHM_RING_MAGIC || ring->version != SV2SHM_RING_VERSION ||
	    ring->entry_size != SV2SHM_RING_ENTRY_SIZE || ring->nentries != m->ring_entries ||
	    ring->region_id != m->region_id || size != ring_bytes(m->ring_entries))
		return -EPROTO;
	return 0;
}

SV2SHM_API int sv2shm_consumer_new(int sock, const struct sv2shm_consumer_options *o, struct sv2shm_consumer **out)
{
	if (sock < 0 || !out) {
		if (sock >= 0)
			close(sock);
		return -EINVAL;
	}
	struct sv2shm_msg_setup m;
	int fds[SETUP_NFDS];
	for (int i = 0; i < SETUP_NFDS; i++)
		fds[i] = -1;
	int r = chan_recv(sock, &m, sizeof(m), fds, SETUP_NFDS, SETUP_NFDS, SETUP_TIMEOUT_MS);
	if (r < 0) {
		close(sock);
		return r;
	}
	struct sv2shm_consumer *c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto fail_fds;
	}
	c->sock = sock;
	c->epfd = -1;
	c->wake = fds[SETUP_FD_WAKE];
	c->ring_fd = fds[SETUP_FD_RING];
	fds[SETUP_FD_WAKE] = fds[SETUP_FD_RING] = -1; /* c owns them now */
	r = chan_check_hdr(&m.hdr, SV2SHM_MSG_SETUP);
	if (r == 0 && (m.holder < 1 || m.holder >= SV2SHM_MAX_HOLDERS ||
		       (m.notify != SV2SHM_NOTIFY_SOCKET && m.notify != SV2SHM_NOTIFY_FUTEX) ||
		       m.ring_entries < 2 || m.ring_entries > SV2SHM_RING_MAX_ENTRIES ||
		       (m.ring_entries & (m.ring_entries - 1)) || (m.flags & ~SV2SHM_SETUP_SOCKET) || m.reserved))
		r = -EPROTO;
	if (r == 0)
		r = check_wake_socket(c->wake);
	if (r < 0)
		goto fail;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev_wake = {.events = EPOLLIN, .data.u32 = EV_WAKE};
	struct epoll_event ev_sock = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = EV_SOCK};
	if (c->epfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->wake, &ev_wake) < 0 ||
	    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->sock, &ev_sock) < 0) {
		r = -errno;
		goto fail;
	}
	struct stat st;
	if (fstat(c->ring_fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size != ring_bytes(m.ring_entries)) {
		r = -EPROTO;
		goto fail;
	}
	int seals = fcntl(c->ring_fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) != (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		r = -EPERM;
		goto fail;
	}
	c->ring_size = (size_t)st.st_size;
	void *map = mmap(NULL, c->ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->ring_fd, 0);
	if (map == MAP_FAILED) {
		r = -ENOMEM;
		goto fail;
	}
	c->ring = map;
	r = check_ring(c->ring, c->ring_size, &m);
	if (r < 0)
		goto fail;
	c->entries = m.ring_entries;
	c->tail = atomic_load_explicit(&c->ring->tail, memory_order_acquire);

	r = sv2shm_region_attach(fds[SETUP_FD_CTL], fds[SETUP_FD_DATA], 0, &c->region);
	close(fds[SETUP_FD_CTL]);
	close(fds[SETUP_FD_DATA]);
	fds[SETUP_FD_CTL] = fds[SETUP_FD_DATA] = -1;
	if (r < 0)
		goto fail;
	if (c->region->id != m.region_id || c->region->cap != m.capacity || c->region->nslots != m.nslots) {
		r = -EPROTO;
		goto fail;
	}
	c->holder = m.holder;
	c->socket_transport = (m.flags & SV2SHM_SETUP_SOCKET) != 0;
	c->spin_us = o && o->spin_us ? o->spin_us : 50;
	c->spin_ns = c->spin_us == SV2SHM_SPIN_NONE ? 0 : (uint64_t)c->spin_us * 1000u;
	c->max_overflow = o && o->max_overflow ? o->max_overflow : SV2SHM_DEFAULT_MAX_OVERFLOW;
	pthread_mutex_init(&c->notify_lock, NULL);
	/* A FUTEX_WAKE needs the word mapped, not writable: the read-only
	 * control block will do. */
	notifier_open(&c->notifier, (int)m.notify, c->wake,
		      (_Atomic uint32_t *)(uintptr_t)&c->region->ctl->release_seq, !(o && o->no_io_uring));
	if (!(o && o->no_io_uring) && notify_uring_allowed() && io_uring_queue_init(4, &c->wring, 0) == 0) {
		c->futex_sleep = notify_uring_has_futex_wait(&c->wring);
		if (!c->futex_sleep)
			io_uring_queue_exit(&c->wring);
	}
	c->region->ring = c->ring;
	c->region->wake_producer = consumer_wake_producer;
	c->region->wake_user = c;
	*out = c;
	return 0;
fail:
	if (c->region)
		sv2shm_region_detach(c->region);
	if (c->ring)
		munmap(c->ring, c->ring_size);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->ring_fd >= 0)
		close(c->ring_fd);
	if (c->wake >= 0)
		close(c->wake);
	free(c);
fail_fds:
	for (int i = 0; i < SETUP_NFDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(sock);
	return r;
}

/* An alloc-mode slice in its own memfd, from an OVERFLOW message. Every
 * refusal is skippable (-EBADMSG, or -EMSGSIZE above max_overflow). */
static int open_overflow(struct sv2shm_consumer *c, const struct sv2shm_desc *d, int fd, const struct sv2shm_desc *marker,
			 struct sv2shm_slice *out)
{
	int r = 0;
	if (d->kind != SV2SHM_DESC_OVERFLOW || d->length == 0 || d->length > SIZE_MAX / 2 ||
	    (marker && d->length != marker->length))
		r = -EBADMSG;
	else if (d->length > c->max_overflow)
		r = -EMSGSIZE; /* bounded before it is mapped: no 1 TiB slice */
	struct stat st;
	if (r == 0 && (fstat(fd, &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size != d->length))
		r = -EBADMSG;
	int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL;
	int seals = r == 0 ? fcntl(fd, F_GET_SEALS) : 0;
	if (r == 0 && (seals < 0 || (seals & need) != need))
		r = -EBADMSG; /* not a sealed memfd: it could shrink under us (SIGBUS) */
	void *m = MAP_FAILED;
	if (r == 0) {
		m = mmap(NULL, (size_t)d->length, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			r = -EBADMSG;
	}
	close(fd);
	if (r < 0)
		return r;
	memset(out, 0, sizeof(*out));
	out->data = m;
	out->len = (size_t)d->length;
	out->_owner = m;
	out->_kind = SV2SHM_SLICE_MAPPED;
	return 1;
}

/* Read one OVERFLOW or DESC message from the socket: 1 (slice), or an error
 * (-ETIMEDOUT: none; -EPIPE: hang-up; others skippable).
 * `marker`: the ring entry announcing an OVERFLOW message (ring transport). */
static int recv_message(struct sv2shm_consumer *c, const struct sv2shm_desc *marker, int timeout_ms,
			struct sv2shm_slice *out)
{
	struct sv2shm_msg_desc msg;
	int fd = -1;
	int n = chan_recv(c->sock, &msg, sizeof(msg), &fd, 0, 1, timeout_ms);
	if (n == -EPIPE)
		c->producer_gone = true;
	if (n == -ETIMEDOUT || n == -EPIPE || n == -EAGAIN)
		return n == -EAGAIN ? -ETIMEDOUT : n;
	if (n < 0)
		return -EBADMSG; /* a message of the wrong size or with the wrong fds: dropped */
	struct sv2shm_desc d;
	int r = sv2shm_desc_decode(msg.desc, &d);
	if (r == 0 && n == 1 && chan_check_hdr(&msg.hdr, SV2SHM_MSG_OVERFLOW) == 0)
		return open_overflow(c, &d, fd, marker, out);
	if (n == 1)
		close(fd);
	if (r < 0 || marker || !c->socket_transport || chan_check_hdr(&msg.hdr, SV2SHM_MSG_DESC) < 0)
		return -EBADMSG;
	uint8_t raw[SV2SHM_DESC_SIZE];
	memcpy(raw, msg.desc, sizeof(raw));
	r = region_open_desc(c->region, &d, c->holder, false, out);
	if (r < 0 && r != -EEXIST)
		region_drop_hold(c->region, raw);
	return r < 0 ? r : 1;
}

/* The ring says an OVERFLOW message is on the socket: the producer sends it
 * before it pushes the marker, so it is there now or never (no wait). */
static int recv_overflow(struct sv2shm_consumer *c, const struct sv2shm_desc *marker, struct sv2shm_slice *out)
{
	int r = recv_message(c, marker, 0, out);
	return r == -ETIMEDOUT ? -EBADMSG : r;
}

/* The channel is broken beyond one bad entry: say so once (-EPROTO), hang
 * up so the producer reclaims our holds at once, and report -EPIPE after. */
static int channel_broken(struct sv2shm_consumer *c)
{
	c->producer_gone = true;
	c->broken = true;
	shutdown(c->sock, SHUT_RDWR);
	return -EPROTO;
}

/* Start fetching the first line of the bytes an entry names, before the
 * entry is decoded and checked: the caller reads them next, and the line
 * comes from the producer's core (~50 ns). Only a hint: a bogus offset
 * (bounded anyway) costs one useless prefetch, and never a fault. */
static inline void prefetch_slice(const struct sv2shm_consumer *c, const uint8_t raw[SV2SHM_DESC_SIZE])
{
	uint64_t off;
	memcpy(&off, raw + 16, sizeof(off)); /* the descriptor's offset field */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	off = __builtin_bswap64(off);
#endif
	if (off < c->region->cap)
		__builtin_prefetch(c->region->data + off);
}

/* Take one descriptor from the ring: 1 (slice), 0 (empty), or an error for
 * a broken ring or a descriptor that failed validation (dropped).
 * look_at_head false: an entry not filled yet is "empty" without a look at
 * the ring's head — recv's first look, which a spin (and, when that finds
 * nothing, ring_pending's look at the head) follows anyway. Reading the
 * head there pulled the head's line from the producer's core on every
 * slice, and made the producer's next store to it wait for that line. */
static int try_pop(struct sv2shm_consumer *c, struct sv2shm_slice *out, bool look_at_head)
{
	_Atomic uint32_t *seq = ring_entry_seq(c->ring, c->entries, c->tail);
	if (atomic_load_explicit(seq, memory_order_acquire) != c->tail + 1u) {
		if (!look_at_head)
			return 0;
		/* Not filled yet, as far as the entry says. The head tells an
		 * empty ring from a broken one: the producer stores an entry's
		 * sequence word before the head that counts it, so the head may
		 * lag behind entries we took already (not yet), but a head
		 * ahead of us names entries that must be filled. */
		uint32_t head = atomic_load_explicit(&c->ring->head, memory_order_acquire);
		if (c->tail - head <= c->entries)
			return 0;
		if (head - c->tail > c->entries ||
		    atomic_load_explicit(seq, memory_order_acquire) != c->tail + 1u)
			return channel_broken(c);
	}
	if (atomic_load_explicit(&c->ring->revoked, memory_order_acquire)) {
		/* The producer removed us: what is left in the ring is void. */
		c->producer_gone = true;
		return -EPIPE;
	}
	/* One copy of the entry: the producer may rewrite it once the tail
	 * below counts it, and every check reads this copy. */
	uint8_t raw[SV2SHM_DESC_SIZE];
	memcpy(raw, ring_entry(c->ring, c->entries, c->tail), sizeof(raw));
	prefetch_slice(c, raw);
	c->tail++;
	atomic_store_explicit(&c->ring->tail, c->tail, memory_order_release);
	uint64_t w[4];
	ring_get_words(raw, w);
	if (region_open_ring(c->region, w, c->holder, out) == 0)
		return 1;
	struct sv2shm_desc d;
	int r = sv2shm_desc_decode(raw, &d);
	if (r < 0)
		return -EBADMSG;
	if (d.kind == SV2SHM_DESC_OVERFLOW)
		return recv_overflow(c, &d, out);
	r = region_open_desc(c->region, &d, c->holder, true, out);
	if (r < 0 && r != -EEXIST)
		region_drop_hold(c->region, raw);
	return r < 0 ? r : 1;
}

/* The spin's look: has the producer filled our next entry? One line, the
 * one the entry is in (no fence: the spin needs none). */
static bool entry_ready(struct sv2shm_consumer *c)
{
	return atomic_load_explicit(ring_entry_seq(c->ring, c->entries, c->tail), memory_order_relaxed) ==
	       c->tail + 1u;
}

/* Pure spinning for this long, then the spin yields the CPU between looks. */
#define SPIN_PURE_NS 2000u

/*
 * recv's spin, up to the budget from `start`: a pure spin first (a slice
 * from a producer on another core arrives within a few hundred ns), then
 * sched_yield() between looks, so that consumers sharing a core take turns
 * — each one that has nothing lets the others drain their rings — instead
 * of burning each other's time slices. A yield with nobody else runnable
 * returns at once. True when an entry is ready.
 */
static bool spin(struct sv2shm_consumer *c, uint64_t start)
{
	if (!c->spin_ns) {
		/* No spin (SV2SHM_SPIN_NONE, or spinning did not pay): still
		 * let the consumers that share our core run first, once — a
		 * yield with nobody else runnable returns at once (~0.3 us
		 * before a sleep of tens), and one that ran them often finds
		 * our next slice there, so we need no wake-up at all. */
		sched_yield();
		return entry_ready(c);
	}
	uint64_t until = start + c->spin_ns, pure = start + SPIN_PURE_NS;
	unsigned i = 0;
	while (!entry_ready(c)) {
		cpu_relax();
		if ((++i & 63u) == 0) {
			uint64_t now = mono_ns();
			if (now >= until)
				return false;
			if (now >= pure)
				sched_yield();
		}
	}
	STAMP(STAMP_C_SEES_ENTRY);
	return true;
}

/* After a sleep of `slept` ns that ended with something to read: an idle
 * gap longer than the full budget means spinning would not have paid off —
 * spin half as long next time (down to nothing, so a consumer fed rarely
 * costs no CPU); a short one means it would have: the full budget again. */
static void spin_adapt(struct sv2shm_consumer *c, uint64_t slept)
{
	uint64_t full = c->spin_us == SV2SHM_SPIN_NONE ? 0 : (uint64_t)c->spin_us * 1000u;
	if (slept > full)
		c->spin_ns = c->spin_ns > 2 * SPIN_PURE_NS ? c->spin_ns / 2 : 0;
	else
		c->spin_ns = full;
}

/* Is there anything for try_pop() to look at? seq_cst: the sleep's re-check
 * after it announced itself (the producer stores head, fences (seq_cst),
 * then reads consumer_sleeping). A head behind our tail (it lags the entries' own
 * sequence words for a moment) is not news; a head ahead of it, or broken,
 * is (try_pop tells which). */
static bool ring_pending(struct sv2shm_consumer *c)
{
	uint32_t head = atomic_load_explicit(&c->ring->head, memory_order_seq_cst);
	if (c->tail - head <= c->entries)
		return entry_ready(c);
	return true;
}

/* Has the producer hung up? Only EOF counts: a pending message, or a
 * zero-length datagram, does not. */
static void check_hangup(struct sv2shm_consumer *c)
{
	struct pollfd pfd = {.fd = c->sock, .events = POLLRDHUP};
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
		c->producer_gone = true;
}

/*
 * The ring is empty: is a message waiting on the socket with no marker for
 * it? Normal for a moment (the producer sends, then pushes the marker); a
 * second later it is a broken producer: the message is dropped and -EPROTO
 * returned. Otherwise 0.
 */
static int check_orphan(struct sv2shm_consumer *c)
{
	char b;
	if (recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0 || ring_pending(c)) {
		c->orphan_since = 0;
		return 0;
	}
	uint64_t now = mono_ns();
	if (!c->orphan_since) {
		c->orphan_since = now;
		return 0;
	}
	if (now - c->orphan_since <= 1000000000u)
		return 0;
	c->orphan_since = 0;
	struct sv2shm_msg_desc msg;
	int fd = -1;
	if (chan_recv(c->sock, &msg, sizeof(msg), &fd, 0, 1, 0) == 1)
		close(fd);
	return -EBADMSG;
}

SV2SHM_API int sv2shm_consumer_flush(struct sv2shm_consumer *c)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->notify_lock);
	if (c->notifier.uring)
		notifier_reap(&c->notifier);
	pthread_mutex_unlock(&c->notify_lock);
	return 0;
}

SV2SHM_API int sv2shm_consumer_prepare_wait(struct sv2shm_consumer *c)
{
	if (!c)
		return -EINVAL;
	sv2shm_consumer_flush(c);
	if (c->socket_transport) {
		char b;
		return recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 ? 1 : 0;
	}
	/* Drain old wake-ups first, or the fd would stay readable for good. */
	wake_drain(c->wake, 64);
	atomic_store_explicit(&c->ring->consumer_sleeping, SLEEP_SOCKET, memory_order_seq_cst);
	if (ring_pending(c)) {
		atomic_store_explicit(&c->ring->consumer_sleeping, 0u, memory_order_relaxed);
		return 1;
	}
	return 0;
}

/*
 * recv's sleep with futex support: announce it (SLEEP_FUTEX), look at the
 * ring once more, then wait in one io_uring_enter for a FUTEX_WAIT on the
 * ring's wake_seq or a poll of the epoll fd (channel socket and wake
 * socket), up to wait_ms (< 0: no limit). A wait left armed by an earlier sleep stays queued in the kernel
 * and is woken by the next FUTEX_WAKE whatever value it was armed with.
 * Returns 1 when the channel socket fired, 0 otherwise, or -errno.
 */
static int sleep_futex(struct sv2shm_consumer *c, int wait_ms)
{
	uint32_t seen = atomic_load_explicit(&c->ring->wake_seq, memory_order_seq_cst);
	atomic_store_explicit(&c->ring->consumer_sleeping, SLEEP_FUTEX, memory_order_seq_cst);
	if (ring_pending(c)) {
		atomic_store_explicit(&c->ring->consumer_sleeping, SLEEP_NO, memory_order_relaxed);
		return 0;
	}
	if (!c->futex_armed) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&c->wring);
		if (sqe) {
			notify_prep_futex_wait(sqe, &c->ring->wake_seq, seen);
			io_uring_sqe_set_data64(sqe, 1);
			c->futex_armed = true;
		}
	}
	if (!c->poll_armed) {
		/* The epoll fd (channel + wake socket), not the channel itself: a
		 * queued request keeps a reference to its file until the ring is
		 * torn down, asynchronously, after we exit — our end of the
		 * channel must close at exit, or the producer sees no hang-up. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&c->wring);
		if (sqe) {
			io_uring_prep_poll_add(sqe, c->epfd, POLLIN);
			io_uring_sqe_set_data64(sqe, 2);
			c->poll_armed = true;
		}
	}
	struct __kernel_timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (long long)(wait_ms % 1000) * 1000000};
	struct io_uring_cqe *cqe = NULL;
	int r = io_uring_submit_and_wait_timeout(&c->wring, &cqe, 1, wait_ms >= 0 ? &ts : NULL, NULL);
	int sock = 0;
	while (io_uring_peek_cqe(&c->wring, &cqe) == 0) {
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		if (tag == 1)
			c->futex_armed = false;
		else if (tag == 2) {
			c->poll_armed = false;
			sock = 1;
		}
		io_uring_cqe_seen(&c->wring, cqe);
	}
	atomic_store_explicit(&c->ring->consumer_sleeping, SLEEP_NO, memory_order_relaxed);
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
		return r;
	return sock;
}

SV2SHM_API int sv2shm_consumer_recv(struct sv2shm_consumer *c, struct sv2shm_slice *out, int timeout_ms)
{
	if (!c || !out)
		return -EINVAL;
	if (c->socket_transport) {
		if (c->producer_gone)
			return -EPIPE;
		int r = recv_message(c, NULL, timeout_ms, out);
		if (r == -ETIMEDOUT)
			return 0;
		return r;
	}
	if (c->broken)
		return -EPIPE; /* reported once already */
	uint64_t start = 0, slept_from = 0;
	for (;;) {
		/* The first look of a call that may wait: the entry alone. */
		int r = try_pop(c, out, start != 0 || timeout_ms == 0);
		if (r == 1 && slept_from)
			spin_adapt(c, mono_ns() - slept_from);
		if (r != 0)
			return r;
		if (c->producer_gone)
			return -EPIPE;
		if (timeout_ms == 0) {
			check_hangup(c);
			if (c->producer_gone)
				return -EPIPE;
			return check_orphan(c);
		}
		if (!start)
			start = mono_ns();
		else if (timeout_ms > 0 && (mono_ns() - start) / 1000000u >= (uint64_t)timeout_ms)
			return 0; /* every later pass is bounded too: after a sleep, and after
			             a look that said "ready" and a pop that then did not find
			             it so (a producer flipping an entry's word) */
		/* Spin: a cache-line hand-off costs ~0.2 us, a sleeping wake-up
		 * ~50 us on a small VM. */
		if (!slept_from && (spin(c, start) || ring_pending(c)))
			continue;
		if (!slept_from)
			slept_from = mono_ns();
		int wait_ms = -1;
		if (timeout_ms > 0) {
			uint64_t spent = (mono_ns() - start) / 1000000u;
			if (spent >= (uint64_t)timeout_ms)
				return 0;
			wait_ms = timeout_ms - (int)spent;
		}
		if (c->futex_sleep) {
			int fr = sleep_futex(c, wait_ms);
			if (fr < 0)
				return fr;
			if (fr == 1) { /* the channel (a hang-up, or a message), or a stray datagram */
				wake_drain(c->wake, 64);
				check_hangup(c);
				if (!c->producer_gone && !ring_pending(c)) {
					int o = check_orphan(c);
					if (o < 0)
						return o;
					struct timespec ts = {0, 200000};
					nanosleep(&ts, NULL);
				}
			}
			continue; /* the loop checks the ring, the hang-up and the deadline */
		}
		if (sv2shm_consumer_prepare_wait(c) == 1)
			continue;
		struct epoll_event evs[2];
		int pr = epoll_wait(c->epfd, evs, 2, wait_ms);
		atomic_store_explicit(&c->ring->consumer_sleeping, 0u, memory_order_relaxed);
		if (pr < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < pr; i++) {
			if (evs[i].data.u32 != EV_SOCK)
				continue;
			check_hangup(c);
			if (c->producer_gone || ring_pending(c))
				continue;
			int o = check_orphan(c);
			if (o < 0)
				return o;
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
		}
		if (pr == 0 && wait_ms >= 0 && !ring_pending(c))
			return 0;
	}
}

SV2SHM_API int sv2shm_consumer_fd(const struct sv2shm_consumer *c)
{
	return c ? c->epfd : -EINVAL;
}

SV2SHM_API int sv2shm_consumer_id(const struct sv2shm_consumer *c)
{
	return c ? (int)c->holder : -EINVAL;
}

SV2SHM_API uint64_t sv2shm_consumer_missed(const struct sv2shm_consumer *c)
{
	return c ? atomic_load_explicit(&c->ring->missed, memory_order_acquire) : 0;
}

SV2SHM_API struct sv2shm_region *sv2shm_consumer_region(struct sv2shm_consumer *c)
{
	return c ? c->region : NULL;
}

SV2SHM_API const char *sv2shm_consumer_notify_name(const struct sv2shm_consumer *c)
{
	return c ? c->notifier.name : "?";
}

SV2SHM_API int sv2shm_consumer_free(struct sv2shm_consumer *c)
{
	if (!c)
		return 0;
	if (region_busy(c->region))
		return -EBUSY;
	if (c->client)
		client_consumer_freed(c->client, c);
	notifier_close(&c->notifier);
	if (c->futex_sleep)
		io_uring_queue_exit(&c->wring); /* cancels a pending wait or poll */
	pthread_mutex_destroy(&c->notify_lock);
	sv2shm_region_detach(c->region);
	munmap(c->ring, c->ring_size);
	close(c->ring_fd);
	close(c->epfd);
	close(c->wake);
	close(c->sock);
	free(c);
	return 0;
}

/* --- the broker client's side (client_priv.h) -------------------------------- */

void consumer_attach_client(struct sv2shm_consumer *k, struct sv2shm_client *c)
{
	k->client = c;
}
