/*
 * The broker: who registered which pool, who subscribes, which consumer a
 * producer has, and what to do when any of them goes away.
 *
 * State, all bounded (broker.h): clients (connections), pools (each with
 * its read-only map of the control block and its consumers), pending
 * subscriptions (a socketpair end waiting for the producer's answer), and
 * per client at most one STATUS stream (32 messages buffered while the
 * socket is full).
 *
 * Every message is checked before anything else: size against its opcode,
 * magic, version, direction, fd count, names, every number. A bad message
 * is answered with RESULT -errno and a text, logged (rate-limited), and the
 * eighth one disconnects its client.
 *
 * Reclaim: when a consumer's process exits, for every slot whose state word
 * (the producer's view in the control block) shows the consumer's holder
 * bit, the broker stores that generation into the consumer's own release
 * record (ring->released[s]) — exactly the store the consumer would have
 * made (slots.h). The producer then sees the slot free at once, whatever it
 * is busy with; its own hang-up handling removes the consumer later. The
 * store only ever touches the dead consumer's own ring, so it can never
 * speak for anyone else, even when the producer has reused the holder bit.
 */
#include "broker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/futex.h>

#include "broker_wire.h"
#include "layout.h"
#include "log.h"
#include "wire.h"

#define CTL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE)
/* The broker maps a ring's header lines only: it writes released[] and
 * reads nothing past them. */
#define RING_MAP_BYTES offsetof(struct sv2shm_ring, slots)
#define ERRNO_MAX 4095

enum { PW_CLIENT = 1, PW_CONSUMER = 2 };

/* The first member of what a process watch's cookie points to. */
struct pw {
	int kind;
};

/* The messages a client receives: the STATUS stream buffers them. */
union smsg {
	struct bmsg_hdr hdr;
	struct bmsg_status_pool pool;
	struct bmsg_status_consumer cons;
	struct bmsg_status_end end;
};

struct status_stream {
	uint32_t seq;
	uint64_t after;  /* serial of the last pool built */
	uint32_t pools;  /* STATUS_POOL messages built */
	unsigned n, i;   /* messages in unit[], the next one to send */
	bool ended;      /* unit[] holds the STATUS_END */
	union smsg unit[1 + BROKER_MAX_CONSUMERS];
};

struct client {
	struct pw pw;
	void *conn;
	struct broker_creds cr;
	uint64_t no; /* connection number, for the log */
	void *pidw;
	unsigned bad;
	unsigned npending;
	bool dead;
	enum log_level level; /* of the message saying why it was closed */
	char why[96];
	struct ratelimit rl;
	struct status_stream *ss;
	struct client *prev, *next; /* b->clients */
	struct client *next_dead;
};

struct pool;

struct consumer {
	struct pw pw;
	struct pool *pool;
	int32_t id;
	uint32_t holder;
	int32_t pid;
	uint32_t uid, gid;
	struct client *client; /* its own broker connection, NULL if unknown or gone */
	void *pidw;
	struct sv2shm_ring *ring;
	struct consumer *next;
};

struct pool {
	char name[BMSG_NAME_MAX];
	struct client *owner;
	struct broker_creds cr; /* the producer */
	struct sv2shm_ctl *ctl; /* read-only */
	uint64_t capacity;
	uint32_t slots;         /* private copy, checked: the only bound used */
	uint32_t policy;
	uint64_t region_id;
	uint32_t n_uids, n_gids;
	uint32_t uids[BMSG_ALLOW_MAX], gids[BMSG_ALLOW_MAX];
	struct consumer *consumers;
	unsigned nconsumers;
	unsigned npending;
	uint64_t serial;
	uint64_t reclaimed; /* holds the broker released for consumers that died */
	struct pool *prev, *next;
};

struct pending {
	uint64_t token;
	struct pool *pool;
	struct client *sub;
	uint32_t seq;
	int fd; /* the subscriber's end */
	uint64_t deadline;
	struct broker_creds cr;
	struct pending *prev, *next;
};

struct broker {
	struct broker_env env;
	unsigned timeout_ms;
	char version[16];
	char event_loop[64];
	struct client *clients;
	unsigned nclients;
	struct client *dead;
	/* The client an entry point was called for, and whether the reap at its
	 * end freed it (cleaning up one client can give up on another: a
	 * POOL_GONE or SUBSCRIBED that does not fit). */
	struct client *caller;
	bool caller_freed;
	struct pool *pools, *pools_tail;
	unsigned npools;
	struct pending *pending, *pending_tail;
	unsigned npending;
	uint64_t next_token;
	uint64_t next_serial;
	uint64_t next_client;
	uint64_t refused;
	uint64_t start_ms;
	struct ratelimit rl_refused;
	struct ratelimit rl_clients; /* all per-client messages together */
};

static uint64_t now(struct broker *b)
{
	return b->env.now_ms(b->env.ctx);
}

static void close_fds(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void copy_text(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	memset(dst + n, 0, size - n);
}

/* --- clients ------------------------------------------------------------ */

/* Give up on c: cleaned up and closed at the end of the entry point. */
static void client_fail(struct broker *b, struct client *c, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void client_fail(struct broker *b, struct client *c, enum log_level level, const char *fmt, ...)
{
	if (c->dead)
		return;
	c->dead = true;
	c->level = level;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->next_dead = b->dead;
	b->dead = c;
}

static int send_msg(struct broker *b, struct client *c, const void *msg, size_t len, int fd)
{
	if (!c || c->dead)
		return -EPIPE;
	int r = b->env.send(b->env.ctx, c->conn, msg, len, fd);
	if (r == -EAGAIN)
		client_fail(b, c, LVL_WARN, "its socket is full (it does not read its replies)");
	else if (r == -EPIPE || r == -ECONNRESET)
		client_fail(b, c, LVL_DEBUG, "it hung up");
	else if (r < 0)
		client_fail(b, c, LVL_WARN, "send: %s", strerror(-r));
	return r;
}

static void reply_result(struct broker *b, struct client *c, uint32_t seq, int result, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void reply_result(struct broker *b, struct client *c, uint32_t seq, int result, const char *fmt, ...)
{
	struct bmsg_result m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_RESULT, seq);
	m.result = result;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m.text, sizeof(m.text), fmt, ap);
	va_end(ap);
	send_msg(b, c, &m, sizeof(m), -1);
}

static void reply_subscribed(struct broker *b, struct client *c, uint32_t seq, int result, int32_t id,
			     uint32_t holder, int fd, const char *text)
{
	struct bmsg_subscribed m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_SUBSCRIBED, seq);
	m.result = result;
	m.id = id;
	m.holder = holder;
	copy_text(m.text, sizeof(m.text), text);
	send_msg(b, c, &m, sizeof(m), fd);
}

