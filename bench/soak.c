/*
 * sv2shm-bench soak: the SIGKILL soak of the multi-process pool.
 *
 * One producer (this process, policy SV2SHM_POOL_WAIT) publishes slices of
 * random size (64 B .. 64 KiB, log-uniform) to every consumer it has not yet
 * seen removed; `--consumers` consumer processes (forked, each on its own
 * SOCK_SEQPACKET socketpair, sv2shm_consumer_new()) verify every byte and
 * release each slice at once or after holding it up to a few ms. Every
 * 20..300 ms (random) one consumer is SIGKILLed and a replacement started
 * (new socketpair, sv2shm_producer_add_consumer(), fork).
 *
 * Each slice carries a header: magic, length, a global slice number, an
 * FNV-1a-64 checksum (over the header and the payload, the checksum field
 * excluded), and one (consumer id, sequence) entry per consumer it is
 * published to — the sequence counts the slices published to that id. The
 * payload is a pseudo-random stream seeded by the slice number, so a
 * consumer that finds a bad checksum can also say which byte changed.
 *
 * A consumer counts a slice
 *   verified  header sane, checksum right, its own id listed, sequence in order
 *             (checked again, byte for byte through the checksum, just before
 *             a held slice is released: a slot reused under a live hold shows);
 *   corrupt   anything else (a bad checksum, a slice not addressed to it, a
 *             sequence that goes backwards, a slice that changed while held);
 *   lost      a gap in its sequence that the producer's own missed count
 *             (sv2shm_consumer_missed(), SV2SHM_LIMIT_SKIP) does not explain;
 *             a surviving consumer also checks at the end that it got every
 *             slice published to it. With the default --max-held (= slots)
 *             no consumer can ever be at its limit, so every gap is a loss.
 *
 * Reclaim time: from just before kill() to the moment the producer takes the
 * removal event of that id (sv2shm_producer_next_event()). The producer
 * drains the event queue after every library call, so each removal is
 * attributed to the call that found it:
 *   wait     sv2shm_buffer_get_writable() slept for room (WAIT) and the
 *            hang-up ended the sleep (the usual case when the pool is full);
 *   process  sv2shm_producer_process(), called after every publish, and in
 *            "paced" stretches after poll() on sv2shm_producer_fd() said so
 *            (an event-loop producer);
 *   publish  sv2shm_producer_publish() found it.
 * Flat-out and paced stretches alternate at random with the kills.
 *
 * At the end the producer stops, the surviving consumers drain, release,
 * report and exit, the producer processes their hang-ups, and the pool must
 * be back to full capacity: stats.live == 0, the slot mask empty, and
 * sv2shm_producer_destroy() must succeed.
 *
 * Robustness: every child has PR_SET_PDEATHSIG(SIGKILL), closes every fd but
 * its socket and has its own alarm(); every wait here is bounded; a hard
 * alarm() in the parent ends a hung run with a message naming the library
 * call it was in.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/ipc.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Parameters                                                                 */
/* ------------------------------------------------------------------------- */

#define DEFAULT_SECONDS 60u
#define DEFAULT_CONSUMERS 4u
#define MAX_CONSUMERS_OPT 16u
#define DEFAULT_SLOTS 16u
#define POOL_CAPACITY (512u << 10) /* 8 x 64 KiB: slots, not bytes, usually bind */
#define WAIT_TIMEOUT_MS 2000      /* producer's WAIT; a timeout is a stall */
#define MIN_SLICE 64u
#define MAX_SLICE 65536u
#define KILL_MIN_MS 20u
#define KILL_MAX_MS 300u
#define HOLD_PCT 30u     /* share of slices a consumer holds before releasing */
#define HOLD_MAX_US 3000u /* longest hold */
#define HOLD_SLOTS 64u   /* a consumer's hold list */
#define PACED_PCT 35u    /* share of kill intervals the producer runs paced */
#define PACE_MAX_US 1000u
#define RECLAIM_LIMIT_US 10000.0 /* p99 target */
#define HARD_SLACK_S 60u /* the parent's hard alarm: seconds + this */
#define END_TIMEOUT_MS 10000u /* consumers draining and exiting at the end */
#define MAX_IDS 31u      /* holder bits 1..31 */
#define DETAIL_LEN 240

/* ------------------------------------------------------------------------- */
/* Slice format                                                               */
/* ------------------------------------------------------------------------- */

#define SOAK_MAGIC 0x4b414f53u /* "SOAK" */

struct soak_hdr {
	uint32_t magic;
	uint16_t nent;  /* entries after the header */
	uint16_t flags; /* 0 */
	uint32_t len;   /* whole slice, header included */
	uint32_t gseq;  /* global slice number */
	uint64_t csum;  /* FNV-1a-64 of bytes [0, 16) and [24, len) */
};
struct soak_ent {
	int32_t id;   /* consumer id (sv2shm_producer_add_consumer()) */
	uint32_t seq; /* slices published to that id before this one */
};
#define HDR_SIZE(n) (sizeof(struct soak_hdr) + (size_t)(n) * sizeof(struct soak_ent))

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

/* FNV-1a over 64-bit words (then the tail bytes): every byte is read. */
static uint64_t fnv1a64(uint64_t h, const uint8_t *p, size_t n)
{
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h ^= w;
		h *= FNV_PRIME;
	}
	while (n--) {
		h ^= *p++;
		h *= FNV_PRIME;
	}
	return h;
}

static uint64_t slice_csum(const uint8_t *p, size_t len)
{
	uint64_t h = fnv1a64(FNV_OFFSET, p, 16);
	return len > 24 ? fnv1a64(h, p + 24, len - 24) : h;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* The payload of slice gseq: a pseudo-random stream (so a changed byte can
 * be located). */
static void fill_payload(uint8_t *p, size_t n, uint32_t gseq, uint64_t seed)
{
	uint64_t s = seed ^ ((uint64_t)gseq << 20) ^ UINT64_C(0x5a5a5a5a);
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w = splitmix64(&s);
		memcpy(p, &w, 8);
	}
	if (n) {
		uint64_t w = splitmix64(&s);
		memcpy(p, &w, n);
	}
}

/* First payload byte that differs from what slice gseq should hold, or -1. */
static long first_bad_byte(const uint8_t *p, size_t n, uint32_t gseq, uint64_t seed, uint8_t *want, uint8_t *got)
{
	uint64_t s = seed ^ ((uint64_t)gseq << 20) ^ UINT64_C(0x5a5a5a5a);
	for (size_t i = 0; i < n; i += 8) {
		uint64_t w = splitmix64(&s);
		uint8_t b[8];
		memcpy(b, &w, 8);
		for (size_t k = 0; k < 8 && i + k < n; k++) {
			if (p[i + k] != b[k]) {
				*want = b[k];
				*got = p[i + k];
				return (long)(i + k);
			}
		}
	}
	return -1;
}

/* ------------------------------------------------------------------------- */
/* What the processes share                                                   */
/* ------------------------------------------------------------------------- */

enum rec_state { REC_FORKED = 0, REC_RUNNING = 1, REC_DONE = 2, REC_FAILED = 3 };

/* One consumer incarnation. Its child writes the counters (single writer,
 * relaxed); the parent reads them once the child is gone. */
struct soak_rec {
	_Atomic uint64_t received;
	_Atomic uint64_t verified;
	_Atomic uint64_t corrupt;
	_Atomic uint64_t lost;
	_Atomic uint64_t missed;  /* sv2shm_consumer_missed() last seen */
	_Atomic uint64_t errors;  /* recv errors other than the end */
	_Atomic uint64_t held_max;
	_Atomic int state;        /* enum rec_state */
	int id;                   /* parent, before fork */
	uint64_t expected;        /* parent, before `stop`: slices published to this id */
	char err[DETAIL_LEN];     /* the first error */
	char corrupt_detail[DETAIL_LEN];
	char lost_detail[DETAIL_LEN];
	char notify[48];
};

struct soak_shared {
	_Atomic int stop; /* parent: the producer has stopped; drain and exit */
	uint64_t seed;
	struct soak_rec rec[];
};

