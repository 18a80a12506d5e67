/*
 * The producer: a pool over a shared region, and one channel per consumer
 * (socket + descriptor ring + wake socketpair). Publishing a slice records
 * privately which consumers got it, writes the state word's view, pushes one
 * descriptor into each ring and drops the producer's own hold; a consumer is
 * woken through its wake socket only when it said it was going to sleep.
 *
 * Nothing here blocks on a peer: every send and receive is MSG_DONTWAIT on a
 * socket end only this process holds, and the only sleep (a WAIT for room)
 * is an epoll_wait with a timeout that also ends on a consumer's hang-up.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "client_priv.h"
#include "notify.h"
#include "pool.h"
#include "region.h"
#include "slots.h"
#include "stamps.h"

#define MAX_CONSUMERS (SV2SHM_MAX_HOLDERS - 1) /* holder bit 0 is the producer */
#define EVQ_SIZE 64
#define INC_LIMIT (UINT32_C(1) << 26) /* incarnations per bit before ids wrap */

enum { EP_LINK = 1, EP_WAKE = 2, EP_SELF = 3, EP_BROKER = 4 };

struct link {
	bool used;
	uint32_t inc;      /* incarnation of this bit in use (id = bit + 32 * inc) */
	uint32_t next_inc; /* incarnations handed out so far on this bit */
	int sock;          /* the SOCK_SEQPACKET channel */
	int wake;          /* our end of the wake socketpair */
	int ring_fd;
	struct sv2shm_ring *ring;
	size_t ring_size;
	uint32_t head;      /* private copy of ring->head */
	uint32_t tail_seen; /* the consumer's tail when we last needed to look */
	uint32_t wake_seq;  /* private copy of ring->wake_seq */
	uint32_t missed;    /* slices it missed at its limit */
	uint64_t order;     /* when it came (sv2shm_producer_consumers() lists in this order) */
	pid_t pid;          /* as the broker introduced it (0: added by hand) */
};

struct sv2shm_producer {
	struct sv2shm_pool pool;
	struct slot_peers peers;
	struct region_mem mem;
	uint64_t region_id; /* private copy */
	unsigned ring_entries;
	bool socket_transport;
	unsigned max_held;
	int on_limit;
	int epfd;     /* consumer sockets, wake sockets, self_efd */
	int self_efd; /* never shared: our own threads wake a waiting producer */
	/* SV2SHM_NOTIFY_FUTEX: the wait is an io_uring FUTEX_WAIT on
	 * ctl->release_seq (a word only we write, which never changes while we
	 * wait) queued before we tell the consumers that we wait, plus a poll
	 * of epfd (hang-ups, the broker, stray datagrams): a consumer wakes us
	 * only after it saw that, so its FUTEX_WAKE finds the wait queued and
	 * no wake-up is lost (producer_announce()). */
	int mech;
	struct io_uring wring;
	bool futex_armed, poll_armed;
	/* Wake sockets that fired while we waited, drained before the next wait
	 * (producer_announce()) rather than on the way to publishing. */
	uint64_t undrained;
	/* Consumers (bits) given an entry since their last wake check: the
	 * check — a full fence, then a look at consumer_sleeping — runs once
	 * per publish without SV2SHM_PUBLISH_MORE, for all of them, and not
	 * once per entry (wake_pending()). */
	uint32_t wake_due;
	uint64_t futex_tag; /* user_data of the FUTEX_WAIT in flight (a fresh one per wait) */
	char notify_name[48];
	struct link links[MAX_CONSUMERS + 1]; /* index = holder bit */
	struct sv2shm_producer_event evq[EVQ_SIZE];
	unsigned ev_head, ev_len;
	uint64_t ev_dropped;
	uint64_t arrivals;  /* consumers added so far (their order) */
	unsigned rr_next;   /* round-robin: the holder bit to try first */
	/* Registered through a broker client (client.h): its name, and the
	 * broker fd in our epoll set (-1: none). */
	struct sv2shm_client *client;
	char name[SV2SHM_NAME_MAX + 1];
	int broker_fd;
};

/* Longest single sleep of a waiting producer (a safety net: hang-ups and
 * wake-ups end it at once). */
#define WAIT_SLICE_MS 100

static int link_id(unsigned bit, uint32_t inc)
{
	return (int)(bit + 32u * inc);
}

/* The holder bit of a live consumer id: > 0, or -EINVAL (never handed out) /
 * -ESRCH (removed). */
static int resolve_id(const struct sv2shm_producer *p, int id)
{
	if (id <= 0)
		return -EINVAL;
	unsigned bit = (unsigned)id & 31u;
	uint32_t inc = (uint32_t)id >> 5;
	if (bit < 1 || bit > MAX_CONSUMERS)
		return -EINVAL;
	const struct link *l = &p->links[bit];
	if (l->used && l->inc == inc)
		return (int)bit;
	return inc < l->next_inc ? -ESRCH : -EINVAL;
}

static void queue_event(struct sv2shm_producer *p, int id, int reason, unsigned held)
{
	if (p->ev_len == EVQ_SIZE) {
		p->ev_head = (p->ev_head + 1u) % EVQ_SIZE;
		p->ev_len--;
		p->ev_dropped++;
	}
	struct sv2shm_producer_event *e = &p->evq[(p->ev_head + p->ev_len) % EVQ_SIZE];
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->reason = reason;
	e->held = held;
	p->ev_len++;
}

static void link_close(struct sv2shm_producer *p, unsigned bit)
{
	struct link *l = &p->links[bit];
	if (!l->used)
		return;
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, l->sock, NULL);
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, l->wake, NULL);
	close(l->sock);
	close(l->wake);
	close(l->ring_fd);
	munmap(l->ring, l->ring_size);
	uint32_t next_inc = l->next_inc;
	memset(l, 0, sizeof(*l));
	l->next_inc = next_inc;
}

/*
 * Remove consumer `bit`: every hold it had vanishes from the producer's
 * records at once (slots.h), the views are rewritten, the channel closed and
 * an event queued. Returns the slots it held.
 */