/* Messages a client provokes: at most 5 per second per client, 50 for all. */
static bool client_log_ok(struct broker *b, struct client *c)
{
	uint64_t t = now(b);
	return ratelimit_ok(&c->rl, 5, 1000, t) && ratelimit_ok(&b->rl_clients, 50, 1000, t);
}

/* A bad message: RESULT -err with the reason, a strike, the log. */
static void bad(struct broker *b, struct client *c, uint32_t seq, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void bad(struct broker *b, struct client *c, uint32_t seq, int err, const char *fmt, ...)
{
	char text[BMSG_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	c->bad++;
	b->refused++;
	if (client_log_ok(b, c))
		log_warn("client #%llu (pid %d uid %u): bad message: %s (%s)%s", (unsigned long long)c->no,
			 (int)c->cr.pid, (unsigned)c->cr.uid, text, strerror(-err),
			 c->bad >= BROKER_MAX_BAD ? ": disconnected" : "");
	reply_result(b, c, seq, err, "%s", text);
	if (c->bad >= BROKER_MAX_BAD)
		client_fail(b, c, LVL_WARN, "%u bad messages", c->bad);
}

/* A refusal that is not a protocol error (access, limits): counted, logged. */
static void refusal(struct broker *b, struct client *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refusal(struct broker *b, struct client *c, const char *fmt, ...)
{
	b->refused++;
	if (!client_log_ok(b, c))
		return;
	char text[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_warn("refused: client #%llu (pid %d uid %u gid %u): %s", (unsigned long long)c->no, (int)c->cr.pid,
		 (unsigned)c->cr.uid, (unsigned)c->cr.gid, text);
}

/* --- pending subscriptions ---------------------------------------------- */

static void update_deadline(struct broker *b)
{
	/* One timeout for all: the list is in deadline order. */
	b->env.set_deadline(b->env.ctx, b->pending ? b->pending->deadline : 0);
}

static void pending_drop(struct broker *b, struct pending *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		b->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		b->pending_tail = q->prev;
	if (q->fd >= 0)
		close(q->fd);
	q->pool->npending--;
	q->sub->npending--;
	b->npending--;
	free(q);
}

static struct pending *pending_find(struct broker *b, uint64_t token)
{
	for (struct pending *q = b->pending; q; q = q->next)
		if (q->token == token)
			return q;
	return NULL;
}

/* --- consumers ---------------------------------------------------------- */

static void consumer_free(struct broker *b, struct consumer *k)
{
	if (k->pidw)
		b->env.unwatch_process(b->env.ctx, k->pidw);
	if (k->ring)
		munmap(k->ring, RING_MAP_BYTES);
	free(k);
}

static void consumer_unlink(struct pool *p, struct consumer *k)
{
	for (struct consumer **pp = &p->consumers; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			p->nconsumers--;
			return;
		}
	}
}

static void consumer_drop(struct broker *b, struct consumer *k)
{
	consumer_unlink(k->pool, k);
	consumer_free(b, k);
}

/* Slots whose state (the producer's view) names holder bit `holder`. */
static uint64_t held_mask(const struct pool *p, uint32_t holder)
{
	uint64_t m = 0;
	uint32_t bit = UINT32_C(1) << holder;
	for (uint32_t s = 0; s < p->slots; s++) {
		uint64_t st = atomic_load_explicit(&p->ctl->slots[s].state, memory_order_relaxed);
		if (SV2SHM_STATE_HOLDERS(st) & bit)
			m |= UINT64_C(1) << s;
	}
	return m;
}

/* Release, in its own ring, every slot the dead consumer still holds; then,
 * as the consumer's own release would (slots.h), wake the producer if it
 * waits for room: FUTEX_WAKE on the control block's release_seq, where a
 * producer with io_uring futex ops sleeps (a shared futex: a read-only
 * mapping is enough to wake it). A producer that sleeps otherwise wakes
 * on the dead consumer's hang-up anyway; a spurious wake-up costs it a look. */
static unsigned reclaim(struct pool *p, struct consumer *k)
{
	uint32_t bit = UINT32_C(1) << k->holder;
	unsigned n = 0;
	for (uint32_t s = 0; s < p->slots; s++) {
		uint64_t st = atomic_load_explicit(&p->ctl->slots[s].state, memory_order_seq_cst);
		if (SV2SHM_STATE_HOLDERS(st) & bit) {
			atomic_store_explicit(&k->ring->released[s], SV2SHM_STATE_GEN(st), memory_order_seq_cst);
			n++;
		}
	}
	if (n && (atomic_load_explicit(&k->ring->waiting, memory_order_seq_cst) & 1u))
		syscall(SYS_futex, (uint32_t *)(uintptr_t)&p->ctl->release_seq, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
	return n;
}

/* A consumer record on holder bit `holder` or with id `id` is the past:
 * the producer gave both to a new consumer, so it removed the old one. */
static void drop_stale(struct broker *b, struct pool *p, int32_t id, uint32_t holder)
{
	struct consumer *k = p->consumers;
	while (k) {
		struct consumer *n = k->next;
		if (k->holder == holder || k->id == id) {
			log_debug("pool %s: consumer id %d (pid %d) replaced by id %d on holder %u", p->name,
				  (int)k->id, (int)k->pid, (int)id, (unsigned)holder);
			consumer_drop(b, k);
		}
		k = n;
	}
}

/* --- pools --------------------------------------------------------------- */

static struct pool *pool_find(struct broker *b, const char *name)
{
	for (struct pool *p = b->pools; p; p = p->next)
		if (strncmp(p->name, name, BMSG_NAME_MAX) == 0)
			return p;
	return NULL;
}

static bool allowed(const struct pool *p, const struct broker_creds *cr)
{
	if (cr->uid == p->cr.uid)
		return true;
	for (uint32_t i = 0; i < p->n_uids; i++)
		if (p->uids[i] == cr->uid)
			return true;
	for (uint32_t i = 0; i < p->n_gids; i++)
		if (p->gids[i] == cr->gid)
			return true;
	return false;
}

static bool visible(const struct pool *p, const struct broker_creds *cr)
{
	return cr->uid == 0 || allowed(p, cr);
}

static void pool_remove(struct broker *b, struct pool *p, const char *why)
{
	log_info("pool %s (producer pid %d): gone: %s", p->name, (int)p->cr.pid, why);
	struct pending *q = b->pending;
	while (q) {
		struct pending *n = q->next;
		if (q->pool == p) {
			reply_subscribed(b, q->sub, q->seq, -ENOENT, 0, 0, -1,
					 "the pool went away before its producer answered");
			pending_drop(b, q);
		}
		q = n;
	}
	update_deadline(b);
	struct bmsg_pool_gone g;
	memset(&g, 0, sizeof(g));
	bmsg_init(&g.hdr, BOP_POOL_GONE, 0);
	memcpy(g.name, p->name, sizeof(g.name));
	while (p->consumers) {
		struct consumer *k = p->consumers;
		p->consumers = k->next;
		if (k->client && !k->client->dead)
			send_msg(b, k->client, &g, sizeof(g), -1);
		consumer_free(b, k);
	}
	if (p->prev)
		p->prev->next = p->next;
	else
		b->pools = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		b->pools_tail = p->prev;
	b->npools--;
	munmap(p->ctl, sizeof(struct sv2shm_ctl));
	free(p);
}

/* Check a control memfd against its REGISTER and map it read-only. */
static int map_ctl(int fd, const struct bmsg_register *m, struct sv2shm_ctl **out, char *why, size_t n)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		snprintf(why, n, "control fd: fstat: %s", strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size != (off_t)sizeof(struct sv2shm_ctl)) {
		snprintf(why, n, "control memfd: %lld bytes, expected %zu", (long long)sb.st_size,
			 sizeof(struct sv2shm_ctl));
		return -EINVAL;
	}
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		snprintf(why, n, "control fd is not a memfd");
		return -EINVAL;
	}
	if ((seals & CTL_SEALS) != CTL_SEALS) {
		snprintf(why, n, "control memfd seals 0x%x lack SHRINK|GROW|SEAL|FUTURE_WRITE", (unsigned)seals);
		return -EINVAL;
	}
	struct sv2shm_ctl *ctl = mmap(NULL, sizeof(*ctl), PROT_READ, MAP_SHARED, fd, 0);
	if (ctl == MAP_FAILED) {
		snprintf(why, n, "control memfd: mmap: %s", strerror(errno));
		return -EINVAL;
	}
	const char *bad = NULL;
	if (ctl->magic != SV2SHM_CTL_MAGIC)
		bad = "bad magic";
	else if (ctl->version != SV2SHM_CTL_VERSION)
		bad = "bad version";
	else if (ctl->ctl_size != sizeof(struct sv2shm_ctl))
		bad = "bad ctl_size";
	else if (ctl->capacity != m->capacity)
		bad = "capacity differs from the message's";
	else if (ctl->nslots != m->slots)
		bad = "slot count differs from the message's";
	if (bad) {
		snprintf(why, n, "control block: %s", bad);
		munmap(ctl, sizeof(*ctl));
		return -EINVAL;
	}
	*out = ctl;
	return 0;
}

/* Check a consumer's ring memfd and map its header lines read-write (the
 * broker writes the release records of a consumer that died). */
static int map_ring(int fd, const struct pool *p, struct sv2shm_ring **out, char *why, size_t n)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		snprintf(why, n, "ring fd: fstat: %s", strerror(errno));
		return -EINVAL;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size < (off_t)RING_MAP_BYTES ||
	    sb.st_size > (off_t)ring_bytes(SV2SHM_RING_MAX_ENTRIES)) {
		snprintf(why, n, "ring memfd: %lld bytes", (long long)sb.st_size);
		return -EINVAL;
	}
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		snprintf(why, n, "ring fd is not a memfd");
		return -EINVAL;
	}
	/* Without SHRINK it could be truncated under our map (SIGBUS). */
	if (!(seals & F_SEAL_SHRINK)) {
		snprintf(why, n, "ring memfd is not sealed against shrinking");
		return -EINVAL;
	}
	struct sv2shm_ring *r = mmap(NULL, RING_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == MAP_FAILED) {
		snprintf(why, n, "ring memfd: mmap: %s", strerror(errno));
		return -EINVAL;
	}
	uint32_t entries = r->nentries;
	const char *bad = NULL;
	if (r->magic != SV2SHM_RING_MAGIC)
		bad = "bad magic";
	else if (r->version != SV2SHM_RING_VERSION)
		bad = "bad version";
	else if (entries == 0 || entries > SV2SHM_RING_MAX_ENTRIES || (entries & (entries - 1)) ||
		 (off_t)ring_bytes(entries) > sb.st_size)
		bad = "bad entry count";
	else if (r->region_id != p->region_id)
		bad = "it belongs to another pool";
	if (bad) {
		snprintf(why, n, "ring: %s", bad);
		munmap(r, RING_MAP_BYTES);
		return -EINVAL;
	}
	*out = r;
	return 0;
}