/* ------------------------------------------------------------------------- */
/* Options                                                                    */
/* ------------------------------------------------------------------------- */

struct soak_cfg {
	unsigned seconds;
	unsigned consumers;
	unsigned slots;
	unsigned max_held; /* 0: = slots */
	bool socket_transport;
	uint64_t seed;
	bool seed_set;
};

static int soak_opt(int argc, char **argv, int i, void *ctx)
{
	struct soak_cfg *c = ctx;
	const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--seconds") == 0) {
		if (bench_parse_uint("soak", a, v, 1, 3600, &x) < 0)
			return -1;
		c->seconds = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--consumers") == 0) {
		if (bench_parse_uint("soak", a, v, 1, MAX_CONSUMERS_OPT, &x) < 0)
			return -1;
		c->consumers = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--slots") == 0) {
		if (bench_parse_uint("soak", a, v, 2, SV2SHM_MAX_SLOTS, &x) < 0)
			return -1;
		c->slots = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--max-held") == 0) {
		if (bench_parse_uint("soak", a, v, 1, SV2SHM_MAX_SLOTS, &x) < 0)
			return -1;
		c->max_held = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--socket-transport") == 0) {
		c->socket_transport = true;
		return 1;
	}
	if (strcmp(a, "--seed") == 0) {
		if (bench_parse_uint("soak", a, v, 0, UINT64_MAX, &x) < 0)
			return -1;
		c->seed = x;
		c->seed_set = true;
		return 2;
	}
	return 0;
}

static void soak_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench soak [--seconds N] [--consumers N] [--seed N] [--slots N] [--max-held N]\n"
		"                         [--socket-transport] [--json]\n\n"
		"SIGKILL soak of the multi-process pool: one producer (this process, policy WAIT, wait timeout %d ms)\n"
		"publishes slices of %u B..%u KiB (random, log-uniform) with a header (per-consumer sequence, length,\n"
		"FNV-1a-64 checksum) to every live consumer process; consumers verify every byte and the sequence and\n"
		"release each slice at once or after holding it up to %u ms. Every %u..%u ms one consumer is SIGKILLed\n"
		"and replaced. Reclaim time = kill() to the producer taking the removal event of that consumer.\n\n"
		"  --seconds N    run time, 1..3600 (default %u; the whole run takes about N + 1 s; --quick: 10)\n"
		"  --consumers N  consumer processes, 1..%u (default %u)\n"
		"  --seed N       random seed (default: from the clock; printed in the notes)\n"
		"  --slots N      pool slots, 2..64 (default %u; capacity %u KiB)\n"
		"  --max-held N   per-consumer limit of slots held, with SV2SHM_LIMIT_SKIP (default: = slots, so no\n"
		"                 consumer is ever at its limit and every sequence gap is a loss; smaller values make\n"
		"                 consumers miss slices, accounted with sv2shm_consumer_missed())\n"
		"  --socket-transport  descriptors over the socket instead of the shared ring (the plain fallback)\n"
		"  --json         exactly one JSON object on stdout; the human table goes to stderr\n"
		"Each consumer draws its options: spin 50 us or sleep at once, io_uring or plain syscalls.\n\n"
		"Exit status: 0 when nothing was corrupt or lost, reclaim p99 < %.0f ms and the run had no failure\n"
		"(an unexpected removal, a stall, a consumer error, slots not back at the end); 1 otherwise; 2 usage.\n",
		WAIT_TIMEOUT_MS, MIN_SLICE, MAX_SLICE >> 10, HOLD_MAX_US / 1000u, KILL_MIN_MS, KILL_MAX_MS,
		DEFAULT_SECONDS, MAX_CONSUMERS_OPT, DEFAULT_CONSUMERS, DEFAULT_SLOTS, POOL_CAPACITY >> 10,
		RECLAIM_LIMIT_US / 1000.0);
}

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	return splitmix64(s);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(s) % (hi - lo + 1);
}

static void detail(char *dst, const char *fmt, ...) BENCH_PRINTF(2, 3);
static void detail(char *dst, const char *fmt, ...)
{
	if (dst[0])
		return; /* keep the first */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, DETAIL_LEN, fmt, ap);
	va_end(ap);
}

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* ------------------------------------------------------------------------- */
/* The consumer process                                                       */
/* ------------------------------------------------------------------------- */

struct held {
	struct sv2shm_slice s;
	uint64_t due_ns;
	uint64_t csum;
	uint32_t gseq;
};

struct cons_ctx {
	struct soak_shared *sh;
	struct soak_rec *rec;
	struct sv2shm_consumer *c;
	int id;
	uint64_t seed;
	uint64_t rng;
	uint64_t next_seq; /* the sequence expected next */
	uint64_t received;
	struct held held[HOLD_SLOTS];
	unsigned nheld;
};

