/*
 * sv2shm-bench paired: the spinning round trip of sv2shm against memfd-spin,
 * the two alternated in short blocks inside one producer/consumer process
 * pair, the ratio taken per adjacent pair of blocks.
 *
 * Why not `ipc`'s ratio: ipc-roundtrip runs each contender in rounds of its
 * own and reports medians of per-round-trip samples. On a VM whose clock
 * moves in 10 ns steps and whose speed changes in phases lasting seconds,
 * sv2shm / memfd-spin then jumps by whole clock steps (~4% at 64 B) and
 * drifts with the phase a contender happened to run in. Here a block of
 * sv2shm round trips and a block of memfd-spin round trips follow each other
 * within milliseconds, so both see the same phase, and a block's mean (its
 * elapsed time / its round trips) is not quantized by the clock.
 *
 * A round trip is ipc-roundtrip's, step for step, for both contenders: the
 * producer (this process, pinned to one CPU) gets a free slot, reads the
 * clock (ipc stores that time; both contenders here pay for the read), writes
 * `size` bytes of bench_msg_byte(i), hands them over; the consumer (a forked
 * child, pinned to another CPU) reads and checks every byte and gives the
 * slot back.
 *   sv2shm      a producer with a one-slot pool, policy WAIT (get_writable()
 *               returns when the consumer has released the previous slice),
 *               publish to the one consumer; sv2shm_consumer_recv() with the
 *               default spin budget, sv2shm_slice_release().
 *   memfd-spin  a memfd with two sequence words on their own cache lines
 *               (head: published, tail: consumed) and one data slot; both
 *               sides spin.
 *
 * Schedule, followed in lock step by both processes: for each size, a
 * warm-up pair (not recorded: the new pool's first touches, the consumer's
 * setup), then --pairs pairs of [--block sv2shm round trips][--block
 * memfd-spin round trips]. Each block starts with the consumer idle and ends
 * when the producer has seen the consumer finish its last message: the
 * memfd-spin block waits for tail == head; the sv2shm block waits for the
 * consumer's count of finished sv2shm messages (a word it stores after the
 * block's last release), so neither block's time holds a piece of the other
 * contender's last round trip.
 *
 * Robustness: the consumer has PR_SET_PDEATHSIG(SIGKILL) and its own alarm();
 * every wait is bounded (WAIT_TIMEOUT_MS, then an error naming the
 * contender, size, pair and message); the consumer reports its failures in
 * a shared result struct; a hard alarm() ends a hung run with a message
 * naming where the producer was.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/ipc.h>
#include <sv2shm/sv2shm.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_paired_main(int argc, char **argv);

/* ------------------------------------------------------------------------- */
/* Parameters                                                                 */
/* ------------------------------------------------------------------------- */

/* Longest single wait (spin, pool WAIT, recv) before the run is declared hung. */
#define WAIT_TIMEOUT_MS 5000
#define WAIT_TIMEOUT_NS ((uint64_t)WAIT_TIMEOUT_MS * 1000000u)
#define DEFAULT_PAIRS 100u
#define QUICK_PAIRS 20u
#define DEFAULT_BLOCK 2000u
#define QUICK_BLOCK 500u
#define MAX_PAIRS 100000u
#define MAX_BLOCK 1000000u
#define MAX_SIZE (1u << 20)
#define MAX_SIZES 16u
static const size_t default_sizes[] = {64, 1024, 16384};
#define NDEFAULT_SIZES (sizeof(default_sizes) / sizeof(default_sizes[0]))
/*
 * The hard alarm, armed per size: HARD_SLACK_S (setup, a 5 s wait that ends
 * in an error, reaping) plus room for every round trip of the size at
 * HARD_RT_NS + HARD_BYTE_NS per byte, far above what one takes (well under
 * 1 us at 64 B): it only catches a call that blocks for good.
 */
#define HARD_SLACK_S 30u
#define HARD_RT_NS 100000.0
#define HARD_BYTE_NS 2.0
#define HARD_MAX_S (7u * 24u * 3600u)
/* The consumer's own alarm, on top of the producer's. */
#define CHILD_EXTRA_S 10u
/* The memfd reference: control words first, the data slot at REF_DATA_OFF. */
#define REF_DATA_OFF 4096u
#define ERR_LEN 512

enum { C_MEMFD, C_SV2SHM, NCONT };
static const char *const cont_names[NCONT] = {"memfd-spin", "sv2shm"};

struct paired_cfg {
	unsigned pairs; /* 0: default */
	unsigned block; /* 0: default */
	size_t sizes[MAX_SIZES];
	unsigned nsizes; /* 0: default */
};

/* Head and tail on cache lines of their own, as ipc's memfd references. */
struct ref_ctl {
	alignas(64) _Atomic uint32_t head; /* messages published (producer) */
	alignas(64) _Atomic uint32_t tail; /* messages consumed (consumer) */
};

/* Shared by the two processes (anonymous MAP_SHARED). */
struct shared {
	/* sv2shm messages the consumer has finished (released), over the whole
	 * run, mod 2^32: the end of an sv2shm block for the producer. */
	alignas(64) _Atomic uint32_t sv_done;
	/* The consumer gave up (err says why): the producer's spins stop. */
	alignas(64) _Atomic uint32_t failed;
	int rc;
	char err[ERR_LEN];
	char notify[64]; /* sv2shm_consumer_notify_name() */
	/* Written by the consumer per message: a line the producer does not read
	 * while it measures. */
	alignas(64) uint64_t received[NCONT];
	uint64_t bad;          /* messages whose length or bytes were wrong */
	char bad_detail[256];  /* the first of them */
};