/* --- messages ----------------------------------------------------------- */

static bool zeros(const uint32_t *v, uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++)
		if (v[i])
			return false;
	return true;
}

static void do_register(struct broker *b, struct client *c, const struct bmsg_register *m, int fd, bool reattach)
{
	uint32_t seq = m->hdr.seq;
	const char *what = reattach ? "REATTACH_PRODUCER" : "REGISTER";
	const char *err = NULL;
	if (!bmsg_name_ok(m->name))
		err = "bad pool name";
	else if (m->slots < 1 || m->slots > 64)
		err = "slots must be 1..64";
	else if (m->capacity > (UINT64_C(1) << 32))
		err = "capacity above 2^32";
	else if (m->policy > 2)
		err = "unknown policy";
	else if (m->n_uids > BMSG_ALLOW_MAX || m->n_gids > BMSG_ALLOW_MAX)
		err = "more than 8 uids or gids";
	else if (!zeros(m->uids, m->n_uids, BMSG_ALLOW_MAX) || !zeros(m->gids, m->n_gids, BMSG_ALLOW_MAX))
		err = "unused uids/gids entries must be 0";
	if (err) {
		close(fd);
		bad(b, c, seq, -EINVAL, "%s: %s", what, err);
		return;
	}
	char why[BMSG_TEXT_MAX];
	struct sv2shm_ctl *ctl;
	int r = map_ctl(fd, m, &ctl, why, sizeof(why));
	close(fd);
	if (r < 0) {
		bad(b, c, seq, r, "%s %.63s: %s", what, m->name, why);
		return;
	}
	uint64_t region_id = ctl->region_id;
	struct pool *old = pool_find(b, m->name);
	if (old) {
		struct client *o = old->owner;
		bool gone = o->dead || !b->env.process_alive(b->env.ctx, o->pidw);
		bool same = o != c && old->cr.pid == c->cr.pid && old->cr.uid == c->cr.uid &&
			    old->region_id == region_id;
		if (!gone && !same) {
			munmap(ctl, sizeof(*ctl));
			refusal(b, c, "%s %s: the name is taken by pid %d", what, old->name, (int)old->cr.pid);
			if (visible(old, &c->cr))
				reply_result(b, c, seq, -EEXIST, "pool %.40s is registered by pid %d", old->name,
					     (int)old->cr.pid);
			else
				reply_result(b, c, seq, -EEXIST, "pool %.40s is registered by another user", old->name);
			return;
		}
		if (same) {
			/* The same producer on a new connection (it reconnected before
			 * we saw the old one close): the pool moves, consumers stay. */
			munmap(old->ctl, sizeof(*old->ctl));
			old->ctl = ctl;
			old->owner = c;
			old->policy = m->policy;
			old->n_uids = m->n_uids;
			old->n_gids = m->n_gids;
			memcpy(old->uids, m->uids, sizeof(old->uids));
			memcpy(old->gids, m->gids, sizeof(old->gids));
			log_info("pool %s: %s from its producer pid %d on a new connection", old->name, what,
				 (int)c->cr.pid);
			reply_result(b, c, seq, 0, "ok");
			return;
		}
		pool_remove(b, old, "its producer is gone; the name is taken over");
	}
	if (b->npools >= BROKER_MAX_POOLS) {
		munmap(ctl, sizeof(*ctl));
		refusal(b, c, "%s %s: %d pools already", what, m->name, BROKER_MAX_POOLS);
		reply_result(b, c, seq, -ENOSPC, "the broker holds %d pools already", BROKER_MAX_POOLS);
		return;
	}
	struct pool *p = calloc(1, sizeof(*p));
	if (!p) {
		munmap(ctl, sizeof(*ctl));
		reply_result(b, c, seq, -ENOMEM, "out of memory");
		return;
	}
	memcpy(p->name, m->name, sizeof(p->name));
	p->owner = c;
	p->cr = c->cr;
	p->ctl = ctl;
	p->capacity = m->capacity;
	p->slots = m->slots;
	p->policy = m->policy;
	p->region_id = region_id;
	p->n_uids = m->n_uids;
	p->n_gids = m->n_gids;
	memcpy(p->uids, m->uids, sizeof(p->uids));
	memcpy(p->gids, m->gids, sizeof(p->gids));
	p->serial = ++b->next_serial;
	p->prev = b->pools_tail;
	if (b->pools_tail)
		b->pools_tail->next = p;
	else
		b->pools = p;
	b->pools_tail = p;
	b->npools++;
	log_info("pool %s %s by pid %d uid %u: %llu bytes, %u slots, policy %u, %u uids and %u gids allowed", p->name,
		 reattach ? "re-attached" : "registered", (int)p->cr.pid, (unsigned)p->cr.uid,
		 (unsigned long long)p->capacity, (unsigned)p->slots, (unsigned)p->policy, (unsigned)p->n_uids,
		 (unsigned)p->n_gids);
	reply_result(b, c, seq, 0, "ok");
}