static void cons_corrupt(struct cons_ctx *x, const char *fmt, ...) BENCH_PRINTF(2, 3);
static void cons_corrupt(struct cons_ctx *x, const char *fmt, ...)
{
	atomic_fetch_add_explicit(&x->rec->corrupt, 1, memory_order_relaxed);
	if (x->rec->corrupt_detail[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->rec->corrupt_detail, DETAIL_LEN, fmt, ap);
	va_end(ap);
}

/* Describe a checksum mismatch: which payload byte differs. */
static void describe_bad(const uint8_t *p, size_t len, uint32_t gseq, uint64_t seed, char *buf, size_t n)
{
	size_t h = len >= sizeof(struct soak_hdr) ? HDR_SIZE(((const struct soak_hdr *)(const void *)p)->nent) : len;
	if (h > len)
		h = len;
	uint8_t want = 0, got = 0;
	long off = first_bad_byte(p + h, len - h, gseq, seed, &want, &got);
	if (off >= 0)
		snprintf(buf, n, "first changed payload byte at offset %ld of the slice: 0x%02x, want 0x%02x",
			 off + (long)h, got, want);
	else
		snprintf(buf, n, "payload as expected: the header changed");
}

/* Release a slice, after checking its bytes did not change while held. */
static void cons_release(struct cons_ctx *x, struct held *h)
{
	if (h->s.len >= sizeof(struct soak_hdr)) {
		uint64_t now = slice_csum(h->s.data, h->s.len);
		if (now != h->csum) {
			char why[120];
			describe_bad(h->s.data, h->s.len, h->gseq, x->seed, why, sizeof(why));
			cons_corrupt(x, "id %d: slice %u (%zu B, slot %u) CHANGED WHILE HELD: checksum %016llx at receipt, "
					"%016llx at release; %s",
				     x->id, h->gseq, h->s.len, (unsigned)h->s._slot, (unsigned long long)h->csum,
				     (unsigned long long)now, why);
			/* counted as received and verified already: take it back */
			atomic_fetch_sub_explicit(&x->rec->verified, 1, memory_order_relaxed);
		}
	}
	int r = sv2shm_slice_release(&h->s);
	if (r < 0) {
		atomic_fetch_add_explicit(&x->rec->errors, 1, memory_order_relaxed);
		detail(x->rec->err, "id %d: sv2shm_slice_release(slice %u) returned %d (%s)", x->id, h->gseq, r,
		       sv2shm_strerror(r));
	}
}

static void release_due(struct cons_ctx *x, uint64_t now, bool all)
{
	unsigned k = 0;
	for (unsigned i = 0; i < x->nheld; i++) {
		if (all || x->held[i].due_ns <= now)
			cons_release(x, &x->held[i]);
		else
			x->held[k++] = x->held[i];
	}
	x->nheld = k;
}

/* Check one received slice; hold it or release it. */
static void cons_handle(struct cons_ctx *x, struct sv2shm_slice *s)
{
	struct soak_rec *rec = x->rec;
	x->received++;
	atomic_store_explicit(&rec->received, x->received, memory_order_relaxed);
	bool ok = true;
	uint32_t gseq = 0;
	uint64_t csum = 0;
	if (sv2shm_slice_kind(s) != SV2SHM_SLICE_SHARED) {
		cons_corrupt(x, "id %d: slice of kind %d (want SHARED = %d), %zu B", x->id, sv2shm_slice_kind(s),
			     SV2SHM_SLICE_SHARED, s->len);
		ok = false;
	}
	struct soak_hdr h;
	if (ok && s->len < sizeof(h)) {
		cons_corrupt(x, "id %d: slice of %zu B, shorter than the header", x->id, s->len);
		ok = false;
	}
	if (ok) {
		memcpy(&h, s->data, sizeof(h));
		gseq = h.gseq;
		if (h.magic != SOAK_MAGIC || h.len != s->len || h.nent > MAX_IDS || HDR_SIZE(h.nent) > s->len) {
			cons_corrupt(x, "id %d: bad header: magic %08x len %u (slice %zu B) nent %u, slot %u", x->id,
				     h.magic, h.len, s->len, (unsigned)h.nent, (unsigned)s->_slot);
			ok = false;
		}
	}
	if (ok) {
		csum = slice_csum(s->data, s->len);
		if (csum != h.csum) {
			char why[120];
			describe_bad(s->data, s->len, gseq, x->seed, why, sizeof(why));
			cons_corrupt(x, "id %d: slice %u (%zu B, slot %u): checksum %016llx, header says %016llx; %s", x->id,
				     gseq, s->len, (unsigned)s->_slot, (unsigned long long)csum,
				     (unsigned long long)h.csum, why);
			ok = false;
		}
	}
	if (ok) {
		const uint8_t *e = s->data + sizeof(h);
		bool found = false;
		uint32_t seq = 0;
		for (unsigned i = 0; i < h.nent; i++) {
			struct soak_ent en;
			memcpy(&en, e + i * sizeof(en), sizeof(en));
			if (en.id == x->id) {
				found = true;
				seq = en.seq;
				break;
			}
		}
		if (!found) {
			cons_corrupt(x, "id %d: slice %u (slot %u) is not addressed to this consumer (%u ids listed)", x->id,
				     gseq, (unsigned)s->_slot, (unsigned)h.nent);
			ok = false;
		} else if (seq < x->next_seq) {
			cons_corrupt(x, "id %d: slice %u: sequence %u after %llu (duplicate or out of order)", x->id, gseq,
				     seq, (unsigned long long)x->next_seq - 1);
			ok = false;
		} else {
			if (seq > x->next_seq) {
				/* Slices 0..seq-1 were either received (x->received - 1
				 * of them) or skipped (counted in missed before this
				 * one was published; missed only grows). */
				uint64_t missed = sv2shm_consumer_missed(x->c);
				atomic_store_explicit(&rec->missed, missed, memory_order_relaxed);
				uint64_t before = x->received - 1;
				if ((uint64_t)seq > before + missed) {
					uint64_t lost = (uint64_t)seq - before - missed;
					uint64_t cur = atomic_load_explicit(&rec->lost, memory_order_relaxed);
					if (lost > cur) {
						atomic_store_explicit(&rec->lost, lost, memory_order_relaxed);
						detail(rec->lost_detail,
						       "id %d: slice %u has sequence %u, expected %llu (%llu received, %llu "
						       "missed as counted by the producer)",
						       x->id, gseq, seq, (unsigned long long)x->next_seq,
						       (unsigned long long)before, (unsigned long long)missed);
					}
				}
			}
			x->next_seq = (uint64_t)seq + 1;
		}
	}
	if (ok)
		atomic_fetch_add_explicit(&rec->verified, 1, memory_order_relaxed);
	/* Hold it a while, or release it now. */
	if (ok && x->nheld < HOLD_SLOTS && rng_range(&x->rng, 1, 100) <= HOLD_PCT) {
		struct held *hd = &x->held[x->nheld++];
		hd->s = *s;
		hd->csum = csum;
		hd->gseq = gseq;
		hd->due_ns = bench_now_ns() + rng_range(&x->rng, 0, HOLD_MAX_US) * 1000u;
		if (x->nheld > atomic_load_explicit(&rec->held_max, memory_order_relaxed))
			atomic_store_explicit(&rec->held_max, x->nheld, memory_order_relaxed);
		memset(s, 0, sizeof(*s));
		return;
	}
	int r = sv2shm_slice_release(s);
	if (r < 0) {
		atomic_fetch_add_explicit(&rec->errors, 1, memory_order_relaxed);
		detail(rec->err, "id %d: sv2shm_slice_release(slice %u) returned %d (%s)", x->id, gseq, r,
		       sv2shm_strerror(r));
	}
}

/* In the forked child: never returns. */
static void consumer_main(struct soak_shared *sh, struct soak_rec *rec, int sock, pid_t parent, unsigned seconds,
			  uint64_t rng_seed)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	alarm(seconds + 2 * HARD_SLACK_S); /* the parent's alarm comes first */
	/* A consumer process holds its socket end and nothing of the parent's
	 * (the producer's epoll fd, memfds, other consumers' sockets). */
	if (sock > 3)
		close_range(3, (unsigned)sock - 1, 0);
	close_range((unsigned)sock + 1, ~0u, 0);

	struct cons_ctx x;
	memset(&x, 0, sizeof(x));
	x.sh = sh;
	x.rec = rec;
	x.id = rec->id;
	x.seed = sh->seed;
	x.rng = rng_seed;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	/* Half spin 50 us before sleeping (the default), half sleep at once;
	 * a quarter use plain syscalls instead of io_uring. */
	uint64_t pick = rng_next(&x.rng);
	co.spin_us = pick & 1 ? SV2SHM_SPIN_NONE : 0;
	co.no_io_uring = (pick & 6) == 0;
	int r = sv2shm_consumer_new(sock, &co, &x.c);
	if (r < 0) {
		detail(rec->err, "id %d: sv2shm_consumer_new() returned %d (%s)", x.id, r, sv2shm_strerror(r));
		atomic_store_explicit(&rec->state, REC_FAILED, memory_order_release);
		_exit(1);
	}
	snprintf(rec->notify, sizeof(rec->notify), "%s", sv2shm_consumer_notify_name(x.c));
	atomic_store_explicit(&rec->state, REC_RUNNING, memory_order_release);

	bool gone = false;
	for (;;) {
		uint64_t now = bench_now_ns();
		release_due(&x, now, false);
		bool stop = atomic_load_explicit(&sh->stop, memory_order_acquire);
		int timeout = 20;
		if (stop) {
			timeout = 0;
		} else if (x.nheld) {
			uint64_t due = x.held[0].due_ns;
			for (unsigned i = 1; i < x.nheld; i++)
				if (x.held[i].due_ns < due)
					due = x.held[i].due_ns;
			timeout = due <= now ? 0 : (int)((due - now + 999999u) / 1000000u);
		}
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(x.c, &s, timeout);
		if (r == 1) {
			cons_handle(&x, &s);
			continue;
		}
		if (r == 0) {
			if (stop)
				break; /* drained */
			continue;
		}
		if (r == -EPIPE) {
			gone = true;
			if (!stop)
				detail(rec->err, "id %d: sv2shm_consumer_recv() returned -EPIPE (producer gone or this "
						 "consumer removed) before the end of the run",
				       x.id);
			break;
		}
		atomic_fetch_add_explicit(&rec->errors, 1, memory_order_relaxed);
		detail(rec->err, "id %d: sv2shm_consumer_recv() returned %d (%s)", x.id, r, sv2shm_strerror(r));
	}
	release_due(&x, 0, true);
	/* The end: every slice published to this id was received or missed. */
	uint64_t missed = sv2shm_consumer_missed(x.c);
	atomic_store_explicit(&rec->missed, missed, memory_order_relaxed);
	if (!gone || atomic_load_explicit(&sh->stop, memory_order_acquire)) {
		uint64_t exp = rec->expected;
		if (exp > x.received + missed) {
			uint64_t tail = exp - x.received - missed;
			uint64_t cur = atomic_load_explicit(&rec->lost, memory_order_relaxed);
			if (tail > cur) {
				atomic_store_explicit(&rec->lost, tail, memory_order_relaxed);
				detail(rec->lost_detail,
				       "id %d: at the end, %llu slices published to it, %llu received, %llu missed as "
				       "counted by the producer",
				       x.id, (unsigned long long)exp, (unsigned long long)x.received,
				       (unsigned long long)missed);
			}
		} else if (exp < x.received) {
			cons_corrupt(&x, "id %d: received %llu slices, only %llu were published to it", x.id,
				     (unsigned long long)x.received, (unsigned long long)exp);
		}
	}
	r = sv2shm_consumer_flush(x.c);
	if (r < 0)
		detail(rec->err, "id %d: sv2shm_consumer_flush() returned %d (%s)", x.id, r, sv2shm_strerror(r));
	r = sv2shm_consumer_free(x.c);
	if (r < 0) {
		detail(rec->err, "id %d: sv2shm_consumer_free() returned %d (%s)", x.id, r, sv2shm_strerror(r));
		atomic_store_explicit(&rec->state, REC_FAILED, memory_order_release);
		_exit(1);
	}
	bool bad = rec->err[0] != '\0';
	atomic_store_explicit(&rec->state, bad ? REC_FAILED : REC_DONE, memory_order_release);
	_exit(bad ? 1 : 0);
}

