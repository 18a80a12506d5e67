/*
 * The loop's common half: watches and their lifetime, kicks, the accept
 * back-off, timers. The backends only talk to the kernel.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop_impl.h"

#define ACCEPT_BACKOFF_MS 100

static void list_del(struct watch **head, struct watch *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		*head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

static void list_add(struct watch **head, struct watch *w)
{
	w->prev = NULL;
	w->next = *head;
	if (*head)
		(*head)->prev = w;
	*head = w;
}

int loop_new(bool try_io_uring, struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->lfd = -1;
	int r = -1;
	if (try_io_uring) {
		char short_why[14]; /* fits STATUS_END.event_loop[32] */
		r = loop_uring_init(l, l->why_not, sizeof(l->why_not), short_why, sizeof(short_why));
		if (r == 0)
			snprintf(l->name, sizeof(l->name), "io_uring");
		else
			snprintf(l->name, sizeof(l->name), "epoll (io_uring: %.13s)", short_why);
	} else {
		snprintf(l->why_not, sizeof(l->why_not), "disabled by --no-io-uring");
		snprintf(l->name, sizeof(l->name), "epoll (io_uring: --no-io-uring)");
	}
	if (r != 0) {
		r = loop_epoll_init(l);
		if (r < 0) {
			free(l);
			return r;
		}
	}
	*out = l;
	return 0;
}

static void free_list(struct watch *w)
{
	while (w) {
		struct watch *n = w->next;
		free(w);
		w = n;
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* The backend's teardown cancels everything in the kernel. */
	l->be->fini(l);
	free_list(l->live);
	free_list(l->dead);
	free(l);
}

const char *loop_name(const struct loop *l)
{
	return l->name;
}

const char *loop_why_not(const struct loop *l)
{
	return l->why_not[0] ? l->why_not : NULL;
}

bool loop_is_uring(const struct loop *l)
{
	return l->why_not[0] == '\0';
}

int loop_accept(struct loop *l, int fd, loop_accept_fn *fn, void *ctx)
{
	l->lfd = fd;
	l->accept_fn = fn;
	l->accept_ctx = ctx;
	l->accepting = true;
	l->accept_paused = false;
	return l->be->accept_start(l);
}

void loop_accept_stop(struct loop *l)
{
	if (!l->accepting)
		return;
	l->accepting = false;
	if (!l->accept_paused)
		l->be->accept_stop(l);
	l->accept_paused = false;
	if (l->deadline[TIMER_ACCEPT]) {
		l->deadline[TIMER_ACCEPT] = 0;
		l->be->timer(l, TIMER_ACCEPT);
	}
}

void loop_accepted(struct loop *l, int fd)
{
	if (fd >= 0) {
		if (l->accepting)
			l->accept_fn(l->accept_ctx, fd);
		else
			close(fd); /* a connection that raced with the shutdown */
		return;
	}
	if (!l->accepting)
		return;
	switch (fd) {
	case -EAGAIN:
	case -EINTR:
	case -ECONNABORTED:
	case -EPROTO:
		return; /* the peer gave up before we took it: nothing to do */
	default:
		/* Out of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) or
		 * anything else: retrying at once would spin. Pause. */
		if (!l->accept_paused) {
			l->accept_paused = true;
			l->be->accept_stop(l);
			l->deadline[TIMER_ACCEPT] = now_ms() + ACCEPT_BACKOFF_MS;
			l->be->timer(l, TIMER_ACCEPT);
		}
		l->accept_fn(l->accept_ctx, fd);
		return;
	}
}

void loop_timer_fired(struct loop *l, int which)
{
	l->deadline[which] = 0;
	if (which == TIMER_ACCEPT) {
		if (l->accepting && l->accept_paused) {
			l->accept_paused = false;
			int r = l->be->accept_start(l);
			if (r < 0)
				loop_accepted(l, r);
		}
		return;
	}
	if (l->timer_fn)
		l->timer_fn(l->timer_ctx);
}

uint64_t loop_next_deadline(const struct loop *l)
{
	uint64_t d = 0;
	for (int i = 0; i < NTIMERS; i++)
		if (l->deadline[i] && (!d || l->deadline[i] < d))
			d = l->deadline[i];
	return d;
}

void loop_set_timer(struct loop *l, uint64_t deadline_ms, loop_timer_fn *fn, void *ctx)
{
	l->timer_fn = fn;
	l->timer_ctx = ctx;
	if (l->deadline[TIMER_USER] == deadline_ms)
		return;
	l->deadline[TIMER_USER] = deadline_ms;
	l->be->timer(l, TIMER_USER);
}

struct watch *loop_watch(struct loop *l, int fd, loop_fd_fn *fn, void *ctx)
{
	struct watch *w = calloc(1, sizeof(*w));
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	w->loop = l;
	w->fd = fd;
	w->fn = fn;
	w->ctx = ctx;
	int r = l->be->watch(l, w);
	if (r < 0) {
		free(w);
		errno = -r;
		return NULL;
	}
	list_add(&l->live, w);
	return w;
}

int loop_want_out(struct watch *w)
{
	if (w->dead)
		return -EBADF;
	if (w->out_armed)
		return 0;
	return w->loop->be->want_out(w->loop, w);
}

void loop_kick(struct watch *w)
{
	if (w->dead || w->kicked)
		return;
	w->kicked = true;
	w->next_kick = w->loop->kicks;
	w->loop->kicks = w;
}

void loop_unwatch(struct watch *w)
{
	if (!w || w->dead)
		return;
	struct loop *l = w->loop;
	w->dead = true;
	l->be->unwatch(l, w);
	list_del(&l->live, w);
	list_add(&l->dead, w);
}

void loop_dispatch(struct watch *w, unsigned events)
{
	if (!w->dead && events)
		w->fn(w->ctx, events);
}

/* Free the watches no handler and no kernel request can name any more. */
static void reap(struct loop *l)
{
	struct watch *w = l->dead;
	while (w) {
		struct watch *n = w->next;
		if (w->refs == 0 && !w->kicked) {
			list_del(&l->dead, w);
			free(w);
		}
		w = n;
	}
}

int loop_run_once(struct loop *l)
{
	int r = l->be->wait(l, l->kicks != NULL);
	struct watch *k = l->kicks;
	l->kicks = NULL;
	while (k) {
		struct watch *n = k->next_kick;
		k->kicked = false;
		loop_dispatch(k, LOOP_IN);
		k = n;
	}
	if (l->dead)
		reap(l);
	return r;
}
