/*
 * What loop.c shares with its two backends (loop_uring.c, loop_epoll.c).
 */
#ifndef SV2SHMD_LOOP_IMPL_H
#define SV2SHMD_LOOP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct watch {
	struct loop *loop;
	int fd;
	loop_fd_fn *fn;
	void *ctx;
	bool dead;      /* unwatched: never called again, freed when refs == 0 */
	bool in_armed;  /* a poll for input is in the kernel */
	bool out_armed; /* a poll for writability is in the kernel */
	bool kicked;    /* on the kick list */
	unsigned refs;  /* kernel requests that still name this watch (io_uring) */
	struct watch *prev, *next; /* l->live or l->dead */
	struct watch *next_kick;
};

enum { TIMER_USER, TIMER_ACCEPT, NTIMERS };

struct loop_backend {
	int (*watch)(struct loop *l, struct watch *w);
	int (*want_out)(struct loop *l, struct watch *w);
	void (*unwatch)(struct loop *l, struct watch *w);
	int (*accept_start)(struct loop *l);
	void (*accept_stop)(struct loop *l);
	/* (re)arm timer `which` for l->deadline[which] (0: disarm) */
	void (*timer)(struct loop *l, int which);
	/* wait (not at all when nowait) and dispatch what happened */
	int (*wait)(struct loop *l, bool nowait);
	void (*fini)(struct loop *l);
};

struct loop {
	const struct loop_backend *be;
	void *be_state;
	char name[32];
	char why_not[160];
	struct watch *live, *dead;
	struct watch *kicks;
	/* the listening socket */
	int lfd;
	loop_accept_fn *accept_fn;
	void *accept_ctx;
	bool accepting;     /* loop_accept() called, loop_accept_stop() not */
	bool accept_paused; /* backing off after EMFILE & co. */
	/* timers: the user's deadline, the accept back-off */
	uint64_t deadline[NTIMERS];
	loop_timer_fn *timer_fn;
	void *timer_ctx;
};

/* Backends: 0 or -errno, and a short and a long reason on failure. */
int loop_uring_init(struct loop *l, char *why, size_t why_size, char *short_why, size_t short_size);
int loop_epoll_init(struct loop *l);

/* Called by the backends. */
void loop_dispatch(struct watch *w, unsigned events);
void loop_accepted(struct loop *l, int fd_or_err);
void loop_timer_fired(struct loop *l, int which);
uint64_t loop_next_deadline(const struct loop *l);

#endif /* SV2SHMD_LOOP_IMPL_H */