/* What both processes know: the schedule and the channels. */
struct run {
	unsigned pairs, block;
	const size_t *sizes;
	unsigned nsizes;
	struct shared *sh;
	void *shm;            /* the memfd reference's mapping */
	size_t shm_len;
	struct ref_ctl *ctl;
	uint8_t *data;        /* its data slot */
	int (*sv)[2];         /* per size: [0] producer's end, [1] consumer's end (SOCK_SEQPACKET) */
	char err[ERR_LEN];    /* the producer's error */
	char prod_notify[64]; /* sv2shm_producer_notify_name(), first size */
};

#define errf(err, ...) bench_errf((err), ERR_LEN, __VA_ARGS__)
#define close_fd bench_close_fd

/* Where a message was, for error messages: "sv2shm 64 B, pair 3/100, message
 * 17 of 2000" (pair 0 is the warm-up pair; j < 0: the block's end). */
struct at_buf {
	char s[128];
};
static const char *at(struct at_buf *b, int who, size_t size, unsigned p, unsigned pairs, long j, unsigned block)
{
	char pl[32];
	if (p == 0)
		snprintf(pl, sizeof(pl), "warm-up pair");
	else
		snprintf(pl, sizeof(pl), "pair %u/%u", p, pairs);
	if (j < 0)
		snprintf(b->s, sizeof(b->s), "%s %zu B, %s, end of the block", cont_names[who], size, pl);
	else
		snprintf(b->s, sizeof(b->s), "%s %zu B, %s, message %ld of %u", cont_names[who], size, pl, j, block);
	return b->s;
}

/* The hard alarm for one size: see HARD_SLACK_S. */
static unsigned size_budget_s(const struct run *x, size_t size)
{
	double rts = 2.0 * (double)x->block * (double)(x->pairs + 1u);
	double s = (double)HARD_SLACK_S + rts * (HARD_RT_NS + HARD_BYTE_NS * (double)size) / 1e9;
	return s >= (double)HARD_MAX_S ? HARD_MAX_S : (unsigned)s + 1u;
}

/* ipc's spinning wait, look for look (report.h). */
#define spin_change(w, old, out, stop) bench_spin_change((w), (old), (out), (stop), WAIT_TIMEOUT_NS)

static const char *spin_error(int r)
{
	return r == -ECANCELED ? "the consumer gave up (its error below)" : strerror(-r);
}

/* ------------------------------------------------------------------------- */
/* The consumer (forked child)                                                */
/* ------------------------------------------------------------------------- */

/* The first bad message, kept out of the checking loop. */
static void note_bad(struct shared *sh, const char *where, uint64_t i, size_t len, size_t want, uint64_t sum)
{
	if (!sh->bad)
		snprintf(sh->bad_detail, sizeof(sh->bad_detail),
			 "%s (%llu of the run): %zu bytes (want %zu), byte sum %llu (want %llu)", where,
			 (unsigned long long)i, len, want, (unsigned long long)sum,
			 (unsigned long long)((uint64_t)want * bench_msg_byte(i)));
	sh->bad++;
}

/* Every byte read, as ipc's consumers do. Returns the sum in *sum. */
static inline bool msg_ok(const uint8_t *p, size_t len, size_t want, uint64_t i, uint64_t *sum)
{
	*sum = len ? bench_sum_bytes(p, len) : 0;
	return len == want && *sum == (uint64_t)want * bench_msg_byte(i);
}

/* Counters the consumer carries from one size to the next. */
struct cons_state {
	uint32_t head, tail; /* memfd-spin: last head seen, messages consumed */
	uint64_t sv_i, mf_i; /* messages of each contender so far: bench_msg_byte(i) */
};

