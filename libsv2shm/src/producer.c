/*
 * The producer: a pool over a shared region, and one channel per consumer
 * (socket + descriptor ring). Publishing a slice sets the consumers' holder
 * bits in the slot's state word, writes one descriptor into each ring, and
 * drops the producer's own hold; a consumer is woken through its eventfd only
 * when it said it was going to sleep.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "notify.h"
#include "pool.h"
#include "region.h"

#define MAX_CONSUMERS (SV2SHM_MAX_HOLDERS - 1) /* holder bit 0 is the producer */

struct link {
	bool used;
	int sock;
	int wake_efd; /* the consumer sleeps on it */
	int ring_fd;
	struct sv2shm_ring *ring;
	size_t ring_size;
	uint32_t head;    /* private copy of ring->head */
	bool wake_due;    /* published since the last wake check */
};

struct sv2shm_producer {
	struct sv2shm_pool pool;
	struct region_mem mem;
	int mech;
	uint64_t region_id; /* private copy: consumers can write the control block */
	int notify_efd; /* consumers -> producer (EVENTFD mechanism) */
	struct notifier notifier;
	unsigned ring_entries;
	bool socket_transport;
	int epfd;
	struct link links[MAX_CONSUMERS + 1]; /* index = consumer id */
};

/* Longest single sleep of a waiting producer: it then looks for consumers
 * that hung up (their slots come back) and for a lost wake-up. */
#define WAIT_SLICE_MS 100

static int producer_wait(struct sv2shm_pool *pool, uint32_t seen, int timeout_ms)
{
	struct sv2shm_producer *p = pool->owner;
	/* Wake-ups deferred by SV2SHM_PUBLISH_MORE are owed now: the room we
	 * wait for may depend on a consumer that sleeps. */
	sv2shm_producer_flush(p);
	if (sv2shm_producer_process(p) > 0)
		return 0; /* a dead consumer's slots were reclaimed: look again */
	int slice = timeout_ms < 0 || timeout_ms > WAIT_SLICE_MS ? WAIT_SLICE_MS : timeout_ms;
	int r = notifier_wait(&p->notifier, seen, slice);
	if (r == -ETIMEDOUT && slice < timeout_ms)
		r = 0; /* not the caller's deadline yet: it loops */
	if (r == -ETIMEDOUT && timeout_ms < 0)
		r = 0;
	return r;
}

/* A release by another thread of the producer's own process. */
static void producer_wake(struct sv2shm_pool *pool)
{
	struct sv2shm_producer *p = pool->owner;
	if (p->mech == SV2SHM_NOTIFY_FUTEX) {
		futex_wake_u32(&p->mem.ctl->release_seq);
	} else {
		uint64_t one = 1;
		if (write(p->notify_efd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is already non-zero, the producer wakes. */
		}
	}
}

static int choose_mech(int asked, bool want_uring)
{
	if (asked == SV2SHM_NOTIFY_EVENTFD || asked == SV2SHM_NOTIFY_FUTEX)
		return asked;
	/* Default: measured in bench/ipc.c (see BENCHES.md): the futex wake
	 * through io_uring where the kernel has it, else the eventfd write. */
	return want_uring && notify_uring_has_futex() ? SV2SHM_NOTIFY_FUTEX : SV2SHM_NOTIFY_EVENTFD;
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
	if (o->notify < SV2SHM_NOTIFY_DEFAULT || o->notify > SV2SHM_NOTIFY_FUTEX)
		return -EINVAL;

	struct sv2shm_producer *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->notify_efd = -1;
	p->epfd = -1;
	p->ring_entries = entries;
	p->socket_transport = o->socket_transport;
	r = region_create(o->pool.capacity, nslots, &p->mem);
	if (r < 0) {
		free(p);
		return r;
	}
	p->region_id = p->mem.ctl->region_id;
	p->notify_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->notify_efd < 0 || p->epfd < 0) {
		r = -errno;
		goto fail;
	}
	p->mech = choose_mech(o->notify, !o->no_io_uring);
	r = notifier_open(&p->notifier, p->mech, p->notify_efd, &p->mem.ctl->release_seq, !o->no_io_uring);
	if (r < 0)
		goto fail;
	pool_init(&p->pool, p->mem.ctl, p->mem.data, o->pool.capacity, nslots, &o->pool);
	p->pool.owner = p;
	p->pool.wait = producer_wait;
	p->pool.wake = producer_wake;
	*out = p;
	return 0;
fail:
	if (p->notify_efd >= 0)
		close(p->notify_efd);
	if (p->epfd >= 0)
		close(p->epfd);
	region_mem_free(&p->mem);
	free(p);
	return r;
}