static unsigned remove_link(struct sv2shm_producer *p, unsigned bit, int reason)
{
	struct link *l = &p->links[bit];
	/* First tell the consumer (it reads this before it opens an entry of
	 * its ring): its queued entries are void from now on. */
	if (l->ring)
		atomic_store_explicit(&l->ring->revoked, 1u, memory_order_seq_cst);
	unsigned held = slot_count_held(&p->peers, bit, p->pool.mask_view, p->pool.gen);
	uint32_t b = UINT32_C(1) << bit;
	p->wake_due &= ~b;
	for (unsigned s = 0; s < p->pool.nslots; s++) {
		if (!(p->peers.pub[s] & b))
			continue;
		p->peers.pub[s] &= ~b;
		uint32_t own = atomic_load_explicit(&p->pool.own_gen[s], memory_order_relaxed) ? 1u : 0u;
		atomic_store_explicit(&p->mem.ctl->slots[s].state, SV2SHM_STATE(p->pool.gen[s], p->peers.pub[s] | own),
				      memory_order_release);
	}
	p->peers.released[bit] = NULL;
	p->peers.held_hint[bit] = 0;
	int id = link_id(bit, l->inc);
	link_close(p, bit);
	queue_event(p, id, reason, held);
	pool_count_reclaimed(&p->pool, held);
	if (p->client)
		client_consumer_removed(p->client, p->name, id, reason, held);
	return held;
}

/* Drain what came on consumer `bit`'s channel socket; true if it hung up.
 * Consumers send nothing there: anything is read and dropped. A zero-length
 * datagram reads as 0 bytes too, so EOF is told by POLLRDHUP. */
static bool link_gone(struct link *l, uint32_t events)
{
	if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
		return true;
	char buf[64];
	for (int i = 0; i < 16; i++) {
		ssize_t k = recv(l->sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (k > 0)
			continue;
		if (k < 0)
			return errno != EAGAIN && errno != EINTR;
		struct pollfd pfd = {.fd = l->sock, .events = POLLRDHUP};
		if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return true;
	}
	return false;
}

/* Drain the wake sockets producer_events() left for later. */
static void drain_wakes(struct sv2shm_producer *p)
{
	while (p->undrained) {
		unsigned bit = (unsigned)__builtin_ctzll(p->undrained);
		p->undrained &= p->undrained - 1u;
		if (p->links[bit].used)
			wake_drain(p->links[bit].wake, 64);
	}
}

/* Wait up to timeout_ms for anything on the epoll fd, and handle it:
 * hang-ups (removed), wake-ups (drained, or with `later` marked for the
 * next wait to drain: a woken WAIT goes on to publish first). Returns the
 * consumers removed, or -errno. */
static int producer_events(struct sv2shm_producer *p, int timeout_ms, bool later)
{
	struct epoll_event evs[2 * MAX_CONSUMERS + 1];
	int n = epoll_wait(p->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int removed = 0;
	for (int i = 0; i < n; i++) {
		unsigned kind = evs[i].data.u32 >> 8, bit = evs[i].data.u32 & 0xffu;
		if (kind == EP_SELF) {
			uint64_t v;
			if (read(p->self_efd, &v, sizeof(v)) < 0) {
				/* EAGAIN: drained already */
			}
			continue;
		}
		if (kind == EP_BROKER) {
			if (p->client)
				client_process_internal(p->client); /* introductions */
			continue;
		}
		if (bit < 1 || bit > MAX_CONSUMERS || !p->links[bit].used)
			continue;
		if (kind == EP_WAKE) {
			if (later)
				p->undrained |= UINT64_C(1) << bit;
			else
				wake_drain(p->links[bit].wake, 64);
		} else if (kind == EP_LINK && link_gone(&p->links[bit], evs[i].events)) {
			remove_link(p, bit, SV2SHM_EVENT_HANGUP);
			removed++;
		}
	}
	return removed;
}

enum { TAG_POLL = 2, TAG_CANCEL = 3 }; /* futex waits: (n << 2) | 1 */

/* Take every completion: the current futex wait's, the poll's. Returns true
 * when the poll fired. */
static bool reap_wring(struct sv2shm_producer *p)
{
	struct io_uring_cqe *cqe;
	bool ep = false;
	while (io_uring_peek_cqe(&p->wring, &cqe) == 0) {
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		if (tag == p->futex_tag)
			p->futex_armed = false;
		else if (tag == TAG_POLL) {
			p->poll_armed = false;
			ep = true;
		}
		io_uring_cqe_seen(&p->wring, cqe);
	}
	return ep;
}

/* SV2SHM_NOTIFY_FUTEX: queue a fresh FUTEX_WAIT (cancelling the one an
 * earlier wait left queued) and the epfd poll (if not queued still), and
 * submit them. Fresh each time: a queued waiter can be moved to another word
 * by anyone who maps this one (FUTEX_CMP_REQUEUE needs only read access), so
 * a wait is never trusted past the one sleep it was queued for. */
static void arm_futex_wait(struct sv2shm_producer *p)
{
	_Atomic uint32_t *word = &p->mem.ctl->release_seq;
	reap_wring(p);
	if (p->futex_armed) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&p->wring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, p->futex_tag, 0);
			io_uring_sqe_set_data64(sqe, TAG_CANCEL);
		}
		p->futex_armed = false;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->wring);
	if (sqe) {
		p->futex_tag = ((p->futex_tag >> 2) + 1u) << 2 | 1u;
		notify_prep_futex_wait(sqe, word, atomic_load_explicit(word, memory_order_relaxed));
		io_uring_sqe_set_data64(sqe, p->futex_tag);
		p->futex_armed = true;
	}
	if (!p->poll_armed) {
		sqe = io_uring_get_sqe(&p->wring);
		if (sqe) {
			io_uring_prep_poll_add(sqe, p->epfd, POLLIN);
			io_uring_sqe_set_data64(sqe, TAG_POLL);
			p->poll_armed = true;
		}
	}
	io_uring_submit(&p->wring);
}

/* SV2SHM_NOTIFY_FUTEX: sleep until a wake-up, a poll event or the timeout.
 * Returns true when epfd fired. Completions of nothing we wait for (the
 * cancel of an earlier wait, that wait's own) do not end the sleep: they come
 * with every wait that follows one the poll or a timeout ended, and a sleep
 * that ended on them would make every later wait a busy loop. */