static void do_unregister(struct broker *b, struct client *c, const struct bmsg_unregister *m)
{
	if (!bmsg_name_ok(m->name)) {
		bad(b, c, m->hdr.seq, -EINVAL, "UNREGISTER: bad pool name");
		return;
	}
	struct pool *p = pool_find(b, m->name);
	if (!p) {
		reply_result(b, c, m->hdr.seq, -ENOENT, "no pool named %.63s", m->name);
		return;
	}
	if (p->owner != c) {
		refusal(b, c, "UNREGISTER %s: not its producer", p->name);
		reply_result(b, c, m->hdr.seq, -EPERM, "pool %.40s belongs to another connection", p->name);
		return;
	}
	pool_remove(b, p, "unregistered by its producer");
	reply_result(b, c, m->hdr.seq, 0, "ok");
}

static void do_subscribe(struct broker *b, struct client *c, const struct bmsg_subscribe *m)
{
	uint32_t seq = m->hdr.seq;
	if (!bmsg_name_ok(m->name)) {
		bad(b, c, seq, -EINVAL, "SUBSCRIBE: bad pool name");
		return;
	}
	char text[BMSG_TEXT_MAX];
	struct pool *p = pool_find(b, m->name);
	if (!p) {
		snprintf(text, sizeof(text), "no pool named %.63s", m->name);
		reply_subscribed(b, c, seq, -ENOENT, 0, 0, -1, text);
		return;
	}
	if (!allowed(p, &c->cr)) {
		refusal(b, c, "SUBSCRIBE %s: uid %u gid %u not allowed by its producer (uid %u)", p->name,
			(unsigned)c->cr.uid, (unsigned)c->cr.gid, (unsigned)p->cr.uid);
		snprintf(text, sizeof(text), "uid %u / gid %u may not subscribe to %.40s", (unsigned)c->cr.uid,
			 (unsigned)c->cr.gid, p->name);
		reply_subscribed(b, c, seq, -EACCES, 0, 0, -1, text);
		return;
	}
	/* The producer is the judge of its 31 consumers (it answers -EMFILE):
	 * our records may include some it removed without telling us, so
	 * only subscriptions in flight are bounded here. Records are bounded
	 * by construction: one per holder bit. */
	if (p->npending >= BROKER_MAX_CONSUMERS) {
		refusal(b, c, "SUBSCRIBE %s: %u subscriptions in flight", p->name, BROKER_MAX_CONSUMERS);
		reply_subscribed(b, c, seq, -EMFILE, 0, 0, -1, "31 subscriptions to this pool are in flight: retry");
		return;
	}
	if (b->npending >= BROKER_MAX_PENDING || c->npending >= BROKER_MAX_PENDING_PER_CLIENT) {
		refusal(b, c, "SUBSCRIBE %s: too many subscriptions pending", p->name);
		reply_subscribed(b, c, seq, -EAGAIN, 0, 0, -1, "too many subscriptions pending: retry");
		return;
	}
	struct pending *q = calloc(1, sizeof(*q));
	int sv[2];
	if (!q || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		int e = q ? errno : ENOMEM;
		free(q);
		log_error("SUBSCRIBE %s: socketpair: %s", p->name, strerror(e));
		snprintf(text, sizeof(text), "the broker could not make a channel: %s", strerror(e));
		reply_subscribed(b, c, seq, -e, 0, 0, -1, text);
		return;
	}
	q->token = b->next_token++;
	struct bmsg_introduce in;
	memset(&in, 0, sizeof(in));
	bmsg_init(&in.hdr, BOP_INTRODUCE, 0);
	memcpy(in.name, p->name, sizeof(in.name));
	in.token = q->token;
	in.pid = c->cr.pid;
	in.uid = c->cr.uid;
	in.gid = c->cr.gid;
	int r = send_msg(b, p->owner, &in, sizeof(in), sv[0]);
	close(sv[0]);
	if (r < 0) {
		close(sv[1]);
		free(q);
		snprintf(text, sizeof(text), "the producer of %.40s is unreachable", p->name);
		reply_subscribed(b, c, seq, -ENOENT, 0, 0, -1, text);
		return;
	}
	q->pool = p;
	q->sub = c;
	q->seq = seq;
	q->fd = sv[1];
	q->cr = c->cr;
	q->deadline = now(b) + b->timeout_ms;
	q->prev = b->pending_tail;
	if (b->pending_tail)
		b->pending_tail->next = q;
	else
		b->pending = q;
	b->pending_tail = q;
	b->npending++;
	p->npending++;
	c->npending++;
	log_debug("pool %s: pid %d uid %u subscribes: introduced to producer pid %d (token %llx)", p->name,
		  (int)c->cr.pid, (unsigned)c->cr.uid, (int)p->cr.pid, (unsigned long long)q->token);
	update_deadline(b);
}

