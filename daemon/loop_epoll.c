/*
 * The epoll backend: where io_uring is refused, or with --no-io-uring.
 * Level-triggered: a handler that stops reading early is called again on
 * the next turn anyway. Writability is asked for once (EPOLLOUT added, and
 * dropped again when reported), as io_uring's one-shot poll does.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "loop_impl.h"

#define EVENTS_PER_TURN 64
#define ACCEPTS_PER_TURN 64

struct epoll_state {
	int epfd;
	bool accept_in_set;
	char accept_tag; /* its address marks the listening socket's events */
};

static struct epoll_state *st(struct loop *l)
{
	return l->be_state;
}

static int ctl(struct epoll_state *e, int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};
	return epoll_ctl(e->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static int e_watch(struct loop *l, struct watch *w)
{
	int r = ctl(st(l), EPOLL_CTL_ADD, w->fd, EPOLLIN | EPOLLRDHUP, w);
	if (r == 0)
		w->in_armed = true;
	return r;
}

static int e_want_out(struct loop *l, struct watch *w)
{
	int r = ctl(st(l), EPOLL_CTL_MOD, w->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, w);
	if (r == 0)
		w->out_armed = true;
	return r;
}

static void e_unwatch(struct loop *l, struct watch *w)
{
	ctl(st(l), EPOLL_CTL_DEL, w->fd, 0, NULL);
	w->in_armed = w->out_armed = false;
}

static int e_accept_start(struct loop *l)
{
	struct epoll_state *e = st(l);
	if (e->accept_in_set)
		return 0;
	int r = ctl(e, EPOLL_CTL_ADD, l->lfd, EPOLLIN, &e->accept_tag);
	if (r == 0)
		e->accept_in_set = true;
	return r;
}

static void e_accept_stop(struct loop *l)
{
	struct epoll_state *e = st(l);
	if (!e->accept_in_set)
		return;
	ctl(e, EPOLL_CTL_DEL, l->lfd, 0, NULL);
	e->accept_in_set = false;
}

static void e_timer(struct loop *l, int which)
{
	/* epoll_wait's timeout comes from l->deadline[] each turn. */
	(void)l;
	(void)which;
}

static void do_accept(struct loop *l)
{
	struct epoll_state *e = st(l);
	for (int i = 0; i < ACCEPTS_PER_TURN && e->accept_in_set; i++) {
		int fd = accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0 && errno == EAGAIN)
			return;
		loop_accepted(l, fd < 0 ? -errno : fd);
	}
}

static int e_wait(struct loop *l, bool nowait)
{
	struct epoll_state *e = st(l);
	int timeout = -1;
	uint64_t d = loop_next_deadline(l);
	if (nowait) {
		timeout = 0;
	} else if (d) {
		uint64_t now = now_ms();
		timeout = d <= now ? 0 : d - now > 3600000u ? 3600000 : (int)(d - now);
	}
	struct epoll_event ev[EVENTS_PER_TURN];
	int n = epoll_wait(e->epfd, ev, EVENTS_PER_TURN, timeout);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		if (ev[i].data.ptr == &e->accept_tag) {
			do_accept(l);
			continue;
		}
		struct watch *w = ev[i].data.ptr;
		if (w->dead)
			continue;
		unsigned got = 0;
		uint32_t x = ev[i].events;
		if (x & (EPOLLIN | EPOLLRDHUP))
			got |= LOOP_IN; /* a half-close reads as EOF */
		if (x & EPOLLHUP)
			got |= LOOP_HUP;
		if (x & EPOLLERR)
			got |= LOOP_ERR;
		if ((x & EPOLLOUT) && w->out_armed) {
			got |= LOOP_OUT;
			w->out_armed = false;
			ctl(e, EPOLL_CTL_MOD, w->fd, EPOLLIN | EPOLLRDHUP, w);
		}
		loop_dispatch(w, got);
	}
	if (d) {
		uint64_t now = now_ms();
		for (int i = 0; i < NTIMERS; i++)
			if (l->deadline[i] && l->deadline[i] <= now)
				loop_timer_fired(l, i);
	}
	return 0;
}

static void e_fini(struct loop *l)
{
	struct epoll_state *e = st(l);
	close(e->epfd);
	free(e);
	l->be_state = NULL;
}

static const struct loop_backend epoll_backend = {
	.watch = e_watch,
	.want_out = e_want_out,
	.unwatch = e_unwatch,
	.accept_start = e_accept_start,
	.accept_stop = e_accept_stop,
	.timer = e_timer,
	.wait = e_wait,
	.fini = e_fini,
};

int loop_epoll_init(struct loop *l)
{
	struct epoll_state *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		int r = -errno;
		free(e);
		return r;
	}
	l->be = &epoll_backend;
	l->be_state = e;
	return 0;
}