/* ------------------------------------------------------------------------- */
/* The producer (this process)                                                */
/* ------------------------------------------------------------------------- */

enum path { PATH_WAIT, PATH_PROCESS, PATH_PUBLISH, PATH_END, NPATHS };
static const char *const path_names[NPATHS] = {"wait", "process", "publish", "end"};

/* One consumer incarnation, as the producer sees it. */
struct cons {
	int id;
	pid_t pid;
	size_t rec;        /* index in soak_shared.rec */
	uint32_t seq;      /* slices published to it so far */
	bool killed;       /* we sent SIGKILL */
	bool removed;      /* the producer reported its removal */
	bool reaped;
	int status;        /* wait status, once reaped */
	uint64_t t_kill;   /* just before kill() */
	_Atomic uint64_t t_exit; /* its pidfd became readable (the death watcher; 0: not seen) */
	uint64_t t_seen;   /* removal event taken */
	int path;          /* where the removal was seen */
	int reason;
	unsigned held;     /* slots the event says it held */
};

struct soak {
	struct soak_cfg cfg;
	struct bench_report *rep;
	struct soak_shared *sh;
	size_t sh_len;
	size_t nrec_max;
	struct sv2shm_producer *p;
	struct sv2shm_buffer *b;
	pid_t parent;
	uint64_t rng;
	struct cons *cons; /* every incarnation, in order */
	size_t ncons;
	size_t active[MAX_IDS]; /* incarnations the producer still publishes to */
	unsigned nactive;
	bool stopping;
	/* results */
	uint64_t published, deliveries, publish_missing, stalls, unexpected, esrch_retries, stale_held, spawn_fail;
	uint64_t kills;
	uint64_t removed_by_path[NPATHS];
	uint64_t paced_intervals, flat_intervals;
	char fail[DETAIL_LEN]; /* the first producer-side failure */
	char prod_notify[48];
};

static void soak_fail(struct soak *S, const char *fmt, ...) BENCH_PRINTF(2, 3);
static void soak_fail(struct soak *S, const char *fmt, ...)
{
	char buf[DETAIL_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (!S->fail[0])
		snprintf(S->fail, sizeof(S->fail), "%s", buf);
	bench_report_note(S->rep, "FAILURE: %s", buf);
}

static struct cons *find_cons(struct soak *S, int id)
{
	for (size_t i = S->ncons; i-- > 0;)
		if (S->cons[i].id == id)
			return &S->cons[i];
	return NULL;
}

static void active_remove(struct soak *S, size_t ci)
{
	for (unsigned k = 0; k < S->nactive; k++) {
		if (S->active[k] == ci) {
			S->active[k] = S->active[--S->nactive];
			return;
		}
	}
}

/* Take every pending removal event; `path` is the call that just returned. */
static void drain_events(struct soak *S, int path)
{
	struct sv2shm_producer_event ev;
	int r;
	while ((r = sv2shm_producer_next_event(S->p, &ev)) == 1) {
		uint64_t now = bench_now_ns();
		struct cons *c = find_cons(S, ev.id);
		if (!c) {
			soak_fail(S, "removal event for id %d, which add_consumer never returned (reason %d, held %u)",
				  ev.id, ev.reason, (unsigned)ev.held);
			continue;
		}
		if (c->removed) {
			soak_fail(S, "second removal event for id %d (reason %d, held %u)", ev.id, ev.reason,
				  (unsigned)ev.held);
			continue;
		}
		c->removed = true;
		c->t_seen = now;
		c->path = path;
		c->reason = ev.reason;
		c->held = ev.held;
		active_remove(S, (size_t)(c - S->cons));
		S->removed_by_path[path]++;
		if (c->killed && ev.reason != SV2SHM_EVENT_HANGUP)
			bench_report_note(S->rep, "id %d (killed) removed with reason %d, not HANGUP (%d)", ev.id,
					  ev.reason, SV2SHM_EVENT_HANGUP);
		if (!c->killed && !S->stopping) {
			S->unexpected++;
			const struct soak_rec *rec = &S->sh->rec[c->rec];
			soak_fail(S, "id %d (pid %d, not killed) removed during the run: reason %d, held %u; its own "
				     "report: %s",
				  ev.id, (int)c->pid, ev.reason, (unsigned)ev.held, rec->err[0] ? rec->err : "no error");
		}
		/* A removed id is stale: nothing may be counted as held by it. */
		int h = sv2shm_producer_held(S->p, ev.id);
		if (h != -ESRCH) {
			S->stale_held++;
			soak_fail(S, "sv2shm_producer_held(%d) after its removal returned %d, want -ESRCH", ev.id, h);
		}
	}
	if (r < 0)
		soak_fail(S, "sv2shm_producer_next_event() returned %d (%s)", r, sv2shm_strerror(r));
}

/* New consumer: socketpair, add_consumer, fork. Returns 0 or -1 (noted). */
static int spawn(struct soak *S)
{
	if (S->ncons >= S->nrec_max) {
		soak_fail(S, "out of consumer records (%zu)", S->nrec_max);
		return -1;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		soak_fail(S, "socketpair: %s", strerror(errno));
		return -1;
	}
	bench_where = "sv2shm_producer_add_consumer";
	int id = sv2shm_producer_add_consumer(S->p, sv[0]); /* owns sv[0] now */
	if (id <= 0) {
		close(sv[1]);
		S->spawn_fail++;
		soak_fail(S, "sv2shm_producer_add_consumer() returned %d (%s) with %u consumers attached", id,
			  sv2shm_strerror(id), S->nactive);
		return -1;
	}
	if (find_cons(S, id)) {
		soak_fail(S, "sv2shm_producer_add_consumer() returned id %d a second time (ids are never reused)", id);
	}
	size_t ci = S->ncons++;
	struct cons *c = &S->cons[ci];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->rec = ci;
	c->path = -1;
	struct soak_rec *rec = &S->sh->rec[ci];
	rec->id = id;
	uint64_t child_seed = rng_next(&S->rng);
	fflush(stdout);
	fflush(stderr);
	bench_where = "fork";
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[1]);
		soak_fail(S, "fork: %s", strerror(errno));
		/* the producer sees the hang-up of sv[1] and removes the id */
		c->killed = true; /* not a surprise */
		c->t_kill = bench_now_ns();
		return -1;
	}
	if (pid == 0)
		consumer_main(S->sh, rec, sv[1], S->parent, S->cfg.seconds, child_seed);
	close(sv[1]); /* only the child holds it: its death is a hang-up */
	c->pid = pid;
	S->active[S->nactive++] = ci;
	return 0;
}

/*
 * The death watcher: a thread that polls the pidfds of killed consumers and
 * notes when each process is gone (its fds closed), so the reclaim time
 * splits into the kernel's part (kill() to death) and the producer's part
 * (death to the removal event). It touches no sv2shm object.
 */
struct death_msg {
	struct cons *c;
	int pidfd;
};

struct watcher {
	int pipe[2]; /* kill_one() -> thread */
	pthread_t thread;
	bool running;
};

