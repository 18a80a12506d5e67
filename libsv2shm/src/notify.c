/*
 * Release notifications. Debian's liburing 2.3 predates the io_uring futex
 * opcodes (kernel 6.7), so they are defined here and probed at run time.
 */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "pool.h"

#define OP_FUTEX_WAIT 51 /* IORING_OP_FUTEX_WAIT, kernel 6.7 */
#define OP_FUTEX_WAKE 52 /* IORING_OP_FUTEX_WAKE, kernel 6.7 */
#define FUTEX2_SIZE_U32_ 0x02u
#define FUTEX_MATCH_ANY 0xffffffffu

/* --- plain futexes (shared between processes: no FUTEX_PRIVATE_FLAG) ----- */

int futex_wait_u32(_Atomic uint32_t *word, uint32_t seen, int timeout_ms)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tp = &ts;
	}
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, tp, NULL, 0);
	if (r == 0 || errno == EAGAIN || errno == EINTR)
		return 0;
	return errno == ETIMEDOUT ? -ETIMEDOUT : -errno;
}

int futex_wake_u32(_Atomic uint32_t *word)
{
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
	return r < 0 ? -errno : 0;
}

/* --- probing ------------------------------------------------------------- */

static bool ring_supports(struct io_uring *ring, int op)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return false;
	bool ok = op <= p->last_op && (p->ops[op].flags & IO_URING_OP_SUPPORTED);
	io_uring_free_probe(p);
	return ok;
}

bool notify_uring_has_futex(void)
{
	struct io_uring ring;
	const char *env = getenv("SV2SHM_NO_IO_URING");
	if (env && *env && strcmp(env, "0") != 0)
		return false;
	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	bool ok = ring_supports(&ring, OP_FUTEX_WAIT) && ring_supports(&ring, OP_FUTEX_WAKE);
	io_uring_queue_exit(&ring);
	return ok;
}

int notifier_open(struct notifier *n, int mech, int efd, _Atomic uint32_t *word, bool want_uring)
{
	memset(n, 0, sizeof(*n));
	n->mech = mech;
	n->efd = efd;
	n->word = word;
	n->one = 1;
	const char *env = getenv("SV2SHM_NO_IO_URING");
	if (env && *env && strcmp(env, "0") != 0)
		want_uring = false;
	if (want_uring) {
		int r = io_uring_queue_init(32, &n->ring, 0);
		if (r == 0) {
			n->uring = true;
			n->uring_futex = ring_supports(&n->ring, OP_FUTEX_WAIT) && ring_supports(&n->ring, OP_FUTEX_WAKE);
			if (mech == SV2SHM_NOTIFY_FUTEX && !n->uring_futex) {
				/* This kernel's io_uring lacks futex ops: futexes by syscall. */
				io_uring_queue_exit(&n->ring);
				n->uring = false;
			}
		}
	}
	snprintf(n->name, sizeof(n->name), "%s %s", n->uring ? "io_uring" : "syscall",
		 mech == SV2SHM_NOTIFY_FUTEX ? "futex-wake" : "eventfd-write");
	return 0;
}

void notifier_close(struct notifier *n)
{
	if (n->uring)
		io_uring_queue_exit(&n->ring);
	n->uring = false;
}

void notifier_reap(struct notifier *n)
{
	struct io_uring_cqe *cqe;
	while (n->inflight && io_uring_peek_cqe(&n->ring, &cqe) == 0) {
		if (cqe->res < 0)
			n->last_error = cqe->res;
		io_uring_cqe_seen(&n->ring, cqe);
		n->inflight--;
	}
}

static int signal_syscall(struct notifier *n)
{
	if (n->mech == SV2SHM_NOTIFY_FUTEX)
		return futex_wake_u32(n->word);
	if (write(n->efd, &n->one, sizeof(n->one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

int notifier_signal(struct notifier *n)
{
	if (!n->uring)
		return signal_syscall(n);
	notifier_reap(n);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
	if (!sqe) {
		/* Every entry is queued: flush them, then try once more. */
		io_uring_submit(&n->ring);
		notifier_reap(n);
		sqe = io_uring_get_sqe(&n->ring);
		if (!sqe)
			return signal_syscall(n);
	}
	if (n->mech == SV2SHM_NOTIFY_FUTEX) {
		io_uring_prep_rw(OP_FUTEX_WAKE, sqe, (int)FUTEX2_SIZE_U32_, (const void *)n->word, 0, INT32_MAX);
		sqe->addr3 = FUTEX_MATCH_ANY;
	} else {
		io_uring_prep_write(sqe, n->efd, &n->one, sizeof(n->one), 0);
	}
	io_uring_sqe_set_data64(sqe, 0);
	int r = io_uring_submit(&n->ring);
	if (r < 0)
		return signal_syscall(n);
	n->inflight += (unsigned)r;
	return 0;
}

/* Drain the eventfd after a wake (it is non-blocking: EAGAIN is fine). */
static void drain(struct notifier *n)
{
	uint64_t v;
	if (read(n->efd, &v, sizeof(v)) < 0) {
		/* nothing to drain */
	}
}

static int wait_syscall(struct notifier *n, uint32_t seen, int timeout_ms)
{
	if (n->mech == SV2SHM_NOTIFY_FUTEX)
		return futex_wait_u32(n->word, seen, timeout_ms);
	struct pollfd pfd = {.fd = n->efd, .events = POLLIN};
	int r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	if (r == 0)
		return -ETIMEDOUT;
	drain(n);
	return 0;
}

int notifier_wait(struct notifier *n, uint32_t seen, int timeout_ms)
{
	if (!n->uring)
		return wait_syscall(n, seen, timeout_ms);
	if (!n->wait_inflight) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
		if (!sqe)
			return wait_syscall(n, seen, timeout_ms);
		if (n->mech == SV2SHM_NOTIFY_FUTEX) {
			io_uring_prep_rw(OP_FUTEX_WAIT, sqe, (int)FUTEX2_SIZE_U32_, (const void *)n->word, 0, seen);
			sqe->addr3 = FUTEX_MATCH_ANY;
		} else {
			/* A read on a non-blocking eventfd would complete with -EAGAIN:
			 * poll for it instead, then drain with read(). */
			io_uring_prep_poll_add(sqe, n->efd, POLLIN);
		}
		io_uring_sqe_set_data64(sqe, 1);
		int r = io_uring_submit(&n->ring);
		if (r < 0)
			return wait_syscall(n, seen, timeout_ms);
		n->wait_inflight = true;
	}
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts, *tp = NULL;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000LL;
		tp = &ts;
	}
	for (;;) {
		int r = io_uring_wait_cqe_timeout(&n->ring, &cqe, tp);
		if (r == -ETIME)
			return -ETIMEDOUT; /* the wait stays armed for next time */
		if (r == -EINTR)
			return 0;
		if (r < 0)
			return r;
		uint64_t tag = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&n->ring, cqe);
		if (tag != 1)
			continue; /* not ours (there are no others today) */
		n->wait_inflight = false;
		if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED)
			n->last_error = res;
		if (n->mech == SV2SHM_NOTIFY_EVENTFD)
			drain(n);
		return 0;
	}
}