static bool futex_sleep(struct sv2shm_producer *p, int timeout_ms)
{
	if (!p->futex_armed && !p->poll_armed)
		return true; /* nothing to wait on (no room in the ring): look at epfd */
	uint64_t now = mono_ns(), end = now + (uint64_t)timeout_ms * 1000000u;
	do {
		uint64_t left = end - now;
		struct __kernel_timespec ts = {.tv_sec = (long long)(left / 1000000000u),
					       .tv_nsec = (long long)(left % 1000000000u)};
		struct io_uring_cqe *cqe = NULL;
		io_uring_wait_cqe_timeout(&p->wring, &cqe, &ts);
		bool ep = reap_wring(p);
		if (ep || !p->futex_armed)
			return ep; /* the poll fired, or our wait ended (woken, or the word moved) */
		now = mono_ns();
	} while (now < end);
	return false;
}

static int producer_wait(struct sv2shm_pool *pool, uint32_t seen, int timeout_ms)
{
	(void)seen;
	struct sv2shm_producer *p = pool->owner;
	/* Wake-ups deferred by SV2SHM_PUBLISH_MORE are owed now: the room we
	 * wait for may depend on a consumer that sleeps. */
	sv2shm_producer_flush(p);
	int slice = timeout_ms < 0 || timeout_ms > WAIT_SLICE_MS ? WAIT_SLICE_MS : timeout_ms;
	if (p->mech == SV2SHM_NOTIFY_FUTEX) {
		if (!futex_sleep(p, slice))
			return 0;
		slice = 0; /* epfd is readable: handle it without waiting */
	}
	int r = producer_events(p, slice, true);
	return r < 0 ? r : 0; /* the allocator checks the deadline and looks again */
}

/* Tell every consumer the wait epoch (odd: waiting). Absolute values. With
 * the futex, the wait is queued first: a consumer that sees the odd epoch
 * wakes us once per epoch, and a FUTEX_WAKE that came before the wait was
 * queued would be lost with nothing to show for it (release_seq, the word
 * waited on, does not change) — the wait would run to its deadline while
 * the consumer's next release, the one that frees a run's end, does not
 * wake again. Queued before the epoch is out, the wait catches every wake
 * sent for it; the allocator's last look comes after both. */
static void producer_announce(struct sv2shm_pool *pool, uint32_t epoch)
{
	struct sv2shm_producer *p = pool->owner;
	/* Wake-ups of earlier epochs, before any consumer can send one for
	 * this epoch (it sees the epoch only below): a drain here cannot take
	 * a wake-up we still need, and a socket left readable would end the
	 * sleep at once. */
	if (epoch & 1u) {
		drain_wakes(p);
		if (p->mech == SV2SHM_NOTIFY_FUTEX)
			arm_futex_wait(p);
	}
	for (unsigned b = 1; b <= MAX_CONSUMERS; b++)
		if (p->links[b].used)
			atomic_store_explicit(&p->links[b].ring->waiting, epoch, memory_order_seq_cst);
}

static void producer_before_wait(struct sv2shm_pool *pool);

/* A release by another thread of the producer's own process. */
static void producer_wake(struct sv2shm_pool *pool)
{
	struct sv2shm_producer *p = pool->owner;
	if (p->mech == SV2SHM_NOTIFY_FUTEX) {
		futex_wake_u32(&p->mem.ctl->release_seq);
		return;
	}
	uint64_t one = 1;
	if (write(p->self_efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the producer wakes. */
	}
}

SV2SHM_API int sv2shm_producer_new(const struct sv2shm_producer_options *o, struct sv2shm_producer **out)
{
	unsigned nslots;
	if (!o || !out)
		return -EINVAL;
	int r = pool_check_options(&o->pool, &nslots);
	if (r < 0)
		return r;
	unsigned entries = o->ring_entries ? o->ring_entries : 256;
	if (entries < 2 || entries > SV2SHM_RING_MAX_ENTRIES || (entries & (entries - 1)))
		return -EINVAL;
	if (o->notify != SV2SHM_NOTIFY_DEFAULT && o->notify != SV2SHM_NOTIFY_SOCKET && o->notify != SV2SHM_NOTIFY_FUTEX)
		return -EINVAL;
	if (o->max_held > nslots || (o->on_limit != SV2SHM_LIMIT_SKIP && o->on_limit != SV2SHM_LIMIT_DISCONNECT &&
				     o->on_limit != SV2SHM_LIMIT_REFUSE))
		return -EINVAL;

	struct sv2shm_producer *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->epfd = -1;
	p->self_efd = -1;
	p->broker_fd = -1;
	p->ring_entries = entries;
	p->socket_transport = o->socket_transport;
	/* Default: one slot less than the pool, so a consumer that stops
	 * reading leaves room for the others. (At publish time the slot being
	 * published is not held yet, so max_held == slots means "no limit".) */
	p->max_held = o->max_held ? o->max_held : (nslots > 1u ? nslots - 1u : 1u);
	p->on_limit = o->on_limit;
	r = region_create(o->pool.capacity, nslots, &p->mem);
	if (r < 0) {
		free(p);
		return r;
	}
	p->region_id = p->mem.ctl->region_id;
	p->self_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EP_SELF << 8};
	if (p->self_efd < 0 || p->epfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->self_efd, &ev) < 0) {
		r = -errno;
		goto fail;
	}
	/* The futex wait where this kernel's io_uring has the ops (and the
	 * caller did not ask for sockets or plain syscalls). */
	p->mech = SV2SHM_NOTIFY_SOCKET;
	if (o->notify != SV2SHM_NOTIFY_SOCKET && !o->no_io_uring && notify_uring_allowed() &&
	    io_uring_queue_init(8, &p->wring, 0) == 0) {
		if (notify_uring_has_futex_wait(&p->wring))
			p->mech = SV2SHM_NOTIFY_FUTEX;
		else
			io_uring_queue_exit(&p->wring);
	}
	snprintf(p->notify_name, sizeof(p->notify_name), "%s",
		 p->mech == SV2SHM_NOTIFY_FUTEX ? "io_uring futex-wait" : "socket-recv epoll");
	pool_init(&p->pool, p->mem.ctl, p->mem.data, o->pool.capacity, nslots, &o->pool);
	p->pool.owner = p;
	p->pool.peers = &p->peers;
	p->pool.wait = producer_wait;
	p->pool.wake = producer_wake;
	p->pool.announce = producer_announce;
	p->pool.before_wait = producer_before_wait;
	*out = p;
	return 0;
fail:
	if (p->self_efd >= 0)
		close(p->self_efd);
	if (p->epfd >= 0)
		close(p->epfd);
	region_mem_free(&p->mem);
	free(p);
	return r;
}