static void link_close(struct sv2shm_producer *p, int id)
{
	struct link *l = &p->links[id];
	if (!l->used)
		return;
	epoll_ctl(p->epfd, EPOLL_CTL_DEL, l->sock, NULL);
	close(l->sock);
	close(l->wake_efd);
	close(l->ring_fd);
	munmap(l->ring, l->ring_size);
	memset(l, 0, sizeof(*l));
}

SV2SHM_API int sv2shm_producer_destroy(struct sv2shm_producer *p)
{
	if (!p)
		return 0;
	if (pool_busy(&p->pool))
		return -EBUSY; /* a slice of ours is still out, or being released */
	for (int id = 1; id <= MAX_CONSUMERS; id++)
		link_close(p, id);
	notifier_close(&p->notifier);
	pool_fini(&p->pool);
	close(p->notify_efd);
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
	return p ? p->notifier.name : "?";
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
	int id = 1;
	while (id <= MAX_CONSUMERS && p->links[id].used)
		id++;
	if (id > MAX_CONSUMERS) {
		close(sock);
		return -EMFILE;
	}
	struct link *l = &p->links[id];
	l->sock = sock;
	l->ring_fd = -1;
	int r;
	l->wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wake_efd < 0) {
		r = -errno;
		goto fail;
	}
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
	l->ring->entry_size = SV2SHM_DESC_SIZE;
	l->ring->region_id = p->region_id;
	if (fcntl(l->ring_fd, F_ADD_SEALS, F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}

	struct sv2shm_msg_setup msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_SETUP);
	msg.holder = (uint32_t)id;
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
	fds[SETUP_FD_WAKE] = l->wake_efd;
	fds[SETUP_FD_NOTIFY] = p->notify_efd;
	r = chan_send(sock, &msg, sizeof(msg), fds, SETUP_NFDS);
	if (r < 0)
		goto fail;
	/* Later sends (alloc-mode slices) must not block forever on a stuck
	 * consumer. */
	struct timeval tv = {.tv_sec = 1};
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLHUP, .data.u32 = (uint32_t)id};
	if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, sock, &ev) < 0) {
		r = -errno;
		goto fail;
	}
	l->used = true;
	return id;
fail:
	if (l->ring)
		munmap(l->ring, l->ring_size);
	if (l->ring_fd >= 0)
		close(l->ring_fd);
	if (l->wake_efd >= 0)
		close(l->wake_efd);
	close(sock);
	memset(l, 0, sizeof(*l));
	return r;
}

/* Room for one more descriptor in consumer id's ring? A tail the consumer
 * wrote that makes no sense is treated as a full ring and a broken peer. */
static int ring_room(struct sv2shm_producer *p, struct link *l)
{
	uint32_t tail = atomic_load_explicit(&l->ring->tail, memory_order_acquire);
	uint32_t used = l->head - tail;
	if (used > p->ring_entries)
		return -EPROTO;
	return used < p->ring_entries ? 0 : -EAGAIN;
}

static void ring_push(struct sv2shm_producer *p, struct link *l, const struct sv2shm_desc *d)
{
	sv2shm_desc_encode(d, ring_entry(l->ring, p->ring_entries, l->head));
	l->head++;
	/* seq_cst: pairs with the consumer's "announce sleep, re-read head". */
	atomic_store_explicit(&l->ring->head, l->head, memory_order_seq_cst);
	l->wake_due = true;
}

