/*
 * Release notifications (see notify.h) and plain futexes. Every call here
 * is non-blocking by its own flags (MSG_DONTWAIT on a socket end only this
 * process holds), so nothing a peer does to its own end or to a shared file
 * description can make it block.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "pool.h"

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

/* --- wake-up datagrams ---------------------------------------------------- */

void wake_send(int sock)
{
	static const uint8_t one = 1;
	if (send(sock, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* EAGAIN: a wake-up is pending already; anything else: the peer is
		 * gone, which its hang-up reports. */
	}
}

unsigned wake_drain(int sock, unsigned max)
{
	unsigned n = 0;
	uint8_t b[16];
	while (n < max && recv(sock, b, sizeof(b), MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

/* --- io_uring futex wait (kernel 6.7; opcodes defined here) ------------------ */

#define OP_FUTEX_WAIT 51 /* IORING_OP_FUTEX_WAIT */
#define OP_FUTEX_WAKE 52 /* IORING_OP_FUTEX_WAKE */
#define FUTEX2_SIZE_U32_ 0x02u /* and no FUTEX2_PRIVATE: the word is shared */
#define FUTEX_BITSET_ANY 0xffffffffu

bool notify_uring_has_futex_wait(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return false;
	bool ok = OP_FUTEX_WAIT <= p->last_op && (p->ops[OP_FUTEX_WAIT].flags & IO_URING_OP_SUPPORTED) &&
		  IORING_OP_POLL_ADD <= p->last_op && (p->ops[IORING_OP_POLL_ADD].flags & IO_URING_OP_SUPPORTED);
	io_uring_free_probe(p);
	return ok;
}

bool notify_uring_has_futex_wake(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return false;
	bool ok = OP_FUTEX_WAKE <= p->last_op && (p->ops[OP_FUTEX_WAKE].flags & IO_URING_OP_SUPPORTED);
	io_uring_free_probe(p);
	return ok;
}

void notify_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t seen)
{
	io_uring_prep_rw(OP_FUTEX_WAIT, sqe, (int)FUTEX2_SIZE_U32_, (const void *)word, 0, seen);
	sqe->addr3 = FUTEX_BITSET_ANY;
}

/* --- the consumer's notifier ---------------------------------------------- */

bool notify_uring_allowed(void)
{
	const char *env = getenv("SV2SHM_NO_IO_URING");
	return !(env && *env && strcmp(env, "0") != 0);
}

void notifier_open(struct notifier *n, int mech, int sock, _Atomic uint32_t *word, bool want_uring)
{
	memset(n, 0, sizeof(*n));
	n->sock = sock;
	n->word = word;
	n->futex = mech == SV2SHM_NOTIFY_FUTEX;
	n->byte = 1;
	if (want_uring && notify_uring_allowed() && io_uring_queue_init(32, &n->ring, 0) == 0) {
		n->uring = true;
		if (n->futex && !notify_uring_has_futex_wake(&n->ring)) {
			io_uring_queue_exit(&n->ring); /* futex(2) does the same */
			n->uring = false;
		}
	}
	snprintf(n->name, sizeof(n->name), "%s %s", n->uring ? "io_uring" : "syscall",
		 n->futex ? "futex-wake" : "socket-send");
}

/* The same wake-up without io_uring. */
static void signal_syscall(struct notifier *n)
{
	if (n->futex)
		futex_wake_u32(n->word);
	else
		wake_send(n->sock);
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
		if (cqe->res < 0 && cqe->res != -EAGAIN)
			n->last_error = cqe->res;
		io_uring_cqe_seen(&n->ring, cqe);
		n->inflight--;
	}
}

int notifier_signal(struct notifier *n)
{
	if (!n->uring) {
		signal_syscall(n);
		return 0;
	}
	notifier_reap(n);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&n->ring);
	if (!sqe) {
		/* Every entry is queued: flush them, then try once more. */
		io_uring_submit(&n->ring);
		notifier_reap(n);
		sqe = io_uring_get_sqe(&n->ring);
		if (!sqe) {
			signal_syscall(n);
			return 0;
		}
	}
	if (n->futex) {
		io_uring_prep_rw(OP_FUTEX_WAKE, sqe, (int)FUTEX2_SIZE_U32_, (const void *)n->word, 0, INT32_MAX);
		sqe->addr3 = FUTEX_BITSET_ANY;
	} else {
		/* MSG_DONTWAIT: a full socket completes at once with -EAGAIN
		 * instead of arming a poll that would keep the request busy. */
		io_uring_prep_send(sqe, n->sock, &n->byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, 0);
	int r = io_uring_submit(&n->ring);
	if (r < 0) {
		signal_syscall(n);
		return 0;
	}
	n->inflight += (unsigned)r;
	return 0;
}