SV2SHM_API int sv2shm_producer_destroy(struct sv2shm_producer *p)
{
	if (!p)
		return 0;
	if (pool_busy(&p->pool))
		return -EBUSY; /* a slice of ours is still out, or being released */
	if (p->client)
		client_producer_destroyed(p->client, p); /* the broker tells our consumers */
	for (unsigned b = 1; b <= MAX_CONSUMERS; b++)
		link_close(p, b);
	pool_fini(&p->pool);
	if (p->mech == SV2SHM_NOTIFY_FUTEX)
		io_uring_queue_exit(&p->wring); /* cancels a queued wait or poll */
	close(p->self_efd);
	close(p->epfd);
	region_mem_free(&p->mem); /* consumers keep their own mappings */
	free(p);
	return 0;
}

SV2SHM_API struct sv2shm_pool *sv2shm_producer_pool(struct sv2shm_producer *p)
{
	return p ? &p->pool : NULL;
}

SV2SHM_API struct sv2shm_buffer *sv2shm_producer_buffer(struct sv2shm_producer *p)
{
	return p ? &p->pool.buf : NULL;
}

SV2SHM_API const char *sv2shm_producer_notify_name(const struct sv2shm_producer *p)
{
	return p ? p->notify_name : "?";
}

SV2SHM_API int sv2shm_producer_fd(const struct sv2shm_producer *p)
{
	return p ? p->epfd : -EINVAL;
}

SV2SHM_API int sv2shm_producer_add_consumer(struct sv2shm_producer *p, int sock)
{
	if (!p || sock < 0) {
		if (sock >= 0)
			close(sock);
		return -EINVAL;
	}
	int type = 0;
	socklen_t tl = sizeof(type);
	if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) {
		close(sock);
		return -EINVAL;
	}
	unsigned bit = 1;
	while (bit <= MAX_CONSUMERS && p->links[bit].used)
		bit++;
	if (bit > MAX_CONSUMERS) {
		close(sock);
		return -EMFILE;
	}
	struct link *l = &p->links[bit];
	uint32_t inc = l->next_inc % INC_LIMIT;
	l->sock = sock;
	l->ring_fd = -1;
	l->wake = -1;
	int peer_wake = -1;
	int r;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = -errno;
		goto fail;
	}
	l->wake = sv[0];
	peer_wake = sv[1];
	l->ring_size = ring_bytes(p->ring_entries);
	void *map = NULL;
	l->ring_fd = region_memfd("sv2shm-ring", l->ring_size, F_SEAL_SHRINK | F_SEAL_GROW, &map);
	if (l->ring_fd < 0) {
		r = l->ring_fd;
		goto fail;
	}
	l->ring = map;
	l->ring->magic = SV2SHM_RING_MAGIC;
	l->ring->version = SV2SHM_RING_VERSION;
	l->ring->nentries = p->ring_entries;
	l->ring->entry_size = SV2SHM_RING_ENTRY_SIZE;
	l->ring->region_id = p->region_id;
	if (fcntl(l->ring_fd, F_ADD_SEALS, F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}

	struct sv2shm_msg_setup msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_SETUP);
	msg.holder = bit;
	msg.notify = (uint32_t)p->mech;
	msg.region_id = p->region_id;
	msg.capacity = p->mem.cap;
	msg.nslots = p->pool.nslots;
	msg.ring_entries = p->ring_entries;
	msg.flags = p->socket_transport ? SV2SHM_SETUP_SOCKET : 0;
	int fds[SETUP_NFDS];
	fds[SETUP_FD_CTL] = p->mem.ctl_fd;
	fds[SETUP_FD_DATA] = p->mem.data_fd;
	fds[SETUP_FD_RING] = l->ring_fd;
	fds[SETUP_FD_WAKE] = peer_wake;
	r = chan_send(sock, &msg, sizeof(msg), fds, SETUP_NFDS);
	close(peer_wake);
	peer_wake = -1;
	if (r < 0)
		goto fail;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (EP_LINK << 8) | bit};
	struct epoll_event evw = {.events = EPOLLIN, .data.u32 = (EP_WAKE << 8) | bit};
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, sock, &ev) < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, l->wake, &evw) < 0) {
		r = -errno;
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, sock, NULL);
		goto fail;
	}
	l->used = true;
	l->inc = inc;
	l->next_inc = inc + 1u;
	l->order = ++p->arrivals;
	p->peers.released[bit] = l->ring->released;
	return link_id(bit, inc);
fail:
	if (l->ring)
		munmap(l->ring, l->ring_size);
	if (l->ring_fd >= 0)
		close(l->ring_fd);
	if (l->wake >= 0)
		close(l->wake);
	if (peer_wake >= 0)
		close(peer_wake);
	close(sock);
	uint32_t next_inc = l->next_inc;
	memset(l, 0, sizeof(*l));
	l->next_inc = next_inc;
	return r;
}

/* Room for one more descriptor in the consumer's ring? The tail is read
 * only when the ring looks full from the last tail seen (tails only grow),
 * so a streaming producer does not pull the consumer's line every time.
 * A tail that makes no sense is a broken peer (-EPROTO). */
static int ring_room(struct sv2shm_producer *p, struct link *l)
{
	if (l->head - l->tail_seen < p->ring_entries)
		return 0;
	uint32_t tail = atomic_load_explicit(&l->ring->tail, memory_order_acquire);
	uint32_t used = l->head - tail;
	if (used > p->ring_entries || tail - l->tail_seen > p->ring_entries)
		return -EPROTO;
	l->tail_seen = tail;
	return used < p->ring_entries ? 0 : -EAGAIN;
}

/* The entry at l->head is filled: its sequence word makes it the
 * consumer's, then the head counts it. A plain store: the fence that
 * orders it before the look at consumer_sleeping is wake_pending()'s, once
 * per batch — a fence here made every entry wait for its lines to leave
 * our store buffer, one cross-core miss per slice. */
static inline void ring_commit_entry(struct sv2shm_producer *p, struct link *l)
{
	atomic_store_explicit(ring_entry_seq(l->ring, p->ring_entries, l->head), l->head + 1u, memory_order_release);
	STAMP(STAMP_P_ENTRY_OUT);
	l->head++;
	atomic_store_explicit(&l->ring->head, l->head, memory_order_release);
}