static void *watcher_main(void *arg)
{
	struct watcher *w = arg;
	struct pollfd pf[65];
	struct cons *who[65];
	nfds_t n = 1;
	bool eof = false;
	pf[0].fd = w->pipe[0];
	pf[0].events = POLLIN;
	while (!eof || n > 1) {
		pf[0].fd = eof ? -1 : w->pipe[0];
		int r = poll(pf, n, eof ? 5000 : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* error, or 5 s with pidfds still unreadable after the end */
		uint64_t now = bench_now_ns();
		for (nfds_t i = 1; i < n;) {
			if (pf[i].revents) {
				atomic_store_explicit(&who[i]->t_exit, now, memory_order_relaxed);
				close(pf[i].fd);
				pf[i] = pf[n - 1];
				who[i] = who[n - 1];
				n--;
			} else {
				i++;
			}
		}
		if (!eof && (pf[0].revents & (POLLIN | POLLHUP))) {
			struct death_msg m;
			ssize_t k = read(w->pipe[0], &m, sizeof(m));
			if (k == (ssize_t)sizeof(m) && n < 65) {
				pf[n].fd = m.pidfd;
				pf[n].events = POLLIN;
				pf[n].revents = 0;
				who[n++] = m.c;
			} else if (k == (ssize_t)sizeof(m)) {
				close(m.pidfd);
			} else if (k == 0) {
				eof = true;
			}
		}
		for (nfds_t i = 0; i < n; i++)
			pf[i].revents = 0;
	}
	for (nfds_t i = 1; i < n; i++)
		close(pf[i].fd);
	return NULL;
}

static void watcher_start(struct watcher *w)
{
	memset(w, 0, sizeof(*w));
	w->pipe[0] = w->pipe[1] = -1;
	if (pipe2(w->pipe, O_CLOEXEC) != 0)
		return;
	if (pthread_create(&w->thread, NULL, watcher_main, w) != 0) {
		close(w->pipe[0]);
		close(w->pipe[1]);
		w->pipe[0] = w->pipe[1] = -1;
		return;
	}
	w->running = true;
}

static void watcher_stop(struct watcher *w)
{
	if (!w->running)
		return;
	close(w->pipe[1]);
	pthread_join(w->thread, NULL);
	close(w->pipe[0]);
	w->running = false;
}

static struct watcher g_watcher;

/* SIGKILL a random running consumer and start its replacement. */
static void kill_one(struct soak *S)
{
	size_t cand[MAX_IDS];
	unsigned n = 0;
	for (unsigned k = 0; k < S->nactive; k++) {
		struct cons *c = &S->cons[S->active[k]];
		if (!c->killed && c->pid > 0)
			cand[n++] = S->active[k];
	}
	if (n) {
		struct cons *c = &S->cons[cand[rng_next(&S->rng) % n]];
		int pidfd = g_watcher.running ? (int)syscall(SYS_pidfd_open, c->pid, 0) : -1;
		c->killed = true;
		c->t_kill = bench_now_ns();
		if (kill(c->pid, SIGKILL) != 0)
			soak_fail(S, "kill(%d, SIGKILL): %s", (int)c->pid, strerror(errno));
		S->kills++;
		if (pidfd >= 0) {
			struct death_msg m = {.c = c, .pidfd = pidfd};
			if (write(g_watcher.pipe[1], &m, sizeof(m)) != (ssize_t)sizeof(m))
				close(pidfd);
		}
	}
	/* Keep `consumers` running (not counting the killed ones the producer
	 * has not yet removed). */
	unsigned running = 0;
	for (unsigned k = 0; k < S->nactive; k++)
		running += !S->cons[S->active[k]].killed;
	while (running < S->cfg.consumers && S->nactive < MAX_IDS) {
		if (spawn(S) < 0)
			break;
		running++;
	}
}

static void reap(struct soak *S, bool block)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
		if (pid <= 0)
			return;
		for (size_t i = 0; i < S->ncons; i++) {
			struct cons *c = &S->cons[i];
			if (c->pid != pid)
				continue;
			c->reaped = true;
			c->status = status;
			if (!c->killed && !S->stopping) {
				const struct soak_rec *rec = &S->sh->rec[c->rec];
				char st[64];
				if (WIFSIGNALED(status))
					snprintf(st, sizeof(st), "killed by signal %d", WTERMSIG(status));
				else
					snprintf(st, sizeof(st), "exit %d", WEXITSTATUS(status));
				soak_fail(S, "consumer id %d (pid %d) ended by itself during the run (%s): %s", c->id, (int)pid,
					  st, rec->err[0] ? rec->err : "no error recorded");
			}
			break;
		}
		if (block)
			return;
	}
}

/* Slice length: log-uniform in [MIN_SLICE, MAX_SLICE]. */
static size_t draw_len(struct soak *S)
{
	unsigned octave = (unsigned)rng_range(&S->rng, 6, 15); /* 64 B .. 32 KiB */
	size_t lo = (size_t)1 << octave;
	size_t len = lo + (size_t)rng_range(&S->rng, 0, lo);
	return len > MAX_SLICE ? MAX_SLICE : len;
}

/* Write, take and publish one slice to every active id. Returns 0, or -1 on
 * a producer-side failure that ends the run. */
static int publish_one(struct soak *S)
{
	unsigned n = S->nactive;
	if (!n)
		return 0;
	size_t len = draw_len(S);
	if (len < HDR_SIZE(n))
		len = HDR_SIZE(n);
	bench_where = "sv2shm_buffer_get_writable (policy WAIT)";
	uint8_t *w = sv2shm_buffer_get_writable(S->b, len);
	bench_where = "main loop";
	drain_events(S, PATH_WAIT);
	if (!w) {
		int e = sv2shm_buffer_last_error(S->b);
		if (e == -ETIMEDOUT) {
			S->stalls++;
			char map[SV2SHM_MAX_SLOTS + 1] = "";
			sv2shm_pool_slot_map(sv2shm_producer_pool(S->p), map, sizeof(map));
			char held[200] = "";
			size_t o = 0;
			for (unsigned k = 0; k < S->nactive && o < sizeof(held); k++) {
				const struct cons *c = &S->cons[S->active[k]];
				o += (size_t)snprintf(held + o, sizeof(held) - o, "%sid %d%s holds %d", k ? ", " : "", c->id,
						      c->killed ? " (killed)" : "", sv2shm_producer_held(S->p, c->id));
			}
			soak_fail(S, "STALL: get_writable(%zu) waited %d ms for room (-ETIMEDOUT); slot map %s; %s", len,
				  WAIT_TIMEOUT_MS, map, held);
			/* the bytes written so far are kept: drop them */
			struct sv2shm_slice junk;
			if (sv2shm_buffer_get_data_owned(S->b, &junk) == 0)
				sv2shm_slice_release(&junk);
			return 0;
		}
		soak_fail(S, "get_writable(%zu) returned NULL, last error %d (%s)", len, e, sv2shm_strerror(e));
		return -1;
	}
	/* Header: every id the slice goes to, with its sequence. */
	n = S->nactive; /* the wait may have removed some */
	if (HDR_SIZE(n) > len)
		n = (unsigned)((len - sizeof(struct soak_hdr)) / sizeof(struct soak_ent));
	struct soak_hdr h = {.magic = SOAK_MAGIC, .nent = (uint16_t)n, .len = (uint32_t)len,
			     .gseq = (uint32_t)S->published};
	int ids[MAX_IDS];
	for (unsigned k = 0; k < n; k++) {
		struct cons *c = &S->cons[S->active[k]];
		struct soak_ent en = {.id = c->id, .seq = c->seq++};
		memcpy(w + sizeof(h) + k * sizeof(en), &en, sizeof(en));
		ids[k] = c->id;
	}
	fill_payload(w + HDR_SIZE(n), len - HDR_SIZE(n), h.gseq, S->sh->seed);
	memcpy(w, &h, sizeof(h));
	h.csum = slice_csum(w, len);
	memcpy(w + offsetof(struct soak_hdr, csum), &h.csum, sizeof(h.csum));
	struct sv2shm_slice s;
	int r = sv2shm_buffer_get_data_owned(S->b, &s);
	if (r < 0 || s.len != len) {
		soak_fail(S, "get_data_owned() returned %d, %zu B (wrote %zu)", r, s.len, len);
		return -1;
	}
	for (unsigned attempt = 0;; attempt++) {
		bench_where = "sv2shm_producer_publish";
		r = sv2shm_producer_publish(S->p, &s, ids, n, 0);
		bench_where = "main loop";
		drain_events(S, PATH_PUBLISH);
		if (r != -ESRCH || attempt > MAX_IDS)
			break;
		/* An id was removed since we listed it (its event is taken now):
		 * publish to the others. */
		S->esrch_retries++;
		unsigned k = 0;
		for (unsigned i = 0; i < n; i++) {
			const struct cons *c = find_cons(S, ids[i]);
			if (c && !c->removed)
				ids[k++] = ids[i];
		}
		n = k;
		if (!n) {
			sv2shm_slice_release(&s);
			return 0;
		}
	}
	if (r < 0) {
		int rr = sv2shm_slice_release(&s);
		soak_fail(S, "sv2shm_producer_publish(%u ids) returned %d (%s) (then slice release: %d)", n, r,
			  sv2shm_strerror(r), rr);
		return -1;
	}
	if (s._kind != SV2SHM_SLICE_NONE)
		soak_fail(S, "sv2shm_producer_publish() returned %d but left the slice live (kind %d)", r, s._kind);
	S->published++;
	S->deliveries += n - (unsigned)r;
	S->publish_missing += (unsigned)r;
	return 0;
}