static int consume_size(struct run *x, unsigned si, struct cons_state *st)
{
	struct shared *sh = x->sh;
	const size_t size = x->sizes[si];
	const unsigned pairs = x->pairs, block = x->block;
	struct at_buf b;
	alarm(size_budget_s(x, size) + CHILD_EXTRA_S);

	/* As ipc's "sv2shm" contender: the default spin budget, io_uring. */
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	struct sv2shm_consumer *c = NULL;
	int sock = x->sv[si][1];
	x->sv[si][1] = -1; /* the consumer owns it now, even on failure */
	int r = sv2shm_consumer_new(sock, &co, &c);
	if (r < 0)
		return errf(sh->err, "consumer: %zu B: sv2shm_consumer_new() returned %d (%s)", size, r,
			    sv2shm_strerror(r));
	if (si == 0)
		snprintf(sh->notify, sizeof(sh->notify), "%s", sv2shm_consumer_notify_name(c));

	uint32_t head = st->head, tail = st->tail;
	uint64_t sv_i = st->sv_i, mf_i = st->mf_i, sum;
	int rc = 0;
	for (unsigned p = 0; p <= pairs && rc == 0; p++) {
		for (unsigned j = 0; j < block; j++, sv_i++) {
			struct sv2shm_slice s;
			r = sv2shm_consumer_recv(c, &s, WAIT_TIMEOUT_MS);
			if (r != 1) {
				rc = errf(sh->err, "consumer: %s: sv2shm_consumer_recv(timeout %d ms) returned %d (%s)",
					  at(&b, C_SV2SHM, size, p, pairs, j, block), WAIT_TIMEOUT_MS, r,
					  r == 0 ? "timeout" : sv2shm_strerror(r));
				break;
			}
			if (!msg_ok(s.data, s.len, size, sv_i, &sum))
				note_bad(sh, at(&b, C_SV2SHM, size, p, pairs, j, block), sv_i, s.len, size, sum);
			sh->received[C_SV2SHM]++;
			r = sv2shm_slice_release(&s);
			if (r < 0) {
				rc = errf(sh->err, "consumer: %s: sv2shm_slice_release() returned %d (%s)",
					  at(&b, C_SV2SHM, size, p, pairs, j, block), r, sv2shm_strerror(r));
				break;
			}
		}
		if (rc < 0)
			break;
		/* The end of the sv2shm block, for the producer's clock. */
		atomic_store_explicit(&sh->sv_done, (uint32_t)sv_i, memory_order_release);
		for (unsigned j = 0; j < block; j++, mf_i++) {
			if (tail == head) {
				head = atomic_load_explicit(&x->ctl->head, memory_order_acquire);
				while (tail == head) {
					r = spin_change(&x->ctl->head, head, &head, NULL);
					if (r < 0) {
						rc = errf(sh->err, "consumer: %s: waiting for it (head %u, tail %u): "
								   "%s",
							  at(&b, C_MEMFD, size, p, pairs, j, block), head, tail,
							  strerror(-r));
						break;
					}
				}
				if (rc < 0)
					break;
			}
			if (!msg_ok(x->data, size, size, mf_i, &sum))
				note_bad(sh, at(&b, C_MEMFD, size, p, pairs, j, block), mf_i, size, size, sum);
			tail++;
			sh->received[C_MEMFD]++;
			atomic_store_explicit(&x->ctl->tail, tail, memory_order_release);
		}
	}
	st->head = head;
	st->tail = tail;
	st->sv_i = sv_i;
	st->mf_i = mf_i;
	if (rc < 0) {
		sv2shm_consumer_free(c); /* the error at hand is the one to report */
		return -1;
	}
	r = sv2shm_consumer_flush(c);
	if (r < 0) {
		sv2shm_consumer_free(c);
		return errf(sh->err, "consumer: %zu B: sv2shm_consumer_flush() returned %d (%s)", size, r,
			    sv2shm_strerror(r));
	}
	r = sv2shm_consumer_free(c);
	if (r < 0)
		return errf(sh->err, "consumer: %zu B: sv2shm_consumer_free() returned %d (%s)", size, r,
			    sv2shm_strerror(r));
	return 0;
}

