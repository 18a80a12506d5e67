/*
 * The broker client (sv2shm/client.h): one SOCK_SEQPACKET connection to
 * sv2shmd, requests that wait for their answer with a timeout, and the
 * messages the broker sends on its own (introductions for our producers,
 * "pool gone" for our consumers) handled wherever they arrive — also while
 * a request waits, so a process may subscribe to its own pool.
 *
 * If the broker goes away, nothing else stops: producers and consumers keep
 * their direct channels. The client reconnects with backoff (100 ms doubling
 * to 5 s) when asked to process, and registers again what it has.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker_wire.h"
#include "client_priv.h"
#include "internal.h"

#define MAX_OWN 64 /* producers and consumers one client may hold */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct own_consumer {
	struct sv2shm_consumer *k;
	char name[BMSG_NAME_MAX];
	int id;
	unsigned holder;
	/* Re-attaching after a broker restart: the request in flight, and when
	 * to ask again (its producer may re-attach after us: -ENOENT). */
	uint32_t reattach_seq;
	uint64_t retry_at_ns;
	unsigned retries;
};

#define REATTACH_RETRY_MS 200
#define REATTACH_RETRIES 50 /* 10 s: then the broker has no producer for it */

struct sv2shm_client {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd; /* -1 while disconnected */
	int timeout_ms;
	uint32_t seq;
	uint64_t retry_at_ns;
	unsigned backoff_ms;
	struct sv2shm_producer *prod[MAX_OWN];
	unsigned nprod;
	struct own_consumer cons[MAX_OWN];
	unsigned ncons;
};

SV2SHM_API int sv2shm_default_socket(char *buf, size_t size)
{
	if (!buf)
		return -EINVAL;
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (xdg && xdg[0] == '/')
		n = snprintf(buf, size, "%s/sv2shm/sv2shmd.sock", xdg);
	else
		n = snprintf(buf, size, "/run/sv2shm/sv2shmd.sock");
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* --- the connection ---------------------------------------------------------- */

static int dial(const char *path)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		return e == EAGAIN ? -ECONNREFUSED : -e; /* a full backlog counts as refused */
	}
	return fd;
}

static void disconnect(struct sv2shm_client *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	c->fd = -1;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->retry_at_ns = mono_ns(); /* the first retry may come at once */
	for (unsigned i = 0; i < c->nprod; i++)
		producer_client_fd_changed(c->prod[i]);
}

/* Send one message (with at most one fd), waiting at most the client's
 * timeout for room. 0 or -errno (-ENOTCONN: the broker is gone). */
static int send_msg(struct sv2shm_client *c, const void *msg, size_t len, int fd)
{
	if (c->fd < 0)
		return -ENOTCONN;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)(uintptr_t)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	uint64_t deadline = mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
	for (;;) {
		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == (ssize_t)len)
			return 0;
		if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
			disconnect(c);
			return -ENOTCONN;
		}
		uint64_t now = mono_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
		poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
	}
}

/*
 * Receive one message within timeout_ms (0: only if one is there). Returns
 * its opcode (the message in buf, an fd that came with it in *fd, else -1),
 * or -ETIMEDOUT, -ENOTCONN (the broker went away), -EPROTO (a malformed
 * message: dropped).
 */
static int recv_msg(struct sv2shm_client *c, uint8_t buf[BMSG_MAX + 1], int *fd, int timeout_ms)
{
	*fd = -1;
	if (c->fd < 0)
		return -ENOTCONN;
	if (timeout_ms != 0) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int pr;
		do
			pr = poll(&pfd, 1, timeout_ms);
		while (pr < 0 && errno == EINTR);
		if (pr == 0)
			return -ETIMEDOUT;
	}
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = buf, .iov_len = BMSG_MAX + 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -ETIMEDOUT;
	int got = -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (got < 0)
				got = f;
			else
				close(f);
		}
	}
	if (n <= 0) {
		if (got >= 0)
			close(got);
		disconnect(c);
		return -ENOTCONN;
	}
	const struct bmsg_hdr *h = (const struct bmsg_hdr *)(void *)buf;
	if ((size_t)n < sizeof(*h) || h->magic != BMSG_MAGIC || h->version != BMSG_VERSION ||
	    bmsg_size(h->opcode) == 0 || h->length != bmsg_size(h->opcode) || (size_t)n != h->length ||
	    (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		if (got >= 0)
			close(got);
		return -EPROTO;
	}
	*fd = got;
	return h->opcode;
}

