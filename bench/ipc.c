/*
 * sv2shm-bench ipc: cross-process round trip and streaming.
 *
 * Every contender moves the same bytes between this process (the producer,
 * pinned to one CPU) and a forked consumer (pinned to another): the producer
 * writes `size` bytes (memset with a per-message value), the consumer reads
 * every byte (sums them and checks the sum), then gives the message back.
 *
 *   ipc-roundtrip  one message in flight. A sample is the time between two
 *                  consecutive moments the producer got a free slot: write,
 *                  hand over, consumer wakes, reads, releases, producer sees
 *                  the slot free. (sv2shm: a pool with one slot and policy
 *                  WAIT, so get_writable() returns when the consumer has
 *                  released the previous slice.)
 *   ipc-stream     up to 64 messages in flight, the producer sends as fast as
 *                  it can. msgs_per_s from the consumer's receipt times; the
 *                  per-message median/p99 are the gaps between consecutive
 *                  receipts.
 *
 *   ipc-fanout     one producer publishing each slice to 1, 2 and 4 consumer
 *                  processes (sv2shm_producer_publish with n ids; the socket
 *                  reference sends a copy to each); msgs_per_s counts messages
 *                  that reached every consumer.
 *
 * Contenders: memfd-spin and memfd-futex (raw references written here: a
 * memfd with a ring of slots and two sequence words, spinning or sleeping on
 * them), uds-seqpacket and pipe (the bytes copied through the kernel, a
 * 1-byte ack back), sv2shm in several configurations, and iceoryx (its C
 * binding, ipc_iox.c; only when built with it and iox-roudi starts: RouDi
 * is started here and stopped at the end).
 *
 * Method: for each bench and size every contender runs in interleaved rounds
 * (a fresh consumer process per round), so background load and the VM's
 * steal time hit all of them alike; median and p99 are over the pooled
 * samples, msgs_per_s is the median of the rounds' throughputs (round trip:
 * measured samples / their total time). The ratio column: round trip,
 * median / the reference's median (sv2shm vs memfd-spin, the blocking sv2shm
 * variants vs memfd-futex); stream, msgs_per_s / uds-seqpacket's. Stream
 * rows of the sv2shm contenders also carry ratio_paired: the median over the
 * rounds of (its msgs/s / memfd-spin's in the same round). The VM's speed
 * phases last seconds and move memfd-spin's 64 B stream between 12 and 25 M
 * msgs/s: a ratio of the two medians can pair a fast phase of one with a slow
 * phase of the other, a round's pair cannot (they run ~0.1 s apart). The
 * 64 B stream target uses it.
 *
 * Robustness: every child has PR_SET_PDEATHSIG(SIGKILL) and its own alarm();
 * every wait of ours has a timeout (WAIT_TIMEOUT_NS, socket timeouts, and a
 * SIGALRM per run that interrupts blocking calls in the producer).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "ipc_iox.h"
#include "report.h"

#include <sv2shm/ipc.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Longest single wait (spin, futex, socket) before the run is declared hung. */
#define WAIT_TIMEOUT_MS 5000
#define WAIT_TIMEOUT_NS ((uint64_t)WAIT_TIMEOUT_MS * 1000000u)
/* Longest whole run (one contender, one size); SIGALRM after that. */
#define RUN_TIMEOUT_S 60
/*
 * Each (bench, size) runs every contender in this many interleaved rounds.
 * This VM loses its vCPUs to the host for up to ~5 ms about every 50 ms: a
 * short streaming round that catches one of those halves its throughput, so
 * msgs_per_s is the median over the rounds, and streaming has more of them.
 */
#define RT_ROUNDS 5u
#define STREAM_ROUNDS 9u
#define QUICK_RT_ROUNDS 3u
#define QUICK_STREAM_ROUNDS 5u
#define MAX_ROUNDS 9u
/* Messages in flight when streaming (ring slots, pool slots). */
#define STREAM_SLOTS 64u
/* Socket buffers for uds-seqpacket, pipe size for pipe. */
#define SOCK_BUF (4u << 20)
#define PIPE_SIZE (1u << 20)
/* The idle-consumer measurement. */
#define IDLE_MS 1000
#define IDLE_LIMIT_MS 10.0
#define ERR_LEN 512

static volatile sig_atomic_t g_alarm;

static void on_alarm(int sig)
{
	(void)sig;
	g_alarm = 1;
}

/* ------------------------------------------------------------------------- */
/* Contenders                                                                 */
/* ------------------------------------------------------------------------- */

enum chan_kind { CH_MEMFD_SPIN, CH_MEMFD_FUTEX, CH_UDS, CH_PIPE, CH_SV2SHM, CH_IOX };
enum bench_kind { BENCH_RT, BENCH_STREAM, BENCH_FANOUT };

static const char *const bench_names[] = {"ipc-roundtrip", "ipc-stream", "ipc-fanout"};

struct contender {
	const char *name;
	enum chan_kind kind;
	unsigned spin_us;  /* sv2shm consumer option */
	int notify;        /* sv2shm producer option */
	bool no_io_uring;  /* sv2shm, both sides */
	const char *rt_vs; /* the round trip's ratio compares with this contender */
};

static const struct contender contenders[] = {
	{"memfd-spin", CH_MEMFD_SPIN, 0, 0, false, NULL},
	{"memfd-futex", CH_MEMFD_FUTEX, 0, 0, false, NULL},
	{"uds-seqpacket", CH_UDS, 0, 0, false, NULL},
	{"pipe", CH_PIPE, 0, 0, false, NULL},
	{"sv2shm", CH_SV2SHM, 0, SV2SHM_NOTIFY_DEFAULT, false, "memfd-spin"},
	{"sv2shm-blocking", CH_SV2SHM, SV2SHM_SPIN_NONE, SV2SHM_NOTIFY_DEFAULT, false, "memfd-futex"},
	{"sv2shm-syscall", CH_SV2SHM, SV2SHM_SPIN_NONE, SV2SHM_NOTIFY_DEFAULT, true, "memfd-futex"},
	/* Eclipse iceoryx through its C binding: polls 50 us (sv2shm's default
	 * spin budget), then sleeps on a wait set. */
	{"iceoryx", CH_IOX, 50, 0, false, "memfd-spin"},
};
#define NCONTENDERS (sizeof(contenders) / sizeof(contenders[0]))

/* What to run: --bench picks from ipc-roundtrip, ipc-stream, ipc-fanout, idle. */
struct ipc_cfg {
	bool on[4]; /* indexed by enum bench_kind, then 3 = idle */
};

static const size_t sizes[] = {64, 1024, 16384, 65536};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
/* Samples per size (default run; --quick takes a tenth). */
static const uint64_t rt_count[NSIZES] = {40000, 40000, 20000, 8000};
static const uint64_t stream_count[NSIZES] = {400000, 400000, 100000, 40000};

struct run_params {
	enum bench_kind bench;
	size_t size;
	uint64_t warmup;   /* messages before the measured ones */
	uint64_t count;    /* measured samples */
	uint64_t total;    /* messages sent: warmup + count + 1 (count gaps) */
	unsigned nslots;   /* messages in flight at most: 1 (round trip) or STREAM_SLOTS */
	unsigned nbufs;    /* memfd references: data slots in the ring, 1 or 2 x nslots (see memfd_setup) */
	int cpu_consumer;  /* -1: no pinning */
};

/* What a consumer child reports (shared anonymous mapping). */
struct child_result {
	int rc;                 /* 0: ok */
	char err[ERR_LEN];      /* why not */
	uint64_t received;      /* messages received */
	uint64_t bad;           /* messages whose length or bytes were wrong */
	char bad_detail[160];   /* the first of them */
	char notify[64];        /* sv2shm_consumer_notify_name() */
	uint64_t cpu_ns;        /* idle test */
	uint64_t wall_ns;
	int idle_rc;
	int prc;                /* iceoryx: the producer child's result */
	char perr[ERR_LEN];     /* iceoryx: the producer child's error */
	uint64_t t[];           /* stream: receipt time of each message */
};

struct chan {
	const struct contender *c;
	const struct run_params *rp;
	struct child_result *res;
	char err[ERR_LEN];     /* the producer side's error */
	/* memfd references */
	void *shm;
	size_t shm_len;
	uint8_t *data;
	size_t stride;
	/* uds-seqpacket and sv2shm: [0] producer side, [1] consumer side */
	int sv[2];
	/* pipe: data flows producer -> consumer, acks back */
	int data_pipe[2];
	int ack_pipe[2];
	uint8_t *buf;
	/* sv2shm */
	struct sv2shm_producer *prod;
	int prod_id;
	char prod_notify[64];
	struct sv2shm_pool_stats pool_stats;
	/* iceoryx */
	char iox_instance[64];
};

#define errf(err, ...) bench_errf((err), ERR_LEN, __VA_ARGS__)
#define close_fd bench_close_fd

/* ------------------------------------------------------------------------- */
/* Helpers: message bytes, CPU pinning, waiting                               */
/* ------------------------------------------------------------------------- */

static void check_msg(struct child_result *res, const uint8_t *p, size_t len, size_t want, uint64_t i)
{
	uint64_t sum = len ? bench_sum_bytes(p, len) : 0;
	uint64_t expect = (uint64_t)want * bench_msg_byte(i);
	if (len == want && sum == expect)
		return;
	if (!res->bad)
		snprintf(res->bad_detail, sizeof(res->bad_detail),
			 "message %llu: %zu bytes (want %zu), byte sum %llu (want %llu)", (unsigned long long)i, len, want,
			 (unsigned long long)sum, (unsigned long long)expect);
	res->bad++;
}

static int pin_cpu(int cpu, char *err)
{
	if (cpu < 0)
		return 0;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		return errf(err, "sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
	return 0;
}

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	/* Shared futexes (no FUTEX_PRIVATE_FLAG): the word lives in a memfd
	 * mapped by two processes. */
	return syscall(SYS_futex, (void *)uaddr, op, val, ts, NULL, 0);
}

/*
 * Wait until *w != old; store the new value in *out. Spinning: poll with a
 * pause. Sleeping: announce in *waiting, re-check, FUTEX_WAIT (the waker
 * stores *w then reads *waiting, both seq_cst: one of us sees the other).
 * Returns 0, or -ETIMEDOUT after WAIT_TIMEOUT_NS (sleeping: or SIGALRM), or -errno.
 */
static int wait_change(_Atomic uint32_t *w, uint32_t old, _Atomic uint32_t *waiting, bool spin, uint32_t *out)
{
	if (spin) /* bounded by WAIT_TIMEOUT_NS, SIGALRM or not */
		return bench_spin_change(w, old, out, NULL, WAIT_TIMEOUT_NS);
	uint64_t deadline = bench_now_ns() + WAIT_TIMEOUT_NS;
	for (;;) {
		atomic_store_explicit(waiting, 1u, memory_order_seq_cst);
		uint32_t v = atomic_load_explicit(w, memory_order_seq_cst);
		if (v != old) {
			atomic_store_explicit(waiting, 0u, memory_order_relaxed);
			*out = v;
			return 0;
		}
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000000};
		if (futex(w, FUTEX_WAIT, old, &ts) != 0 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
			return -errno;
		if (g_alarm || bench_now_ns() > deadline)
			return -ETIMEDOUT;
	}
}