/* In the forked child: never returns. */
static void child_main(struct run *x, pid_t parent, int cpu)
{
	struct shared *sh = x->sh;
	int rc = 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL; /* not the producer's hard alarm: a hung consumer dies of its own alarm() */
	if (sigaction(SIGALRM, &sa, NULL) != 0)
		rc = errf(sh->err, "consumer: sigaction(SIGALRM): %s", strerror(errno));
	else if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		rc = errf(sh->err, "consumer: prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
	else if (getppid() != parent) /* the parent died before prctl */
		_exit(1);
	for (unsigned si = 0; si < x->nsizes; si++)
		close_fd(&x->sv[si][0]);
	if (rc == 0 && cpu >= 0) {
		int r = bench_pin_thread(cpu, NULL, 0);
		if (r < 0)
			rc = errf(sh->err, "consumer: pinning to CPU %d: %s", cpu, strerror(-r));
	}
	struct cons_state st;
	memset(&st, 0, sizeof(st));
	for (unsigned si = 0; si < x->nsizes && rc == 0; si++)
		rc = consume_size(x, si, &st);
	for (unsigned si = 0; si < x->nsizes; si++)
		close_fd(&x->sv[si][1]);
	if (rc < 0) {
		sh->rc = -1;
		atomic_store_explicit(&sh->failed, 1u, memory_order_release);
		_exit(1);
	}
	_exit(0);
}

/* ------------------------------------------------------------------------- */
/* The producer (this process)                                                */
/* ------------------------------------------------------------------------- */

/* ipc's sv2shm round-trip producer: one slot, WAIT, the default spin. */
static void producer_opts(size_t size, struct sv2shm_producer_options *o)
{
	memset(o, 0, sizeof(*o));
	o->pool.slots = 1; /* the next get_writable() waits for the release */
	o->pool.capacity = (size + 4095) & ~(uint64_t)4095;
	o->pool.policy = SV2SHM_POOL_WAIT;
	o->pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	o->pool.wait_spin_us = 0;
	o->notify = SV2SHM_NOTIFY_DEFAULT;
	/* Back-pressure, never a refused or skipped slice: as ipc. */
	o->max_held = o->pool.slots;
	o->on_limit = SV2SHM_LIMIT_REFUSE;
}

/* The producer's pending removal events, as text. */
static void describe_events(struct sv2shm_producer *p, char *buf, size_t n)
{
	struct sv2shm_producer_event ev;
	size_t o = 0;
	buf[0] = '\0';
	while (o < n && sv2shm_producer_next_event(p, &ev) == 1)
		o += (size_t)snprintf(buf + o, n - o, "%sconsumer id %d removed (reason %d, held %u)", o ? "; " : "",
				      ev.id, ev.reason, (unsigned)ev.held);
	if (!buf[0])
		snprintf(buf, n, "no removal event queued");
}

/* Counters the producer carries from one size to the next. */
struct prod_state {
	uint32_t head, tail;
	uint64_t sv_i, mf_i;
};

/* One sv2shm block: `block` round trips, then wait for the consumer's last
 * release. Returns 0, or -1 with x->err set. */
static int sv2shm_block(struct run *x, struct sv2shm_producer *prod, int *id, size_t size, unsigned p,
			struct prod_state *st)
{
	struct sv2shm_buffer *b = sv2shm_producer_buffer(prod);
	struct shared *sh = x->sh;
	const unsigned block = x->block;
	volatile uint64_t t_acq; /* ipc stores the time; so do we */
	struct at_buf ab;
	int r;
	for (unsigned j = 0; j < block; j++, st->sv_i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, size);
		if (!w) {
			int e = sv2shm_buffer_last_error(b);
			return errf(x->err, "producer: %s: sv2shm_buffer_get_writable() returned NULL, last error %d "
					    "(%s)",
				    at(&ab, C_SV2SHM, size, p, x->pairs, j, block), e, sv2shm_strerror(e));
		}
		t_acq = bench_now_ns();
		memset(w, bench_msg_byte(st->sv_i), size);
		struct sv2shm_slice s;
		r = sv2shm_buffer_get_data_owned(b, &s);
		if (r < 0)
			return errf(x->err, "producer: %s: sv2shm_buffer_get_data_owned() returned %d (%s)",
				    at(&ab, C_SV2SHM, size, p, x->pairs, j, block), r, sv2shm_strerror(r));
		if (s.len != size) {
			sv2shm_slice_release(&s);
			return errf(x->err, "producer: %s: get_data_owned gave %zu bytes",
				    at(&ab, C_SV2SHM, size, p, x->pairs, j, block), s.len);
		}
		uint64_t deadline = 0;
		for (;;) {
			r = sv2shm_producer_publish(prod, &s, id, 1, 0);
			if (r != -EAGAIN)
				break;
			/* The consumer's descriptor ring is full: it is not keeping up. */
			uint64_t now = bench_now_ns();
			if (!deadline)
				deadline = now + WAIT_TIMEOUT_NS;
			else if (now > deadline)
				break;
			bench_cpu_relax();
		}
		if (r < 0) {
			int rr = sv2shm_slice_release(&s); /* -EALREADY when publish had consumed it */
			return errf(x->err, "producer: %s: sv2shm_producer_publish() returned %d (%s)%s (slice "
					    "release: %d)",
				    at(&ab, C_SV2SHM, size, p, x->pairs, j, block), r, sv2shm_strerror(r),
				    r == -EAGAIN ? " for 5 s" : "", rr);
		}
		if (r > 0) {
			char ev[256];
			describe_events(prod, ev, sizeof(ev));
			return errf(x->err, "producer: %s: sv2shm_producer_publish() returned %d (the consumer did not "
					    "get it): %s",
				    at(&ab, C_SV2SHM, size, p, x->pairs, j, block), r, ev);
		}
	}
	(void)t_acq;
	/* The block ends when the consumer has released its last slice. */
	const uint32_t want = (uint32_t)st->sv_i;
	uint32_t done = atomic_load_explicit(&sh->sv_done, memory_order_acquire);
	while (done != want) {
		r = spin_change(&sh->sv_done, done, &done, &sh->failed);
		if (r < 0)
			return errf(x->err, "producer: %s: waiting for the consumer to finish it (%u of %u done): %s",
				    at(&ab, C_SV2SHM, size, p, x->pairs, -1, block), block - (want - done), block,
				    spin_error(r));
	}
	return 0;
}

/* One memfd-spin block: `block` round trips, then wait for tail == head.
 * Returns 0, or -1 with x->err set. */
static int memfd_block(struct run *x, size_t size, unsigned p, struct prod_state *st)
{
	struct ref_ctl *ctl = x->ctl;
	struct shared *sh = x->sh;
	const unsigned block = x->block;
	uint32_t head = st->head, tail = st->tail;
	volatile uint64_t t_acq;
	struct at_buf ab;
	int r = 0;
	for (unsigned j = 0; j < block && r == 0; j++, st->mf_i++) {
		if (head - tail >= 1u) {
			tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
			while (head - tail >= 1u) {
				r = spin_change(&ctl->tail, tail, &tail, &sh->failed);
				if (r < 0) {
					errf(x->err, "producer: %s: waiting for a free slot (head %u, tail %u): %s",
					     at(&ab, C_MEMFD, size, p, x->pairs, j, block), head, tail, spin_error(r));
					break;
				}
			}
			if (r < 0)
				break;
		}
		t_acq = bench_now_ns();
		memset(x->data, bench_msg_byte(st->mf_i), size);
		head++;
		atomic_store_explicit(&ctl->head, head, memory_order_release);
	}
	(void)t_acq;
	/* The block ends when the consumer has stored the last tail. */
	if (r == 0)
		tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
	while (r == 0 && tail != head) {
		r = spin_change(&ctl->tail, tail, &tail, &sh->failed);
		if (r < 0)
			errf(x->err, "producer: %s: waiting for the consumer to finish it (head %u, tail %u): %s",
			     at(&ab, C_MEMFD, size, p, x->pairs, -1, block), head, tail, spin_error(r));
	}
	st->head = head;
	st->tail = tail;
	return r < 0 ? -1 : 0;
}