static int wake_link(struct link *l)
{
	if (!l->wake_due || !l->ring)
		return 0;
	l->wake_due = false;
	if (!atomic_load_explicit(&l->ring->consumer_sleeping, memory_order_seq_cst))
		return 0;
	uint64_t one = 1;
	if (write(l->wake_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

SV2SHM_API int sv2shm_producer_flush(struct sv2shm_producer *p)
{
	if (!p)
		return -EINVAL;
	int r = 0;
	for (int id = 1; id <= MAX_CONSUMERS; id++)
		if (p->links[id].used) {
			int e = wake_link(&p->links[id]);
			if (e < 0)
				r = e;
		}
	return r;
}

static int publish_overflow(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n)
{
	int fd = region_overflow_memfd(s->data, s->len);
	if (fd < 0)
		return fd;
	struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
				.kind = SV2SHM_DESC_OVERFLOW,
				.region_id = p->region_id,
				.length = s->len};
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_OVERFLOW);
	sv2shm_desc_encode(&d, msg.desc);
	int r = 0;
	for (unsigned i = 0; i < n; i++) {
		struct link *l = &p->links[ids[i]];
		/* The message first, then the marker that tells the consumer to
		 * read it: it is on the socket by the time the marker is seen. */
		int e = chan_send(l->sock, &msg, sizeof(msg), &fd, 1);
		if (e < 0) {
			if (!r)
				r = e == -EAGAIN ? -EAGAIN : -EPIPE; /* the others still get it */
			continue;
		}
		if (!p->socket_transport)
			ring_push(p, l, &d);
	}
	close(fd);
	/* Consumers before a failure have it: the slice is consumed either way,
	 * so that a retry cannot deliver it twice. */
	sv2shm_slice_release(s);
	return r;
}

/* The plain fallback: one DESC message per consumer. A consumer the message
 * could not reach gets its holder bit back, so the slot cannot leak. */
static int publish_socket(struct sv2shm_producer *p, const struct sv2shm_desc *d, const int *ids, unsigned n)
{
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	chan_hdr(&msg.hdr, SV2SHM_MSG_DESC);
	sv2shm_desc_encode(d, msg.desc);
	int r = 0;
	for (unsigned i = 0; i < n; i++) {
		int e = chan_send(p->links[ids[i]].sock, &msg, sizeof(msg), NULL, 0);
		if (e < 0) {
			pool_ctl_release(p->mem.ctl, p->pool.nslots, d->slot, d->generation, (unsigned)ids[i]);
			r = e == -EAGAIN ? -EAGAIN : -EPIPE;
		}
	}
	return r;
}

SV2SHM_API int sv2shm_producer_publish(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n,
				       unsigned flags)
{
	if (!p || !s || !ids || n == 0 || n > MAX_CONSUMERS || (flags & ~SV2SHM_PUBLISH_MORE))
		return -EINVAL;
	bool pool_slice = s->_kind == SV2SHM_SLICE_POOL && s->_owner == &p->pool;
	if (!pool_slice && !(s->_kind == SV2SHM_SLICE_SYSTEM && s->len > 0))
		return -EINVAL;
	if (pool_slice && (s->_slot >= p->pool.nslots ||
			   atomic_load_explicit(&p->pool.own_gen[s->_slot], memory_order_relaxed) != s->_gen))
		return -EINVAL; /* not a live slice of ours */
	uint32_t bits = 0;
	for (unsigned i = 0; i < n; i++) {
		int id = ids[i];
		if (id < 1 || id > MAX_CONSUMERS || !p->links[id].used || (bits & (UINT32_C(1) << id)))
			return -EINVAL;
		bits |= UINT32_C(1) << id;
		int r = p->socket_transport ? 0 : ring_room(p, &p->links[id]);
		if (r == -EPROTO) {
			sv2shm_producer_remove_consumer(p, id);
			return -EPIPE;
		}
		if (r < 0)
			return r;
	}

	int r;
	if (!pool_slice) {
		r = publish_overflow(p, s, ids, n);
	} else {
		unsigned slot = s->_slot;
		struct sv2shm_ctl_slot *cs = &p->mem.ctl->slots[slot];
		uint64_t st = atomic_load_explicit(&cs->state, memory_order_relaxed);
		uint64_t next;
		do {
			if (SV2SHM_STATE_GEN(st) != s->_gen || !(SV2SHM_STATE_HOLDERS(st) & 1u))
				return -EINVAL; /* not a live slice of ours any more */
			/* Hand over in one step: the consumers' bits on, ours off. */
			next = (st | bits) & ~(uint64_t)1u;
		} while (!atomic_compare_exchange_weak_explicit(&cs->state, &st, next, memory_order_release,
								memory_order_relaxed));
		struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
					.kind = SV2SHM_DESC_POOL,
					.slot = (uint16_t)slot,
					.generation = s->_gen,
					.region_id = p->region_id,
					.offset = p->pool.data_off[slot],
					.length = p->pool.data_len[slot]};
		/* Our hold went with the CAS. */
		atomic_store_explicit(&p->pool.own_gen[slot], 0u, memory_order_seq_cst);
		memset(s, 0, sizeof(*s));
		r = 0;
		if (p->socket_transport)
			r = publish_socket(p, &d, ids, n);
		else
			for (unsigned i = 0; i < n; i++)
				ring_push(p, &p->links[ids[i]], &d);
	}
	if (r < 0)
		return r;
	if (!(flags & SV2SHM_PUBLISH_MORE))
		for (unsigned i = 0; i < n; i++)
			wake_link(&p->links[ids[i]]);
	return 0;
}