/* After storing *w (seq_cst): wake the peer if it said it sleeps. */
static int wake_if_waiting(_Atomic uint32_t *w, _Atomic uint32_t *waiting)
{
	if (!atomic_load_explicit(waiting, memory_order_seq_cst))
		return 0;
	if (!atomic_exchange_explicit(waiting, 0u, memory_order_seq_cst))
		return 0;
	if (futex(w, FUTEX_WAKE, 1, NULL) < 0)
		return -errno;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* memfd-spin and memfd-futex: the raw references                             */
/* ------------------------------------------------------------------------- */

/* Control words at the start of the memfd; the data slots start at
 * REF_DATA_OFF, each `stride` bytes (the size rounded up to a cache line). */
struct ref_ctl {
	alignas(64) _Atomic uint32_t head; /* messages published (producer) */
	_Atomic uint32_t cons_waiting;     /* memfd-futex: the consumer sleeps on head */
	alignas(64) _Atomic uint32_t tail; /* messages consumed (consumer) */
	_Atomic uint32_t prod_waiting;     /* memfd-futex: the producer sleeps on tail */
};
#define REF_DATA_OFF 4096u

static int memfd_setup(struct chan *ch)
{
	const struct run_params *rp = ch->rp;
	ch->stride = (rp->size + 63) & ~(size_t)63;
	ch->shm_len = REF_DATA_OFF + (size_t)rp->nbufs * ch->stride;
	const char *failed;
	void *m = bench_memfd_map(ch->shm_len, &failed);
	if (!m)
		return errf(ch->err, "%s(memfd, %zu): %s", failed, ch->shm_len, strerror(errno));
	ch->shm = m;
	ch->data = (uint8_t *)m + REF_DATA_OFF;
	return 0;
}

static int memfd_produce(struct chan *ch, uint64_t *t_acq)
{
	const struct run_params *rp = ch->rp;
	struct ref_ctl *s = ch->shm;
	const bool spin = ch->c->kind == CH_MEMFD_SPIN, rt = rp->bench == BENCH_RT;
	uint32_t head = 0, tail = 0;
	for (uint64_t i = 0; i < rp->total; i++) {
		if (head - tail >= rp->nslots) {
			tail = atomic_load_explicit(&s->tail, memory_order_acquire);
			while (head - tail >= rp->nslots) {
				int r = wait_change(&s->tail, tail, &s->prod_waiting, spin, &tail);
				if (r < 0)
					return errf(ch->err, "producer: waiting for a free slot (head %u, tail %u): %s", head,
						    tail, strerror(-r));
			}
		}
		if (rt)
			t_acq[i] = bench_now_ns();
		memset(ch->data + (size_t)(head % rp->nbufs) * ch->stride, bench_msg_byte(i), rp->size);
		head++;
		if (spin) {
			atomic_store_explicit(&s->head, head, memory_order_release);
		} else {
			atomic_store_explicit(&s->head, head, memory_order_seq_cst);
			int r = wake_if_waiting(&s->head, &s->cons_waiting);
			if (r < 0)
				return errf(ch->err, "producer: FUTEX_WAKE: %s", strerror(-r));
		}
	}
	return 0;
}

static int memfd_consume(struct chan *ch)
{
	const struct run_params *rp = ch->rp;
	struct child_result *res = ch->res;
	struct ref_ctl *s = ch->shm;
	const bool spin = ch->c->kind == CH_MEMFD_SPIN, stream = rp->bench == BENCH_STREAM;
	uint32_t head = 0, tail = 0;
	for (uint64_t i = 0; i < rp->total; i++) {
		if (tail == head) {
			head = atomic_load_explicit(&s->head, memory_order_acquire);
			while (tail == head) {
				int r = wait_change(&s->head, head, &s->cons_waiting, spin, &head);
				if (r < 0)
					return errf(res->err, "consumer: waiting for message %llu: %s",
						    (unsigned long long)i, strerror(-r));
			}
		}
		if (stream)
			res->t[i] = bench_now_ns();
		check_msg(res, ch->data + (size_t)(tail % rp->nbufs) * ch->stride, rp->size, rp->size, i);
		tail++;
		res->received++;
		if (spin) {
			atomic_store_explicit(&s->tail, tail, memory_order_release);
		} else {
			atomic_store_explicit(&s->tail, tail, memory_order_seq_cst);
			int r = wake_if_waiting(&s->tail, &s->prod_waiting);
			if (r < 0)
				return errf(res->err, "consumer: FUTEX_WAKE: %s", strerror(-r));
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* uds-seqpacket and pipe: copies through the kernel                          */
/* ------------------------------------------------------------------------- */

static int set_sock_buf(int fd, int opt, int force_opt, int want, char *err)
{
	/* SO_*BUFFORCE (root) goes past net.core.[rw]mem_max; else the plain one. */
	if (setsockopt(fd, SOL_SOCKET, force_opt, &want, sizeof(want)) != 0 &&
	    setsockopt(fd, SOL_SOCKET, opt, &want, sizeof(want)) != 0)
		return errf(err, "setsockopt(SO_%sBUF, %d): %s", opt == SO_SNDBUF ? "SND" : "RCV", want,
			    strerror(errno));
	return 0;
}

static int uds_setup(struct chan *ch)
{
	const size_t size = ch->rp->size;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch->sv) != 0)
		return errf(ch->err, "socketpair(AF_UNIX, SOCK_SEQPACKET): %s", strerror(errno));
	struct timeval tv = {.tv_sec = WAIT_TIMEOUT_MS / 1000, .tv_usec = 0};
	for (int k = 0; k < 2; k++) {
		if (set_sock_buf(ch->sv[k], SO_SNDBUF, SO_SNDBUFFORCE, (int)SOCK_BUF, ch->err) < 0 ||
		    set_sock_buf(ch->sv[k], SO_RCVBUF, SO_RCVBUFFORCE, (int)SOCK_BUF, ch->err) < 0)
			return -1;
		if (setsockopt(ch->sv[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
		    setsockopt(ch->sv[k], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
			return errf(ch->err, "setsockopt(SO_RCVTIMEO/SO_SNDTIMEO): %s", strerror(errno));
		int got = 0;
		socklen_t gl = sizeof(got);
		if (getsockopt(ch->sv[k], SOL_SOCKET, SO_SNDBUF, &got, &gl) != 0)
			return errf(ch->err, "getsockopt(SO_SNDBUF): %s", strerror(errno));
		if ((size_t)got < 2 * size + 4096)
			return errf(ch->err, "SO_SNDBUF is %d bytes, too small for %zu-byte messages", got, size);
	}
	ch->buf = malloc(size);
	if (!ch->buf)
		return errf(ch->err, "malloc(%zu) failed", size);
	memset(ch->buf, 0, size);
	return 0;
}

static int pipe_setup(struct chan *ch, struct bench_report *rep)
{
	const size_t size = ch->rp->size;
	if (pipe2(ch->data_pipe, O_CLOEXEC) != 0 || pipe2(ch->ack_pipe, O_CLOEXEC) != 0)
		return errf(ch->err, "pipe2: %s", strerror(errno));
	int got = fcntl(ch->data_pipe[1], F_SETPIPE_SZ, (int)PIPE_SIZE);
	if (got < 0) {
		static bool noted;
		if (!noted)
			bench_report_note(rep, "pipe: F_SETPIPE_SZ(%u) failed (%s): default pipe size, reads and "
					       "writes loop", PIPE_SIZE, strerror(errno));
		noted = true;
	}
	ch->buf = malloc(size);
	if (!ch->buf)
		return errf(ch->err, "malloc(%zu) failed", size);
	memset(ch->buf, 0, size);
	return 0;
}

/* Wait-aware I/O: EINTR retries unless the run's alarm fired; a socket
 * timeout (EAGAIN) is a timeout. Returns 0 or -1 with *err set. */
static int io_error(char *err, const char *what, ssize_t n, size_t want)
{
	if (n == 0)
		return errf(err, "%s: end of file (peer gone)", what);
	if (n > 0)
		return errf(err, "%s: %zd bytes instead of %zu", what, n, want);
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return errf(err, "%s: timed out after %d ms", what, WAIT_TIMEOUT_MS);
	return errf(err, "%s: %s", what, strerror(errno));
}

static int send_all(int fd, const uint8_t *p, size_t n, bool packet, char *err, const char *what)
{
	while (n) {
		ssize_t w = packet ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
		if (w < 0 && errno == EINTR && !g_alarm)
			continue;
		if (w < 0 && errno == EINTR)
			return errf(err, "%s: run timed out (%d s)", what, RUN_TIMEOUT_S);
		if (w <= 0 || (packet && (size_t)w != n))
			return io_error(err, what, w, n);
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n, bool packet, char *err, const char *what)
{
	while (n) {
		ssize_t r = packet ? recv(fd, p, n, 0) : read(fd, p, n);
		if (r < 0 && errno == EINTR && !g_alarm)
			continue;
		if (r < 0 && errno == EINTR)
			return errf(err, "%s: run timed out (%d s)", what, RUN_TIMEOUT_S);
		if (r <= 0 || (packet && (size_t)r != n))
			return io_error(err, what, r, n);
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int copy_produce(struct chan *ch, uint64_t *t_acq)
{
	const struct run_params *rp = ch->rp;
	const bool packet = ch->c->kind == CH_UDS, rt = rp->bench == BENCH_RT;
	const int out = packet ? ch->sv[0] : ch->data_pipe[1];
	const int ack_in = packet ? ch->sv[0] : ch->ack_pipe[0];
	uint8_t ack;
	for (uint64_t i = 0; i < rp->total; i++) {
		if (rt && i > 0 && recv_all(ack_in, &ack, 1, packet, ch->err, "producer: reading the ack") < 0)
			return -1;
		if (rt)
			t_acq[i] = bench_now_ns();
		memset(ch->buf, bench_msg_byte(i), rp->size);
		if (send_all(out, ch->buf, rp->size, packet, ch->err, "producer: sending a message") < 0)
			return -1;
	}
	if (rt && recv_all(ack_in, &ack, 1, packet, ch->err, "producer: reading the last ack") < 0)
		return -1;
	return 0;
}

static int copy_consume(struct chan *ch)
{
	const struct run_params *rp = ch->rp;
	struct child_result *res = ch->res;
	const bool packet = ch->c->kind == CH_UDS, rt = rp->bench == BENCH_RT;
	const int in = packet ? ch->sv[1] : ch->data_pipe[0];
	const int ack_out = packet ? ch->sv[1] : ch->ack_pipe[1];
	const uint8_t ack = 1;
	for (uint64_t i = 0; i < rp->total; i++) {
		if (recv_all(in, ch->buf, rp->size, packet, res->err, "consumer: receiving a message") < 0)
			return -1;
		if (!rt)
			res->t[i] = bench_now_ns();
		check_msg(res, ch->buf, rp->size, rp->size, i);
		res->received++;
		if (rt && send_all(ack_out, &ack, 1, packet, res->err, "consumer: sending the ack") < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* sv2shm                                                                     */
/* ------------------------------------------------------------------------- */

static void sv2shm_producer_opts(const struct contender *c, const struct run_params *rp,
				 struct sv2shm_producer_options *o)
{
	memset(o, 0, sizeof(*o));
	if (rp->bench == BENCH_RT) {
		/* One slot: the next get_writable() waits for the release. */
		o->pool.slots = 1;
		o->pool.capacity = (rp->size + 4095) & ~(uint64_t)4095;
	} else {
		/* Slots, not bytes, bound what is in flight: room for 2 x 64. */
		o->pool.slots = rp->nslots;
		o->pool.capacity = 2 * (uint64_t)rp->nslots * rp->size;
	}
	o->pool.policy = SV2SHM_POOL_WAIT;
	o->pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	/* The blocking contenders block on both sides. */
	o->pool.wait_spin_us = c->spin_us == SV2SHM_SPIN_NONE ? SV2SHM_SPIN_NONE : 0;
	o->notify = c->notify;
	o->no_io_uring = c->no_io_uring;
	/*
	 * Back-pressure, as before the limit policies existed: a consumer that
	 * is not keeping up (ring full) makes publish return -EAGAIN and the
	 * producer retries. max_held = every slot, so the per-consumer hold
	 * limit never refuses what the pool itself has room for (the default,
	 * half the slots, would cap the stream at 32 in flight, and SKIP would
	 * drop messages instead of waiting).
	 */
	o->max_held = o->pool.slots;
	o->on_limit = SV2SHM_LIMIT_REFUSE;
}

/* The producer's pending removal events, as text ("id 3 hung up, held 1; ..."). */
static void describe_events(struct sv2shm_producer *p, char *buf, size_t n)
{
	static const char *const why[] = {"?", "hung up", "broke the protocol", "was at its limit", "was removed"};
	struct sv2shm_producer_event ev;
	size_t o = 0;
	buf[0] = '\0';
	while (o < n && sv2shm_producer_next_event(p, &ev) == 1) {
		const char *w = ev.reason >= 1 && ev.reason <= 4 ? why[ev.reason] : why[0];
		o += (size_t)snprintf(buf + o, n - o, "%sconsumer id %d %s (reason %d, held %u)", o ? "; " : "", ev.id, w,
				      ev.reason, (unsigned)ev.held);
	}
	if (!buf[0])
		snprintf(buf, n, "no removal event queued");
}

static int sv2shm_setup(struct chan *ch)
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch->sv) != 0)
		return errf(ch->err, "socketpair(AF_UNIX, SOCK_SEQPACKET): %s", strerror(errno));
	return 0;
}

static int sv2shm_produce(struct chan *ch, uint64_t *t_acq)
{
	const struct run_params *rp = ch->rp;
	const bool rt = rp->bench == BENCH_RT;
	struct sv2shm_producer_options o;
	sv2shm_producer_opts(ch->c, rp, &o);
	int r = sv2shm_producer_new(&o, &ch->prod);
	if (r < 0) {
		close_fd(&ch->sv[0]); /* the consumer's sv2shm_consumer_new() sees the hang-up */
		return errf(ch->err,
			    "sv2shm_producer_new(capacity %llu, slots %u, WAIT, notify %d, no_io_uring %d) returned %d (%s)",
			    (unsigned long long)o.pool.capacity, o.pool.slots, o.notify, (int)o.no_io_uring, r,
			    sv2shm_strerror(r));
	}
	snprintf(ch->prod_notify, sizeof(ch->prod_notify), "%s", sv2shm_producer_notify_name(ch->prod));
	int sock = ch->sv[0];
	ch->sv[0] = -1; /* the producer owns it now, even on failure */
	int id = sv2shm_producer_add_consumer(ch->prod, sock);
	if (id < 0)
		return errf(ch->err, "sv2shm_producer_add_consumer() returned %d (%s)", id, sv2shm_strerror(id));
	ch->prod_id = id;

	struct sv2shm_buffer *b = sv2shm_producer_buffer(ch->prod);
	if (!b)
		return errf(ch->err, "sv2shm_producer_buffer() returned NULL");
	for (uint64_t i = 0; i < rp->total; i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, rp->size);
		if (!w) {
			int e = sv2shm_buffer_last_error(b);
			return errf(ch->err, "producer: message %llu: sv2shm_buffer_get_writable(%zu) returned NULL, "
					     "last error %d (%s)",
				    (unsigned long long)i, rp->size, e, sv2shm_strerror(e));
		}
		if (rt)
			t_acq[i] = bench_now_ns();
		memset(w, bench_msg_byte(i), rp->size);
		struct sv2shm_slice s;
		r = sv2shm_buffer_get_data_owned(b, &s);
		if (r < 0)
			return errf(ch->err, "producer: message %llu: sv2shm_buffer_get_data_owned() returned %d (%s)",
				    (unsigned long long)i, r, sv2shm_strerror(r));
		if (s.len != rp->size)
			return errf(ch->err, "producer: message %llu: get_data_owned gave %zu bytes, wrote %zu",
				    (unsigned long long)i, s.len, rp->size);
		uint64_t deadline = 0;
		for (;;) {
			r = sv2shm_producer_publish(ch->prod, &s, &ch->prod_id, 1, 0);
			if (r != -EAGAIN)
				break;
			/* The consumer's descriptor ring is full: it is not keeping up. */
			uint64_t now = bench_now_ns();
			if (!deadline)
				deadline = now + WAIT_TIMEOUT_NS;
			else if (now > deadline || g_alarm)
				break;
			bench_cpu_relax();
		}
		if (r < 0) {
			int rr = sv2shm_slice_release(&s);
			return errf(ch->err,
				    "producer: message %llu: sv2shm_producer_publish() returned %d (%s)%s (slice release: %d)",
				    (unsigned long long)i, r, sv2shm_strerror(r), r == -EAGAIN ? " for 5 s" : "", rr);
		}
		if (r > 0) {
			/* The consumer did not get it: removed (hung up or broken). */
			char ev[256];
			describe_events(ch->prod, ev, sizeof(ev));
			return errf(ch->err, "producer: message %llu: sv2shm_producer_publish() returned %d (the consumer "
					     "did not get it): %s",
				    (unsigned long long)i, r, ev);
		}
	}
	if (sv2shm_pool_stats(sv2shm_producer_pool(ch->prod), &ch->pool_stats) != 0)
		memset(&ch->pool_stats, 0, sizeof(ch->pool_stats));
	return 0;
}

static int sv2shm_consume(struct chan *ch)
{
	const struct run_params *rp = ch->rp;
	struct child_result *res = ch->res;
	const bool stream = rp->bench == BENCH_STREAM;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = ch->c->spin_us;
	co.no_io_uring = ch->c->no_io_uring;
	struct sv2shm_consumer *c = NULL;
	int sock = ch->sv[1];
	ch->sv[1] = -1;
	int r = sv2shm_consumer_new(sock, &co, &c);
	if (r < 0)
		return errf(res->err, "consumer: sv2shm_consumer_new() returned %d (%s)", r, sv2shm_strerror(r));
	snprintf(res->notify, sizeof(res->notify), "%s", sv2shm_consumer_notify_name(c));
	for (uint64_t i = 0; i < rp->total; i++) {
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(c, &s, WAIT_TIMEOUT_MS);
		if (r != 1)
			return errf(res->err, "consumer: message %llu of %llu: sv2shm_consumer_recv(timeout %d ms) returned %d (%s)",
				    (unsigned long long)i, (unsigned long long)rp->total, WAIT_TIMEOUT_MS, r,
				    r == 0 ? "timeout" : sv2shm_strerror(r));
		if (stream)
			res->t[i] = bench_now_ns();
		check_msg(res, s.data, s.len, rp->size, i);
		res->received++;
		r = sv2shm_slice_release(&s);
		if (r < 0)
			return errf(res->err, "consumer: message %llu: sv2shm_slice_release() returned %d (%s)",
				    (unsigned long long)i, r, sv2shm_strerror(r));
	}
	r = sv2shm_consumer_flush(c);
	if (r < 0)
		return errf(res->err, "consumer: sv2shm_consumer_flush() returned %d (%s)", r, sv2shm_strerror(r));
	r = sv2shm_consumer_free(c);
	if (r < 0)
		return errf(res->err, "consumer: sv2shm_consumer_free() returned %d (%s)", r, sv2shm_strerror(r));
	return 0;
}

/* ------------------------------------------------------------------------- */
/* iceoryx (ipc_iox.c): both sides in forked children                         */
/* ------------------------------------------------------------------------- */

static void iox_fill(uint8_t *p, size_t len, uint64_t i)
{
	memset(p, bench_msg_byte(i), len);
}

static void iox_check(void *ctx, const uint8_t *p, size_t len, size_t want, uint64_t i)
{
	check_msg(ctx, p, len, want, i);
}

static int iox_setup(struct chan *ch)
{
	static unsigned run;
	snprintf(ch->iox_instance, sizeof(ch->iox_instance), "run-%d-%u", (int)getpid(), ++run);
	return 0;
}

static void iox_side_init(struct chan *ch, struct iox_side *s, char *err)
{
	memset(s, 0, sizeof(*s));
	s->size = ch->rp->size;
	s->total = ch->rp->total;
	s->rt = ch->rp->bench == BENCH_RT;
	s->in_flight = ch->rp->nslots;
	s->instance = ch->iox_instance;
	s->spin_us = ch->c->spin_us;
	s->fill = iox_fill;
	s->check = iox_check;
	s->ctx = ch->res;
	s->received = &ch->res->received;
	s->t_recv = ch->res->t;
	s->alarm = &g_alarm;
	s->wait_timeout_ns = WAIT_TIMEOUT_NS;
	s->err = err;
	s->errlen = ERR_LEN;
}

static int iox_produce(struct chan *ch, uint64_t *t_acq)
{
	struct iox_side s;
	iox_side_init(ch, &s, ch->err);
	s.t_acq = t_acq;
	return iox_bench_produce(&s);
}

static int iox_consume(struct chan *ch)
{
	struct iox_side s;
	iox_side_init(ch, &s, ch->res->err);
	return iox_bench_consume(&s);
}

/* ------------------------------------------------------------------------- */
/* One run: fork the consumer, produce, reap                                  */
/* ------------------------------------------------------------------------- */

static void chan_init(struct chan *ch, const struct contender *c, const struct run_params *rp,
		      struct child_result *res)
{
	memset(ch, 0, sizeof(*ch));
	ch->c = c;
	ch->rp = rp;
	ch->res = res;
	ch->sv[0] = ch->sv[1] = -1;
	ch->data_pipe[0] = ch->data_pipe[1] = -1;
	ch->ack_pipe[0] = ch->ack_pipe[1] = -1;
	ch->prod_id = -1;
}

static int chan_setup(struct chan *ch, struct bench_report *rep)
{
	switch (ch->c->kind) {
	case CH_MEMFD_SPIN:
	case CH_MEMFD_FUTEX:
		return memfd_setup(ch);
	case CH_UDS:
		return uds_setup(ch);
	case CH_PIPE:
		return pipe_setup(ch, rep);
	case CH_SV2SHM:
		return sv2shm_setup(ch);
	case CH_IOX:
		return iox_setup(ch);
	}
	return errf(ch->err, "unknown contender kind");
}

/* Each side closes the other side's ends, so a death shows up as EOF. */
static void chan_keep_side(struct chan *ch, bool producer)
{
	if (producer) {
		close_fd(&ch->sv[1]);
		close_fd(&ch->data_pipe[0]);
		close_fd(&ch->ack_pipe[1]);
	} else {
		close_fd(&ch->sv[0]);
		close_fd(&ch->data_pipe[1]);
		close_fd(&ch->ack_pipe[0]);
	}
}

static int chan_produce(struct chan *ch, uint64_t *t_acq)
{
	switch (ch->c->kind) {
	case CH_MEMFD_SPIN:
	case CH_MEMFD_FUTEX:
		return memfd_produce(ch, t_acq);
	case CH_UDS:
	case CH_PIPE:
		return copy_produce(ch, t_acq);
	case CH_SV2SHM:
		return sv2shm_produce(ch, t_acq);
	case CH_IOX:
		return iox_produce(ch, t_acq);
	}
	return errf(ch->err, "unknown contender kind");
}

static int chan_consume(struct chan *ch)
{
	switch (ch->c->kind) {
	case CH_MEMFD_SPIN:
	case CH_MEMFD_FUTEX:
		return memfd_consume(ch);
	case CH_UDS:
	case CH_PIPE:
		return copy_consume(ch);
	case CH_SV2SHM:
		return sv2shm_consume(ch);
	case CH_IOX:
		return iox_consume(ch);
	}
	return errf(ch->res->err, "unknown contender kind");
}

/* After the child is gone. Returns 0, or -1 with ch->err set (sv2shm). */
static int chan_teardown(struct chan *ch)
{
	int rc = 0;
	if (ch->prod) {
		int r = sv2shm_producer_destroy(ch->prod);
		if (r < 0)
			rc = errf(ch->err, "sv2shm_producer_destroy() returned %d (%s)", r, sv2shm_strerror(r));
		ch->prod = NULL;
	}
	if (ch->shm && munmap(ch->shm, ch->shm_len) != 0 && rc == 0)
		rc = errf(ch->err, "munmap: %s", strerror(errno));
	ch->shm = NULL;
	for (int k = 0; k < 2; k++) {
		close_fd(&ch->sv[k]);
		close_fd(&ch->data_pipe[k]);
		close_fd(&ch->ack_pipe[k]);
	}
	free(ch->buf);
	ch->buf = NULL;
	return rc;
}

/* In the forked child: never returns. */
static void child_start(pid_t parent, int cpu, char *err)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL; /* a hung child dies of its own alarm */
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		errf(err, "sigaction(SIGALRM): %s", strerror(errno));
		_exit(1);
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
		errf(err, "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
		_exit(1);
	}
	if (getppid() != parent) /* the parent died before prctl */
		_exit(1);
	alarm(RUN_TIMEOUT_S + 10);
	if (pin_cpu(cpu, err) < 0)
		_exit(1);
}

/* Wait for the child; kill it first when `kill_now`. Returns its wait
 * status, or -1 with err set when it had to be killed on the run's timeout. */
static int reap(pid_t pid, bool kill_now, int *status, char *err)
{
	bool killed = false;
	if (kill_now) {
		if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
			errf(err, "kill(consumer): %s", strerror(errno));
		killed = true;
	}
	for (;;) {
		pid_t w = waitpid(pid, status, 0);
		if (w == pid)
			break;
		if (w < 0 && errno == EINTR) {
			if (g_alarm && !killed) {
				/* The run's alarm: the consumer hangs. */
				if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
					return errf(err, "kill(consumer): %s", strerror(errno));
				killed = true;
			}
			continue;
		}
		return errf(err, "waitpid: %s", strerror(errno));
	}
	return killed && !kill_now ? errf(err, "consumer hung: killed after %d s", RUN_TIMEOUT_S) : 0;
}

#define describe_status bench_describe_status

struct run_out {
	uint64_t *gaps;    /* in: room for rp->count samples; out: the gaps in ns */
	double msgs_per_s; /* this run's throughput */
	char prod_notify[64];
	char cons_notify[64];
	struct sv2shm_pool_stats pool_stats;
};

/*
 * Run one contender at one size. Returns 0 (out filled), or -1 after adding
 * a note that says exactly what failed.
 */
static int run_one(const struct contender *c, const struct run_params *rp, struct bench_report *rep,
		   struct run_out *out)
{
	char szs[32];
	bench_fmt_size(rp->size, szs, sizeof(szs));
	const char *bname = bench_names[rp->bench];
	uint64_t *gaps = out->gaps;
	memset(out, 0, sizeof(*out));
	out->gaps = gaps;

	size_t res_len = sizeof(struct child_result) + rp->total * sizeof(uint64_t);
	struct child_result *res = mmap(NULL, res_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		bench_report_note(rep, "%s %s %s: mmap(results): %s", bname, c->name, szs, strerror(errno));
		return -1;
	}
	memset(res, 0, res_len); /* pre-fault the timestamps too */
	/* Shared: the iceoryx producer runs in a child too. */
	size_t t_acq_len = rp->total * sizeof(uint64_t);
	uint64_t *t_acq = mmap(NULL, t_acq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct chan ch;
	chan_init(&ch, c, rp, res);
	int rc = -1;
	if (t_acq == MAP_FAILED) {
		t_acq = NULL;
		bench_report_note(rep, "%s %s %s: out of memory", bname, c->name, szs);
		goto out;
	}
	memset(t_acq, 0, t_acq_len);
	if (chan_setup(&ch, rep) < 0) {
		bench_report_note(rep, "%s %s %s: setup: %s", bname, c->name, szs, ch.err);
		chan_teardown(&ch);
		goto out;
	}

	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		bench_report_note(rep, "%s %s %s: fork: %s", bname, c->name, szs, strerror(errno));
		chan_teardown(&ch);
		goto out;
	}
	if (pid == 0) {
		child_start(parent, rp->cpu_consumer, res->err);
		chan_keep_side(&ch, false);
		res->rc = chan_consume(&ch);
		if (c->kind == CH_IOX)
			exit(res->rc == 0 ? 0 : 1); /* see the producer child */
		_exit(res->rc == 0 ? 0 : 1);
	}
	chan_keep_side(&ch, true);
	g_alarm = 0;
	alarm(RUN_TIMEOUT_S);
	int pr;
	pid_t ppid_child = -1;
	int pstatus = 0;
	char preap_err[ERR_LEN] = "";
	if (c->kind == CH_IOX) {
		/* The iceoryx runtime is a per-process singleton: this process
		 * never initialises it; a second child is the producer. */
		ppid_child = fork();
		if (ppid_child < 0) {
			pr = errf(ch.err, "fork (producer): %s", strerror(errno));
		} else if (ppid_child == 0) {
			child_start(parent, -1, res->perr); /* keeps the producer's CPU */
			res->prc = chan_produce(&ch, t_acq);
			if (res->prc < 0)
				snprintf(res->perr, sizeof(res->perr), "%s", ch.err);
			/* exit(), not _exit(): iceoryx's runtime deregisters from
			 * RouDi in its static destructor (stdio was flushed before
			 * the fork). */
			exit(res->prc == 0 ? 0 : 1);
		} else {
			int rr0 = reap(ppid_child, false, &pstatus, preap_err);
			bool ok = rr0 == 0 && WIFEXITED(pstatus) && WEXITSTATUS(pstatus) == 0 && res->prc == 0;
			pr = ok ? 0 : errf(ch.err, "producer child: %s%s%s", res->perr[0] ? res->perr : "failed",
					   preap_err[0] ? "; " : "", preap_err);
		}
	} else {
		pr = chan_produce(&ch, t_acq);
	}
	int status = 0;
	char reap_err[ERR_LEN] = "";
	int rr = reap(pid, pr < 0, &status, reap_err);
	alarm(0);
	if (c->kind == CH_IOX) { /* a killed iceoryx child leaves its socket in /tmp */
		iox_cleanup_child((int)pid, 'c');
		if (ppid_child > 0)
			iox_cleanup_child((int)ppid_child, 'p');
	}
	int tr = chan_teardown(&ch);

	char st[96];
	describe_status(status, st, sizeof(st));
	bool child_ok = rr == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && res->rc == 0;
	if (pr < 0 || !child_ok || tr < 0) {
		bench_report_note(rep, "%s %s %s: FAILED: [producer process] %s; [consumer process, %s] %s%s%s", bname,
				  c->name, szs, pr < 0 || tr < 0 ? ch.err : "ok", st, res->err[0] ? res->err : "no error",
				  reap_err[0] ? "; " : "", reap_err);
		goto out;
	}
	if (res->received != rp->total || res->bad) {
		bench_report_note(rep, "%s %s %s: FAILED: consumer received %llu of %llu messages, %llu with wrong bytes%s%s",
				  bname, c->name, szs, (unsigned long long)res->received,
				  (unsigned long long)rp->total, (unsigned long long)res->bad, res->bad ? ": " : "",
				  res->bad_detail);
		goto out;
	}

	/* count gaps: between acquisitions (round trip) or receipts (stream),
	 * starting after the warm-up. */
	const uint64_t *t = rp->bench == BENCH_RT ? t_acq : res->t;
	uint64_t first = t[rp->warmup], last = t[rp->warmup + rp->count];
	for (uint64_t k = 0; k < rp->count; k++) {
		uint64_t a = t[rp->warmup + k], b = t[rp->warmup + k + 1];
		out->gaps[k] = b >= a ? b - a : 0;
	}
	out->msgs_per_s = last > first ? (double)rp->count * 1e9 / (double)(last - first) : NAN;
	snprintf(out->prod_notify, sizeof(out->prod_notify), "%s", ch.prod_notify);
	snprintf(out->cons_notify, sizeof(out->cons_notify), "%s", res->notify);
	out->pool_stats = ch.pool_stats;
	rc = 0;
out:
	if (t_acq)
		munmap(t_acq, t_acq_len);
	if (munmap(res, res_len) != 0)
		bench_report_note(rep, "munmap(results): %s", strerror(errno));
	return rc;
}

/* ------------------------------------------------------------------------- */
/* One bench at one size: every contender, in interleaved rounds              */
/* ------------------------------------------------------------------------- */

static size_t contender_index(const char *name)
{
	for (size_t k = 0; k < NCONTENDERS; k++)
		if (strcmp(contenders[k].name, name) == 0)
			return k;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/*
 * Run every contender `rounds` times, interleaved (round 1 of each, then
 * round 2 of each...), `n` samples in all per contender, so a burst of
 * background load hits all contenders alike. Per contender: median and p99
 * over the pooled samples, msgs_per_s the median of the rounds' throughputs.
 * Returns 0, or -1 when a contender failed (a note says why).
 */
static int run_block(struct bench_report *rep, enum bench_kind bk, size_t size, uint64_t n, unsigned rounds,
		     int cpu_consumer, const bool *skip, bool *notify_noted)
{
	if (rounds < 1)
		rounds = 1;
	if (rounds > MAX_ROUNDS)
		rounds = MAX_ROUNDS;
	struct run_params rp;
	memset(&rp, 0, sizeof(rp));
	rp.bench = bk;
	rp.size = size;
	rp.count = n / rounds;
	if (rp.count < 10)
		rp.count = 10;
	rp.warmup = rp.count / 10 > 100 ? rp.count / 10 : 100;
	rp.total = rp.warmup + rp.count + 1;
	rp.nslots = bk == BENCH_RT ? 1 : STREAM_SLOTS;
	/* The reference ring has as many data slots as sv2shm's pool has room
	 * for (2 x 64 messages): reusing the slot the consumer has just read
	 * would cost the producer a cache-line invalidation per line written. */
	rp.nbufs = bk == BENCH_RT ? 1 : 2 * STREAM_SLOTS;
	rp.cpu_consumer = cpu_consumer;

	char szs[32];
	bench_fmt_size(size, szs, sizeof(szs));
	uint64_t *pool[NCONTENDERS] = {NULL};
	double mps[NCONTENDERS][MAX_ROUNDS];
	bool bad[NCONTENDERS] = {false};
	int rc = 0;
	for (size_t k = 0; k < NCONTENDERS; k++) {
		if (skip[k])
			continue;
		pool[k] = malloc(rounds * rp.count * sizeof(uint64_t));
		if (!pool[k]) {
			bench_report_note(rep, "%s %s: out of memory", bench_names[bk], szs);
			rc = -1;
			goto out;
		}
	}
	uint64_t t0 = bench_now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		bench_progress("%-14s %7s round %u/%u:", bench_names[bk], szs, r + 1, rounds);
		for (size_t k = 0; k < NCONTENDERS; k++) {
			const struct contender *c = &contenders[k];
			if (skip[k] || bad[k])
				continue;
			struct run_out ro;
			ro.gaps = pool[k] + (size_t)r * rp.count;
			if (run_one(c, &rp, rep, &ro) < 0) {
				bad[k] = true;
				rc = -1;
				bench_progress(" %s FAILED", c->name);
				continue;
			}
			mps[k][r] = ro.msgs_per_s;
			bench_progress(" %s", c->name);
			if (c->kind != CH_SV2SHM)
				continue;
			if (!notify_noted[k]) {
				bench_report_note(rep, "%s: producer notify \"%s\", consumer notify \"%s\"", c->name,
						  ro.prod_notify, ro.cons_notify);
				notify_noted[k] = true;
			}
			if (ro.pool_stats.from_system || ro.pool_stats.moves)
				bench_report_note(rep, "%s %s %s: the pool served %llu slices from system memory and moved %llu",
						  bench_names[bk], c->name, szs,
						  (unsigned long long)ro.pool_stats.from_system,
						  (unsigned long long)ro.pool_stats.moves);
		}
		bench_progress("\n");
	}
	/* Streaming: each sv2shm contender's rounds against memfd-spin's same
	 * rounds (before the sort below reorders them). */
	double paired[NCONTENDERS];
	size_t spin = NCONTENDERS;
	for (size_t k = 0; k < NCONTENDERS; k++) {
		paired[k] = NAN;
		if (contenders[k].kind == CH_MEMFD_SPIN && !skip[k] && !bad[k])
			spin = k;
	}
	for (size_t k = 0; bk == BENCH_STREAM && spin < NCONTENDERS && k < NCONTENDERS; k++) {
		if (skip[k] || bad[k] || contenders[k].kind != CH_SV2SHM)
			continue;
		double q[MAX_ROUNDS];
		for (unsigned r = 0; r < rounds; r++)
			q[r] = mps[spin][r] > 0 ? mps[k][r] / mps[spin][r] : 0;
		qsort(q, rounds, sizeof(double), cmp_double);
		paired[k] = rounds % 2 ? q[rounds / 2] : (q[rounds / 2 - 1] + q[rounds / 2]) / 2.0;
	}
	for (size_t k = 0; k < NCONTENDERS; k++) {
		if (skip[k] || bad[k])
			continue;
		struct bench_stats st;
		bench_stats_compute(pool[k], rounds * rp.count, &st);
		qsort(mps[k], rounds, sizeof(double), cmp_double);
		double m = rounds % 2 ? mps[k][rounds / 2] : (mps[k][rounds / 2 - 1] + mps[k][rounds / 2]) / 2.0;
		struct bench_row *row =
			bench_report_add_row(rep, bench_names[bk], contenders[k].name, size, st.median_ns, st.p99_ns, m);
		if (row)
			row->ratio_paired = paired[k];
		bench_progress("  %-16s median %9.0f ns  p99 %9.0f ns  max %10.0f ns  %11.0f msgs/s\n", contenders[k].name,
			       st.median_ns, st.p99_ns, st.max_ns, m);
	}
	bench_progress("  (%.1f s)\n", (double)(bench_now_ns() - t0) / 1e9);
out:
	for (size_t k = 0; k < NCONTENDERS; k++)
		free(pool[k]);
	return rc;
}


/* ------------------------------------------------------------------------- */
/* ipc-fanout: one producer, each slice to 1, 2 and 4 consumer processes      */
/* ------------------------------------------------------------------------- */

#define MAX_FANOUT 4u
static const size_t fanout_sizes[] = {1024, 16384};
#define NFANOUT_SIZES (sizeof(fanout_sizes) / sizeof(fanout_sizes[0]))
static const unsigned fanout_ns[] = {1, 2, 4};
#define NFANOUT_NS (sizeof(fanout_ns) / sizeof(fanout_ns[0]))
/* Messages per (size, consumers) over all rounds (--quick: a tenth). */
static const uint64_t fanout_count[NFANOUT_SIZES] = {100000, 30000};
#define FANOUT_ROUNDS 5u
#define QUICK_FANOUT_ROUNDS 3u
/* sv2shm (default spin budget, and blocking: no spinning consumers sharing a
 * CPU), and the socket copy as the reference: one send per consumer. */
static const char *const fanout_contenders[] = {"sv2shm", "sv2shm-blocking", "uds-seqpacket"};
#define NFANOUT_CONTENDERS (sizeof(fanout_contenders) / sizeof(fanout_contenders[0]))

/* The sv2shm producer of a fan-out run: publish every slice to all ids. */
static int fanout_sv2shm_produce(struct chan *ch, unsigned n, const struct run_params *rp, int *ids,
				 struct sv2shm_pool_stats *ps)
{
	struct sv2shm_producer_options o;
	sv2shm_producer_opts(ch[0].c, rp, &o);
	int r = sv2shm_producer_new(&o, &ch[0].prod);
	if (r < 0) {
		for (unsigned k = 0; k < n; k++)
			close_fd(&ch[k].sv[0]);
		return errf(ch[0].err, "sv2shm_producer_new() returned %d (%s)", r, sv2shm_strerror(r));
	}
	for (unsigned k = 0; k < n; k++) {
		int sock = ch[k].sv[0];
		ch[k].sv[0] = -1;
		ids[k] = sv2shm_producer_add_consumer(ch[0].prod, sock);
		if (ids[k] < 0)
			return errf(ch[0].err, "sv2shm_producer_add_consumer() returned %d (%s)", ids[k],
				    sv2shm_strerror(ids[k]));
	}
	struct sv2shm_buffer *b = sv2shm_producer_buffer(ch[0].prod);
	for (uint64_t i = 0; i < rp->total; i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, rp->size);
		if (!w) {
			int e = sv2shm_buffer_last_error(b);
			return errf(ch[0].err, "message %llu: sv2shm_buffer_get_writable() returned NULL (%s)",
				    (unsigned long long)i, sv2shm_strerror(e));
		}
		memset(w, bench_msg_byte(i), rp->size);
		struct sv2shm_slice s;
		r = sv2shm_buffer_get_data_owned(b, &s);
		if (r < 0)
			return errf(ch[0].err, "message %llu: get_data_owned() returned %d", (unsigned long long)i, r);
		uint64_t deadline = 0;
		for (;;) {
			r = sv2shm_producer_publish(ch[0].prod, &s, ids, n, 0);
			if (r != -EAGAIN)
				break;
			uint64_t now = bench_now_ns();
			if (!deadline)
				deadline = now + WAIT_TIMEOUT_NS;
			else if (now > deadline || g_alarm)
				break;
			bench_cpu_relax();
		}
		if (r < 0) {
			sv2shm_slice_release(&s); /* -EALREADY when publish had consumed it */
			return errf(ch[0].err, "message %llu: sv2shm_producer_publish(%u ids) returned %d (%s)",
				    (unsigned long long)i, n, r, sv2shm_strerror(r));
		}
		if (r > 0) {
			char ev[256];
			describe_events(ch[0].prod, ev, sizeof(ev));
			return errf(ch[0].err, "message %llu: sv2shm_producer_publish(%u ids) returned %d (consumers that "
					       "did not get it): %s",
				    (unsigned long long)i, n, r, ev);
		}
	}
	if (sv2shm_pool_stats(sv2shm_producer_pool(ch[0].prod), ps) != 0)
		memset(ps, 0, sizeof(*ps));
	return 0;
}

/* The socket reference: every message sent to each consumer in turn. */
static int fanout_uds_produce(struct chan *ch, unsigned n, const struct run_params *rp)
{
	uint8_t *buf = ch[0].buf;
	for (uint64_t i = 0; i < rp->total; i++) {
		memset(buf, bench_msg_byte(i), rp->size);
		for (unsigned k = 0; k < n; k++)
			if (send_all(ch[k].sv[0], buf, rp->size, true, ch[0].err, "producer: sending a message") < 0)
				return -1;
	}
	return 0;
}

/*
 * One fan-out run: n consumer children, each reading every byte of every
 * message. gaps[0..count): the time between consecutive messages having
 * reached every consumer. Returns 0, or -1 after a note.
 */
static int fanout_one(const struct contender *c, size_t size, unsigned n, const struct run_params *rp,
		      struct bench_report *rep, uint64_t *gaps, double *mps, struct sv2shm_pool_stats *ps)
{
	char szs[32];
	bench_fmt_size(size, szs, sizeof(szs));
	struct chan ch[MAX_FANOUT];
	struct child_result *res[MAX_FANOUT] = {NULL};
	pid_t pids[MAX_FANOUT];
	size_t res_len = sizeof(struct child_result) + rp->total * sizeof(uint64_t);
	int rc = -1, pr = -1;
	unsigned started = 0;
	bool ok = false;
	char why[ERR_LEN * 2] = "";
	size_t wo = 0;
	memset(ps, 0, sizeof(*ps));
	for (unsigned k = 0; k < n; k++) {
		res[k] = mmap(NULL, res_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (res[k] == MAP_FAILED) {
			res[k] = NULL;
			bench_report_note(rep, "ipc-fanout %s %s x%u: mmap: %s", c->name, szs, n, strerror(errno));
			goto out;
		}
		memset(res[k], 0, res_len);
		chan_init(&ch[k], c, rp, res[k]);
		int sr = c->kind == CH_UDS ? uds_setup(&ch[k]) : sv2shm_setup(&ch[k]);
		if (sr < 0) {
			bench_report_note(rep, "ipc-fanout %s %s x%u: setup: %s", c->name, szs, n, ch[k].err);
			n = k + 1; /* tear down what exists */
			goto teardown;
		}
	}
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	for (unsigned k = 0; k < n; k++) {
		pids[k] = fork();
		if (pids[k] < 0) {
			bench_report_note(rep, "ipc-fanout %s %s x%u: fork: %s", c->name, szs, n, strerror(errno));
			goto reap_all;
		}
		if (pids[k] == 0) {
			child_start(parent, rp->cpu_consumer, res[k]->err);
			for (unsigned j = 0; j < n; j++) {
				if (j == k)
					chan_keep_side(&ch[j], false);
				else
					for (int e = 0; e < 2; e++)
						close_fd(&ch[j].sv[e]);
			}
			res[k]->rc = chan_consume(&ch[k]);
			_exit(res[k]->rc == 0 ? 0 : 1);
		}
		started++;
	}
	for (unsigned k = 0; k < n; k++)
		chan_keep_side(&ch[k], true);
	g_alarm = 0;
	alarm(RUN_TIMEOUT_S);
	int ids[MAX_FANOUT];
	pr = c->kind == CH_UDS ? fanout_uds_produce(ch, n, rp) : fanout_sv2shm_produce(ch, n, rp, ids, ps);
reap_all:
	ok = started == n && pr == 0;
	if (started == n && pr < 0)
		wo += (size_t)snprintf(why + wo, sizeof(why) - wo, "[producer] %s", ch[0].err);
	for (unsigned k = 0; k < started; k++) {
		int status = 0;
		char reap_err[ERR_LEN] = "";
		int rr = reap(pids[k], pr < 0, &status, reap_err);
		bool child_ok = rr == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && res[k]->rc == 0 &&
				res[k]->received == rp->total && res[k]->bad == 0;
		if (!child_ok) {
			ok = false;
			char st[96];
			describe_status(status, st, sizeof(st));
			if (wo < sizeof(why))
				wo += (size_t)snprintf(why + wo, sizeof(why) - wo, "%s[consumer %u, %s] %s, %llu of %llu "
							 "received, %llu bad %s%s",
						       wo ? "; " : "", k, st, res[k]->err[0] ? res[k]->err : "no error",
						       (unsigned long long)res[k]->received, (unsigned long long)rp->total,
						       (unsigned long long)res[k]->bad, res[k]->bad_detail, reap_err);
		}
	}
	alarm(0);
teardown:
	for (unsigned k = 0; k < n; k++) {
		if (chan_teardown(&ch[k]) < 0) {
			ok = false;
			bench_report_note(rep, "ipc-fanout %s %s x%u: teardown: %s", c->name, szs, n, ch[k].err);
		}
	}
	if (!ok) {
		if (why[0])
			bench_report_note(rep, "ipc-fanout %s %s x%u: FAILED: %s", c->name, szs, n, why);
		goto out;
	}
	/* A message is delivered when its last consumer has it. */
	uint64_t prev = 0, first = 0, last = 0;
	for (uint64_t i = rp->warmup; i <= rp->warmup + rp->count; i++) {
		uint64_t done = 0;
		for (unsigned k = 0; k < n; k++)
			if (res[k]->t[i] > done)
				done = res[k]->t[i];
		if (i == rp->warmup)
			first = done;
		else
			gaps[i - rp->warmup - 1] = done >= prev ? done - prev : 0;
		prev = done;
		last = done;
	}
	*mps = last > first ? (double)rp->count * 1e9 / (double)(last - first) : NAN;
	rc = 0;
out:
	for (unsigned k = 0; k < MAX_FANOUT; k++)
		if (res[k])
			munmap(res[k], res_len);
	return rc;
}

/* Every (size, consumers) of the fan-out bench, contenders interleaved by round. */
static int run_fanout(struct bench_report *rep, bool quick, int cpu_consumer)
{
	int rc = 0;
	unsigned rounds = quick ? QUICK_FANOUT_ROUNDS : FANOUT_ROUNDS;
	for (size_t si = 0; si < NFANOUT_SIZES; si++) {
		for (size_t ni = 0; ni < NFANOUT_NS; ni++) {
			size_t size = fanout_sizes[si];
			unsigned n = fanout_ns[ni];
			struct run_params rp;
			memset(&rp, 0, sizeof(rp));
			rp.bench = BENCH_STREAM; /* consumers record receipt times */
			rp.size = size;
			rp.count = fanout_count[si] / (quick ? 10 : 1) / rounds;
			if (rp.count < 10)
				rp.count = 10;
			rp.warmup = rp.count / 10 > 100 ? rp.count / 10 : 100;
			rp.total = rp.warmup + rp.count + 1;
			rp.nslots = STREAM_SLOTS;
			rp.nbufs = 2 * STREAM_SLOTS;
			rp.cpu_consumer = cpu_consumer; /* every consumer on the consumer CPU */
			char szs[32];
			bench_fmt_size(size, szs, sizeof(szs));
			uint64_t *pool[NFANOUT_CONTENDERS] = {NULL};
			double mps[NFANOUT_CONTENDERS][MAX_ROUNDS];
			bool bad[NFANOUT_CONTENDERS] = {false};
			uint64_t from_system = 0;
			for (size_t k = 0; k < NFANOUT_CONTENDERS; k++) {
				pool[k] = malloc(rounds * rp.count * sizeof(uint64_t));
				if (!pool[k])
					bad[k] = true;
			}
			uint64_t t0 = bench_now_ns();
			for (unsigned r = 0; r < rounds; r++) {
				bench_progress("%-14s %7s x%u round %u/%u:", "ipc-fanout", szs, n, r + 1, rounds);
				for (size_t k = 0; k < NFANOUT_CONTENDERS; k++) {
					if (bad[k])
						continue;
					const struct contender *c = &contenders[contender_index(fanout_contenders[k])];
					struct sv2shm_pool_stats ps;
					if (fanout_one(c, size, n, &rp, rep, pool[k] + (size_t)r * rp.count, &mps[k][r],
						       &ps) < 0) {
						bad[k] = true;
						rc = -1;
						bench_progress(" %s FAILED", c->name);
						continue;
					}
					from_system += ps.from_system;
					bench_progress(" %s", c->name);
				}
				bench_progress("\n");
			}
			for (size_t k = 0; k < NFANOUT_CONTENDERS; k++) {
				if (!bad[k]) {
					struct bench_stats st;
					bench_stats_compute(pool[k], rounds * rp.count, &st);
					qsort(mps[k], rounds, sizeof(double), cmp_double);
					double m = rounds % 2 ? mps[k][rounds / 2]
							      : (mps[k][rounds / 2 - 1] + mps[k][rounds / 2]) / 2.0;
					struct bench_row *row = bench_report_add_row(rep, "ipc-fanout", fanout_contenders[k],
										     size, st.median_ns, st.p99_ns, m);
					if (row) {
						row->consumers = n;
						row->samples = st.n;
						row->per_msg_ns = m > 0 ? 1e9 / m : NAN;
					}
					bench_progress("  %-16s x%u median %9.0f ns  p99 %9.0f ns  %11.0f msgs/s\n",
						       fanout_contenders[k], n, st.median_ns, st.p99_ns, m);
				}
				free(pool[k]);
			}
			if (from_system)
				bench_report_note(rep, "ipc-fanout sv2shm %s x%u: %llu slices from system memory", szs, n,
						  (unsigned long long)from_system);
			bench_progress("  (%.1f s)\n", (double)(bench_now_ns() - t0) / 1e9);
		}
	}
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Idle consumer: CPU time of a sv2shm consumer that receives nothing         */
/* ------------------------------------------------------------------------- */

static uint64_t rusage_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* Returns the consumer's CPU time in ms over IDLE_MS of waiting, or NAN
 * (with a note). */
static double run_idle(struct bench_report *rep, int cpu_consumer)
{
	struct child_result *res =
		mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED) {
		bench_report_note(rep, "idle consumer: mmap: %s", strerror(errno));
		return NAN;
	}
	memset(res, 0, sizeof(*res));
	double cpu_ms = NAN;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		bench_report_note(rep, "idle consumer: socketpair: %s", strerror(errno));
		goto out;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		bench_report_note(rep, "idle consumer: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		goto out;
	}
	if (pid == 0) {
		child_start(parent, cpu_consumer, res->err);
		close(sv[0]);
		struct sv2shm_consumer_options co;
		memset(&co, 0, sizeof(co)); /* the default spin budget */
		struct sv2shm_consumer *c = NULL;
		int r = sv2shm_consumer_new(sv[1], &co, &c);
		if (r < 0) {
			errf(res->err, "sv2shm_consumer_new() returned %d (%s)", r, sv2shm_strerror(r));
			_exit(1);
		}
		struct sv2shm_slice s;
		uint64_t c0 = rusage_ns(), w0 = bench_now_ns();
		r = sv2shm_consumer_recv(c, &s, IDLE_MS);
		uint64_t c1 = rusage_ns(), w1 = bench_now_ns();
		res->cpu_ns = c1 - c0;
		res->wall_ns = w1 - w0;
		res->idle_rc = r;
		if (r != 0) {
			errf(res->err, "sv2shm_consumer_recv(timeout %d ms) with nothing sent returned %d (%s)", IDLE_MS,
			     r, r == 1 ? "a slice" : sv2shm_strerror(r));
			_exit(1);
		}
		r = sv2shm_consumer_free(c);
		if (r < 0) {
			errf(res->err, "sv2shm_consumer_free() returned %d (%s)", r, sv2shm_strerror(r));
			_exit(1);
		}
		_exit(0);
	}
	close(sv[1]);
	g_alarm = 0;
	alarm(RUN_TIMEOUT_S);
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = 4096;
	o.pool.slots = 1;
	o.pool.policy = SV2SHM_POOL_WAIT;
	o.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	struct sv2shm_producer *p = NULL;
	char err[ERR_LEN] = "";
	int r = sv2shm_producer_new(&o, &p);
	if (r < 0) {
		close(sv[0]);
		errf(err, "sv2shm_producer_new() returned %d (%s)", r, sv2shm_strerror(r));
	} else {
		int id = sv2shm_producer_add_consumer(p, sv[0]);
		if (id < 0)
			errf(err, "sv2shm_producer_add_consumer() returned %d (%s)", id, sv2shm_strerror(id));
	}
	int status = 0;
	char reap_err[ERR_LEN] = "";
	int rr = reap(pid, err[0] != '\0', &status, reap_err);
	alarm(0);
	if (p) {
		r = sv2shm_producer_destroy(p);
		if (r < 0 && !err[0])
			errf(err, "sv2shm_producer_destroy() returned %d (%s)", r, sv2shm_strerror(r));
	}
	char st[96];
	describe_status(status, st, sizeof(st));
	if (err[0] || rr < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		bench_report_note(rep, "idle consumer: FAILED: [producer process] %s; [consumer process, %s] %s%s%s", err[0] ? err : "ok",
				  st, res->err[0] ? res->err : "no error", reap_err[0] ? "; " : "", reap_err);
		goto out;
	}
	cpu_ms = (double)res->cpu_ns / 1e6;
	bench_report_note(rep, "idle consumer: sv2shm_consumer_recv(timeout %d ms, default spin) waited %.1f ms of wall "
			       "time using %.3f ms of CPU",
			  IDLE_MS, (double)res->wall_ns / 1e6, cpu_ms);
out:
	munmap(res, sizeof(*res));
	return cpu_ms;
}

/* ------------------------------------------------------------------------- */
/* Probing, ratios, targets                                                   */
/* ------------------------------------------------------------------------- */

/* Can this sv2shm configuration be created here? 0, or the error. */
static int probe_sv2shm(const struct contender *c)
{
	struct run_params rp = {.bench = BENCH_RT, .size = 64, .nslots = 1};
	struct sv2shm_producer_options o;
	sv2shm_producer_opts(c, &rp, &o);
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_producer_new(&o, &p);
	if (r < 0)
		return r;
	r = sv2shm_producer_destroy(p);
	return r < 0 ? r : 0;
}

/* The fan-out row of (contender, size, consumers), or NULL. */
static struct bench_row *find_fanout(struct bench_report *rep, const char *who, uint64_t size, unsigned n)
{
	for (size_t i = 0; i < rep->nrows; i++) {
		struct bench_row *row = &rep->rows[i];
		if (row->size == size && row->consumers == n && strcmp(row->bench, bench_names[BENCH_FANOUT]) == 0 &&
		    strcmp(row->contender, who) == 0)
			return row;
	}
	return NULL;
}

static void add_ratios(struct bench_report *rep)
{
	for (size_t i = 0; i < rep->nrows; i++) {
		struct bench_row *row = &rep->rows[i];
		if (strcmp(row->bench, bench_names[BENCH_FANOUT]) == 0) {
			if (strcmp(row->contender, "uds-seqpacket") == 0)
				continue;
			struct bench_row *ref = find_fanout(rep, "uds-seqpacket", row->size, row->consumers);
			if (ref && ref->msgs_per_s > 0 && !isnan(row->msgs_per_s)) {
				row->ratio = row->msgs_per_s / ref->msgs_per_s;
				snprintf(row->ratio_vs, sizeof(row->ratio_vs), "uds-seqpacket");
			}
			continue;
		}
		if (strcmp(row->bench, bench_names[BENCH_STREAM]) == 0) {
			if (strcmp(row->contender, "uds-seqpacket") == 0)
				continue;
			struct bench_row *ref = bench_report_find(rep, row->bench, "uds-seqpacket", row->size);
			if (ref && ref->msgs_per_s > 0 && !isnan(row->msgs_per_s)) {
				row->ratio = row->msgs_per_s / ref->msgs_per_s;
				snprintf(row->ratio_vs, sizeof(row->ratio_vs), "uds-seqpacket");
			}
			continue;
		}
		for (size_t k = 0; k < NCONTENDERS; k++) {
			if (strcmp(contenders[k].name, row->contender) != 0 || !contenders[k].rt_vs)
				continue;
			struct bench_row *ref = bench_report_find(rep, row->bench, contenders[k].rt_vs, row->size);
			if (ref && ref->median_ns > 0) {
				row->ratio = row->median_ns / ref->median_ns;
				snprintf(row->ratio_vs, sizeof(row->ratio_vs), "%s", contenders[k].rt_vs);
			}
		}
	}
}

static void target_ratio(struct bench_report *rep, const char *name, enum bench_kind bk, const char *who,
			 const char *ref, size_t size, double limit, bool at_least)
{
	struct bench_row *a = bench_report_find(rep, bench_names[bk], who, size);
	struct bench_row *b = bench_report_find(rep, bench_names[bk], ref, size);
	double v = NAN;
	/* Against memfd-spin, a stream row's per-round pairs (ratio_paired). */
	bool pairs = a && b && bk == BENCH_STREAM && !strcmp(ref, "memfd-spin") && !isnan(a->ratio_paired);
	if (a && b)
		v = bk == BENCH_RT ? a->median_ns / b->median_ns
			: pairs    ? a->ratio_paired
				   : a->msgs_per_s / b->msgs_per_s;
	struct bench_target *t = bench_report_add_target(rep, name, v, limit, at_least, "x");
	if (!t)
		return;
	if (!a || !b)
		snprintf(t->note, sizeof(t->note), "no %s row", !a ? who : ref);
	else if (bk == BENCH_RT)
		snprintf(t->note, sizeof(t->note), "%s %.0f ns vs %s %.0f ns median", who, a->median_ns, ref,
			 b->median_ns);
	else if (pairs)
		snprintf(t->note, sizeof(t->note),
			 "median of per-round ratios; medians %s %.0f vs %s %.0f msgs/s, their ratio %.2f", who,
			 a->msgs_per_s, ref, b->msgs_per_s, a->msgs_per_s / b->msgs_per_s);
	else
		snprintf(t->note, sizeof(t->note), "%s %.0f vs %s %.0f msgs/s", who, a->msgs_per_s, ref, b->msgs_per_s);
}

static void add_targets(struct bench_report *rep, double idle_cpu_ms, const struct ipc_cfg *cfg)
{
	if (cfg->on[BENCH_RT]) {
	target_ratio(rep, "spinning round trip within 2x of memfd-spin at 64 B", BENCH_RT, "sv2shm", "memfd-spin", 64,
		     2.0, false);
	target_ratio(rep, "spinning round trip within 2x of memfd-spin at 16 KiB", BENCH_RT, "sv2shm", "memfd-spin",
		     16384, 2.0, false);
	target_ratio(rep, "blocking round trip within 1.25x of memfd-futex at 64 B", BENCH_RT, "sv2shm-blocking",
		     "memfd-futex", 64, 1.25, false);
	target_ratio(rep, "blocking round trip within 1.25x of memfd-futex at 16 KiB", BENCH_RT, "sv2shm-blocking",
		     "memfd-futex", 16384, 1.25, false);
	}
	if (cfg->on[BENCH_STREAM]) {
		target_ratio(rep, "streaming at 16 KiB at least 3x the socket copy's throughput", BENCH_STREAM, "sv2shm",
			     "uds-seqpacket", 16384, 3.0, true);
		target_ratio(rep, "streaming at 64 B within 2x of memfd-spin (paired msgs/s ratio >= 0.5)", BENCH_STREAM,
			     "sv2shm", "memfd-spin", 64, 0.5, true);
	}
	if (cfg->on[BENCH_FANOUT]) {
		/* Consumers sharing one core: deliveries/s (msgs/s x consumers)
		 * with n consumers against one consumer's, the same pool. */
		for (size_t si = 0; si < NFANOUT_SIZES; si++) {
			const struct bench_row *one = find_fanout(rep, "sv2shm", fanout_sizes[si], 1);
			for (size_t ni = 1; ni < NFANOUT_NS; ni++) {
				const struct bench_row *r = find_fanout(rep, "sv2shm", fanout_sizes[si], fanout_ns[ni]);
				char szs[32], nm[160];
				bench_fmt_size(fanout_sizes[si], szs, sizeof(szs));
				snprintf(nm, sizeof(nm),
					 "fan-out %s, %u consumers on one core: deliveries/s >= 0.8x of one consumer's", szs,
					 fanout_ns[ni]);
				double v = one && r ? r->msgs_per_s * fanout_ns[ni] / one->msgs_per_s : NAN;
				struct bench_target *t = bench_report_add_target(rep, nm, v, 0.8, true, "x");
				if (t && one && r)
					snprintf(t->note, sizeof(t->note), "%.0f deliveries/s vs %.0f to one consumer",
						 r->msgs_per_s * fanout_ns[ni], one->msgs_per_s);
				else if (t)
					snprintf(t->note, sizeof(t->note), "no fan-out row");
			}
		}
	}
	if (!cfg->on[3])
		return;
	char name[160];
	snprintf(name, sizeof(name), "idle consumer CPU after spin budget (ms of CPU per %d ms idle, ~0)", IDLE_MS);
	struct bench_target *t = bench_report_add_target(rep, name, idle_cpu_ms, IDLE_LIMIT_MS, false, "ms");
	if (t)
		snprintf(t->note, sizeof(t->note), "limit %.0f ms = %.0f%% of one CPU", IDLE_LIMIT_MS,
			 IDLE_LIMIT_MS * 100.0 / IDLE_MS);
}

/* sv2shm against iceoryx, where both ran. */
static void note_iceoryx(struct bench_report *rep)
{
	char line[900];
	size_t o = 0;
	for (int bk = BENCH_RT; bk <= BENCH_STREAM; bk++) {
		for (size_t s = 0; s < NSIZES && o < sizeof(line); s++) {
			const struct bench_row *a = bench_report_find(rep, bench_names[bk], "sv2shm", sizes[s]);
			const struct bench_row *b = bench_report_find(rep, bench_names[bk], "iceoryx", sizes[s]);
			if (!a || !b)
				continue;
			char szs[32];
			bench_fmt_size(sizes[s], szs, sizeof(szs));
			if (bk == BENCH_RT)
				o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s %s: sv2shm %.1f us vs iceoryx %.1f us "
										 "(iceoryx/sv2shm %.2fx)",
						      o ? "; " : "", bench_names[bk], szs, a->median_ns / 1e3,
						      b->median_ns / 1e3, b->median_ns / a->median_ns);
			else
				o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s %s: sv2shm %.0f vs iceoryx %.0f msgs/s "
										 "(sv2shm/iceoryx %.2fx)",
						      o ? "; " : "", bench_names[bk], szs, a->msgs_per_s, b->msgs_per_s,
						      a->msgs_per_s / b->msgs_per_s);
		}
	}
	if (o && o < sizeof(line))
		bench_report_note(rep, "sv2shm vs iceoryx (medians): %s", line);
	else if (o)
		bench_report_note(rep, "sv2shm vs iceoryx (medians): %.*s", (int)sizeof(line) - 1, line);
}

/* Fan-out scaling: throughput with n consumers against one. */
static void note_fanout(struct bench_report *rep)
{
	for (size_t si = 0; si < NFANOUT_SIZES; si++) {
		char szs[32];
		bench_fmt_size(fanout_sizes[si], szs, sizeof(szs));
		for (size_t k = 0; k < NFANOUT_CONTENDERS; k++) {
			const struct bench_row *one = find_fanout(rep, fanout_contenders[k], fanout_sizes[si], 1);
			if (!one)
				continue;
			char line[400];
			size_t o = (size_t)snprintf(line, sizeof(line), "ipc-fanout %s %s: %.0f msgs/s to 1 consumer",
						    fanout_contenders[k], szs, one->msgs_per_s);
			for (size_t ni = 1; ni < NFANOUT_NS && o < sizeof(line); ni++) {
				const struct bench_row *r = find_fanout(rep, fanout_contenders[k], fanout_sizes[si], fanout_ns[ni]);
				if (r)
					o += (size_t)snprintf(line + o, sizeof(line) - o, ", %.0f to %u (%.2fx of one; %.0f "
											  "deliveries/s)",
							      r->msgs_per_s, fanout_ns[ni], r->msgs_per_s / one->msgs_per_s,
							      r->msgs_per_s * fanout_ns[ni]);
			}
			bench_report_note(rep, "%s", line);
		}
	}
	if (find_fanout(rep, "sv2shm", fanout_sizes[0], 1))
		bench_report_note(rep, "ipc-fanout: msgs_per_s = messages that reached every consumer per second (median "
				       "of the rounds), ns_per_msg = 1e9 / msgs_per_s; median_ns/p99_ns = gaps between "
				       "consecutive messages having reached every consumer (consumers sharing one CPU take "
				       "turns, so the gaps are bursty: read msgs_per_s); all consumers are pinned to the "
				       "consumer CPU; ratio = msgs_per_s / uds-seqpacket's at the same size and consumer "
				       "count");
}

/*
 * The release notification paths in the blocking round trip: a consumer
 * wakes the producer with a 1-byte datagram on its socket, sent through its
 * io_uring (sv2shm-blocking, the default) or with send(2) (sv2shm-syscall,
 * no_io_uring on both sides). Which was faster, per size.
 */
static void note_notify_winner(struct bench_report *rep)
{
	static const char *const who[] = {"sv2shm-blocking", "sv2shm-syscall"};
	static const char *const how[] = {"io_uring", "syscall"};
	char line[900];
	size_t o = 0;
	o += (size_t)snprintf(line + o, sizeof(line) - o,
			      "notification (blocking round trip median; io_uring = sv2shm-blocking, syscall = "
			      "sv2shm-syscall):");
	bool any = false;
	for (size_t s = 0; s < NSIZES && o < sizeof(line); s++) {
		const struct bench_row *r[2];
		for (size_t k = 0; k < 2; k++)
			r[k] = bench_report_find(rep, bench_names[BENCH_RT], who[k], sizes[s]);
		if (!r[0] && !r[1])
			continue;
		char szs[32];
		bench_fmt_size(sizes[s], szs, sizeof(szs));
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%s %s:", any ? ";" : "", szs);
		any = true;
		for (size_t k = 0; k < 2 && o < sizeof(line); k++)
			if (r[k])
				o += (size_t)snprintf(line + o, sizeof(line) - o, " %s %.1f us", how[k],
						      r[k]->median_ns / 1000.0);
		if (r[0] && r[1] && r[0]->median_ns > 0 && r[1]->median_ns > 0 && o < sizeof(line)) {
			size_t f = r[0]->median_ns <= r[1]->median_ns ? 0 : 1;
			o += (size_t)snprintf(line + o, sizeof(line) - o, " -> %s faster by %.2fx", how[f],
					      r[1 - f]->median_ns / r[f]->median_ns);
		}
	}
	if (!any)
		return;
	if (o < sizeof(line))
		bench_report_note(rep, "%s", line);
	else
		bench_report_note(rep, "%.*s", (int)sizeof(line) - 1, line);
}

/* ------------------------------------------------------------------------- */
/* Main                                                                       */
/* ------------------------------------------------------------------------- */

static const char *const ipc_part_names[] = {"ipc-roundtrip", "ipc-stream", "ipc-fanout", "idle"};

static int ipc_opt(int argc, char **argv, int i, void *ctx)
{
	struct ipc_cfg *cfg = ctx;
	if (strcmp(argv[i], "--bench") != 0)
		return 0;
	if (i + 1 >= argc) {
		fprintf(stderr, "sv2shm-bench ipc: --bench needs a value\n");
		return -1;
	}
	for (int k = 0; k < 4; k++)
		cfg->on[k] = false;
	const char *p = argv[i + 1];
	while (*p) {
		size_t len = strcspn(p, ",");
		int found = -1;
		for (int k = 0; k < 4; k++)
			if (strlen(ipc_part_names[k]) == len && strncmp(ipc_part_names[k], p, len) == 0)
				found = k;
		if (found < 0) {
			fprintf(stderr, "sv2shm-bench ipc: --bench: unknown name '%.*s'\n", (int)len, p);
			return -1;
		}
		cfg->on[found] = true;
		p += len;
		if (*p == ',')
			p++;
	}
	return 2;
}

static void ipc_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench ipc [--json] [--quick] [--bench LIST]\n\n"
		"Cross-process benchmark: a producer (this process) and a forked consumer, pinned to two CPUs.\n"
		"  ipc-roundtrip  write SIZE bytes, consumer reads them all and releases, producer sees the slot free\n"
		"  ipc-stream     producer sends as fast as it can (64 in flight), consumer reads every byte\n"
		"Sizes 64 B, 1 KiB, 16 KiB, 64 KiB. Contenders:\n"
		"  memfd-spin       memfd ring + sequence words, both sides spin (the physical limit)\n"
		"  memfd-futex      the same, both sides sleep with FUTEX_WAIT/FUTEX_WAKE\n"
		"  uds-seqpacket    bytes copied over a SOCK_SEQPACKET socketpair, 1-byte ack\n"
		"  pipe             bytes copied over a pipe, 1-byte ack over another\n"
		"  sv2shm           the library, default consumer spin budget then sleep\n"
		"  sv2shm-blocking  consumer spin_us and producer wait_spin_us = SV2SHM_SPIN_NONE\n"
		"  sv2shm-syscall   blocking, no_io_uring on both sides (wake-ups with send(2), not io_uring)\n"
		"  iceoryx          Eclipse iceoryx's C binding (publisher loan/publish, subscriber take/release;\n"
		"                   polls 50 us, then a wait set); only when built with iceoryx and iox-roudi starts\n"
		"  ipc-fanout       one producer, each slice to 1, 2 and 4 consumer processes (1 KiB, 16 KiB):\n"
		"                   sv2shm (sv2shm_producer_publish with n ids) and uds-seqpacket (a send per consumer)\n"
		"Also: the CPU time of an idle sv2shm consumer over %d ms.\n\n"
		"  --bench LIST  comma-separated: ipc-roundtrip, ipc-stream, ipc-fanout, idle (default: all)\n"
		"  --json   exactly one JSON object on stdout; the human table goes to stderr\n"
		"  --quick  a tenth of the samples (about 10 s)\n"
		"Exit status: 0 when every run completed (targets may be missed), 1 when a run failed, 2 usage.\n",
		IDLE_MS);
}

int bench_ipc_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct ipc_cfg cfg = {.on = {true, true, true, true}};
	if (bench_parse_opts_ex(argc, argv, &opts, ipc_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		ipc_usage(stdout);
		return 0;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm; /* no SA_RESTART: blocking calls return EINTR */
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		perror("sv2shm-bench ipc: sigaction(SIGALRM)");
		return 1;
	}
	if (bench_ignore_sigpipe("ipc") < 0)
		return 1;

	struct bench_report rep;
	bench_report_init(&rep, "ipc");

	/* Two CPUs from our affinity set: the producer on the first, the consumer
	 * on the second. */
	int cpu_p = -1, cpu_c = -1;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0) {
		bench_report_note(&rep, "sched_getaffinity: %s: not pinning", strerror(errno));
	} else {
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &set))
				continue;
			if (cpu_p < 0)
				cpu_p = cpu;
			else if (cpu_c < 0)
				cpu_c = cpu;
		}
		if (cpu_c < 0) {
			bench_report_note(&rep, "only one CPU available: producer and consumer are not pinned");
			cpu_p = -1;
		}
	}
	char err[ERR_LEN];
	if (pin_cpu(cpu_p, err) < 0) {
		bench_report_note(&rep, "pinning the producer: %s: not pinning", err);
		cpu_p = cpu_c = -1;
	}
	if (cpu_p >= 0)
		bench_report_note(&rep, "producer pinned to CPU %d, consumer to CPU %d", cpu_p, cpu_c);

	bool skip[NCONTENDERS] = {false};
	for (size_t k = 0; k < NCONTENDERS; k++) {
		if (contenders[k].kind != CH_SV2SHM)
			continue;
		int r = probe_sv2shm(&contenders[k]);
		if (r < 0) {
			bench_report_note(&rep, "%s skipped: sv2shm_producer_new() returned %d (%s)", contenders[k].name,
					  r, sv2shm_strerror(r));
			skip[k] = true;
		}
	}
	bool roudi = false;
	if (cfg.on[BENCH_RT] || cfg.on[BENCH_STREAM]) {
		size_t k = contender_index("iceoryx");
		char ierr[ERR_LEN];
		/* Chunks per mempool: 64 in flight, the subscriber's one, slack. */
		if (iox_roudi_start(sizes, NSIZES, 256, ierr, sizeof(ierr)) < 0) {
			bench_report_note(&rep, "iceoryx skipped: %s", ierr);
			skip[k] = true;
		} else {
			roudi = true;
			bench_report_note(&rep, "iceoryx: started iox-roudi with one mempool per size (payload + 64 B, "
						"256 chunks each); publisher WAIT_FOR_CONSUMER, subscriber queue 64 "
						"(stream) / 4 (round trip) with BLOCK_PRODUCER; round trip acks on a second "
						"topic");
		}
	}

	bool failed = false;
	bool notify_noted[NCONTENDERS] = {false};
	const uint64_t div = opts.quick ? 10 : 1;
	uint64_t t_start = bench_now_ns();
	struct bench_load load;
	bench_load_start(&load);
	for (int bk = BENCH_RT; bk <= BENCH_STREAM; bk++) {
		if (!cfg.on[bk])
			continue;
		for (size_t s = 0; s < NSIZES; s++) {
			uint64_t n = (bk == BENCH_RT ? rt_count[s] : stream_count[s]) / div;
			unsigned rounds = bk == BENCH_RT ? (opts.quick ? QUICK_RT_ROUNDS : RT_ROUNDS)
							 : (opts.quick ? QUICK_STREAM_ROUNDS : STREAM_ROUNDS);
			if (run_block(&rep, (enum bench_kind)bk, sizes[s], n, rounds, cpu_c, skip, notify_noted) < 0)
				failed = true;
		}
	}

	if (roudi) {
		char ierr[ERR_LEN];
		if (iox_roudi_stop(ierr, sizeof(ierr)) < 0)
			bench_report_note(&rep, "iceoryx: %s", ierr);
	}
	if (cfg.on[BENCH_FANOUT] && run_fanout(&rep, opts.quick, cpu_c) < 0)
		failed = true;
	double idle_ms = NAN;
	if (cfg.on[3]) {
		bench_progress("%-14s %-16s %7s ... ", "idle", "sv2shm", "-");
		idle_ms = skip[contender_index("sv2shm")] ? NAN : run_idle(&rep, cpu_c);
		if (isnan(idle_ms))
			failed = true;
		bench_progress("%.3f ms CPU in %d ms\n", idle_ms, IDLE_MS);
	}
	bench_progress("total %.1f s\n\n", (double)(bench_now_ns() - t_start) / 1e9);
	bench_load_note(&rep, &load);

	add_ratios(&rep);
	add_targets(&rep, idle_ms, &cfg);
	if (cfg.on[BENCH_RT])
		note_notify_winner(&rep);
	note_iceoryx(&rep);
	note_fanout(&rep);
	int pr = bench_report_print(&rep, opts.json);
	bench_report_free(&rep);
	if (pr < 0)
		return 1;
	return failed ? 1 : 0;
}