/* --- what the broker sends on its own ----------------------------------------- */

static struct sv2shm_producer *find_producer(struct sv2shm_client *c, const char *name)
{
	for (unsigned i = 0; i < c->nprod; i++)
		if (strncmp(producer_name(c->prod[i]), name, BMSG_NAME_MAX) == 0)
			return c->prod[i];
	return NULL;
}

/* INTRODUCE: add the consumer to our producer and answer. */
static void on_introduce(struct sv2shm_client *c, const struct bmsg_introduce *m, int fd)
{
	struct bmsg_introduced r;
	memset(&r, 0, sizeof(r));
	bmsg_init(&r.hdr, BOP_INTRODUCED, m->hdr.seq);
	r.token = m->token;
	int ring = -1;
	char name[BMSG_NAME_MAX];
	memcpy(name, m->name, sizeof(name));
	struct sv2shm_producer *p = bmsg_name_ok(name) ? find_producer(c, name) : NULL;
	if (!p || fd < 0) {
		if (fd >= 0)
			close(fd);
		r.result = -ENOENT;
	} else {
		unsigned holder = 0;
		int id = producer_introduce(p, fd, (pid_t)m->pid, &holder, &ring); /* owns fd */
		r.result = id;
		r.holder = holder;
	}
	send_msg(c, &r, sizeof(r), r.result > 0 ? ring : -1);
}

static void send_reattach_consumer(struct sv2shm_client *c, struct own_consumer *oc);

/* A RESULT nobody waits for: a consumer's re-attachment may have to be
 * asked again. */
static void on_result(struct sv2shm_client *c, const struct bmsg_result *m)
{
	for (unsigned i = 0; i < c->ncons; i++) {
		struct own_consumer *oc = &c->cons[i];
		if (!oc->reattach_seq || oc->reattach_seq != m->hdr.seq)
			continue;
		oc->reattach_seq = 0;
		if (m->result == -ENOENT && oc->retries < REATTACH_RETRIES)
			oc->retry_at_ns = mono_ns() + (uint64_t)REATTACH_RETRY_MS * 1000000u;
	}
}

static int dispatch(struct sv2shm_client *c, int op, const uint8_t *buf, int fd)
{
	switch (op) {
	case BOP_RESULT:
		if (fd >= 0)
			close(fd);
		on_result(c, (const void *)buf);
		return 0;
	case BOP_INTRODUCE:
		on_introduce(c, (const void *)buf, fd);
		return 1;
	case BOP_POOL_GONE:
		/* Our consumers learn it from their own channel (-EPIPE once
		 * drained): nothing to do here but drop any fd. */
	default:
		if (fd >= 0)
			close(fd);
		return 0;
	}
}

/* Wait for the answer to request `seq` (opcode `want`), handling whatever
 * else comes meanwhile. */
static int await(struct sv2shm_client *c, uint32_t seq, int want, uint8_t buf[BMSG_MAX + 1], int *fd, int timeout_ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		uint64_t now = mono_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		int op = recv_msg(c, buf, fd, (int)((deadline - now) / 1000000u) + 1);
		if (op == -ETIMEDOUT || op == -EPROTO)
			continue;
		if (op < 0)
			return op;
		const struct bmsg_hdr *h = (const void *)buf;
		if (h->seq == seq && (op == want || op == BOP_RESULT))
			return op;
		dispatch(c, op, buf, *fd);
		*fd = -1;
	}
}

/* --- registering again after a broker restart ---------------------------------- */