SV2SHM_API int sv2shm_producer_remove_consumer(struct sv2shm_producer *p, int id)
{
	if (!p || id < 1 || id > MAX_CONSUMERS || !p->links[id].used)
		return -EINVAL;
	struct sv2shm_ctl *ctl = p->mem.ctl;
	int reclaimed = 0;
	for (unsigned s = 0; s < p->pool.nslots; s++) {
		uint64_t st = atomic_load_explicit(&ctl->slots[s].state, memory_order_acquire);
		/* A CAS on (generation, holders): a release racing with us wins or
		 * loses cleanly. */
		while (SV2SHM_STATE_HOLDERS(st) & (UINT32_C(1) << id)) {
			int r = pool_ctl_release(ctl, p->pool.nslots, s, SV2SHM_STATE_GEN(st), (unsigned)id);
			if (r >= 0) {
				reclaimed++;
				break;
			}
			st = atomic_load_explicit(&ctl->slots[s].state, memory_order_acquire);
		}
	}
	/* A consumer killed between the two steps of a release leaves a slot
	 * with no holders and its mask bit still set: clear it. (Should a live
	 * releaser clear the bit again later, the allocator notices: see
	 * slot_free() in pool.c.) */
	uint64_t m = atomic_load_explicit(&ctl->mask, memory_order_acquire);
	for (unsigned s = 0; s < p->pool.nslots; s++) {
		uint64_t st = atomic_load_explicit(&ctl->slots[s].state, memory_order_acquire);
		if ((m & (UINT64_C(1) << s)) && SV2SHM_STATE_HOLDERS(st) == 0) {
			atomic_fetch_and_explicit(&ctl->mask, ~(UINT64_C(1) << s), memory_order_seq_cst);
			reclaimed++;
		}
	}
	link_close(p, id);
	return reclaimed;
}

SV2SHM_API int sv2shm_producer_process(struct sv2shm_producer *p)
{
	if (!p)
		return -EINVAL;
	struct epoll_event evs[MAX_CONSUMERS];
	int n = epoll_wait(p->epfd, evs, MAX_CONSUMERS, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int removed = 0;
	for (int i = 0; i < n; i++) {
		int id = (int)evs[i].data.u32;
		if (id < 1 || id > MAX_CONSUMERS || !p->links[id].used)
			continue;
		bool gone = (evs[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0;
		if (!gone) {
			/* Consumers send nothing: drain and ignore whatever came. */
			char buf[64];
			ssize_t k = recv(p->links[id].sock, buf, sizeof(buf), MSG_DONTWAIT);
			gone = k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR);
		}
		if (gone) {
			sv2shm_producer_remove_consumer(p, id);
			removed++;
		}
	}
	return removed;
}