static struct consumer *consumer_new(struct broker *b, struct pool *p, int32_t id, uint32_t holder,
				     struct sv2shm_ring *ring, const struct broker_creds *cr, void *same_conn, int *err)
{
	struct consumer *k = calloc(1, sizeof(*k));
	if (!k) {
		*err = -ENOMEM;
		return NULL;
	}
	k->pw.kind = PW_CONSUMER;
	k->pool = p;
	k->id = id;
	k->holder = holder;
	k->pid = cr->pid;
	k->uid = cr->uid;
	k->gid = cr->gid;
	k->ring = ring;
	int r = b->env.watch_process(b->env.ctx, cr->pid, same_conn, k, &k->pidw);
	if (r < 0) {
		k->pidw = NULL;
		k->ring = NULL; /* the caller still owns it */
		free(k);
		*err = r;
		return NULL;
	}
	drop_stale(b, p, id, holder);
	k->next = p->consumers;
	p->consumers = k;
	p->nconsumers++;
	return k;
}

static void do_introduced(struct broker *b, struct client *c, const struct bmsg_introduced *m, int fd)
{
	uint32_t seq = m->hdr.seq;
	struct pending *q = pending_find(b, m->token);
	if (!q) {
		/* Late (timed out) or for a subscriber that left: nothing to do;
		 * the producer sees its end of the channel close. */
		if (fd >= 0)
			close(fd);
		log_debug("client #%llu (pid %d): INTRODUCED for unknown token %llx (late?)", (unsigned long long)c->no,
			  (int)c->cr.pid, (unsigned long long)m->token);
		return;
	}
	struct pool *p = q->pool;
	if (p->owner != c) {
		if (fd >= 0)
			close(fd);
		bad(b, c, seq, -EPERM, "INTRODUCED: token of a pool it does not own");
		return;
	}
	struct client *sub = q->sub;
	char text[BMSG_TEXT_MAX];
	if (m->result < 0 && m->result >= -ERRNO_MAX) {
		snprintf(text, sizeof(text), "the producer refused: %s", strerror(-m->result));
		log_info("pool %s: producer refused pid %d uid %u: %s", p->name, (int)q->cr.pid, (unsigned)q->cr.uid,
			 strerror(-m->result));
		reply_subscribed(b, sub, q->seq, m->result, 0, 0, -1, text);
		pending_drop(b, q);
		update_deadline(b);
		return;
	}
	if (m->result <= 0 || m->holder < 1 || m->holder > 31 || (uint32_t)m->result % 32u != m->holder) {
		if (fd >= 0)
			close(fd);
		reply_subscribed(b, sub, q->seq, -EPROTO, 0, 0, -1, "the producer's answer was malformed");
		pending_drop(b, q);
		update_deadline(b);
		bad(b, c, seq, -EINVAL, "INTRODUCED: result %d with holder %u", (int)m->result, (unsigned)m->holder);
		return;
	}
	struct sv2shm_ring *ring;
	char why[BMSG_TEXT_MAX];
	int r = map_ring(fd, p, &ring, why, sizeof(why));
	close(fd);
	if (r < 0) {
		snprintf(text, sizeof(text), "the producer sent a bad ring: %.60s", why);
		reply_subscribed(b, sub, q->seq, -EPROTO, 0, 0, -1, text);
		pending_drop(b, q);
		update_deadline(b);
		bad(b, c, seq, r, "INTRODUCED: %s", why);
		return;
	}
	struct consumer *k = consumer_new(b, p, m->result, m->holder, ring, &q->cr, sub->conn, &r);
	if (!k) {
		munmap(ring, RING_MAP_BYTES);
		if (r != -ESRCH) {
			log_error("pool %s: cannot watch consumer pid %d: %s", p->name, (int)q->cr.pid, strerror(-r));
			snprintf(text, sizeof(text), "the broker cannot watch the consumer: %s", strerror(-r));
			reply_subscribed(b, sub, q->seq, r, 0, 0, -1, text);
		}
		pending_drop(b, q);
		update_deadline(b);
		return;
	}
	k->client = sub;
	struct bmsg_subscribed s;
	memset(&s, 0, sizeof(s));
	bmsg_init(&s.hdr, BOP_SUBSCRIBED, q->seq);
	s.result = 0;
	s.id = k->id;
	s.holder = k->holder;
	r = send_msg(b, sub, &s, sizeof(s), q->fd);
	if (r < 0) {
		/* It never got its end: closing ours hangs up on the producer,
		 * which removes the consumer. */
		consumer_drop(b, k);
	} else {
		log_info("pool %s: consumer pid %d uid %u subscribed (id %d, holder %u)", p->name, (int)k->pid,
			 (unsigned)k->uid, (int)k->id, (unsigned)k->holder);
	}
	pending_drop(b, q);
	update_deadline(b);
}

static void do_consumer_gone(struct broker *b, struct client *c, const struct bmsg_consumer_gone *m)
{
	if (m->id <= 0 || m->reason < 1 || m->reason > 255 || m->held > 64 || m->reserved || !bmsg_name_ok(m->name)) {
		bad(b, c, m->hdr.seq, -EINVAL, "CONSUMER_GONE: id %d reason %d held %u", (int)m->id, (int)m->reason,
		    (unsigned)m->held);
		return;
	}
	/* Ids are per pool: the consumer of that id in the named pool of ours. */
	struct consumer *found = NULL;
	unsigned n = 0;
	for (struct pool *p = b->pools; p; p = p->next) {
		if (p->owner != c || strncmp(p->name, m->name, BMSG_NAME_MAX) != 0)
			continue;
		for (struct consumer *k = p->consumers; k; k = k->next)
			if (k->id == m->id) {
				found = k;
				n++;
			}
	}
	if (n != 1) {
		log_debug("client #%llu (pid %d): CONSUMER_GONE id %d matches %u consumers: kept",
			  (unsigned long long)c->no, (int)c->cr.pid, (int)m->id, n);
		return;
	}
	log_info("pool %s: consumer pid %d (id %d) removed by its producer (reason %d, %u slots reclaimed)",
		 found->pool->name, (int)found->pid, (int)found->id, (int)m->reason, (unsigned)m->held);
	consumer_drop(b, found);
}

