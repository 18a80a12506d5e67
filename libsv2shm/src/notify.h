/* Release notifications: how a consumer wakes a producer that waits for a
 * free slot, through io_uring or, where io_uring is unavailable, through
 * plain syscalls on the same objects. */
#ifndef SV2SHM_NOTIFY_H
#define SV2SHM_NOTIFY_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "sv2shm/ipc.h"

struct notifier {
	int mech;               /* SV2SHM_NOTIFY_EVENTFD or SV2SHM_NOTIFY_FUTEX */
	bool uring;             /* io_uring in use (else plain syscalls) */
	bool uring_futex;       /* the ring supports IORING_OP_FUTEX_WAIT/WAKE */
	struct io_uring ring;
	int efd;                /* EVENTFD: the producer's notify eventfd (EFD_NONBLOCK) */
	_Atomic uint32_t *word; /* FUTEX: the release word in the control block */
	uint64_t one;           /* source of eventfd writes: must outlive the SQE */
	bool wait_inflight;     /* producer: a poll/futex-wait SQE is pending */
	unsigned inflight;      /* consumer: signals submitted and not reaped */
	int last_error;         /* last failed completion, for diagnostics */
	char name[48];
};

/* Open a notifier. `want_uring` false, or SV2SHM_NO_IO_URING=1 in the
 * environment, forces plain syscalls. Never fails for lack of io_uring: it
 * falls back, and says so in n->name. Returns 0 or -errno. */
int notifier_open(struct notifier *n, int mech, int efd, _Atomic uint32_t *word, bool want_uring);
void notifier_close(struct notifier *n);

/* Consumer: wake the producer (one submission). */
int notifier_signal(struct notifier *n);
/* Consumer: reap finished submissions without blocking. */
void notifier_reap(struct notifier *n);

/* Producer: sleep until signalled (EVENTFD) or the word differs from `seen`
 * (FUTEX), or timeout_ms passes (< 0: no limit). 0, -ETIMEDOUT or -errno. */
int notifier_wait(struct notifier *n, uint32_t seen, int timeout_ms);

/* True when this kernel's io_uring has IORING_OP_FUTEX_WAKE (6.7+). */
bool notify_uring_has_futex(void);

#endif /* SV2SHM_NOTIFY_H */