/* ring_commit_entry(), and the consumer's wake check is due. */
static void ring_commit(struct sv2shm_producer *p, struct link *l, unsigned bit)
{
	ring_commit_entry(p, l);
	p->wake_due |= UINT32_C(1) << bit;
}

static void ring_push(struct sv2shm_producer *p, unsigned bit, const struct sv2shm_desc *d)
{
	struct link *l = &p->links[bit];
	sv2shm_desc_encode(d, ring_entry(l->ring, p->ring_entries, l->head));
	ring_commit(p, l, bit);
}

/* Wake a consumer that said it sleeps, the way it asked: a futex wake on
 * its ring's wake_seq (a consumer blocked in recv; never blocks us, ~0.3 us)
 * or a datagram (an event loop polling its fd). Taking the flag back means
 * one wake-up per sleep however many slices come meanwhile. The caller
 * fenced after the heads it stored (wake_pending()). */
static void wake_link(struct link *l)
{
	if (!l->ring)
		return;
	if (!atomic_load_explicit(&l->ring->consumer_sleeping, memory_order_seq_cst))
		return;
	uint32_t how = atomic_exchange_explicit(&l->ring->consumer_sleeping, SLEEP_NO, memory_order_seq_cst);
	if (how == SLEEP_FUTEX) {
		atomic_store_explicit(&l->ring->wake_seq, ++l->wake_seq, memory_order_seq_cst);
		futex_wake_u32(&l->ring->wake_seq);
	} else if (how) {
		wake_send(l->wake);
	}
}

/*
 * The wake check for every consumer given an entry since its last one. One
 * seq_cst fence orders all the heads stored before it ahead of the looks at
 * consumer_sleeping after it; it pairs with the consumer's "announce sleep
 * (seq_cst), re-read the head (seq_cst)": either the consumer sees a head,
 * or we see it sleeping and wake it.
 */
/* wake_link() for the consumers in `due`, after the fence. */
static void wake_links(struct sv2shm_producer *p, uint32_t due)
{
	for (; due; due &= due - 1u) {
		struct link *l = &p->links[__builtin_ctz(due)];
		if (l->used)
			wake_link(l);
	}
}

static void wake_pending(struct sv2shm_producer *p)
{
	uint32_t due = p->wake_due;
	if (!due)
		return;
	p->wake_due = 0;
	atomic_thread_fence(memory_order_seq_cst);
	wake_links(p, due);
}

SV2SHM_API int sv2shm_producer_flush(struct sv2shm_producer *p)
{
	if (!p)
		return -EINVAL;
	wake_pending(p);
	return 0;
}

/* The pool's wait is about to spin for a release: a consumer asleep on
 * entries published with SV2SHM_PUBLISH_MORE must get them first, or the
 * spin would wait for a release that cannot come. */
static void producer_before_wait(struct sv2shm_pool *pool)
{
	wake_pending(pool->owner);
}

/* Has the consumer's channel socket room for one more message? (A message
 * that does not fit fails with EAGAIN anyway: this tells it in advance, so
 * that SV2SHM_LIMIT_REFUSE can refuse before anything is sent.) */
static bool sock_room(int sock)
{
	struct pollfd pfd = {.fd = sock, .events = POLLOUT};
	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT);
}

/* Is consumer `bit` at its limit of slots held? Counted exactly only when
 * the cheap upper bound says it may be. */
static bool at_limit(struct sv2shm_producer *p, unsigned bit)
{
	unsigned *hint = &p->peers.held_hint[bit];
	if (*hint < p->max_held)
		return false;
	*hint = slot_count_held(&p->peers, bit, p->pool.mask_view, p->pool.gen);
	return *hint >= p->max_held;
}

/* Consumers in `bits` did not get a slice because of their limit (or a full
 * socket): skip them (counted, and the count is theirs to read) or remove
 * them, as the policy says. */
static void apply_limit(struct sv2shm_producer *p, uint32_t bits)
{
	while (bits) {
		unsigned b = (unsigned)__builtin_ctz(bits);
		bits &= bits - 1u;
		struct link *l = &p->links[b];
		if (!l->used)
			continue;
		if (p->on_limit == SV2SHM_LIMIT_DISCONNECT) {
			remove_link(p, b, SV2SHM_EVENT_LIMIT);
		} else {
			l->missed++;
			atomic_store_explicit(&l->ring->missed, l->missed, memory_order_release);
		}
	}
}

/* A send to consumer `bit` failed with `e`: a full socket is a consumer at
 * its limit (added to *full), anything else a consumer gone (to *gone). */
static void send_failed(int e, uint32_t bit, uint32_t *full, uint32_t *gone)
{
	if (e == -EAGAIN)
		*full |= bit;
	else
		*gone |= bit;
}

/* An alloc-mode slice: copied once into its own sealed memfd, sent to each
 * consumer. Sets *full / *gone for the consumers it could not reach. */
static void publish_overflow(struct sv2shm_producer *p, struct sv2shm_slice *s, uint32_t bits, int *err, uint32_t *full,
			     uint32_t *gone)
{
	int fd = region_overflow_memfd(s->data, s->len);
	if (fd < 0) {
		*err = fd;
		return;
	}
	struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
				.kind = SV2SHM_DESC_OVERFLOW,
				.region_id = p->region_id,
				.length = s->len};
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_OVERFLOW);
	sv2shm_desc_encode(&d, msg.desc);
	for (uint32_t m = bits; m; m &= m - 1u) {
		struct link *l = &p->links[__builtin_ctz(m)];
		/* The message first, then the marker that tells the consumer to
		 * read it: it is on the socket by the time the marker is seen. */
		int e = chan_send(l->sock, &msg, sizeof(msg), &fd, 1);
		if (e < 0) {
			send_failed(e, m & -m, full, gone);
			continue;
		}
		if (!p->socket_transport)
			ring_push(p, (unsigned)__builtin_ctz(m), &d);
	}
	close(fd);
}

/* The plain fallback: one DESC message per consumer. A consumer the message
 * could not reach never held the slot (*full / *gone say which). */
static void publish_socket(struct sv2shm_producer *p, const struct sv2shm_desc *d, uint32_t bits, uint32_t *full,
			   uint32_t *gone)
{
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_DESC);
	sv2shm_desc_encode(d, msg.desc);
	for (uint32_t m = bits; m; m &= m - 1u) {
		int e = chan_send(p->links[__builtin_ctz(m)].sock, &msg, sizeof(msg), NULL, 0);
		if (e < 0)
			send_failed(e, m & -m, full, gone);
	}
}