/*
 * One size: a producer on the size's socket, the warm-up pair, then the
 * pairs; block means (ns per round trip) into sv_mean[] and mf_mean[].
 * Returns 0, or -1 with x->err set.
 */
static int produce_size(struct run *x, unsigned si, struct prod_state *st, double *sv_mean, double *mf_mean)
{
	const size_t size = x->sizes[si];
	char szs[32];
	bench_fmt_size(size, szs, sizeof(szs));
	alarm(size_budget_s(x, size));
	bench_where = "sv2shm_producer_new";
	struct sv2shm_producer_options o;
	producer_opts(size, &o);
	struct sv2shm_producer *prod = NULL;
	int r = sv2shm_producer_new(&o, &prod);
	if (r < 0) {
		close_fd(&x->sv[si][0]); /* the consumer's sv2shm_consumer_new() sees the hang-up */
		return errf(x->err, "producer: %zu B: sv2shm_producer_new(capacity %llu, slots 1, WAIT) returned %d "
				    "(%s)",
			    size, (unsigned long long)o.pool.capacity, r, sv2shm_strerror(r));
	}
	if (si == 0)
		snprintf(x->prod_notify, sizeof(x->prod_notify), "%s", sv2shm_producer_notify_name(prod));
	int sock = x->sv[si][0];
	x->sv[si][0] = -1; /* the producer owns it now, even on failure */
	bench_where = "sv2shm_producer_add_consumer";
	int id = sv2shm_producer_add_consumer(prod, sock);
	int rc = 0;
	if (id < 0) {
		rc = errf(x->err, "producer: %zu B: sv2shm_producer_add_consumer() returned %d (%s)", size, id,
			  sv2shm_strerror(id));
		goto out;
	}

	bench_progress("paired-roundtrip %7s:", szs);
	const uint64_t t_size = bench_now_ns();
	const unsigned dot = x->pairs >= 10 ? x->pairs / 10 : 1;
	for (unsigned p = 0; p <= x->pairs; p++) {
		bench_where = "sv2shm block";
		uint64_t t0 = bench_now_ns();
		if (sv2shm_block(x, prod, &id, size, p, st) < 0) {
			rc = -1;
			break;
		}
		uint64_t t1 = bench_now_ns();
		bench_where = "memfd-spin block";
		if (memfd_block(x, size, p, st) < 0) {
			rc = -1;
			break;
		}
		uint64_t t2 = bench_now_ns();
		if (p > 0) {
			sv_mean[p - 1] = (double)(t1 - t0) / (double)x->block;
			mf_mean[p - 1] = (double)(t2 - t1) / (double)x->block;
			if (p % dot == 0)
				bench_progress(".");
		}
	}
	bench_progress(" (%.1f s)%s", (double)(bench_now_ns() - t_size) / 1e9, rc < 0 ? " FAILED\n" : "");
out:
	bench_where = "sv2shm_producer_destroy";
	r = sv2shm_producer_destroy(prod);
	if (r < 0 && rc == 0)
		rc = errf(x->err, "producer: %zu B: sv2shm_producer_destroy() returned %d (%s)", size, r,
			  sv2shm_strerror(r));
	bench_where = "between sizes";
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Statistics and the report                                                  */
/* ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Of sorted v[0..n), n > 0: the median (the mean of the middle two for an
 * even n), and the nearest-rank percentile (p99 of fewer than 100 values is
 * the largest), as bench_stats_compute() does for integer samples. */
static double median_sorted(const double *v, size_t n)
{
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static double rank_sorted(const double *v, size_t n, double pct)
{
	double rank = ceil(pct / 100.0 * (double)n);
	size_t i = rank < 1.0 ? 0 : (size_t)rank - 1;
	return v[i < n ? i : n - 1];
}

#define BENCH_NAME "paired-roundtrip"

/* One size's rows from its block means (sorted in place). Returns 0, or -1
 * when the report is out of memory. */
static int add_rows(struct bench_report *rep, const struct run *x, size_t size, double *sv_mean, double *mf_mean,
		    double *ratio)
{
	const size_t n = x->pairs;
	for (size_t k = 0; k < n; k++)
		ratio[k] = sv_mean[k] / mf_mean[k];
	qsort(sv_mean, n, sizeof(double), cmp_double);
	qsort(mf_mean, n, sizeof(double), cmp_double);
	qsort(ratio, n, sizeof(double), cmp_double);
	double med[NCONT] = {median_sorted(mf_mean, n), median_sorted(sv_mean, n)};
	double p99[NCONT] = {rank_sorted(mf_mean, n, 99.0), rank_sorted(sv_mean, n, 99.0)};
	double r_med = median_sorted(ratio, n);
	double r_p25 = rank_sorted(ratio, n, 25.0), r_p75 = rank_sorted(ratio, n, 75.0);
	for (int c = 0; c < NCONT; c++) {
		struct bench_row *row = bench_report_add_row(rep, BENCH_NAME, cont_names[c], size, med[c], p99[c],
							     med[c] > 0 ? 1e9 / med[c] : NAN);
		if (!row)
			return -1;
		if (c == C_SV2SHM) {
			/* ratio: the medians' (ipc's kind); ratio_paired: what this mode is for. */
			row->ratio = med[C_MEMFD] > 0 ? med[C_SV2SHM] / med[C_MEMFD] : NAN;
			snprintf(row->ratio_vs, sizeof(row->ratio_vs), "%s", cont_names[C_MEMFD]);
			row->ratio_paired = r_med;
		}
		if (bench_row_field(row, "pairs", (double)x->pairs, true) < 0 ||
		    bench_row_field(row, "block", (double)x->block, true) < 0)
			return -1;
		if (c == C_SV2SHM && (bench_row_field(row, "ratio_p25", r_p25, false) < 0 ||
				      bench_row_field(row, "ratio_p75", r_p75, false) < 0))
			return -1;
	}
	char szs[32];
	bench_fmt_size(size, szs, sizeof(szs));
	bench_report_text(rep, "%7s: per-pair ratio sv2shm/memfd-spin median %.3fx (p25 %.3fx, p75 %.3fx); block means "
			       "(median) sv2shm %.1f ns, memfd-spin %.1f ns",
			  szs, r_med, r_p25, r_p75, med[C_SV2SHM], med[C_MEMFD]);
	bench_progress(" sv2shm %.1f ns, memfd-spin %.1f ns, ratio %.3fx (p25 %.3f, p75 %.3f)\n", med[C_SV2SHM],
		       med[C_MEMFD], r_med, r_p25, r_p75);
	return 0;
}

static void add_target(struct bench_report *rep, const struct run *x)
{
	bool asked = false;
	for (unsigned si = 0; si < x->nsizes; si++)
		asked |= x->sizes[si] == 64;
	if (!asked)
		return;
	const struct bench_row *a = bench_report_find(rep, BENCH_NAME, "sv2shm", 64);
	const struct bench_row *b = bench_report_find(rep, BENCH_NAME, "memfd-spin", 64);
	struct bench_target *t =
		bench_report_add_target(rep, "spinning round trip within 2x of memfd-spin at 64 B (paired)",
					a ? a->ratio_paired : NAN, 2.0, false, "x");
	if (!t)
		return;
	if (!a || !b) {
		snprintf(t->note, sizeof(t->note), "the 64 B size did not complete");
		return;
	}
	double p25 = NAN, p75 = NAN;
	for (unsigned k = 0; k < a->nfields; k++) {
		if (strcmp(a->fields[k].name, "ratio_p25") == 0)
			p25 = a->fields[k].value;
		else if (strcmp(a->fields[k].name, "ratio_p75") == 0)
			p75 = a->fields[k].value;
	}
	snprintf(t->note, sizeof(t->note), "median of %u per-pair ratios, p25 %.3fx, p75 %.3fx; sv2shm %.1f ns vs "
					   "memfd-spin %.1f ns",
		 x->pairs, p25, p75, a->median_ns, b->median_ns);
}

/* ------------------------------------------------------------------------- */
/* Options and main                                                           */
/* ------------------------------------------------------------------------- */

static int parse_sizes(const char *v, struct paired_cfg *c)
{
	if (!v) {
		fprintf(stderr, "sv2shm-bench paired: --sizes needs a value\n");
		return -1;
	}
	c->nsizes = 0;
	for (const char *p = v;; p++) {
		size_t len = strcspn(p, ",");
		char item[24];
		if (len == 0 || len >= sizeof(item)) {
			fprintf(stderr, "sv2shm-bench paired: --sizes %s: want a comma-separated list of sizes in "
					"1..%u\n",
				v, MAX_SIZE);
			return -1;
		}
		if (c->nsizes == MAX_SIZES) {
			fprintf(stderr, "sv2shm-bench paired: --sizes %s: at most %u sizes\n", v, MAX_SIZES);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		unsigned long long x;
		if (bench_parse_uint("paired", "--sizes", item, 1, MAX_SIZE, &x) < 0)
			return -1;
		for (unsigned k = 0; k < c->nsizes; k++) {
			if (c->sizes[k] == x) {
				fprintf(stderr, "sv2shm-bench paired: --sizes %s: %llu is listed twice\n", v, x);
				return -1;
			}
		}
		c->sizes[c->nsizes++] = (size_t)x;
		p += len;
		if (!*p)
			return 0;
	}
}

static int paired_opt(int argc, char **argv, int i, void *ctx)
{
	struct paired_cfg *c = ctx;
	const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--pairs") == 0) {
		if (bench_parse_uint("paired", a, v, 1, MAX_PAIRS, &x) < 0)
			return -1;
		c->pairs = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--block") == 0) {
		if (bench_parse_uint("paired", a, v, 1, MAX_BLOCK, &x) < 0)
			return -1;
		c->block = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--sizes") == 0)
		return parse_sizes(v, c) < 0 ? -1 : 2;
	return 0;
}

static void paired_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench paired [--json] [--quick] [--pairs N] [--block N] [--sizes LIST] [--help]\n\n"
		"The spinning round trip of sv2shm and of memfd-spin (ipc-roundtrip's steps: get a free slot,\n"
		"write SIZE bytes, the consumer reads and checks every byte and gives the slot back), alternated\n"
		"in blocks inside one producer/consumer process pair pinned to two CPUs, so both contenders see\n"
		"the same phase of the machine. Per size: one warm-up pair, then N pairs of [B sv2shm round trips]\n"
		"[B memfd-spin round trips]. A block's mean = its elapsed time / B (not quantized by the clock);\n"
		"per pair, ratio = sv2shm's block mean / memfd-spin's. Rows: each contender's median and p99 of\n"
		"its block means; on the sv2shm row ratio_paired = the median per-pair ratio, ratio_p25 and\n"
		"ratio_p75 its quartiles (ratio = the medians' ratio). Target: the median per-pair ratio at 64 B\n"
		"<= 2.\n\n"
		"  --pairs N     pairs of blocks per size, 1..%u (default %u; --quick: %u)\n"
		"  --block N     round trips per block, 1..%u (default %u; --quick: %u)\n"
		"  --sizes LIST  comma-separated message sizes in bytes, each 1..%u (default 64,1024,16384)\n"
		"  --quick       fewer pairs, shorter blocks (a smoke run, about a second)\n"
		"  --json        exactly one JSON object on stdout; the human table goes to stderr\n"
		"Exit status: 0 when the run completed (the target may be missed), 1 when it failed, 2 usage.\n",
		MAX_PAIRS, DEFAULT_PAIRS, QUICK_PAIRS, MAX_BLOCK, DEFAULT_BLOCK, QUICK_BLOCK, MAX_SIZE);
}

#define describe_status bench_describe_status

/* The memfd reference: control words, then one data slot for the largest
 * size. Returns 0, or -1 with x->err set. */
static int memfd_setup(struct run *x, size_t max_size)
{
	x->shm_len = REF_DATA_OFF + ((max_size + 63) & ~(size_t)63);
	const char *failed;
	void *m = bench_memfd_map(x->shm_len, &failed);
	if (!m)
		return errf(x->err, "%s(memfd, %zu): %s", failed, x->shm_len, strerror(errno));
	x->shm = m;
	x->ctl = m;
	x->data = (uint8_t *)m + REF_DATA_OFF;
	return 0;
}

int bench_paired_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct paired_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	if (bench_parse_opts_ex(argc, argv, &opts, paired_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		paired_usage(stdout);
		return 0;
	}
	struct run x;
	memset(&x, 0, sizeof(x));
	x.pairs = cfg.pairs ? cfg.pairs : opts.quick ? QUICK_PAIRS : DEFAULT_PAIRS;
	x.block = cfg.block ? cfg.block : opts.quick ? QUICK_BLOCK : DEFAULT_BLOCK;
	if (!cfg.nsizes) {
		for (size_t k = 0; k < NDEFAULT_SIZES; k++)
			cfg.sizes[k] = default_sizes[k];
		cfg.nsizes = NDEFAULT_SIZES;
	}
	x.sizes = cfg.sizes;
	x.nsizes = cfg.nsizes;
	size_t max_size = 0;
	for (unsigned si = 0; si < x.nsizes; si++)
		max_size = x.sizes[si] > max_size ? x.sizes[si] : max_size;

	if (bench_ignore_sigpipe("paired") < 0 || bench_hard_alarm("paired", HARD_SLACK_S) < 0)
		return 1;

	struct bench_report rep;
	bench_report_init(&rep, "paired");
	rep.ratio_desc = "sv2shm vs memfd-spin: the ratio of the two medians of block means; the target and the "
			 "per-pair lines use the median of the per-pair ratios (JSON ratio_paired, with ratio_p25 and "
			 "ratio_p75)";
	bool failed = false;
	char why[3 * ERR_LEN] = "";
	double *means = NULL;
	int sv[MAX_SIZES][2];
	for (unsigned si = 0; si < MAX_SIZES; si++)
		sv[si][0] = sv[si][1] = -1;
	x.sv = sv;
	x.sh = MAP_FAILED;

	/* The producer on the first CPU of our affinity set, the consumer on the second. */
	int cpus[2], cpu_c = -1;
	if (bench_cpus(cpus, 2) == 2) {
		int r = bench_pin_thread(cpus[0], NULL, 0);
		if (r < 0) {
			bench_report_note(&rep, "pinning the producer to CPU %d: %s: not pinning", cpus[0],
					  strerror(-r));
		} else {
			cpu_c = cpus[1];
			bench_report_note(&rep, "producer pinned to CPU %d, consumer to CPU %d", cpus[0], cpu_c);
		}
	} else {
		bench_report_note(&rep, "only one CPU available: producer and consumer are not pinned (and take "
				       "turns on it: a spinning round trip then measures the scheduler)");
	}

	x.sh = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (x.sh == MAP_FAILED) {
		snprintf(why, sizeof(why), "mmap(%zu bytes, MAP_SHARED): %s", sizeof(struct shared), strerror(errno));
		failed = true;
		goto out;
	}
	memset(x.sh, 0, sizeof(struct shared));
	if (memfd_setup(&x, max_size) < 0) {
		snprintf(why, sizeof(why), "setup: %s", x.err);
		failed = true;
		goto out;
	}
	for (unsigned si = 0; si < x.nsizes; si++) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv[si]) != 0) {
			snprintf(why, sizeof(why), "socketpair(AF_UNIX, SOCK_SEQPACKET): %s", strerror(errno));
			failed = true;
			goto out;
		}
	}
	/* Block means and ratios of one size: sv2shm, memfd-spin, ratio. */
	means = malloc(3 * (size_t)x.pairs * sizeof(double));
	if (!means) {
		snprintf(why, sizeof(why), "out of memory (%u pairs)", x.pairs);
		failed = true;
		goto out;
	}

	struct bench_load load;
	bench_load_start(&load);
	fflush(stdout);
	fflush(stderr);
	bench_where = "fork";
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		failed = true;
		goto out;
	}
	if (pid == 0)
		child_main(&x, parent, cpu_c); /* never returns */
	for (unsigned si = 0; si < x.nsizes; si++)
		close_fd(&sv[si][1]);

	struct prod_state st;
	memset(&st, 0, sizeof(st));
	const uint64_t t_start = bench_now_ns();
	int pr = 0;
	bool rows_failed = false;
	for (unsigned si = 0; si < x.nsizes && pr == 0; si++) {
		pr = produce_size(&x, si, &st, means, means + x.pairs);
		/* After the last tail == head (acquire) every check of this size is
		 * in sh->bad: only clean sizes get rows. */
		if (pr < 0)
			break;
		if (x.sh->bad) {
			bench_progress(" wrong bytes\n");
			pr = errf(x.err, "producer: the consumer found wrong bytes (below)");
		} else if (add_rows(&rep, &x, x.sizes[si], means, means + x.pairs, means + 2 * (size_t)x.pairs) < 0) {
			bench_progress(" out of memory for the report\n");
			rows_failed = true;
		}
	}
	bench_progress("total %.1f s\n\n", (double)(bench_now_ns() - t_start) / 1e9);

	/* A failed producer leaves the consumer waiting: kill it (unless it is
	 * gone already: then its death is part of the story), then reap. */
	bench_where = "waitpid (consumer)";
	alarm(HARD_SLACK_S);
	int status = 0;
	pid_t w = 0;
	bool killed = false;
	if (pr < 0) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == 0) {
			if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
				bench_report_note(&rep, "kill(consumer): %s", strerror(errno));
			killed = true;
		}
	}
	while (w != pid) {
		w = waitpid(pid, &status, 0);
		if (w < 0 && errno != EINTR)
			break;
	}
	const int wait_errno = errno;
	alarm(0);
	bench_where = "report";
	bench_load_note(&rep, &load);
	char stt[96];
	if (w != pid)
		snprintf(stt, sizeof(stt), "waitpid: %s", strerror(wait_errno));
	else
		describe_status(status, stt, sizeof(stt));
	const struct shared *sh = x.sh;
	const uint64_t want_each = (uint64_t)x.nsizes * (x.pairs + 1u) * x.block;
	bool child_ok = w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 && sh->rc == 0;
	if (pr < 0 || !child_ok) {
		snprintf(why, sizeof(why), "[producer] %s; [consumer, %s] %s%s%s", pr < 0 ? x.err : "ok", stt,
			 sh->err[0] ? sh->err : killed ? "killed by us after the producer's error" : "no error",
			 sh->bad ? "; wrong bytes: " : "", sh->bad ? sh->bad_detail : "");
		failed = true;
	} else if (sh->received[C_SV2SHM] != want_each || sh->received[C_MEMFD] != want_each) {
		snprintf(why, sizeof(why), "the consumer received %llu sv2shm and %llu memfd-spin messages of %llu "
					   "each",
			 (unsigned long long)sh->received[C_SV2SHM], (unsigned long long)sh->received[C_MEMFD],
			 (unsigned long long)want_each);
		failed = true;
	} else if (rows_failed) {
		snprintf(why, sizeof(why), "out of memory for the report");
		failed = true;
	}
	if (!failed && x.prod_notify[0])
		bench_report_note(&rep, "sv2shm: producer notify \"%s\", consumer notify \"%s\"", x.prod_notify,
				  sh->notify);

out:
	if (failed) {
		fprintf(stderr, "sv2shm-bench paired: FAILED: %s\n", why);
		bench_report_note(&rep, "FAILED: %s", why);
	}
	bench_report_note(&rep, "method: per size one warm-up pair, then %u pairs of a block of %u sv2shm "
				"round trips followed by a block of %u memfd-spin round trips in the same "
				"producer/consumer process pair, each block timed as a whole (block mean = elapsed / "
				"%u, not quantized by the clock's steps) and each pair's ratio = sv2shm's block mean / "
				"memfd-spin's; medians, p99 and quartiles are over the pairs",
			  x.pairs, x.block, x.block, x.block);
	add_target(&rep, &x);
	if (bench_report_print(&rep, opts.json) < 0)
		failed = true;
	bench_report_free(&rep);
	free(means);
	for (unsigned si = 0; si < MAX_SIZES; si++) {
		close_fd(&sv[si][0]);
		close_fd(&sv[si][1]);
	}
	if (x.shm)
		munmap(x.shm, x.shm_len);
	if (x.sh != MAP_FAILED)
		munmap(x.sh, sizeof(struct shared));
	alarm(0);
	return failed ? 1 : 0;
}