static int send_register(struct sv2shm_client *c, struct sv2shm_producer *p, unsigned op,
			 const struct sv2shm_register_options *o, uint32_t *seq)
{
	struct bmsg_register m;
	memset(&m, 0, sizeof(m));
	*seq = ++c->seq;
	bmsg_init(&m.hdr, op, *seq);
	snprintf(m.name, sizeof(m.name), "%s", producer_name(p));
	int policy;
	unsigned slots;
	producer_geometry(p, &m.capacity, &slots, &policy);
	m.slots = slots;
	m.policy = (uint32_t)policy;
	if (o) {
		m.n_uids = o->n_uids;
		m.n_gids = o->n_gids;
		for (unsigned i = 0; i < o->n_uids; i++)
			m.uids[i] = (uint32_t)o->uids[i];
		for (unsigned i = 0; i < o->n_gids; i++)
			m.gids[i] = (uint32_t)o->gids[i];
	}
	return send_msg(c, &m, sizeof(m), producer_ctl_fd(p));
}

struct reattach_ctx {
	struct sv2shm_client *c;
	const char *name;
};

static void reattach_one(void *user, int id, unsigned holder, pid_t pid, int ring_fd)
{
	struct reattach_ctx *x = user;
	struct bmsg_reattach_consumer m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_REATTACH_CONSUMER, ++x->c->seq);
	snprintf(m.name, sizeof(m.name), "%s", x->name);
	m.id = id;
	m.holder = holder;
	m.pid = (int32_t)pid;
	send_msg(x->c, &m, sizeof(m), ring_fd);
}

/* Connected again: tell the broker what we have. Answers are not awaited
 * (they come back as RESULTs and are dropped): the broker's status shows
 * the outcome, and a refusal is retried at the next reconnection. */
static void reattach(struct sv2shm_client *c)
{
	for (unsigned i = 0; i < c->nprod; i++) {
		struct sv2shm_producer *p = c->prod[i];
		uint32_t seq;
		/* The allow lists are the broker's to forget: a restart resets
		 * them to the owner's uid only, the safe default. */
		if (send_register(c, p, BOP_REATTACH_PRODUCER, NULL, &seq) < 0)
			return;
		struct reattach_ctx x = {.c = c, .name = producer_name(p)};
		producer_each_consumer(p, reattach_one, &x);
		producer_client_fd_changed(p);
	}
	for (unsigned i = 0; i < c->ncons; i++) {
		c->cons[i].retries = 0;
		send_reattach_consumer(c, &c->cons[i]);
	}
}

static void send_reattach_consumer(struct sv2shm_client *c, struct own_consumer *oc)
{
	struct bmsg_reattach_consumer m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_REATTACH_CONSUMER, ++c->seq);
	memcpy(m.name, oc->name, sizeof(m.name));
	m.id = oc->id;
	m.holder = oc->holder;
	oc->reattach_seq = m.hdr.seq;
	oc->retry_at_ns = 0;
	oc->retries++;
	send_msg(c, &m, sizeof(m), -1);
}

static void maybe_reconnect(struct sv2shm_client *c)
{
	if (c->fd >= 0)
		return;
	uint64_t now = mono_ns();
	if (now < c->retry_at_ns)
		return;
	int fd = dial(c->path);
	if (fd < 0) {
		c->retry_at_ns = now + (uint64_t)c->backoff_ms * 1000000u;
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
		return;
	}
	c->fd = fd;
	c->backoff_ms = BACKOFF_MIN_MS;
	reattach(c);
}

/* --- public ------------------------------------------------------------------- */

