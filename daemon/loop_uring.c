/*
 * The io_uring backend.
 *
 * Every request carries a user_data whose low 3 bits say what it is: a
 * watch's input poll (multishot) or output poll (one-shot), with the watch's
 * address above; the multishot accept or a timer, with a generation above
 * (a request cancelled and replaced must not be taken for its successor);
 * 0 for removals and cancellations, whose completions say nothing we need.
 *
 * A multishot request reports IORING_CQE_F_MORE while it stays armed; a
 * completion without it ends the request (the kernel may end one at any
 * time, e.g. on CQ overflow), and we re-arm unless the watch is dead. A
 * watch is freed only once every request naming it has completed, so a
 * completion can never reach freed memory.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <liburing.h>

#include "log.h"
#include "loop_impl.h"

enum { UD_NONE = 0, UD_IN = 1, UD_OUT = 2, UD_ACCEPT = 3, UD_TIMER = 4 /* + which */ };
#define UD_TAG(ud) ((unsigned)((ud) & 7u))
#define UD_PTR(ud) ((struct watch *)(uintptr_t)((ud) & ~(uint64_t)7u))
#define UD_GEN(ud) ((ud) >> 3)

#define RING_ENTRIES 256
#define CQE_BATCH 256

struct uring_state {
	struct io_uring ring;
	bool accept_armed;
	uint64_t accept_gen;
	bool timer_armed[NTIMERS];
	uint64_t timer_gen[NTIMERS];
	struct __kernel_timespec ts[NTIMERS];
};

static struct uring_state *st(struct loop *l)
{
	return l->be_state;
}

/* A free submission entry; when the queue is full, submit what is in it. */
static struct io_uring_sqe *get_sqe(struct uring_state *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static unsigned poll_events(int res)
{
	unsigned ev = 0;
	if (res & (POLLIN | POLLPRI | POLLRDHUP))
		ev |= LOOP_IN; /* a half-close reads as EOF */
	if (res & POLLOUT)
		ev |= LOOP_OUT;
	if (res & POLLHUP)
		ev |= LOOP_HUP;
	if (res & (POLLERR | POLLNVAL))
		ev |= LOOP_ERR;
	return ev;
}

static int arm_in(struct uring_state *u, struct watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, w->fd, POLLIN | POLLRDHUP);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)w | UD_IN);
	w->in_armed = true;
	w->refs++;
	return 0;
}

static int u_watch(struct loop *l, struct watch *w)
{
	return arm_in(st(l), w);
}

static int u_want_out(struct loop *l, struct watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(st(l));
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, w->fd, POLLOUT);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)w | UD_OUT);
	w->out_armed = true;
	w->refs++;
	return 0;
}

/*
 * Cancel a watch's poll. Not IORING_OP_POLL_REMOVE: it fails with -EALREADY
 * when the poll has just been woken (the peer wrote as we decided to drop it:
 * its completion is queued to run on our task) and then leaves a multishot
 * poll armed for good, holding the file: the socket never closes, the peer
 * never sees the hang-up, the watch is never freed. ASYNC_CANCEL marks the
 * poll cancelled whoever owns it at that instant.
 */
static void remove_poll(struct uring_state *u, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe)
		return; /* cannot happen after a submit; the ring's exit cancels it anyway */
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD_NONE);
}

static void u_unwatch(struct loop *l, struct watch *w)
{
	struct uring_state *u = st(l);
	/* A poll holds a reference to the file: remove it now, so that closing
	 * the fd really closes the socket (the peer sees the hang-up). */
	if (w->in_armed)
		remove_poll(u, (uint64_t)(uintptr_t)w | UD_IN);
	if (w->out_armed)
		remove_poll(u, (uint64_t)(uintptr_t)w | UD_OUT);
	io_uring_submit(&u->ring);
}

static int u_accept_start(struct loop *l)
{
	struct uring_state *u = st(l);
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
	u->accept_gen++;
	io_uring_prep_multishot_accept(sqe, l->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (u->accept_gen << 3) | UD_ACCEPT);
	u->accept_armed = true;
	return 0;
}

static void u_accept_stop(struct loop *l)
{
	struct uring_state *u = st(l);
	if (!u->accept_armed)
		return;
	struct io_uring_sqe *sqe = get_sqe(u);
	if (sqe) {
		io_uring_prep_cancel64(sqe, (u->accept_gen << 3) | UD_ACCEPT, 0);
		io_uring_sqe_set_data64(sqe, UD_NONE);
	}
	u->accept_armed = false;
	u->accept_gen++;
	io_uring_submit(&u->ring);
}