static void do_reattach_consumer(struct broker *b, struct client *c, const struct bmsg_reattach_consumer *m, int fd)
{
	uint32_t seq = m->hdr.seq;
	if (!bmsg_name_ok(m->name) || m->id <= 0 || m->holder < 1 || m->holder > 31 ||
	    (uint32_t)m->id % 32u != m->holder || m->reserved) {
		if (fd >= 0)
			close(fd);
		bad(b, c, seq, -EINVAL, "REATTACH_CONSUMER: bad name, id %d or holder %u", (int)m->id,
		    (unsigned)m->holder);
		return;
	}
	struct pool *p = pool_find(b, m->name);
	if (fd >= 0) {
		/* From the producer: the consumer it already has, with its ring. */
		if (!p || p->owner != c) {
			close(fd);
			bad(b, c, seq, p ? -EPERM : -ENOENT, "REATTACH_CONSUMER with a ring for %s pool %.40s",
			    p ? "another's" : "no", m->name);
			return;
		}
		if (m->pid <= 0) {
			close(fd);
			bad(b, c, seq, -EINVAL, "REATTACH_CONSUMER: pid %d", (int)m->pid);
			return;
		}
		struct sv2shm_ring *ring;
		char why[BMSG_TEXT_MAX];
		int r = map_ring(fd, p, &ring, why, sizeof(why));
		close(fd);
		if (r < 0) {
			bad(b, c, seq, r, "REATTACH_CONSUMER: %s", why);
			return;
		}
		struct broker_creds cr = {.pid = m->pid, .uid = UINT32_MAX, .gid = UINT32_MAX};
		b->env.process_creds(b->env.ctx, m->pid, &cr.uid, &cr.gid);
		struct consumer *k = consumer_new(b, p, m->id, m->holder, ring, &cr, NULL, &r);
		if (!k) {
			munmap(ring, RING_MAP_BYTES);
			log_info("pool %s: re-attach of consumer id %d: pid %d %s", p->name, (int)m->id, (int)m->pid,
				 r == -ESRCH ? "is gone: skipped" : strerror(-r));
			reply_result(b, c, seq, r, "consumer pid %d: %s", (int)m->pid,
				     r == -ESRCH ? "gone, skipped" : strerror(-r));
			return;
		}
		log_info("pool %s: consumer pid %d (id %d, holder %u) re-attached by its producer", p->name,
			 (int)k->pid, (int)k->id, (unsigned)k->holder);
		reply_result(b, c, seq, 0, "ok");
		return;
	}
	/* From the consumer: be told POOL_GONE later. */
	if (!p) {
		log_debug("client #%llu (pid %d): REATTACH_CONSUMER %.63s id %d: no such pool (yet)",
			  (unsigned long long)c->no, (int)c->cr.pid, m->name, (int)m->id);
		reply_result(b, c, seq, -ENOENT, "no pool named %.63s (yet): retry", m->name);
		return;
	}
	if (!allowed(p, &c->cr)) {
		refusal(b, c, "REATTACH_CONSUMER %s: not allowed", p->name);
		reply_result(b, c, seq, -EACCES, "uid %u may not use %.40s", (unsigned)c->cr.uid, p->name);
		return;
	}
	struct consumer *k = p->consumers;
	while (k && !(k->id == m->id && k->holder == m->holder))
		k = k->next;
	if (!k) {
		log_debug("client #%llu (pid %d): REATTACH_CONSUMER %s id %d: not re-attached by its producer (yet)",
			  (unsigned long long)c->no, (int)c->cr.pid, p->name, (int)m->id);
		reply_result(b, c, seq, -ENOENT, "consumer %d of %.40s not re-attached by its producer (yet): retry",
			     (int)m->id, p->name);
		return;
	}
	if (k->pid != c->cr.pid) {
		refusal(b, c, "REATTACH_CONSUMER %s id %d: it is pid %d's", p->name, (int)m->id, (int)k->pid);
		reply_result(b, c, seq, -EPERM, "consumer %d of %.40s is another process", (int)m->id, p->name);
		return;
	}
	k->client = c;
	k->uid = c->cr.uid;
	k->gid = c->cr.gid;
	log_info("pool %s: consumer pid %d (id %d) re-attached", p->name, (int)k->pid, (int)k->id);
	reply_result(b, c, seq, 0, "ok");
}

/* --- STATUS ------------------------------------------------------------- */

static char claim_char(uint64_t claim)
{
	static const char names[] = "123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	if (claim == 0)
		return '?';
	return names[(claim - 1) % (sizeof(names) - 1)];
}

#define LOAD64(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void build_pool(struct status_stream *ss, const struct pool *p, uint32_t seq)
{
	struct bmsg_status_pool *m = &ss->unit[0].pool;
	memset(m, 0, sizeof(*m));
	bmsg_init(&m->hdr, BOP_STATUS_POOL, seq);
	memcpy(m->name, p->name, sizeof(m->name));
	m->pid = p->cr.pid;
	m->uid = p->cr.uid;
	m->capacity = p->capacity;
	m->slots = p->slots;
	struct sv2shm_ctl_counters *k = &p->ctl->counters;
	m->policy = atomic_load_explicit(&k->policy, memory_order_relaxed);
	m->mode = atomic_load_explicit(&k->mode, memory_order_relaxed);
	m->consumers = p->nconsumers;
	for (uint32_t i = 0; i < p->slots; i++) {
		uint64_t st = LOAD64(p->ctl->slots[i].state);
		uint64_t claim = __atomic_load_n(&p->ctl->slots[i].claim, __ATOMIC_RELAXED);
		m->slot_map[i] = SV2SHM_STATE_HOLDERS(st) ? claim_char(claim) : '-';
	}
	m->slot_map[p->slots] = '\0';
	struct bmsg_counters *o = &m->counters;
	o->published = LOAD64(k->published);
	o->bytes = LOAD64(k->bytes);
	o->releases = LOAD64(k->releases);
	/* Whoever sees a consumer's death first releases its holds: the
	 * producer (its removal counts them) or the broker (for a dead process,
	 * counted here); the one that comes second finds nothing left. */
	o->reclaimed = LOAD64(k->reclaimed) + p->reclaimed;
	o->fallbacks = LOAD64(k->fallbacks);
	o->waits = LOAD64(k->waits);
	o->wait_ns = LOAD64(k->wait_ns);
	o->mode_switches = LOAD64(k->mode_switches);
	o->hw_slots = LOAD64(k->hw_slots);
	o->hw_bytes = LOAD64(k->hw_bytes);
	o->live = LOAD64(k->live);
	o->bytes_in_use = LOAD64(k->bytes_in_use);
	unsigned n = 1;
	for (const struct consumer *c = p->consumers; c && n < 1 + BROKER_MAX_CONSUMERS; c = c->next, n++) {
		struct bmsg_status_consumer *s = &ss->unit[n].cons;
		memset(s, 0, sizeof(*s));
		bmsg_init(&s->hdr, BOP_STATUS_CONSUMER, seq);
		memcpy(s->pool, p->name, sizeof(s->pool));
		s->id = c->id;
		s->holder = c->holder;
		s->pid = c->pid;
		s->uid = c->uid;
		s->held = (uint32_t)__builtin_popcountll(held_mask(p, c->holder));
	}
	m->consumers = n - 1;
	ss->n = n;
	ss->i = 0;
}