/* Slot `slot` at `gen` goes to the consumers in `to`: the private record
 * first, then the consumers' view, then our hold goes (the slot is never
 * free in between). Both publish paths, before the ring entry or message. */
static void hand_over_records(struct sv2shm_producer *p, unsigned slot, uint32_t gen, uint32_t to)
{
	p->peers.pub[slot] = to;
	atomic_store_explicit(&p->mem.ctl->slots[slot].state, SV2SHM_STATE(gen, to), memory_order_release);
	atomic_store_explicit(&p->pool.own_gen[slot], 0u, memory_order_release);
}

/* The general path's hand-over: the records, and the slice's descriptor;
 * *s is cleared. */
static struct sv2shm_desc hand_over(struct sv2shm_producer *p, struct sv2shm_slice *s, uint32_t to)
{
	unsigned slot = s->_slot;
	uint32_t gen = s->_gen;
	struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
				.kind = SV2SHM_DESC_POOL,
				.slot = (uint16_t)slot,
				.generation = gen,
				.region_id = p->region_id,
				.offset = p->pool.data_off[slot],
				.length = p->pool.data_len[slot]};
	hand_over_records(p, slot, gen, to);
	memset(s, 0, sizeof(*s));
	return d;
}

/* publish_one(): the case it does not take (the general path does). */
#define PUBLISH_GENERAL 1000

/*
 * The common case on its own: one consumer, a pool slice, the ring, room in
 * it and the consumer under its limit — the general path's steps in the
 * same order (hand_over_records(), then the entry), without its loops over
 * consumer sets, and with the entry written straight from the slot's
 * records: from here to the entry's sequence word is the producer's share
 * of a round trip. Anything else (a full or broken ring, a consumer at its
 * limit) goes to the general path, which decides it from scratch.
 */
static int publish_one(struct sv2shm_producer *p, struct sv2shm_slice *s, int id, unsigned flags)
{
	int b = resolve_id(p, id);
	if (b < 0)
		return b;
	struct link *l = &p->links[b];
	if (ring_room(p, l) != 0 || at_limit(p, (unsigned)b))
		return PUBLISH_GENERAL;
	unsigned slot = s->_slot;
	uint32_t gen = s->_gen;
	uint64_t length = p->pool.data_len[slot];
	hand_over_records(p, slot, gen, UINT32_C(1) << b);
	ring_put_pool_desc(ring_entry(l->ring, p->ring_entries, l->head), (uint16_t)slot, gen, p->region_id,
			   p->pool.data_off[slot], length);
	ring_commit(p, l, (unsigned)b);
	memset(s, 0, sizeof(*s));
	p->peers.held_hint[b]++;
	pool_count_published(&p->pool, length);
	if (!(flags & SV2SHM_PUBLISH_MORE))
		wake_pending(p);
	/* The claim's and the tidy's view, now that the entry is out. */
	pool_sync_view_handed(&p->pool, slot);
	return 0;
}

/* A publish went out. A wait that a wake datagram ended left the datagram
 * unread, so that this slice went out first (producer_events' `later`);
 * read it now, or sv2shm_producer_fd() stays readable for an event loop
 * with nothing to process. */
static inline int published(struct sv2shm_producer *p, int r)
{
	if (p->undrained)
		drain_wakes(p);
	return r;
}

/* What the fast publish leaves to a call (its tail call, so that it needs
 * no frame itself): the wake checks of `due` (after the fence; 0: none),
 * a view sync that is more than the mask and counters, the undrained wake
 * datagrams. */
static __attribute__((noinline)) int publish_finish(struct sv2shm_producer *p, unsigned slot, uint32_t due)
{
	wake_links(p, due);
	pool_sync_view_handed(&p->pool, slot);
	return published(p, 0);
}

static __attribute__((noinline)) int publish_general(struct sv2shm_producer *p, struct sv2shm_slice *s,
						     const int *ids, unsigned n, unsigned flags);
static __attribute__((noinline)) int publish_fast(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned b,
						  unsigned flags);

/*
 * publish_one()'s case again, for a stream of small slices: a pool slice of
 * ours to one live consumer whose ring has room by the tail last seen and
 * whose hold count is under the limit by its upper bound. Everything else
 * goes to the general path, which decides from scratch (nothing is changed
 * before the checks pass). It calls nothing on its way, so it needs no
 * stack frame: a stream's producer is bound by the stores it makes per
 * slice (each one a store-buffer entry waiting behind the ring entry's and
 * the bytes' lines, which the consumer's core holds), and a frame's
 * register saves were a sixth of them.
 */
SV2SHM_API int sv2shm_producer_publish(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n,
				       unsigned flags)
{
	if (!p || !s || !ids || n != 1 || (flags & ~SV2SHM_PUBLISH_MORE) || s->_kind != SV2SHM_SLICE_POOL ||
	    s->_owner != &p->pool || p->socket_transport)
		return publish_general(p, s, ids, n, flags);
	unsigned slot = s->_slot;
	uint32_t gen = s->_gen;
	int id = ids[0];
	unsigned b = (unsigned)id & 31u;
	if (slot >= p->pool.nslots || gen == 0 || atomic_load_explicit(&p->pool.own_gen[slot], memory_order_relaxed) != gen ||
	    id <= 0 || b < 1 || b > MAX_CONSUMERS)
		return publish_general(p, s, ids, n, flags);
	struct link *l = &p->links[b];
	if (!l->used || l->inc != (uint32_t)id >> 5 || l->head - l->tail_seen >= p->ring_entries ||
	    p->peers.held_hint[b] >= p->max_held)
		return publish_general(p, s, ids, n, flags);
	return publish_fast(p, s, b, flags);
}

/* sv2shm_producer_publish()'s fast case once its checks passed (a tail
 * call: the checks' registers are free again, and this needs no frame). */
