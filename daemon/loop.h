/*
 * sv2shmd's event loop: one thread, one loop, two backends with the same
 * handlers.
 *
 *   io_uring (default): a multishot accept on the listening socket, a
 *   multishot poll per watched fd (client sockets, pidfds, the signalfd), a
 *   one-shot poll for writability when a reply stream waits for room, and an
 *   IORING_OP_TIMEOUT only while a deadline is set. An idle daemon has
 *   nothing but armed requests in the kernel: no wake-up at all.
 *
 *   epoll: the same, with epoll_wait() and accept4(), where io_uring is
 *   refused (kernel.io_uring_disabled, seccomp, an old kernel whose probe
 *   fails) or with --no-io-uring.
 *
 * A watched fd reports readiness (LOOP_IN, LOOP_HUP, LOOP_ERR, and
 * LOOP_OUT once after loop_want_out()); the handler reads with
 * MSG_DONTWAIT until EAGAIN. io_uring's multishot poll reports a readiness
 * *change*, so a handler that stops early (to be fair to other clients)
 * calls loop_kick() to be called again on the next turn without waiting.
 *
 * Handlers may unwatch any watch, their own included, at any time: the
 * memory stays until the kernel has let go of it, and a dead watch is never
 * called again.
 */
#ifndef SV2SHMD_LOOP_H
#define SV2SHMD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

enum {
	LOOP_IN = 1u,  /* readable, or the peer shut its side (reads EOF); for a pidfd: the process exited */
	LOOP_OUT = 2u, /* writable (once per loop_want_out()) */
	LOOP_HUP = 4u, /* hung up both ways: nothing can be sent any more */
	LOOP_ERR = 8u, /* an error on the fd, or the kernel refused to watch it */
};

struct loop;
struct watch;

typedef void loop_fd_fn(void *ctx, unsigned events);
/* fd >= 0: a new connection (O_CLOEXEC), the handler owns it; < 0: -errno
 * (accepting pauses for 100 ms on EMFILE, ENFILE, ENOBUFS, ENOMEM). */
typedef void loop_accept_fn(void *ctx, int fd);
typedef void loop_timer_fn(void *ctx);

/*
 * Make the loop: io_uring when try_io_uring and the kernel lets us (probed:
 * ring set-up, the opcodes we use, a multishot accept and a multishot
 * poll), epoll otherwise. Returns 0 or -errno (epoll itself failed).
 */
int loop_new(bool try_io_uring, struct loop **out);
void loop_free(struct loop *l);

/* "io_uring", or "epoll (io_uring: <short reason>)": fits STATUS_END.event_loop. */
const char *loop_name(const struct loop *l);
/* Why io_uring is not used, in full (for the log), or NULL. */
const char *loop_why_not(const struct loop *l);
bool loop_is_uring(const struct loop *l);

/* Accept connections on the listening socket `fd` (O_NONBLOCK). */
int loop_accept(struct loop *l, int fd, loop_accept_fn *fn, void *ctx);
/* Stop accepting (shutdown). Connections accepted meanwhile are closed. */
void loop_accept_stop(struct loop *l);

/* Watch fd for input and hang-up. Returns NULL with errno set on failure. */
struct watch *loop_watch(struct loop *l, int fd, loop_fd_fn *fn, void *ctx);
/* Report LOOP_OUT once when fd has room. 0 or -errno. */
int loop_want_out(struct watch *w);
/* Call the handler with LOOP_IN on the next turn, without waiting. */
void loop_kick(struct watch *w);
/* Stop watching; the fd may be closed right after, the handler is never
 * called again. */
void loop_unwatch(struct watch *w);

/* Call fn once CLOCK_MONOTONIC reaches deadline_ms (see now_ms()); 0 clears
 * it. One deadline per loop: the broker's earliest pending subscription. */
void loop_set_timer(struct loop *l, uint64_t deadline_ms, loop_timer_fn *fn, void *ctx);

/* Wait for events and call their handlers. 0, or -errno on a loop failure. */
int loop_run_once(struct loop *l);

#endif /* SV2SHMD_LOOP_H */