static void build_end(struct broker *b, struct status_stream *ss)
{
	struct bmsg_status_end *m = &ss->unit[0].end;
	memset(m, 0, sizeof(*m));
	bmsg_init(&m->hdr, BOP_STATUS_END, ss->seq);
	m->pools = ss->pools;
	m->clients = b->nclients;
	copy_text(m->version, sizeof(m->version), b->version);
	copy_text(m->event_loop, sizeof(m->event_loop), b->event_loop);
	m->uptime_ms = now(b) - b->start_ms;
	m->refused = b->refused;
	ss->n = 1;
	ss->i = 0;
	ss->ended = true;
}

/* Send what the socket takes; build the next pool's messages as a unit
 * (its STATUS_POOL says how many STATUS_CONSUMER follow, so they are
 * snapshotted together). Returns 1 while paused, 0 when done. */
static int stream(struct broker *b, struct client *c)
{
	struct status_stream *ss = c->ss;
	for (;;) {
		if (c->dead)
			return 0;
		if (ss->i == ss->n) {
			if (ss->ended) {
				free(ss);
				c->ss = NULL;
				return 0;
			}
			const struct pool *p = b->pools;
			while (p && (p->serial <= ss->after || !visible(p, &c->cr)))
				p = p->next;
			if (p) {
				build_pool(ss, p, ss->seq);
				ss->after = p->serial;
				ss->pools++;
			} else {
				build_end(b, ss);
			}
		}
		int r = -EAGAIN;
		if (b->env.stream_room(b->env.ctx, c->conn))
			r = b->env.send(b->env.ctx, c->conn, &ss->unit[ss->i], ss->unit[ss->i].hdr.length, -1);
		if (r == -EAGAIN) {
			r = b->env.want_writable(b->env.ctx, c->conn);
			if (r < 0) {
				client_fail(b, c, LVL_WARN, "cannot wait for room: %s", strerror(-r));
				return 0;
			}
			return 1;
		}
		if (r < 0) {
			if (r == -EPIPE || r == -ECONNRESET)
				client_fail(b, c, LVL_DEBUG, "it hung up");
			else
				client_fail(b, c, LVL_WARN, "send: %s", strerror(-r));
			return 0;
		}
		ss->i++;
	}
}

static int do_status(struct broker *b, struct client *c, const struct bmsg_status *m)
{
	struct status_stream *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		reply_result(b, c, m->hdr.seq, -ENOMEM, "out of memory");
		return 0;
	}
	ss->seq = m->hdr.seq;
	c->ss = ss;
	return stream(b, c);
}

/* --- cleanup and entry points ------------------------------------------- */

static void client_cleanup(struct broker *b, struct client *c)
{
	logm(c->level, "client #%llu (pid %d uid %u): %s: %s", (unsigned long long)c->no, (int)c->cr.pid,
	     (unsigned)c->cr.uid, c->level <= LVL_WARN ? "disconnected" : "closed", c->why);
	struct pool *p = b->pools;
	while (p) {
		struct pool *n = p->next;
		if (p->owner == c) {
			char why[160];
			snprintf(why, sizeof(why), "its producer's broker connection closed (%s)", c->why);
			pool_remove(b, p, why);
		}
		p = n;
	}
	struct pending *q = b->pending;
	while (q) {
		struct pending *n = q->next;
		if (q->sub == c)
			pending_drop(b, q);
		q = n;
	}
	update_deadline(b);
	for (p = b->pools; p; p = p->next)
		for (struct consumer *k = p->consumers; k; k = k->next)
			if (k->client == c)
				k->client = NULL;
	free(c->ss);
	c->ss = NULL;
	if (c->pidw)
		b->env.unwatch_process(b->env.ctx, c->pidw);
	c->pidw = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		b->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->nclients--;
	b->env.close(b->env.ctx, c->conn);
	if (c == b->caller)
		b->caller_freed = true;
	free(c);
}

/* Clean up every client given up on during this entry point (cleanup may
 * give up on more: a POOL_GONE that does not fit). */
static void reap(struct broker *b)
{
	while (b->dead) {
		struct client *c = b->dead;
		b->dead = c->next_dead;
		client_cleanup(b, c);
	}
}

int broker_new(const struct broker_env *env, const struct broker_config *cfg, struct broker **out)
{
	struct broker *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->env = *env;
	b->timeout_ms = cfg->subscribe_timeout_ms ? cfg->subscribe_timeout_ms : BROKER_SUBSCRIBE_TIMEOUT_MS;
	copy_text(b->version, sizeof(b->version), cfg->version ? cfg->version : "");
	copy_text(b->event_loop, sizeof(b->event_loop), cfg->event_loop ? cfg->event_loop : "");
	b->next_token = cfg->token_seed ? cfg->token_seed : 1;
	b->start_ms = now(b);
	*out = b;
	return 0;
}

void broker_free(struct broker *b)
{
	if (!b)
		return;
	for (struct client *c = b->clients; c; c = c->next)
		client_fail(b, c, LVL_DEBUG, "the broker shuts down");
	reap(b);
	free(b);
}

struct client *broker_client_new(struct broker *b, const struct broker_creds *cr, void *conn)
{
	if (b->nclients >= BROKER_MAX_CLIENTS) {
		b->refused++;
		if (ratelimit_ok(&b->rl_refused, 1, 1000, now(b)))
			log_warn("refused: connection from pid %d uid %u: %d clients already", (int)cr->pid,
				 (unsigned)cr->uid, BROKER_MAX_CLIENTS);
		return NULL;
	}
	struct client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->pw.kind = PW_CLIENT;
	c->conn = conn;
	c->cr = *cr;
	c->no = ++b->next_client;
	int r = b->env.watch_process(b->env.ctx, cr->pid, conn, c, &c->pidw);
	if (r < 0) {
		log_debug("connection from pid %d: cannot watch it: %s", (int)cr->pid, strerror(-r));
		free(c);
		return NULL;
	}
	c->next = b->clients;
	if (b->clients)
		b->clients->prev = c;
	b->clients = c;
	b->nclients++;
	log_debug("client #%llu: pid %d uid %u gid %u connected", (unsigned long long)c->no, (int)cr->pid,
		  (unsigned)cr->uid, (unsigned)cr->gid);
	return c;
}