static __attribute__((noinline)) int publish_fast(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned b,
						  unsigned flags)
{
	struct link *l = &p->links[b];
	unsigned slot = s->_slot;
	uint32_t gen = s->_gen;
	uint32_t to = UINT32_C(1) << b;
	uint64_t length = p->pool.data_len[slot];
	hand_over_records(p, slot, gen, to);
	ring_put_pool_desc(ring_entry(l->ring, p->ring_entries, l->head), (uint16_t)slot, gen, p->region_id,
			   p->pool.data_off[slot], length);
	ring_commit_entry(p, l); /* its wake check is the one below */
	memset(s, 0, sizeof(*s));
	p->peers.held_hint[b]++;
	pool_count_published(&p->pool, length);
	uint32_t wake = 0;
	if (flags & SV2SHM_PUBLISH_MORE) {
		p->wake_due |= to;
	} else {
		/* wake_pending(), with this consumer's bit in a register. */
		uint32_t due = p->wake_due;
		if (due)
			p->wake_due = 0;
		atomic_thread_fence(memory_order_seq_cst);
		if ((due & ~to) || atomic_load_explicit(&l->ring->consumer_sleeping, memory_order_seq_cst))
			wake = due | to;
	}
	/* The claim's and the tidy's view, now that the entry is out: the
	 * common part here, the rest (and wake-ups, and undrained datagrams)
	 * in publish_finish(). */
	if (wake || p->undrained || !pool_sync_view_mask(&p->pool, slot))
		return publish_finish(p, slot, wake);
	return 0;
}

static int publish_general_inner(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n,
				 unsigned flags);

/* The general path, and then the wake check whenever this publish did not
 * put an entry out under SV2SHM_PUBLISH_MORE: a publish without the flag
 * wakes the consumers with entries pending even when it delivers nothing
 * (every consumer skipped at its limit, a bad id, an overflow memfd that
 * could not be made) — or a consumer sent MORE entries would sleep on them
 * while the producer, never waiting for room, goes on skipping it. (A no-op
 * when nothing is pending: the success path checked already.) */
static int publish_general(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n,
			   unsigned flags)
{
	int r = publish_general_inner(p, s, ids, n, flags);
	if (p && (!(flags & SV2SHM_PUBLISH_MORE) || r != 0))
		wake_pending(p);
	return r;
}

static int publish_general_inner(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n,
				 unsigned flags)
{
	if (!p || !s || !ids || n == 0 || n > MAX_CONSUMERS || (flags & ~SV2SHM_PUBLISH_MORE))
		return -EINVAL;
	bool pool_slice = s->_kind == SV2SHM_SLICE_POOL && s->_owner == &p->pool;
	if (!pool_slice && !(s->_kind == SV2SHM_SLICE_SYSTEM && s->len > 0))
		return -EINVAL;
	if (pool_slice && (s->_slot >= p->pool.nslots || s->_gen == 0 ||
			   atomic_load_explicit(&p->pool.own_gen[s->_slot], memory_order_relaxed) != s->_gen))
		return -EINVAL; /* not a live slice of ours (0: no generation is ever 0) */
	if (n == 1 && pool_slice && !p->socket_transport) {
		int r = publish_one(p, s, ids[0], flags);
		if (r != PUBLISH_GENERAL)
			return r < 0 ? r : published(p, r);
	}
	/* The view first (pool.h): this path is not the round trip's. */
	pool_sync_view(&p->pool);
	uint32_t bits = 0;
	for (unsigned i = 0; i < n; i++) {
		int b = resolve_id(p, ids[i]);
		if (b < 0)
			return b;
		if (bits & (UINT32_C(1) << b))
			return -EINVAL;
		bits |= UINT32_C(1) << b;
	}

	/* Who can take it: a broken ring removes its consumer; a full ring or a
	 * consumer at its slot limit is "at its limit". */
	uint32_t deliver = 0, over = 0, broken = 0;
	for (uint32_t m = bits; m; m &= m - 1u) {
		unsigned b = (unsigned)__builtin_ctz(m);
		int r = p->socket_transport ? 0 : ring_room(p, &p->links[b]);
		if (r == -EPROTO)
			broken |= UINT32_C(1) << b;
		else if (r == -EAGAIN || (pool_slice && at_limit(p, b)) ||
			 ((p->socket_transport || !pool_slice) && !sock_room(p->links[b].sock)))
			over |= UINT32_C(1) << b;
		else
			deliver |= UINT32_C(1) << b;
	}
	for (uint32_t m = broken; m; m &= m - 1u)
		remove_link(p, (unsigned)__builtin_ctz(m), SV2SHM_EVENT_PROTOCOL);
	if (over && p->on_limit == SV2SHM_LIMIT_REFUSE) {
		/* A full ring may be one whose consumer sleeps on entries
		 * published with SV2SHM_PUBLISH_MORE: it is woken here, so
		 * that a caller retrying until there is room gets it. */
		wake_pending(p);
		return -EAGAIN;
	}
	apply_limit(p, over);
	int missing = (broken | over) ? __builtin_popcount(broken | over) : 0;

	if (!deliver) {
		sv2shm_slice_release(s); /* nobody takes it: the slot frees at once */
		return published(p, missing);
	}
	uint32_t full = 0, gone = 0;
	if (!pool_slice) {
		int err = 0;
		publish_overflow(p, s, deliver, &err, &full, &gone);
		if (err < 0)
			return err; /* nothing sent; *s is still the caller's */
		pool_count_published(&p->pool, s->len);
		sv2shm_slice_release(s);
	} else {
		unsigned slot = s->_slot;
		uint32_t gen = s->_gen;
		struct sv2shm_desc d = hand_over(p, s, deliver);
		if (p->socket_transport) {
			publish_socket(p, &d, deliver, &full, &gone);
			if (full | gone) {
				p->peers.pub[slot] &= ~(full | gone);
				atomic_store_explicit(&p->mem.ctl->slots[slot].state,
						      SV2SHM_STATE(gen, p->peers.pub[slot]), memory_order_release);
			}
		} else {
			for (uint32_t m = deliver; m; m &= m - 1u)
				ring_push(p, (unsigned)__builtin_ctz(m), &d);
		}
		for (uint32_t m = deliver & ~(full | gone); m; m &= m - 1u)
			p->peers.held_hint[__builtin_ctz(m)]++;
		pool_count_published(&p->pool, d.length);
	}
	apply_limit(p, full); /* a full socket is a consumer not keeping up */
	for (uint32_t m = gone; m; m &= m - 1u)
		remove_link(p, (unsigned)__builtin_ctz(m), SV2SHM_EVENT_HANGUP);
	uint32_t failed = full | gone;
	if (failed)
		missing += __builtin_popcount(failed);
	if (!(flags & SV2SHM_PUBLISH_MORE))
		wake_pending(p);
	return published(p, missing);
}