static void u_timer(struct loop *l, int which)
{
	struct uring_state *u = st(l);
	struct io_uring_sqe *sqe;
	if (u->timer_armed[which]) {
		sqe = get_sqe(u);
		if (sqe) {
			io_uring_prep_timeout_remove(sqe, (u->timer_gen[which] << 3) | (UD_TIMER + (unsigned)which), 0);
			io_uring_sqe_set_data64(sqe, UD_NONE);
		}
		u->timer_armed[which] = false;
	}
	u->timer_gen[which]++;
	uint64_t d = l->deadline[which];
	if (!d)
		return;
	sqe = get_sqe(u);
	if (!sqe)
		return;
	u->ts[which].tv_sec = (long long)(d / 1000u);
	u->ts[which].tv_nsec = (long long)(d % 1000u) * 1000000;
	/* Absolute CLOCK_MONOTONIC, the clock of now_ms(). */
	io_uring_prep_timeout(sqe, &u->ts[which], 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, (u->timer_gen[which] << 3) | (UD_TIMER + (unsigned)which));
	u->timer_armed[which] = true;
	/* The timespec is read at submission: submit while it is this one. */
	io_uring_submit(&u->ring);
}

static void on_watch_cqe(struct loop *l, uint64_t ud, int res, unsigned flags)
{
	struct uring_state *u = st(l);
	struct watch *w = UD_PTR(ud);
	bool more = flags & IORING_CQE_F_MORE;
	if (UD_TAG(ud) == UD_OUT) {
		w->out_armed = false;
		w->refs--;
		if (res >= 0)
			loop_dispatch(w, poll_events(res) | LOOP_OUT);
		else if (res != -ECANCELED)
			loop_dispatch(w, LOOP_ERR);
		return;
	}
	if (!more) {
		w->in_armed = false;
		w->refs--;
	}
	if (res >= 0)
		loop_dispatch(w, poll_events(res));
	else if (res != -ECANCELED)
		loop_dispatch(w, LOOP_ERR); /* the kernel refused the poll: do not re-arm */
	if (!more && !w->dead && (res >= 0 || res == -ECANCELED)) {
		if (arm_in(u, w) < 0)
			loop_dispatch(w, LOOP_ERR);
	}
}

static void on_cqe(struct loop *l, uint64_t ud, int res, unsigned flags)
{
	struct uring_state *u = st(l);
	unsigned tag = UD_TAG(ud);
	switch (tag) {
	case UD_NONE:
		return;
	case UD_IN:
	case UD_OUT:
		on_watch_cqe(l, ud, res, flags);
		return;
	case UD_ACCEPT: {
		bool current = UD_GEN(ud) == u->accept_gen;
		if (res >= 0) {
			/* Even a stale request's connection is real: hand it on
			 * (or close it, when we no longer accept). */
			loop_accepted(l, res);
		}
		if (!current)
			return;
		if (!(flags & IORING_CQE_F_MORE)) {
			u->accept_armed = false;
			if (res < 0 && res != -ECANCELED)
				loop_accepted(l, res); /* may pause accepting */
			if (l->accepting && !l->accept_paused && !u->accept_armed) {
				int r = u_accept_start(l);
				if (r < 0)
					loop_accepted(l, r);
			}
		}
		return;
	}
	default: {
		int which = (int)tag - UD_TIMER;
		if (which < 0 || which >= NTIMERS)
			return;
		if (UD_GEN(ud) != u->timer_gen[which])
			return; /* replaced or removed */
		u->timer_armed[which] = false;
		if (res == -ETIME || res == 0)
			loop_timer_fired(l, which);
		return;
	}
	}
}

static int u_wait(struct loop *l, bool nowait)
{
	struct uring_state *u = st(l);
	int r = nowait ? io_uring_submit(&u->ring) : io_uring_submit_and_wait(&u->ring, 1);
	if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN && r != -ETIME)
		return r;
	/* Take each completion off the ring before handling it: handlers
	 * submit new requests. Bounded per turn. */
	for (unsigned i = 0; i < CQE_BATCH; i++) {
		struct io_uring_cqe *cqe;
		if (io_uring_peek_cqe(&u->ring, &cqe) != 0)
			break;
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		unsigned flags = cqe->flags;
		io_uring_cqe_seen(&u->ring, cqe);
		on_cqe(l, ud, res, flags);
	}
	return 0;
}

static void u_fini(struct loop *l)
{
	struct uring_state *u = st(l);
	io_uring_queue_exit(&u->ring);
	free(u);
	l->be_state = NULL;
}

