/* Release notifications: how a consumer wakes a producer that waits for a
 * free slot — a 1-byte datagram on the consumer's own end of its wake
 * socketpair, sent with MSG_DONTWAIT through io_uring (IORING_OP_SEND) or,
 * where io_uring is unavailable, with send(2). Also the plain futexes of
 * the in-process pool. */
#ifndef SV2SHM_NOTIFY_H
#define SV2SHM_NOTIFY_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "sv2shm/ipc.h"

struct notifier {
	bool uring;         /* io_uring in use (else plain syscalls) */
	bool futex;         /* SV2SHM_NOTIFY_FUTEX: FUTEX_WAKE on *word (else a datagram on sock) */
	struct io_uring ring;
	int sock;           /* the consumer's wake socket */
	_Atomic uint32_t *word; /* the producer's futex word (read-only mapping: a wake needs no more) */
	uint8_t byte;       /* source of sends: must outlive the SQE */
	unsigned inflight;  /* signals submitted and not reaped */
	int last_error;     /* last failed completion, for diagnostics */
	char name[48];
};

/* Open a notifier on wake socket `sock`. `want_uring` false, or
 * SV2SHM_NO_IO_URING=1 in the environment, forces plain syscalls. Never
 * fails for lack of io_uring: it falls back, and says so in n->name. */
void notifier_open(struct notifier *n, int mech, int sock, _Atomic uint32_t *word, bool want_uring);
void notifier_close(struct notifier *n);

/* Wake the producer (one submission; never blocks). 0 or -errno. */
int notifier_signal(struct notifier *n);
/* Reap finished submissions without blocking. */
void notifier_reap(struct notifier *n);

/* True unless SV2SHM_NO_IO_URING asks for plain syscalls. */
bool notify_uring_allowed(void);

/* Does this ring's kernel have IORING_OP_FUTEX_WAIT (6.7+)? (Debian's
 * liburing 2.3 predates it: the opcode is defined in notify.c and probed.) */
bool notify_uring_has_futex_wait(struct io_uring *ring);
/* Prepare a FUTEX_WAIT on a shared 32-bit word, while it holds `seen`. */
void notify_prep_futex_wait(struct io_uring_sqe *sqe, _Atomic uint32_t *word, uint32_t seen);
/* Does this ring's kernel have IORING_OP_FUTEX_WAKE? */
bool notify_uring_has_futex_wake(struct io_uring *ring);

/* Send one wake-up datagram on `sock` (never blocks; a full queue means a
 * wake-up is pending already). */
void wake_send(int sock);
/* Read every pending wake-up datagram from `sock` (never blocks; at most
 * `max` of them). Returns the number read. */
unsigned wake_drain(int sock, unsigned max);

#endif /* SV2SHM_NOTIFY_H */