SV2SHM_API int sv2shm_producer_remove_consumer(struct sv2shm_producer *p, int id)
{
	if (!p)
		return -EINVAL;
	int b = resolve_id(p, id);
	if (b < 0)
		return b;
	return (int)remove_link(p, (unsigned)b, SV2SHM_EVENT_REMOVED);
}

SV2SHM_API int sv2shm_producer_process(struct sv2shm_producer *p)
{
	if (!p)
		return -EINVAL;
	pool_sync_view(&p->pool);
	drain_wakes(p);
	return producer_events(p, 0, false);
}

SV2SHM_API int sv2shm_producer_next_event(struct sv2shm_producer *p, struct sv2shm_producer_event *ev)
{
	if (!p || !ev)
		return -EINVAL;
	if (!p->ev_len)
		return 0;
	*ev = p->evq[p->ev_head];
	p->ev_head = (p->ev_head + 1u) % EVQ_SIZE;
	p->ev_len--;
	return 1;
}

SV2SHM_API uint64_t sv2shm_producer_events_dropped(const struct sv2shm_producer *p)
{
	return p ? p->ev_dropped : 0;
}

SV2SHM_API int sv2shm_producer_held(struct sv2shm_producer *p, int id)
{
	if (!p)
		return -EINVAL;
	int b = resolve_id(p, id);
	if (b < 0)
		return b;
	return (int)slot_count_held(&p->peers, (unsigned)b, p->pool.mask_view, p->pool.gen);
}

/* --- consumers in arrival order; fan-out and round-robin ---------------------- */

SV2SHM_API int sv2shm_producer_consumers(const struct sv2shm_producer *p, int *ids, unsigned cap)
{
	if (!p || (!ids && cap))
		return -EINVAL;
	unsigned n = 0;
	uint64_t last = 0;
	/* At most 31: a selection by arrival order is cheap enough. */
	for (;;) {
		unsigned best = 0;
		for (unsigned b = 1; b <= MAX_CONSUMERS; b++) {
			const struct link *l = &p->links[b];
			if (l->used && l->order > last && (!best || l->order < p->links[best].order))
				best = b;
		}
		if (!best)
			break;
		if (n < cap)
			ids[n] = link_id(best, p->links[best].inc);
		n++;
		last = p->links[best].order;
	}
	return (int)n;
}

SV2SHM_API int sv2shm_producer_publish_all(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned flags)
{
	if (!p || !s)
		return -EINVAL;
	int ids[MAX_CONSUMERS];
	int n = sv2shm_producer_consumers(p, ids, MAX_CONSUMERS);
	if (n == 0)
		return -ENOENT;
	return sv2shm_producer_publish(p, s, ids, (unsigned)n, flags);
}

/* Could consumer `bit` take a slice now (not at its limit)? */
static bool can_take(struct sv2shm_producer *p, unsigned bit, bool pool_slice)
{
	struct link *l = &p->links[bit];
	int r = p->socket_transport ? 0 : ring_room(p, l);
	if (r < 0)
		return false; /* full, or broken (the next fan-out or process() removes it) */
	if (pool_slice && at_limit(p, bit))
		return false;
	return !((p->socket_transport || !pool_slice) && !sock_room(l->sock));
}

SV2SHM_API int sv2shm_producer_publish_next(struct sv2shm_producer *p, struct sv2shm_slice *s, unsigned flags)
{
	if (!p || !s)
		return -EINVAL;
	bool pool_slice = s->_kind == SV2SHM_SLICE_POOL;
	bool any = false;
	for (unsigned k = 0; k < MAX_CONSUMERS; k++) {
		unsigned b = 1u + (p->rr_next + k) % MAX_CONSUMERS;
		if (!p->links[b].used)
			continue;
		any = true;
		if (!can_take(p, b, pool_slice))
			continue;
		int id = link_id(b, p->links[b].inc);
		p->rr_next = b % MAX_CONSUMERS; /* the next one starts after b */
		int r = sv2shm_producer_publish(p, s, &id, 1, flags);
		if (r < 0)
			return r;
		/* > 0: its socket filled between the check and the send (only
		 * with the socket transport or an alloc-mode slice): consumed. */
		return r > 0 ? -ECONNRESET : id;
	}
	if (any)
		wake_pending(p); /* every consumer at its limit: one may sleep on MORE entries */
	return any ? -EAGAIN : -ENOENT;
}

/* --- the broker client's side (client_priv.h) -------------------------------- */

void producer_attach_client(struct sv2shm_producer *p, struct sv2shm_client *c, const char *name)
{
	p->client = c;
	snprintf(p->name, sizeof(p->name), "%s", name);
	producer_client_fd_changed(p);
}

void producer_client_fd_changed(struct sv2shm_producer *p)
{
	int fd = p->client ? client_broker_fd(p->client) : -1;
	if (fd == p->broker_fd)
		return;
	if (p->broker_fd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->broker_fd, NULL);
	p->broker_fd = -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EP_BROKER << 8};
	if (fd >= 0 && epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		p->broker_fd = fd;
}

int producer_ctl_fd(const struct sv2shm_producer *p)
{
	return p->mem.ctl_fd;
}

void producer_geometry(const struct sv2shm_producer *p, uint64_t *capacity, unsigned *slots, int *policy)
{
	*capacity = p->mem.cap;
	*slots = p->pool.nslots;
	*policy = p->pool.policy;
}

const char *producer_name(const struct sv2shm_producer *p)
{
	return p->name;
}

int producer_introduce(struct sv2shm_producer *p, int sock, pid_t pid, unsigned *holder, int *ring_fd)
{
	int id = sv2shm_producer_add_consumer(p, sock);
	if (id < 0)
		return id;
	unsigned b = (unsigned)id & 31u;
	p->links[b].pid = pid;
	*holder = b;
	*ring_fd = p->links[b].ring_fd;
	return id;
}

void producer_each_consumer(const struct sv2shm_producer *p, producer_consumer_fn fn, void *user)
{
	for (unsigned b = 1; b <= MAX_CONSUMERS; b++) {
		const struct link *l = &p->links[b];
		if (l->used)
			fn(user, link_id(b, l->inc), b, l->pid, l->ring_fd);
	}
}