SV2SHM_API int sv2shm_client_connect(const struct sv2shm_client_options *o, struct sv2shm_client **out)
{
	if (!out)
		return -EINVAL;
	struct sv2shm_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r;
	if (o && o->socket_path) {
		if (!o->socket_path[0]) {
			free(c);
			return -EINVAL;
		}
		if (strlen(o->socket_path) >= sizeof(c->path)) {
			free(c);
			return -ENAMETOOLONG;
		}
		snprintf(c->path, sizeof(c->path), "%s", o->socket_path);
	} else if ((r = sv2shm_default_socket(c->path, sizeof(c->path))) < 0) {
		free(c);
		return r;
	}
	if (o && o->timeout_ms < 0) {
		free(c);
		return -EINVAL;
	}
	c->timeout_ms = o && o->timeout_ms ? o->timeout_ms : 5000;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->fd = dial(c->path);
	if (c->fd < 0) {
		r = c->fd;
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

SV2SHM_API int sv2shm_client_close(struct sv2shm_client *c)
{
	if (!c)
		return 0;
	if (c->nprod || c->ncons)
		return -EBUSY;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return 0;
}

SV2SHM_API bool sv2shm_client_connected(const struct sv2shm_client *c)
{
	return c && c->fd >= 0;
}

SV2SHM_API int sv2shm_client_fd(const struct sv2shm_client *c)
{
	if (!c)
		return -EINVAL;
	return c->fd >= 0 ? c->fd : -ENOTCONN;
}

int client_broker_fd(const struct sv2shm_client *c)
{
	return c->fd;
}

int client_process_internal(struct sv2shm_client *c)
{
	maybe_reconnect(c);
	uint64_t now = mono_ns();
	for (unsigned i = 0; i < c->ncons && c->fd >= 0; i++)
		if (c->cons[i].retry_at_ns && now >= c->cons[i].retry_at_ns)
			send_reattach_consumer(c, &c->cons[i]);
	int handled = 0;
	uint8_t buf[BMSG_MAX + 1];
	/* A bounded batch: a broker that floods us cannot keep us here. */
	for (int i = 0; i < 64 && c->fd >= 0; i++) {
		int fd;
		int op = recv_msg(c, buf, &fd, 0);
		if (op == -ETIMEDOUT)
			break;
		if (op == -EPROTO)
			continue;
		if (op < 0)
			break;
		handled += dispatch(c, op, buf, fd);
	}
	return handled;
}

SV2SHM_API int sv2shm_client_process(struct sv2shm_client *c)
{
	if (!c)
		return -EINVAL;
	return client_process_internal(c);
}

SV2SHM_API int sv2shm_client_register(struct sv2shm_client *c, const char *name,
				      const struct sv2shm_register_options *o, struct sv2shm_producer **out)
{
	if (!c || !name || !o || !out || o->n_uids > SV2SHM_ALLOW_MAX || o->n_gids > SV2SHM_ALLOW_MAX)
		return -EINVAL;
	char nm[BMSG_NAME_MAX];
	memset(nm, 0, sizeof(nm));
	if (strlen(name) > SV2SHM_NAME_MAX)
		return -EINVAL;
	memcpy(nm, name, strlen(name));
	if (!bmsg_name_ok(nm))
		return -EINVAL;
	if (c->nprod == MAX_OWN)
		return -EMFILE;
	if (find_producer(c, nm))
		return -EEXIST;
	maybe_reconnect(c);
	if (c->fd < 0)
		return -ENOTCONN;
	struct sv2shm_producer *p;
	int r = sv2shm_producer_new(&o->producer, &p);
	if (r < 0)
		return r;
	producer_attach_client(p, c, nm);
	c->prod[c->nprod++] = p;
	uint32_t seq;
	r = send_register(c, p, BOP_REGISTER, o, &seq);
	uint8_t buf[BMSG_MAX + 1];
	int fd = -1;
	if (r == 0)
		r = await(c, seq, BOP_RESULT, buf, &fd, c->timeout_ms);
	if (fd >= 0)
		close(fd);
	if (r == BOP_RESULT)
		r = ((const struct bmsg_result *)(const void *)buf)->result;
	if (r < 0 || r > 0) {
		r = r > 0 ? -EPROTO : r;
		c->nprod--; /* ours is the last one */
		producer_attach_client(p, NULL, "");
		sv2shm_producer_destroy(p);
		return r;
	}
	*out = p;
	return 0;
}

SV2SHM_API int sv2shm_client_subscribe(struct sv2shm_client *c, const char *name,
				       const struct sv2shm_consumer_options *o, int timeout_ms,
				       struct sv2shm_consumer **out)
{
	if (!c || !name || !out || strlen(name) > SV2SHM_NAME_MAX)
		return -EINVAL;
	struct bmsg_subscribe m;
	memset(&m, 0, sizeof(m));
	memcpy(m.name, name, strlen(name));
	if (!bmsg_name_ok(m.name))
		return -EINVAL;
	if (c->ncons == MAX_OWN)
		return -EMFILE;
	maybe_reconnect(c);
	if (c->fd < 0)
		return -ENOTCONN;
	uint32_t seq = ++c->seq;
	bmsg_init(&m.hdr, BOP_SUBSCRIBE, seq);
	int r = send_msg(c, &m, sizeof(m), -1);
	if (r < 0)
		return r;
	uint8_t buf[BMSG_MAX + 1];
	int fd = -1;
	/* The broker answers within its own 5 s timeout for the producer. */
	int wait = timeout_ms >= 0 ? timeout_ms : c->timeout_ms + 1000;
	r = await(c, seq, BOP_SUBSCRIBED, buf, &fd, wait);
	if (r == BOP_RESULT) {
		r = ((const struct bmsg_result *)(const void *)buf)->result;
		r = r < 0 ? r : -EPROTO;
	} else if (r == BOP_SUBSCRIBED) {
		const struct bmsg_subscribed *s = (const void *)buf;
		r = s->result;
		if (r == 0 && (fd < 0 || s->id <= 0 || s->holder < 1 || s->holder >= SV2SHM_MAX_HOLDERS))
			r = -EPROTO;
		else if (r > 0)
			r = -EPROTO;
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	const struct bmsg_subscribed *s = (const void *)buf;
	struct sv2shm_consumer *k;
	r = sv2shm_consumer_new(fd, o, &k); /* owns fd */
	if (r < 0)
		return r;
	consumer_attach_client(k, c);
	struct own_consumer *oc = &c->cons[c->ncons++];
	memset(oc, 0, sizeof(*oc));
	oc->k = k;
	memcpy(oc->name, m.name, sizeof(oc->name));
	oc->id = s->id;
	oc->holder = s->holder;
	*out = k;
	return 0;
}

void client_consumer_removed(struct sv2shm_client *c, const char *name, int id, int reason, unsigned held)
{
	struct bmsg_consumer_gone m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_CONSUMER_GONE, ++c->seq);
	snprintf(m.name, sizeof(m.name), "%s", name);
	m.id = id;
	m.reason = reason;
	m.held = held;
	send_msg(c, &m, sizeof(m), -1);
}

void client_producer_destroyed(struct sv2shm_client *c, struct sv2shm_producer *p)
{
	struct bmsg_unregister m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, BOP_UNREGISTER, ++c->seq);
	snprintf(m.name, sizeof(m.name), "%s", producer_name(p));
	send_msg(c, &m, sizeof(m), -1); /* its RESULT is dropped when it comes */
	for (unsigned i = 0; i < c->nprod; i++)
		if (c->prod[i] == p) {
			c->prod[i] = c->prod[--c->nprod];
			break;
		}
}

void client_consumer_freed(struct sv2shm_client *c, struct sv2shm_consumer *k)
{
	for (unsigned i = 0; i < c->ncons; i++)
		if (c->cons[i].k == k) {
			c->cons[i] = c->cons[--c->ncons];
			break;
		}
}

/* --- status -------------------------------------------------------------------- */

static void copy_name(char *dst, size_t size, const char *src, size_t srcmax)
{
	size_t n = strnlen(src, srcmax);
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

SV2SHM_API int sv2shm_client_status(struct sv2shm_client *c, struct sv2shm_status **out)
{
	if (!c || !out)
		return -EINVAL;
	maybe_reconnect(c);
	if (c->fd < 0)
		return -ENOTCONN;
	struct bmsg_status m;
	memset(&m, 0, sizeof(m));
	uint32_t seq = ++c->seq;
	bmsg_init(&m.hdr, BOP_STATUS, seq);
	int r = send_msg(c, &m, sizeof(m), -1);
	if (r < 0)
		return r;
	struct sv2shm_status *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	unsigned cap = 0;
	uint8_t buf[BMSG_MAX + 1];
	uint64_t deadline = mono_ns() + (uint64_t)c->timeout_ms * 1000000u;
	for (;;) {
		uint64_t now = mono_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		int fd;
		int op = recv_msg(c, buf, &fd, (int)((deadline - now) / 1000000u) + 1);
		if (op == -ETIMEDOUT || op == -EPROTO)
			continue;
		if (op < 0) {
			r = op;
			break;
		}
		const struct bmsg_hdr *h = (const void *)buf;
		if (h->seq != seq || (op != BOP_STATUS_POOL && op != BOP_STATUS_CONSUMER && op != BOP_STATUS_END &&
				      op != BOP_RESULT)) {
			dispatch(c, op, buf, fd);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (op == BOP_RESULT) {
			r = ((const struct bmsg_result *)(const void *)buf)->result;
			r = r < 0 ? r : -EPROTO;
			break;
		}
		if (op == BOP_STATUS_POOL) {
			const struct bmsg_status_pool *sp = (const void *)buf;
			if (st->npools == cap) {
				unsigned ncap = cap ? cap * 2 : 8;
				if (ncap > 4096) {
					r = -EPROTO; /* more pools than any broker keeps */
					break;
				}
				struct sv2shm_status_pool *np = realloc(st->pools, ncap * sizeof(*np));
				if (!np) {
					r = -ENOMEM;
					break;
				}
				st->pools = np;
				cap = ncap;
			}
			struct sv2shm_status_pool *q = &st->pools[st->npools++];
			memset(q, 0, sizeof(*q));
			copy_name(q->name, sizeof(q->name), sp->name, sizeof(sp->name));
			q->pid = sp->pid;
			q->uid = sp->uid;
			q->capacity = sp->capacity;
			q->slots = sp->slots;
			q->policy = (int)sp->policy;
			q->mode = (int)sp->mode;
			copy_name(q->slot_map, sizeof(q->slot_map), sp->slot_map, sizeof(sp->slot_map));
			const struct bmsg_counters *k = &sp->counters;
			q->counters = (struct sv2shm_pool_counters){
				.published = k->published, .bytes = k->bytes, .releases = k->releases,
				.reclaimed = k->reclaimed, .fallbacks = k->fallbacks, .waits = k->waits,
				.wait_ns = k->wait_ns, .mode_switches = k->mode_switches, .hw_slots = k->hw_slots,
				.hw_bytes = k->hw_bytes, .live = k->live, .bytes_in_use = k->bytes_in_use};
		} else if (op == BOP_STATUS_CONSUMER) {
			const struct bmsg_status_consumer *sc = (const void *)buf;
			for (unsigned i = 0; i < st->npools; i++) {
				struct sv2shm_status_pool *q = &st->pools[i];
				if (strncmp(q->name, sc->pool, BMSG_NAME_MAX) != 0 || q->nconsumers >= 31)
					continue;
				struct sv2shm_status_consumer *x = &q->consumers[q->nconsumers++];
				x->id = sc->id;
				x->holder = sc->holder;
				x->pid = sc->pid;
				x->uid = sc->uid;
				x->held = sc->held;
				break;
			}
		} else {
			const struct bmsg_status_end *se = (const void *)buf;
			copy_name(st->version, sizeof(st->version), se->version, sizeof(se->version));
			copy_name(st->event_loop, sizeof(st->event_loop), se->event_loop, sizeof(se->event_loop));
			st->uptime_ms = se->uptime_ms;
			st->refused = se->refused;
			st->clients = se->clients;
			*out = st;
			return 0;
		}
	}
	sv2shm_status_free(st);
	return r;
}

SV2SHM_API void sv2shm_status_free(struct sv2shm_status *s)
{
	if (!s)
		return;
	free(s->pools);
	free(s);
}