/* The run itself. Returns 0, or -1 when it had to stop early. */
static int soak_loop(struct soak *S)
{
	const uint64_t t0 = bench_now_ns();
	const uint64_t t_end = t0 + (uint64_t)S->cfg.seconds * 1000000000u;
	uint64_t next_kill = t0 + rng_range(&S->rng, KILL_MIN_MS, KILL_MAX_MS) * 1000000u;
	uint64_t next_progress = t0 + 5000000000u;
	bool paced = false;
	int pfd = sv2shm_producer_fd(S->p);
	for (;;) {
		uint64_t now = bench_now_ns();
		if (now >= t_end)
			break;
		if (now >= next_kill) {
			kill_one(S);
			next_kill = bench_now_ns() + rng_range(&S->rng, KILL_MIN_MS, KILL_MAX_MS) * 1000000u;
			paced = rng_range(&S->rng, 1, 100) <= PACED_PCT;
			if (paced)
				S->paced_intervals++;
			else
				S->flat_intervals++;
		}
		if (now >= next_progress) {
			bench_progress("soak %3.0f s: %llu kills, %llu published, %llu removals seen\n",
				       (double)(now - t0) / 1e9, (unsigned long long)S->kills,
				       (unsigned long long)S->published,
				       (unsigned long long)(S->removed_by_path[PATH_WAIT] + S->removed_by_path[PATH_PROCESS] +
							    S->removed_by_path[PATH_PUBLISH]));
			next_progress += 5000000000u;
		}
		reap(S, false);
		if (publish_one(S) < 0)
			return -1;
		if (paced) {
			/* An event-loop producer: poll the producer's fd a while,
			 * process when it says so. */
			struct pollfd pf = {.fd = pfd, .events = POLLIN};
			int ms = (int)(rng_range(&S->rng, 0, PACE_MAX_US) / 1000u);
			bench_where = "poll(sv2shm_producer_fd)";
			int pr = poll(&pf, 1, ms);
			if (pr == 0 && ms == 0)
				sleep_us((unsigned)rng_range(&S->rng, 100, PACE_MAX_US));
		}
		bench_where = "sv2shm_producer_process";
		int r = sv2shm_producer_process(S->p);
		bench_where = "main loop";
		if (r < 0)
			soak_fail(S, "sv2shm_producer_process() returned %d (%s)", r, sv2shm_strerror(r));
		drain_events(S, PATH_PROCESS);
	}
	return 0;
}

/* The end: stop, let the survivors drain and exit, take their hang-ups,
 * check the pool is whole again. */
static void soak_end(struct soak *S, struct sv2shm_pool_stats *st, int *destroy_rc)
{
	S->stopping = true;
	bench_where = "sv2shm_producer_flush";
	sv2shm_producer_flush(S->p);
	for (size_t i = 0; i < S->ncons; i++)
		S->sh->rec[S->cons[i].rec].expected = S->cons[i].seq;
	atomic_store_explicit(&S->sh->stop, 1, memory_order_release);
	/* Wait for every child; take hang-ups meanwhile. */
	uint64_t deadline = bench_now_ns() + (uint64_t)END_TIMEOUT_MS * 1000000u;
	for (;;) {
		reap(S, false);
		bench_where = "sv2shm_producer_process (end)";
		sv2shm_producer_process(S->p);
		drain_events(S, PATH_END);
		size_t left = 0;
		for (size_t i = 0; i < S->ncons; i++)
			left += S->cons[i].pid > 0 && !S->cons[i].reaped;
		if (!left)
			break;
		if (bench_now_ns() > deadline) {
			for (size_t i = 0; i < S->ncons; i++) {
				struct cons *c = &S->cons[i];
				if (c->pid > 0 && !c->reaped) {
					soak_fail(S, "consumer id %d (pid %d) did not exit within %u ms of the stop: killed", c->id,
						  (int)c->pid, END_TIMEOUT_MS);
					kill(c->pid, SIGKILL);
				}
			}
			bench_where = "waitpid (end)";
			for (size_t i = 0; i < S->ncons; i++)
				if (S->cons[i].pid > 0 && !S->cons[i].reaped)
					reap(S, true);
			break;
		}
		bench_where = "poll(sv2shm_producer_fd) (end)";
		struct pollfd pf = {.fd = sv2shm_producer_fd(S->p), .events = POLLIN};
		poll(&pf, 1, 5);
	}
	/* Every consumer is gone: the producer must remove all of them. */
	deadline = bench_now_ns() + 2000000000u;
	for (;;) {
		bench_where = "sv2shm_producer_process (end)";
		sv2shm_producer_process(S->p);
		drain_events(S, PATH_END);
		if (!S->nactive || bench_now_ns() > deadline)
			break;
		struct pollfd pf = {.fd = sv2shm_producer_fd(S->p), .events = POLLIN};
		poll(&pf, 1, 5);
	}
	for (unsigned k = 0; k < S->nactive; k++) {
		const struct cons *c = &S->cons[S->active[k]];
		soak_fail(S, "id %d (%s, pid %d) exited but the producer never reported its removal (2 s of "
			     "sv2shm_producer_process())",
			  c->id, c->killed ? "killed" : "survivor", (int)c->pid);
	}
	bench_where = "end checks";
	memset(st, 0, sizeof(*st));
	sv2shm_pool_stats(sv2shm_producer_pool(S->p), st);
	if (st->live != 0 || st->mask != 0) {
		char map[SV2SHM_MAX_SLOTS + 1] = "";
		sv2shm_pool_slot_map(sv2shm_producer_pool(S->p), map, sizeof(map));
		soak_fail(S, "LEAK: with every consumer gone and removed, the pool has %llu live slices, mask %#llx, "
			     "slot map %s",
			  (unsigned long long)st->live, (unsigned long long)st->mask, map);
	}
	uint64_t dropped = sv2shm_producer_events_dropped(S->p);
	if (dropped)
		soak_fail(S, "%llu removal events dropped (queue full)", (unsigned long long)dropped);
	*destroy_rc = sv2shm_producer_destroy(S->p);
	if (*destroy_rc < 0)
		soak_fail(S, "sv2shm_producer_destroy() returned %d (%s)", *destroy_rc, sv2shm_strerror(*destroy_rc));
	else
		S->p = NULL;
}

/* ------------------------------------------------------------------------- */
/* Results                                                                    */
/* ------------------------------------------------------------------------- */

static double us_of(double ns)
{
	return ns / 1000.0;
}