static const struct loop_backend uring_backend = {
	.watch = u_watch,
	.want_out = u_want_out,
	.unwatch = u_unwatch,
	.accept_start = u_accept_start,
	.accept_stop = u_accept_stop,
	.timer = u_timer,
	.wait = u_wait,
	.fini = u_fini,
};

/*
 * Can this kernel do what we need? The opcodes are in the probe; the
 * multishot flavours are not (IORING_POLL_ADD_MULTI needs 5.13, multishot
 * accept 5.19: older kernels answer -EINVAL), so submit both on a
 * throw-away ring against a throw-away listening socket (autobound, in the
 * abstract namespace) and an eventfd, and see whether they stay armed.
 */
static int probe_multishot(char *why, size_t n, char *short_why, size_t sn)
{
	struct io_uring ring;
	int r = io_uring_queue_init(8, &ring, 0);
	if (r < 0) {
		snprintf(why, n, "probe ring: %s", strerror(-r));
		snprintf(short_why, sn, "probe failed");
		return r;
	}
	int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (lfd < 0 || efd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa_family_t)) < 0 || listen(lfd, 1) < 0) {
		r = -errno;
		snprintf(why, n, "probe socket: %s", strerror(errno));
		snprintf(short_why, sn, "probe failed");
		goto out;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, 1);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_multishot(sqe, efd, POLLIN);
	io_uring_sqe_set_data64(sqe, 2);
	r = io_uring_submit(&ring);
	if (r != 2) {
		r = r < 0 ? r : -EIO;
		snprintf(why, n, "probe submission: %s", strerror(-r));
		snprintf(short_why, sn, "probe failed");
		goto out;
	}
	r = 0;
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&ring, &cqe) == 0) {
		/* Armed requests post nothing: anything here is a refusal. */
		if (cqe->res < 0 && r == 0) {
			r = cqe->res;
			bool acc = cqe->user_data == 1;
			snprintf(why, n, "multishot %s refused: %s", acc ? "accept" : "poll", strerror(-r));
			snprintf(short_why, sn, acc ? "mshot accept" : "mshot poll");
		}
		io_uring_cqe_seen(&ring, cqe);
	}
out:
	io_uring_queue_exit(&ring); /* cancels what is still armed */
	if (lfd >= 0)
		close(lfd);
	if (efd >= 0)
		close(efd);
	return r;
}

int loop_uring_init(struct loop *l, char *why, size_t n, char *short_why, size_t sn)
{
	struct uring_state *u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(why, n, "out of memory");
		snprintf(short_why, sn, "ENOMEM");
		return -ENOMEM;
	}
	int r = io_uring_queue_init(RING_ENTRIES, &u->ring, 0);
	if (r < 0) {
		/* EPERM: kernel.io_uring_disabled = 2 (or 1 outside the group);
		 * ENOSYS: no io_uring or a seccomp filter; ENOMEM: memlock. */
		const char *hint = r == -EPERM ? " (kernel.io_uring_disabled?)"
				   : r == -ENOSYS ? " (no kernel support or seccomp)"
						  : "";
		snprintf(why, n, "io_uring_queue_init: %s%s", strerror(-r), hint);
		snprintf(short_why, sn, "%s",
			 r == -EPERM    ? "EPERM"
			 : r == -ENOSYS ? "ENOSYS"
			 : r == -ENOMEM ? "ENOMEM"
					: "setup failed");
		free(u);
		return r;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&u->ring);
	static const struct {
		int op;
		const char *name;
	} need[] = {
		{IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
		{IORING_OP_ACCEPT, "ACCEPT"},     {IORING_OP_TIMEOUT, "TIMEOUT"},
		{IORING_OP_TIMEOUT_REMOVE, "TIMEOUT_REMOVE"},
	};
	r = 0;
	if (!p) {
		snprintf(why, n, "io_uring_get_probe_ring failed");
		snprintf(short_why, sn, "no probe");
		r = -ENOSYS;
	} else {
		for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
			if (!io_uring_opcode_supported(p, need[i].op)) {
				snprintf(why, n, "the kernel lacks IORING_OP_%s", need[i].name);
				snprintf(short_why, sn, "old kernel");
				r = -ENOSYS;
				break;
			}
		}
		io_uring_free_probe(p);
	}
	if (r == 0)
		r = probe_multishot(why, n, short_why, sn);
	if (r < 0) {
		io_uring_queue_exit(&u->ring);
		free(u);
		return r;
	}
	l->be = &uring_backend;
	l->be_state = u;
	why[0] = '\0';
	return 0;
}