void broker_note_refused(struct broker *b, const char *why)
{
	b->refused++;
	if (ratelimit_ok(&b->rl_refused, 1, 1000, now(b)))
		log_warn("refused a connection: %s", why);
}

/* How many fds each opcode takes (INTRODUCED: 1 with a positive result). */
static bool fd_count_ok(unsigned op, const void *msg, unsigned nfds)
{
	switch (op) {
	case BOP_REGISTER:
	case BOP_REATTACH_PRODUCER:
		return nfds == 1;
	case BOP_INTRODUCED: {
		const struct bmsg_introduced *m = msg;
		return nfds == (m->result > 0 ? 1u : 0u);
	}
	case BOP_REATTACH_CONSUMER:
		return nfds <= 1;
	default:
		return nfds == 0;
	}
}

static int handle(struct broker *b, struct client *c, const void *raw, size_t len, const int *fds, unsigned nfds,
		  unsigned flags)
{
	union {
		struct bmsg_hdr hdr;
		struct bmsg_register reg;
		struct bmsg_unregister unreg;
		struct bmsg_subscribe sub;
		struct bmsg_status status;
		struct bmsg_introduced intro;
		struct bmsg_consumer_gone gone;
		struct bmsg_reattach_consumer reatt;
		uint8_t bytes[BMSG_MAX];
	} m;
	memset(&m, 0, sizeof(m));
	if (len >= sizeof(m.hdr))
		memcpy(&m.hdr, raw, sizeof(m.hdr));
	uint32_t seq = len >= sizeof(m.hdr) ? m.hdr.seq : 0;
	unsigned op = m.hdr.opcode;
	if ((flags & BROKER_MSG_TRUNC) || len > BMSG_MAX) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EBADMSG, "message larger than %d bytes", BMSG_MAX);
		return 0;
	}
	if (flags & BROKER_MSG_CTRUNC) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EBADMSG, "too many fds");
		return 0;
	}
	if (len < sizeof(m.hdr)) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EBADMSG, "short message (%zu bytes)", len);
		return 0;
	}
	if (m.hdr.magic != BMSG_MAGIC) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EPROTO, "bad magic 0x%08x", (unsigned)m.hdr.magic);
		return 0;
	}
	if (m.hdr.version != BMSG_VERSION) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EPROTO, "protocol version %u, the broker speaks %u", (unsigned)m.hdr.version,
		    BMSG_VERSION);
		return 0;
	}
	size_t want = bmsg_size(op);
	if (want == 0 || op >= BOP_RESULT) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EPROTO, want ? "opcode %u goes from the broker to clients" : "unknown opcode %u", op);
		return 0;
	}
	if (len != want || m.hdr.length != want) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EBADMSG, "opcode %u: %zu bytes (header says %u), expected %zu", op, len,
		    (unsigned)m.hdr.length, want);
		return 0;
	}
	memcpy(&m, raw, len);
	if (!fd_count_ok(op, &m, nfds)) {
		close_fds(fds, nfds);
		bad(b, c, seq, -EBADMSG, "opcode %u with %u fds", op, nfds);
		return 0;
	}
	int fd = nfds ? fds[0] : -1;
	switch (op) {
	case BOP_REGISTER:
		do_register(b, c, &m.reg, fd, false);
		return 0;
	case BOP_REATTACH_PRODUCER:
		do_register(b, c, &m.reg, fd, true);
		return 0;
	case BOP_UNREGISTER:
		do_unregister(b, c, &m.unreg);
		return 0;
	case BOP_SUBSCRIBE:
		do_subscribe(b, c, &m.sub);
		return 0;
	case BOP_STATUS:
		return do_status(b, c, &m.status);
	case BOP_INTRODUCED:
		do_introduced(b, c, &m.intro, fd);
		return 0;
	case BOP_CONSUMER_GONE:
		do_consumer_gone(b, c, &m.gone);
		return 0;
	case BOP_REATTACH_CONSUMER:
		do_reattach_consumer(b, c, &m.reatt, fd);
		return 0;
	default:
		close_fds(fds, nfds);
		return 0;
	}
}

int broker_handle_message(struct broker *b, struct client *c, const void *msg, size_t len, const int *fds,
			  unsigned nfds, unsigned flags)
{
	if (c->dead) {
		close_fds(fds, nfds);
		return -EPIPE;
	}
	int r = handle(b, c, msg, len, fds, nfds, flags);
	b->caller = c;
	b->caller_freed = false;
	reap(b);
	bool gone = b->caller_freed; /* c may be freed: only the flag is read */
	b->caller = NULL;
	return gone ? -EPIPE : r;
}

bool broker_client_paused(const struct client *c)
{
	return c->ss != NULL;
}

void broker_client_writable(struct broker *b, struct client *c)
{
	if (!c->dead && c->ss && stream(b, c) == 0 && !c->dead)
		b->env.resume(b->env.ctx, c->conn);
	reap(b);
}

void broker_client_close(struct broker *b, struct client *c, const char *why)
{
	client_fail(b, c, LVL_DEBUG, "%s", why);
	reap(b);
}

void broker_process_exited(struct broker *b, void *cookie)
{
	const struct pw *pw = cookie;
	if (pw->kind == PW_CLIENT) {
		struct client *c = cookie;
		client_fail(b, c, LVL_DEBUG, "its process (pid %d) exited", (int)c->cr.pid);
	} else if (pw->kind == PW_CONSUMER) {
		struct consumer *k = cookie;
		struct pool *p = k->pool;
		unsigned n = reclaim(p, k);
		p->reclaimed += n;
		log_info("pool %s: consumer pid %d (id %d) died holding %u slots: released", p->name, (int)k->pid,
			 (int)k->id, n);
		consumer_drop(b, k);
	}
	reap(b);
}

void broker_timer(struct broker *b)
{
	uint64_t t = now(b);
	while (b->pending && b->pending->deadline <= t) {
		struct pending *q = b->pending;
		log_warn("pool %s: producer pid %d did not answer the introduction of pid %d within %u ms",
			 q->pool->name, (int)q->pool->cr.pid, (int)q->cr.pid, b->timeout_ms);
		char text[BMSG_TEXT_MAX];
		snprintf(text, sizeof(text),
			 "the producer did not answer within %u s (it must call sv2shm_producer_process())",
			 b->timeout_ms / 1000u);
		reply_subscribed(b, q->sub, q->seq, -ETIMEDOUT, 0, 0, -1, text);
		pending_drop(b, q);
	}
	update_deadline(b);
	reap(b);
}

unsigned broker_clients(const struct broker *b)
{
	return b->nclients;
}

unsigned broker_pools(const struct broker *b)
{
	return b->npools;
}

uint64_t broker_refused(const struct broker *b)
{
	return b->refused;
}