static void report_results(struct soak *S, double seconds, const struct sv2shm_pool_stats *st, bool *failed)
{
	struct bench_report *rep = S->rep;
	uint64_t received = 0, verified = 0, corrupt = 0, lost = 0, missed = 0, errors = 0;
	uint64_t s_received = 0, s_verified = 0, s_corrupt = 0, s_lost = 0, survivors = 0, reported = 0;
	const char *first_corrupt = NULL, *first_lost = NULL, *first_err = NULL;
	for (size_t i = 0; i < S->ncons; i++) {
		const struct cons *c = &S->cons[i];
		const struct soak_rec *r = &S->sh->rec[c->rec];
		uint64_t rc = atomic_load(&r->received), vf = atomic_load(&r->verified), co = atomic_load(&r->corrupt),
			 lo = atomic_load(&r->lost);
		received += rc;
		verified += vf;
		corrupt += co;
		lost += lo;
		missed += atomic_load(&r->missed);
		errors += atomic_load(&r->errors);
		if (co && !first_corrupt)
			first_corrupt = r->corrupt_detail;
		if (lo && !first_lost)
			first_lost = r->lost_detail;
		if (r->err[0] && !first_err && !c->killed)
			first_err = r->err;
		if (!c->killed) {
			survivors++;
			s_received += rc;
			s_verified += vf;
			s_corrupt += co;
			s_lost += lo;
			int stt = atomic_load(&r->state);
			reported += stt == REC_DONE;
			if (stt != REC_DONE && c->pid > 0)
				soak_fail(S, "survivor id %d (pid %d) did not report a clean exit (state %d, wait status %#x): %s",
					  c->id, (int)c->pid, stt, c->status, r->err[0] ? r->err : "no error recorded");
		}
	}

	/* Reclaim times, overall and per path. */
	uint64_t *all = calloc(S->ncons + 1, sizeof(uint64_t));
	uint64_t *per = calloc(S->ncons + 1, sizeof(uint64_t));
	size_t nall = 0, unreclaimed = 0;
	uint64_t held_sum = 0, held_max = 0;
	struct bench_stats path_st[NPATHS];
	size_t path_n[NPATHS] = {0};
	if (all && per) {
		for (size_t i = 0; i < S->ncons; i++) {
			const struct cons *c = &S->cons[i];
			if (!c->killed || c->pid <= 0)
				continue;
			if (!c->removed) {
				unreclaimed++;
				continue;
			}
			all[nall++] = c->t_seen >= c->t_kill ? c->t_seen - c->t_kill : 0;
			held_sum += c->held;
			if (c->held > held_max)
				held_max = c->held;
		}
		for (int pth = 0; pth < NPATHS; pth++) {
			size_t n = 0;
			for (size_t i = 0; i < S->ncons; i++) {
				const struct cons *c = &S->cons[i];
				if (c->killed && c->pid > 0 && c->removed && c->path == pth)
					per[n++] = c->t_seen >= c->t_kill ? c->t_seen - c->t_kill : 0;
			}
			path_n[pth] = n;
			bench_stats_compute(per, n, &path_st[pth]);
		}
	}
	struct bench_stats rs;
	bench_stats_compute(all, nall, &rs);
	double p50 = nall ? us_of(rs.median_ns) : NAN, p99 = nall ? us_of(rs.p99_ns) : NAN,
	       pmax = nall ? us_of(rs.max_ns) : NAN;
	if (unreclaimed)
		soak_fail(S, "%zu killed consumers were never reported removed", unreclaimed);

	struct bench_row *row = bench_report_add_fields_row(rep, "soak");
	if (row) {
		bench_row_field(row, "seconds", seconds, false);
		bench_row_field(row, "consumers", S->cfg.consumers, true);
		bench_row_field(row, "kills", (double)S->kills, true);
		bench_row_field(row, "published", (double)S->published, true);
		bench_row_field(row, "received", (double)received, true);
		bench_row_field(row, "verified", (double)verified, true);
		bench_row_field(row, "corrupt", (double)corrupt, true);
		bench_row_field(row, "lost", (double)lost, true);
		bench_row_field(row, "reclaim_p50_us", p50, false);
		bench_row_field(row, "reclaim_p99_us", p99, false);
		bench_row_field(row, "reclaim_max_us", pmax, false);
		/* extra detail */
		bench_row_field(row, "reclaimed", (double)nall, true);
		bench_row_field(row, "reclaim_in_wait", (double)path_n[PATH_WAIT], true);
		bench_row_field(row, "reclaim_in_process", (double)path_n[PATH_PROCESS], true);
		bench_row_field(row, "reclaim_in_publish", (double)path_n[PATH_PUBLISH], true);
		bench_row_field(row, "reclaim_at_end", (double)path_n[PATH_END], true);
		bench_row_field(row, "skipped", (double)missed, true);
		bench_row_field(row, "stalls", (double)S->stalls, true);
		bench_row_field(row, "consumer_errors", (double)errors, true);
		bench_row_field(row, "live_at_end", (double)st->live, true);
	}

	bench_report_text(rep, "reclaim time (kill() to the removal event), by the call that found the hang-up:");
	bench_report_text(rep, "  %-8s %9s %11s %11s %11s", "path", "removals", "p50_us", "p99_us", "max_us");
	for (int pth = 0; pth < NPATHS; pth++) {
		if (!path_n[pth] && pth == PATH_END)
			continue;
		if (path_n[pth])
			bench_report_text(rep, "  %-8s %9zu %11.1f %11.1f %11.1f", path_names[pth], path_n[pth],
					  us_of(path_st[pth].median_ns), us_of(path_st[pth].p99_ns),
					  us_of(path_st[pth].max_ns));
		else
			bench_report_text(rep, "  %-8s %9zu %11s %11s %11s", path_names[pth], (size_t)0, "-", "-", "-");
	}
	bench_report_text(rep, "  %-8s %9zu %11.1f %11.1f %11.1f", "all", nall, nall ? p50 : 0.0, nall ? p99 : 0.0,
			  nall ? pmax : 0.0);
	/* The split: kill() to the process being gone (pidfd readable: the
	 * kernel's part), and from there to the event (the producer's part). */
	size_t nd = 0, nq = 0;
	uint64_t *death = calloc(S->ncons + 1, sizeof(uint64_t)), *detect = calloc(S->ncons + 1, sizeof(uint64_t));
	if (death && detect) {
		for (size_t i = 0; i < S->ncons; i++) {
			const struct cons *c = &S->cons[i];
			uint64_t te = atomic_load_explicit(&c->t_exit, memory_order_relaxed);
			if (!c->killed || c->pid <= 0 || !c->removed || !te)
				continue;
			death[nd++] = te >= c->t_kill ? te - c->t_kill : 0;
			detect[nq++] = c->t_seen >= te ? c->t_seen - te : 0;
		}
		struct bench_stats ds, qs;
		bench_stats_compute(death, nd, &ds);
		bench_stats_compute(detect, nq, &qs);
		if (nd) {
			bench_report_text(rep, "  split of 'all' (%zu with a death time from the pidfd watcher):", nd);
			bench_report_text(rep, "  %-8s %9zu %11.1f %11.1f %11.1f   kill() to the process gone (kernel)",
					  "death", nd, us_of(ds.median_ns), us_of(ds.p99_ns), us_of(ds.max_ns));
			bench_report_text(rep, "  %-8s %9zu %11.1f %11.1f %11.1f   process gone to the removal event "
					       "(producer)",
					  "detect", nq, us_of(qs.median_ns), us_of(qs.p99_ns), us_of(qs.max_ns));
		}
	}
	free(death);
	free(detect);
	bench_report_text(rep, "survivors (%llu consumers at the end, %llu reported a clean exit): received %llu, "
			       "verified %llu, corrupt %llu, lost %llu",
			  (unsigned long long)survivors, (unsigned long long)reported, (unsigned long long)s_received,
			  (unsigned long long)s_verified, (unsigned long long)s_corrupt, (unsigned long long)s_lost);

	/* Targets and notes. */
	struct bench_target *t = bench_report_add_target(rep, "no corrupt slice", (double)corrupt, 0, false, "slices");
	if (t && first_corrupt)
		snprintf(t->note, sizeof(t->note), "%.150s", first_corrupt);
	t = bench_report_add_target(rep, "no lost slice", (double)lost, 0, false, "slices");
	if (t && first_lost)
		snprintf(t->note, sizeof(t->note), "%.150s", first_lost);
	t = bench_report_add_target(rep, "reclaim p99 under 10 ms", nall ? p99 / 1000.0 : NAN,
				    RECLAIM_LIMIT_US / 1000.0, false, "ms");
	if (t)
		snprintf(t->note, sizeof(t->note), "%zu removals of killed consumers; max %.2f ms", nall,
			 nall ? pmax / 1000.0 : 0.0);
	t = bench_report_add_target(rep, "pool back to full capacity at the end (live slices)", (double)st->live, 0,
				    false, "slices");
	if (t)
		snprintf(t->note, sizeof(t->note), "stats.live %llu, mask %#llx after every consumer was removed",
			 (unsigned long long)st->live, (unsigned long long)st->mask);

	bench_report_note(rep, "seed %llu (--seed), %u consumers, pool %u slots / %u KiB, policy WAIT (timeout %d ms), "
			       "max_held %u, on_limit SKIP; slices %u B..%u KiB log-uniform; %u%% held up to %u us; "
			       "a kill every %u..%u ms",
			  (unsigned long long)S->sh->seed, S->cfg.consumers, S->cfg.slots, POOL_CAPACITY >> 10,
			  WAIT_TIMEOUT_MS, S->cfg.max_held, MIN_SLICE, MAX_SLICE >> 10, HOLD_PCT, HOLD_MAX_US, KILL_MIN_MS,
			  KILL_MAX_MS);
	bench_report_note(rep, "producer: %llu slices published, %llu deliveries (%llu consumers missed one), pool: %llu "
			       "waits, %llu from system memory, %llu moves; %llu flat-out and %llu paced stretches; "
			       "%llu publish retries after -ESRCH",
			  (unsigned long long)S->published, (unsigned long long)S->deliveries,
			  (unsigned long long)S->publish_missing, (unsigned long long)st->waits,
			  (unsigned long long)st->from_system, (unsigned long long)st->moves,
			  (unsigned long long)S->flat_intervals, (unsigned long long)S->paced_intervals,
			  (unsigned long long)S->esrch_retries);
	if (nall)
		bench_report_note(rep, "a killed consumer held %.1f slots on average when removed (max %llu)",
				  (double)held_sum / (double)nall, (unsigned long long)held_max);
	bench_report_note(rep, "received = slices received by all consumers (killed ones up to their death; one killed "
			       "between counting a slice received and verified shows as received - verified, not as "
			       "corrupt), verified = passed every check, skipped = slices the producer left out at a "
			       "consumer's limit (sv2shm_consumer_missed())");
	if (first_err)
		bench_report_note(rep, "first consumer error: %s", first_err);
	/* The consumers' notification paths, with how many used each. */
	char names[4][48] = {"", "", "", ""};
	uint64_t counts[4] = {0};
	for (size_t i = 0; i < S->ncons; i++) {
		const struct soak_rec *r = &S->sh->rec[S->cons[i].rec];
		if (!r->notify[0])
			continue;
		for (int k = 0; k < 4; k++) {
			if (!names[k][0])
				snprintf(names[k], sizeof(names[k]), "%s", r->notify);
			if (strcmp(names[k], r->notify) == 0) {
				counts[k]++;
				break;
			}
		}
	}
	char line[300];
	size_t lo = 0;
	for (int k = 0; k < 4 && names[k][0] && lo < sizeof(line); k++)
		lo += (size_t)snprintf(line + lo, sizeof(line) - lo, "%s\"%s\" x%llu", k ? ", " : "", names[k],
				       (unsigned long long)counts[k]);
	bench_report_note(rep, "producer notify \"%s\"%s; consumers: %s", S->prod_notify,
			  S->cfg.socket_transport ? " (socket transport)" : "", lo ? line : "none attached");
	free(all);
	free(per);

	*failed = corrupt > 0 || lost > 0 || (nall && p99 >= RECLAIM_LIMIT_US) || S->fail[0] || errors > 0 ||
		  S->stalls > 0 || st->live != 0;
}

/* ------------------------------------------------------------------------- */
/* Main                                                                       */
/* ------------------------------------------------------------------------- */

int bench_soak_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct soak_cfg cfg = {.seconds = DEFAULT_SECONDS, .consumers = DEFAULT_CONSUMERS, .slots = DEFAULT_SLOTS};
	if (bench_parse_opts_ex(argc, argv, &opts, soak_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		soak_usage(stdout);
		return 0;
	}
	if (opts.quick && cfg.seconds == DEFAULT_SECONDS)
		cfg.seconds = 10;
	if (cfg.max_held == 0)
		cfg.max_held = cfg.slots;
	if (cfg.max_held > cfg.slots) {
		fprintf(stderr, "sv2shm-bench soak: --max-held %u is more than --slots %u\n", cfg.max_held, cfg.slots);
		return 2;
	}
	if (!cfg.seed_set) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		cfg.seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (bench_hard_alarm("soak", cfg.seconds + HARD_SLACK_S) < 0)
		return 1;

	struct bench_report rep;
	bench_report_init(&rep, "soak");
	struct soak S;
	memset(&S, 0, sizeof(S));
	S.cfg = cfg;
	S.rep = &rep;
	S.parent = getpid();
	S.rng = cfg.seed;
	/* Incarnations: the first ones, one per kill (at most one per
	 * KILL_MIN_MS), and slack. */
	S.nrec_max = cfg.consumers + (size_t)cfg.seconds * (1000u / KILL_MIN_MS) + 64;
	S.sh_len = sizeof(struct soak_shared) + S.nrec_max * sizeof(struct soak_rec);
	S.sh = mmap(NULL, S.sh_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	S.cons = calloc(S.nrec_max, sizeof(*S.cons));
	if (S.sh == MAP_FAILED || !S.cons) {
		fprintf(stderr, "sv2shm-bench soak: out of memory (%zu consumer records)\n", S.nrec_max);
		return 1;
	}
	S.sh->seed = cfg.seed;

	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = POOL_CAPACITY;
	o.pool.slots = cfg.slots;
	o.pool.policy = SV2SHM_POOL_WAIT;
	o.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	o.max_held = cfg.max_held;
	o.on_limit = SV2SHM_LIMIT_SKIP;
	o.socket_transport = cfg.socket_transport;
	int r = sv2shm_producer_new(&o, &S.p);
	if (r < 0) {
		fprintf(stderr, "sv2shm-bench soak: sv2shm_producer_new(capacity %u, slots %u, WAIT) returned %d (%s)\n",
			POOL_CAPACITY, cfg.slots, r, sv2shm_strerror(r));
		return 1;
	}
	S.b = sv2shm_producer_buffer(S.p);
	snprintf(S.prod_notify, sizeof(S.prod_notify), "%s", sv2shm_producer_notify_name(S.p));

	struct bench_load load;
	bench_load_start(&load);
	bench_progress("soak: %u s, %u consumers, seed %llu\n", cfg.seconds, cfg.consumers,
		       (unsigned long long)cfg.seed);
	uint64_t t0 = bench_now_ns();
	for (unsigned i = 0; i < cfg.consumers; i++)
		if (spawn(&S) < 0)
			break;
	watcher_start(&g_watcher);
	if (!g_watcher.running)
		bench_report_note(&rep, "death watcher thread not started: no kill()-to-death split");
	if (S.nactive == cfg.consumers)
		soak_loop(&S);
	double seconds = (double)(bench_now_ns() - t0) / 1e9;
	struct sv2shm_pool_stats st;
	int destroy_rc = 0;
	soak_end(&S, &st, &destroy_rc);
	bench_where = "joining the death watcher";
	watcher_stop(&g_watcher);
	alarm(0);
	bench_where = "report";
	bench_load_note(&rep, &load);
	bool failed = false;
	report_results(&S, seconds, &st, &failed);
	int pr = bench_report_print(&rep, opts.json);
	bench_report_free(&rep);
	if (S.p)
		sv2shm_producer_destroy(S.p);
	munmap(S.sh, S.sh_len);
	free(S.cons);
	if (pr < 0)
		return 1;
	return failed ? 1 : 0;
}
