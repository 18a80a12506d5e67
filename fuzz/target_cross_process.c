/*
 * `cross_process`: the pool property across processes.
 *
 * Per input the parent (the fuzzer process) creates a producer — small
 * capacity, slot count, policy (mostly WAIT), ring size, notification
 * mechanism, io_uring or not, ring or socket transport, all chosen by the
 * input — and 1 or 2 consumer processes. It writes messages whose bytes are
 * derived from the input (a header with a sequence number, the hold time and
 * a check byte, then pattern bytes), in input-chosen chunks, and publishes
 * each to one or both consumers. A consumer checks every slice when it
 * arrives (header, sequence numbers strictly increasing, every byte), holds
 * it for the time the header says, checks it again and releases it through
 * the normal path (which wakes a waiting producer through io_uring). The
 * parent checks the pool after every message (no two live slices overlap,
 * mask bits inside the slot count, counters), that a WAIT producer is woken
 * by the releases (consumers hold at most ~1 ms: a get_writable() that
 * sleeps a second, or times out after 2 s, is a lost wake-up), that all
 * slots come back (mask 0) after the consumers released everything, and that
 * sv2shm_producer_destroy() returns 0; then every consumer must report that
 * it received exactly the slices published to it, intact, in order, that an
 * event loop on sv2shm_consumer_fd() never stays readable for seconds with
 * nothing to receive, and that sv2shm_consumer_free() returned 0.
 *
 * Diagnostics: a consumer that stops answering is reported with its kernel
 * state (/proc) and its own view (SIGUSR1: where its loop is);
 * SV2SHM_FUZZ_GDB=1 adds a gdb backtrace; SV2SHM_FUZZ_VERBOSE=1 traces every
 * fork and publish.
 *
 * With the input's "die" bit one consumer _exit()s after receiving a chosen
 * number of slices while holding them: the parent must get its slots back
 * through sv2shm_producer_process() (the broker's job, done by hand here).
 *
 * Processes: consumers are not forked from the fuzzer process itself (it
 * has libFuzzer's threads and a big address space) but by a small "zygote"
 * process forked once, in LLVMFuzzerInitialize() (or on first use), before
 * any other thread exists. The parent sends it the consumer sockets and
 * result pipes over a SOCK_SEQPACKET socket; it forks one child per consumer,
 * reaps them, and reports their exit statuses. Children only ever leave
 * through _exit(), never back into libFuzzer; all of them die with their
 * parent (PR_SET_PDEATHSIG).
 *
 * Limits: publish never blocks. A consumer at its limit (max_held slots, or
 * a full ring or socket) is either refused for everyone (SV2SHM_LIMIT_REFUSE:
 * -EAGAIN, the producer retries while the consumers release: the old
 * back-pressure) or skipped (SV2SHM_LIMIT_SKIP: publish counts it, the
 * consumer's missed count grows and it sees a gap in its sequence). Every
 * consumer must end with received + missed == the slices published to it,
 * and the missed counts add up to what publish returned.
 *
 * Input: [capacity] [slots] [policy] [flags] [ring+max_held] [die] [spin]
 *        then per message [len class] [len...] [chunks] [targets] [hold] [flags].
 * flags: 1 socket transport, 2 no io_uring (producer), 4 notify SOCKET (else
 * DEFAULT: FUTEX where io_uring has futex ops), 8 SV2SHM_LIMIT_SKIP (else
 * REFUSE), 16 two consumers, 32/64 no io_uring (consumer 0/1), 128 die (with
 * the die byte). ring+max_held: bits 0-2 ring entries 2 << n; bits 3-4
 * max_held: slots, 0 (the default: slots - 1), 1, 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sv2shm/ipc.h>

#include "fuzz_common.h"
#include "targets.h"

#define MAX_CONSUMERS 2
#define MAX_MESSAGES 64u
#define MAX_MSG (128u * 1024u)
#define HDR 8u

#define ZMAGIC 0x7a79676fu /* "ogyz" */
#define EXIT_DIED 42       /* a consumer that died on purpose */

enum cstatus {
	C_OK = 0,
	C_DIED = 1,
	C_SETUP = 2,   /* consumer_new failed */
	C_CORRUPT = 3, /* bytes, header or order wrong */
	C_RECV = 4,    /* recv returned an error */
	C_RELEASE = 5, /* release refused */
	C_FREE = 6,    /* consumer_free refused */
	C_TIMEOUT = 7, /* nothing ended within 15 s */
	C_LEFTOVER = 8, /* the producer went away while we still held a pool slice */
	C_SPIN = 9      /* the event loop spins: consumer_fd() readable, nothing to receive */
};

struct cparams {
	uint32_t die_after; /* 0: never; else _exit after receiving this many (holding them) */
	uint32_t spin_us;
	uint32_t no_io_uring;
	uint32_t event_loop; /* prepare_wait + poll(consumer_fd) + recv(0) */
};

struct zreq {
	uint32_t magic;
	uint32_t n;
	uint64_t seed;
	struct cparams c[MAX_CONSUMERS];
};

/* The zygote answers each request twice: the children's pids once they
 * are forked (so the parent can inspect a stuck one), then their exit
 * statuses once they are reaped. */
struct zpids {
	uint32_t magic;
	uint32_t n;
	int32_t pid[MAX_CONSUMERS];
};

struct zrep {
	uint32_t magic;
	uint32_t n;
	int32_t wstatus[MAX_CONSUMERS];
};

struct cresult {
	int32_t status; /* enum cstatus */
	int32_t err;
	uint32_t count;
	uint32_t last_seq;
	uint32_t missed; /* sv2shm_consumer_missed() at the end */
	uint32_t reserved;
	char msg[160];
};

/* --- message bytes -------------------------------------------------------- */

static uint8_t hdr_check(const uint8_t *h, uint64_t seed)
{
	uint64_t x = seed;
	for (unsigned i = 0; i < 7; i++)
		x = (x ^ h[i]) * UINT64_C(0x100000001b3);
	return (uint8_t)(x >> 29);
}

static uint64_t pattern_seq(uint64_t seed, uint32_t seq)
{
	return (seed % 1000003u) * 64u + seq;
}

static void make_message(uint8_t *m, size_t len, uint64_t seed, uint32_t seq, uint16_t hold_us)
{
	m[0] = (uint8_t)seq;
	m[1] = (uint8_t)(seq >> 8);
	m[2] = (uint8_t)(seq >> 16);
	m[3] = (uint8_t)(seq >> 24);
	m[4] = (uint8_t)hold_us;
	m[5] = (uint8_t)(hold_us >> 8);
	m[6] = 0;
	m[7] = hdr_check(m, seed);
	fz_pattern_fill(m + HDR, pattern_seq(seed, seq), HDR, len - HDR);
}

/* --- the consumer child ----------------------------------------------------- */

/* Where a consumer child is, for the parent's report when it seems stuck
 * (SIGUSR1 prints it). */
static volatile sig_atomic_t child_stage;
static volatile uint64_t child_deadline, child_loops, child_start, child_setup_ns;

struct held {
	struct sv2shm_slice s;
	uint32_t seq;
	uint64_t deadline;
};

static _Noreturn void child_exit(int resfd, struct cresult *res, int status, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static struct sv2shm_consumer *child_consumer; /* for the missed count in the report */

static void child_exit(int resfd, struct cresult *res, int status, int err, const char *fmt, ...)
{
	child_stage = 9;
	if (child_consumer)
		res->missed = (uint32_t)sv2shm_consumer_missed(child_consumer);
	res->status = status;
	res->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
	va_end(ap);
	if (write(resfd, res, sizeof(*res)) != (ssize_t)sizeof(*res)) {
		/* the parent will see no result and report it */
	}
	_exit(status == C_OK ? 0 : status == C_DIED ? EXIT_DIED : 10 + status);
}

/* Check a slice: 0, or a description of what is wrong in msg. */
static int check_slice(const struct sv2shm_slice *s, uint64_t seed, uint32_t *seq_out, uint16_t *hold_out, char *msg,
		       size_t msz)
{
	int kind = sv2shm_slice_kind(s);
	if (kind != SV2SHM_SLICE_SHARED && kind != SV2SHM_SLICE_MAPPED) {
		snprintf(msg, msz, "slice kind %d", kind);
		return -1;
	}
	if (s->len < HDR || !s->data) {
		snprintf(msg, msz, "slice of %zu bytes (at least %u expected)", s->len, HDR);
		return -1;
	}
	const uint8_t *m = s->data;
	if (m[6] != 0 || m[7] != hdr_check(m, seed)) {
		snprintf(msg, msz, "header check byte wrong (%zu-byte slice)", s->len);
		return -1;
	}
	uint32_t seq = (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
	long bad = fz_pattern_check(m + HDR, pattern_seq(seed, seq), HDR, s->len - HDR);
	if (bad >= 0) {
		snprintf(msg, msz, "message %u (%zu bytes, kind %d) differs at byte %ld", seq, s->len, kind,
			 bad + (long)HDR);
		return -1;
	}
	*seq_out = seq;
	*hold_out = (uint16_t)(m[4] | m[5] << 8);
	return 0;
}

static void child_report(int sig)
{
	(void)sig;
	char buf[160];
	int n = snprintf(buf, sizeof(buf),
			 "consumer pid %d: stage %d, %llu loops, %lld ms to its deadline, up %llu ms, setup took %llu ms\n",
			 (int)getpid(), (int)child_stage, (unsigned long long)child_loops,
			 (long long)((int64_t)(child_deadline - fz_now_ns()) / 1000000),
			 (unsigned long long)((fz_now_ns() - child_start) / 1000000),
			 (unsigned long long)(child_setup_ns / 1000000));
	if (write(2, buf, (size_t)n) < 0) {
		/* nothing to do */
	}
}

static _Noreturn void consumer_child(int sock, int resfd, uint64_t seed, const struct cparams *cp)
{
	signal(SIGUSR1, child_report);
	child_stage = 1;
	child_start = fz_now_ns();
	struct cresult res;
	memset(&res, 0, sizeof(res));
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = cp->spin_us;
	co.no_io_uring = cp->no_io_uring != 0;
	struct sv2shm_consumer *c;
	int r = sv2shm_consumer_new(sock, &co, &c);
	child_setup_ns = fz_now_ns() - child_start;
	child_stage = 10;
	if (r < 0)
		child_exit(resfd, &res, C_SETUP, r, "consumer_new: %s", sv2shm_strerror(r));
	child_consumer = c;
	enum { MAXH = 4096 };
	struct held *held = calloc(MAXH, sizeof(*held));
	if (!held)
		child_exit(resfd, &res, C_SETUP, -ENOMEM, "calloc");
	unsigned nheld = 0;
	uint64_t end = fz_now_ns() + UINT64_C(15000000000);
	child_deadline = end;
	char msg[120];
	bool gone = false;
	int efd = sv2shm_consumer_fd(c);
	unsigned spurious = 0; /* poll said readable, recv had nothing: in a row */
	uint64_t spin_since = 0;
	while (!gone || nheld) {
		child_loops++;
		child_stage = 2;
		if (fz_now_ns() > end)
			child_exit(resfd, &res, C_TIMEOUT, 0, "no end after 15 s (%u received, %u held)", res.count, nheld);
		int timeout = nheld ? 0 : 50;
		bool woken = false;
		if (cp->event_loop && !nheld) {
			/* The event-loop protocol of sv2shm_consumer_fd(). */
			child_stage = 3;
			if (sv2shm_consumer_prepare_wait(c) == 0) {
				struct pollfd pfd = {.fd = efd, .events = POLLIN};
				child_stage = 4;
				if (poll(&pfd, 1, 10) == 0) {
					timeout = 1; /* lets recv notice a hang-up */
				} else {
					timeout = 0;
					woken = true;
				}
			} else {
				timeout = 0;
			}
		}
		uint32_t before = res.count;
		for (; !gone;) {
			struct sv2shm_slice s;
			child_stage = 5;
			r = sv2shm_consumer_recv(c, &s, timeout);
			child_stage = 6;
			if (r == 0)
				break;
			if (r == -EPIPE) {
				/* The parent destroys the producer only once every slot is
				 * free: a pool slice still held here lost its slot. Alloc-mode
				 * slices (their own memfds) are ours to finish. */
				for (unsigned i = 0; i < nheld; i++)
					if (sv2shm_slice_kind(&held[i].s) == SV2SHM_SLICE_SHARED)
						child_exit(resfd, &res, C_LEFTOVER, 0,
							   "the producer went away (every slot free) while message %u "
							   "was held in slot %u",
							   held[i].seq, held[i].s._slot);
				gone = true;
				break;
			}
			if (r < 0)
				child_exit(resfd, &res, C_RECV, r, "recv: %d (%s) after %u slices", r, sv2shm_strerror(r),
					   res.count);
			uint32_t seq;
			uint16_t hold;
			if (check_slice(&s, seed, &seq, &hold, msg, sizeof(msg)) < 0)
				child_exit(resfd, &res, C_CORRUPT, 0, "on arrival: %s", msg);
			if (seq <= res.last_seq)
				child_exit(resfd, &res, C_CORRUPT, 0, "message %u arrived after message %u", seq,
					   res.last_seq);
			res.last_seq = seq;
			res.count++;
			if (cp->die_after && res.count == cp->die_after)
				child_exit(resfd, &res, C_DIED, 0, "died on purpose holding %u slices", nheld + 1);
			if (nheld == MAXH)
				child_exit(resfd, &res, C_CORRUPT, 0, "more than %d slices held", MAXH);
			held[nheld++] = (struct held){s, seq, fz_now_ns() + (uint64_t)hold * 1000u};
			timeout = 0;
		}
		if (woken && res.count == before && !gone) {
			/* A moment of this is normal (an alloc-mode message reaches the
			 * socket just before its marker reaches the ring); seconds of it
			 * are a loop that cannot sleep. */
			if (spurious++ == 0)
				spin_since = fz_now_ns();
			if (spurious >= 1000 && fz_now_ns() - spin_since > UINT64_C(2000000000)) {
				/* What is readable? (consumer_fd() is an epoll fd today:
				 * its ready events' data say which source.) */
				struct epoll_event evs[4];
				int ne = epoll_wait(efd, evs, 4, 0);
				char what[64] = "";
				for (int i = 0; i < ne && i < 4; i++)
					snprintf(what + strlen(what), sizeof(what) - strlen(what), " %#x/%#x",
						 (unsigned)evs[i].data.u32, (unsigned)evs[i].events);
				child_exit(resfd, &res, C_SPIN, 0,
					   "event loop: consumer_fd() stayed readable for 2 s (%u polls) with nothing to "
					   "receive (%u received so far; ready:%s)",
					   spurious, res.count, ne > 0 ? what : " ?");
			}
		} else {
			spurious = 0;
		}
		child_stage = 7;
		uint64_t now = fz_now_ns();
		for (unsigned i = 0; i < nheld;) {
			if (held[i].deadline > now) {
				i++;
				continue;
			}
			uint32_t seq;
			uint16_t hold;
			if (check_slice(&held[i].s, seed, &seq, &hold, msg, sizeof(msg)) < 0 || seq != held[i].seq)
				child_exit(resfd, &res, C_CORRUPT, 0, "before its release: %s", msg);
			r = sv2shm_slice_release(&held[i].s);
			if (r != 0)
				child_exit(resfd, &res, C_RELEASE, r, "release of message %u: %s", seq, sv2shm_strerror(r));
			held[i] = held[--nheld];
		}
		if (nheld)
			fz_sleep_us(20);
	}
	child_stage = 8;
	res.missed = (uint32_t)sv2shm_consumer_missed(c);
	child_consumer = NULL;
	r = sv2shm_consumer_free(c);
	if (r != 0)
		child_exit(resfd, &res, C_FREE, r, "consumer_free: %s", sv2shm_strerror(r));
	child_exit(resfd, &res, C_OK, 0, "ok");
}

/* --- the zygote --------------------------------------------------------------- */

/* poll() one fd for POLLIN, retrying when a signal interrupts it (libFuzzer's
 * -timeout alarm fires every few seconds in the fuzzer process): 1 readable,
 * 0 timeout. */
static int poll_in(int fd, int timeout_ms)
{
	uint64_t end = fz_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		uint64_t now = fz_now_ns();
		int left = now >= end ? 0 : (int)((end - now + 999999u) / 1000000u);
		int r = poll(&pfd, 1, left);
		if (r >= 0)
			return r > 0 ? 1 : 0;
		FZ_CHECK(errno == EINTR, "poll: %s", strerror(errno));
	}
}

/* SV2SHM_FUZZ_VERBOSE=1: trace the zygote and every publish. */
static bool verbose(void)
{
	const char *v = getenv("SV2SHM_FUZZ_VERBOSE");
	return v && *v == '1';
}

static int zsock = -1;
static uint64_t inputs_run; /* requests sent to the zygote */
static pthread_once_t zygote_once = PTHREAD_ONCE_INIT;

static _Noreturn void zygote_main(int s)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	bool trace = verbose();
	uint64_t nreq = 0;
	for (;;) {
		struct zreq req;
		int fds[2 * MAX_CONSUMERS];
		char cbuf[CMSG_SPACE(sizeof(fds))];
		struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
		ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			_exit(0);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (n != (ssize_t)sizeof(req) || req.magic != ZMAGIC || req.n < 1 || req.n > MAX_CONSUMERS || !cm ||
		    cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(2 * req.n * sizeof(int)))
			_exit(3);
		memcpy(fds, CMSG_DATA(cm), 2 * req.n * sizeof(int));
		struct zrep rep = {.magic = ZMAGIC, .n = req.n};
		pid_t pids[MAX_CONSUMERS];
		for (uint32_t i = 0; i < req.n; i++) {
			uint64_t forked_at = fz_now_ns();
			pids[i] = fork();
			if (pids[i] == 0) {
				uint64_t d0 = fz_now_ns() - forked_at;
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				close(s);
				for (uint32_t j = 0; j < req.n; j++)
					if (j != i) {
						close(fds[2 * j]);
						close(fds[2 * j + 1]);
					}
				uint64_t d1 = fz_now_ns() - forked_at;
				if (trace || d1 > UINT64_C(500000000))
					fprintf(stderr, "zygote child %d: running %llu us after fork(), %llu us before its closes\n",
						(int)getpid(), (unsigned long long)(d1 / 1000), (unsigned long long)(d0 / 1000));
				consumer_child(fds[2 * i], fds[2 * i + 1], req.seed, &req.c[i]);
			}
		}
		for (uint32_t i = 0; i < 2 * req.n; i++)
			close(fds[i]);
		struct zpids zp = {.magic = ZMAGIC, .n = req.n};
		for (uint32_t i = 0; i < req.n; i++)
			zp.pid[i] = pids[i];
		nreq++;
		if (trace)
			fprintf(stderr, "zygote: request %llu: forked %d %d\n", (unsigned long long)nreq, (int)pids[0],
				req.n > 1 ? (int)pids[1] : 0);
		if (send(s, &zp, sizeof(zp), MSG_NOSIGNAL) != (ssize_t)sizeof(zp))
			_exit(4);
		for (uint32_t i = 0; i < req.n; i++) {
			int st = -1;
			if (pids[i] > 0)
				while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR) {
				}
			rep.wstatus[i] = st;
		}
		if (trace)
			fprintf(stderr, "zygote: request %llu: reaped, statuses %#x %#x\n", (unsigned long long)nreq,
				(unsigned)rep.wstatus[0], req.n > 1 ? (unsigned)rep.wstatus[1] : 0u);
		if (send(s, &rep, sizeof(rep), MSG_NOSIGNAL) != (ssize_t)sizeof(rep))
			_exit(4);
	}
}

static void zygote_start(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		abort();
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		abort();
	}
	if (pid == 0) {
		close(sv[0]);
		zygote_main(sv[1]);
	}
	close(sv[1]);
	zsock = sv[0];
}

void sv2shm_fuzz_cross_process_init(void)
{
	pthread_once(&zygote_once, zygote_start);
}

/* --- the producer (fuzzer process) ------------------------------------------ */

struct xrun {
	struct sv2shm_producer *p;
	struct sv2shm_pool *pool;
	struct sv2shm_buffer *b;
	uint64_t cap;
	unsigned slots;
	int policy;
	unsigned n;                    /* consumers */
	int id[MAX_CONSUMERS];
	bool dead[MAX_CONSUMERS];      /* removed from the producer */
	uint32_t published[MAX_CONSUMERS]; /* publishes naming it (received or missed) */
	uint32_t missing;              /* sum of publish's positive returns */
	int on_limit;
	int resfd[MAX_CONSUMERS];      /* each consumer's report */
	bool die_planned;
	int die_index;                 /* the consumer meant to die, or -1 */
	bool forced_removal;           /* it was removed before it hung up */
	bool socket_transport;
	uint64_t seed;
	uint32_t seq;
	uint64_t taken_pool, taken_system;
	uint8_t *msgbuf;
};

static void check_pool(struct xrun *x, const char *step)
{
	struct sv2shm_pool_stats st;
	FZ_CHECK(sv2shm_pool_stats(x->pool, &st) == 0, "stats");
	uint64_t all = x->slots == 64 ? ~UINT64_C(0) : (UINT64_C(1) << x->slots) - 1u;
	FZ_CHECK((st.mask & ~all) == 0, "after %s: mask %#llx beyond %u slots", step, (unsigned long long)st.mask,
		 x->slots);
	FZ_CHECK(st.from_pool == x->taken_pool && st.from_system == x->taken_system,
		 "after %s: from_pool %llu from_system %llu, taken %llu + %llu", step,
		 (unsigned long long)st.from_pool, (unsigned long long)st.from_system,
		 (unsigned long long)x->taken_pool, (unsigned long long)x->taken_system);
	int mode = sv2shm_pool_mode(x->pool);
	FZ_CHECK(mode >= SV2SHM_MODE_BACK && mode <= SV2SHM_MODE_ALLOC, "mode %d", mode);
	if (x->policy != SV2SHM_POOL_FALLBACK)
		FZ_CHECK(mode != SV2SHM_MODE_ALLOC && st.from_system == 0, "after %s: FAIL/WAIT pool in ALLOC", step);
	uint64_t lo[64], hi[64];
	unsigned n = 0;
	for (unsigned s = 0; s < x->slots; s++) {
		uint64_t off, len;
		if (sv2shm_pool_slot_range(x->pool, s, &off, &len) != 1 || len == 0)
			continue;
		FZ_CHECK(off <= x->cap && len <= x->cap - off, "after %s: slot %u outside the region", step, s);
		for (unsigned i = 0; i < n; i++)
			FZ_CHECK(off + len <= lo[i] || hi[i] <= off,
				 "after %s: slot %u [%llu, %llu) overlaps a live slice [%llu, %llu)", step, s,
				 (unsigned long long)off, (unsigned long long)(off + len), (unsigned long long)lo[i],
				 (unsigned long long)hi[i]);
		lo[n] = off;
		hi[n++] = off + len;
	}
}

/* The consumer meant to die is slow to go (or has not received enough to
 * die yet): remove it by hand, as the broker would after a timeout. It may
 * then see its slots reused under it, so its own verdict no longer counts. */
static void consumer_gone(struct xrun *x)
{
	unsigned who = (unsigned)x->die_index;
	if (x->dead[who])
		return;
	int r = sv2shm_producer_remove_consumer(x->p, x->id[who]);
	/* -ESRCH: a WAIT get_writable saw its hang-up and removed it already
	 * (its event is still queued). */
	FZ_CHECK(r >= 0 || r == -ESRCH, "remove_consumer: %d (%s)", r, sv2shm_strerror(r));
	x->dead[who] = true;
	if (r >= 0)
		x->forced_removal = true;
}

/* Before blaming the producer for a stall: has a consumer ended early? Its
 * own report says why (a bug it found, or no report: it crashed). */
static void check_consumers(struct xrun *x, const char *what)
{
	for (unsigned i = 0; i < x->n; i++) {
		if ((int)i == x->die_index)
			continue;
		if (poll_in(x->resfd[i], 0) != 1)
			continue;
		struct cresult res;
		if (read(x->resfd[i], &res, sizeof(res)) == (ssize_t)sizeof(res)) {
			res.msg[sizeof(res.msg) - 1] = '\0';
			FZ_CHECK(0, "%s: consumer %u ended early, status %d: %s (err %d %s)", what, i, res.status, res.msg,
				 res.err, sv2shm_strerror(res.err));
		}
		FZ_CHECK(0, "%s: consumer %u ended early without a report (it crashed?)", what, i);
	}
}

/* Removal events: only the consumer meant to die may be removed, once,
 * because it hung up (or because consumer_gone() removed it). */
static void drain_events(struct xrun *x)
{
	struct sv2shm_producer_event ev;
	int r;
	while ((r = sv2shm_producer_next_event(x->p, &ev)) == 1) {
		int who = -1;
		for (unsigned i = 0; i < x->n; i++)
			if (x->id[i] == ev.id)
				who = (int)i;
		FZ_CHECK(who >= 0, "event for id %d, which is none of ours", ev.id);
		FZ_CHECK(who == x->die_index, "consumer %d (id %d) removed, reason %d, holding %u: it was not meant to die",
			 who, ev.id, ev.reason, ev.held);
		FZ_CHECK(ev.reason == SV2SHM_EVENT_HANGUP || (ev.reason == SV2SHM_EVENT_REMOVED && x->forced_removal),
			 "consumer %d (id %d) removed with reason %d", who, ev.id, ev.reason);
		FZ_CHECK(!x->dead[who] || ev.reason == SV2SHM_EVENT_REMOVED || !x->forced_removal,
			 "two removal events for consumer %d", who);
		x->dead[who] = true;
	}
	FZ_CHECK(r == 0, "next_event: %d", r);
}

/* Let the producer notice a consumer that hung up: only the one meant to
 * die may. */
static void process_deaths(struct xrun *x)
{
	int r = sv2shm_producer_process(x->p);
	FZ_CHECK(r >= 0, "producer_process: %d (%s)", r, sv2shm_strerror(r));
	FZ_CHECK(r == 0 || (x->die_planned && r == 1), "producer_process removed %d consumers, none was meant to die",
		 r);
	drain_events(x);
}

/* Write message x->seq of `len` bytes in `nchunks` chunks; false when the
 * pool refused it (it was dropped). */
static bool write_message(struct xrun *x, struct fz *in, size_t len, unsigned nchunks, uint16_t hold)
{
	make_message(x->msgbuf, len, x->seed, x->seq, hold);
	size_t pos = 0;
	for (unsigned c = 0; c < nchunks; c++) {
		size_t chunk = c + 1 == nchunks ? len - pos : (size_t)fz_range(in, 0, len - pos);
		unsigned attempts = 0;
		uint64_t start = fz_now_ns();
		for (;;) {
			uint64_t t0 = fz_now_ns();
			uint8_t *w = sv2shm_buffer_get_writable(x->b, chunk);
			uint64_t slept_ms = (fz_now_ns() - t0) / 1000000u;
			if (w) {
				/* Consumers release within ~1 ms: a WAIT producer that slept
				 * far longer and then found room was not woken by the release
				 * (the pool re-checks the mask when its wait times out). */
				if (x->policy == SV2SHM_POOL_WAIT && !x->die_planned && slept_ms >= 1000) {
					check_consumers(x, "WAIT get_writable slept");
					FZ_CHECK(0, "lost wake-up: get_writable(%zu) slept %llu ms before finding room (notify %s)",
						 chunk, (unsigned long long)slept_ms, sv2shm_producer_notify_name(x->p));
				}
				memcpy(w, x->msgbuf + pos, chunk);
				break;
			}
			int err = sv2shm_buffer_last_error(x->b);
			size_t need = pos + chunk;
			if (err == -EMSGSIZE) {
				FZ_CHECK(x->policy != SV2SHM_POOL_FALLBACK && need > x->cap,
					 "-EMSGSIZE for %zu bytes in a pool of %llu", need, (unsigned long long)x->cap);
				return false;
			}
			FZ_CHECK(x->policy != SV2SHM_POOL_FALLBACK, "FALLBACK get_writable: %d (%s)", err,
				 sv2shm_strerror(err));
			FZ_CHECK(need <= x->cap, "%d for %zu bytes > capacity, not -EMSGSIZE", err, need);
			if (x->policy == SV2SHM_POOL_WAIT) {
				FZ_CHECK(err == -ETIMEDOUT, "WAIT get_writable: %d (%s)", err, sv2shm_strerror(err));
				/* A 2 s timeout is a lost wake-up unless a consumer died
				 * holding slices. */
				if (!x->die_planned)
					check_consumers(x, "WAIT get_writable timed out");
				FZ_CHECK(x->die_planned,
					 "WAIT producer not woken: get_writable(%zu) timed out with consumers releasing "
					 "(notify %s)",
					 chunk, sv2shm_producer_notify_name(x->p));
			} else {
				FZ_CHECK(err == -EAGAIN, "FAIL get_writable: %d (%s)", err, sv2shm_strerror(err));
				if (!x->die_planned && fz_now_ns() - start >= UINT64_C(3000000000))
					check_consumers(x, "FAIL pool full for 3 s");
				FZ_CHECK(x->die_planned || fz_now_ns() - start < UINT64_C(3000000000),
					 "FAIL pool stayed full for 3 s while consumers release");
				fz_sleep_us(20);
			}
			if (x->die_planned) {
				process_deaths(x);
				if (++attempts > 200)
					return false;
			}
		}
		pos += chunk;
	}
	return true;
}

static void do_message(struct xrun *x, struct fz *in)
{
	uint8_t lc = fz_u8(in);
	size_t len;
	switch (lc & 3u) {
	case 0:
		len = fz_u8(in);
		break;
	case 1:
		len = fz_u16(in);
		break;
	case 2: {
		int8_t d = (int8_t)fz_u8(in);
		uint64_t base = (lc & 4u) ? x->cap / x->slots : x->cap;
		len = (size_t)(d < 0 && (uint64_t)(-(int)d) > base ? 0 : base + (uint64_t)(int64_t)d);
		break;
	}
	default:
		len = fz_u8(in) & 31u;
		break;
	}
	len += HDR;
	if (len > MAX_MSG)
		len = MAX_MSG;
	unsigned nchunks = 1u + fz_u8(in) % 3u;
	uint8_t tsel = fz_u8(in);
	uint16_t hold = (uint16_t)(fz_u8(in) * 4u); /* 0 .. 1020 us */
	uint8_t pflags = fz_u8(in);

	x->seq++;
	bool ok = write_message(x, in, len, nchunks, hold);
	struct sv2shm_slice s;
	FZ_CHECK(sv2shm_buffer_get_data_owned(x->b, &s) == 0, "get_data_owned");
	int kind = sv2shm_slice_kind(&s);
	if (kind == SV2SHM_SLICE_POOL)
		x->taken_pool++;
	else if (kind == SV2SHM_SLICE_SYSTEM)
		x->taken_system++;
	if (!ok || kind == SV2SHM_SLICE_EMPTY) {
		FZ_CHECK(sv2shm_slice_release(&s) == 0, "release of a dropped message");
		return;
	}
	FZ_CHECK(s.len == len && memcmp(s.data, x->msgbuf, len) == 0, "message %u differs after get_data_owned",
		 x->seq);
	if (kind == SV2SHM_SLICE_POOL)
		FZ_CHECK(sv2shm_pool_mode(x->pool) != SV2SHM_MODE_ALLOC, "pool slice in ALLOC mode");
	else
		FZ_CHECK(kind == SV2SHM_SLICE_SYSTEM && sv2shm_pool_mode(x->pool) == SV2SHM_MODE_ALLOC,
			 "slice kind %d in mode %d", kind, sv2shm_pool_mode(x->pool));

	/* Targets: consumer 0, 1 or both. */
	unsigned want = x->n == 1 ? 1u : 1u + tsel % 3u;
	bool pool_slice = kind == SV2SHM_SLICE_POOL;
	uint64_t start = fz_now_ns();
	for (;;) {
		drain_events(x);
		int ids[MAX_CONSUMERS];
		unsigned who[MAX_CONSUMERS], n = 0;
		for (unsigned i = 0; i < x->n; i++)
			if ((want & (1u << i)) && !x->dead[i]) {
				who[n] = i;
				ids[n++] = x->id[i];
			}
		if (n == 0) {
			FZ_CHECK(sv2shm_slice_release(&s) == 0, "release");
			return;
		}
		struct sv2shm_slice before = s;
		uint64_t t0 = fz_now_ns();
		int r = sv2shm_producer_publish(x->p, &s, ids, n, (pflags & 1u) ? SV2SHM_PUBLISH_MORE : 0);
		uint64_t took = fz_now_ns() - t0;
		if (verbose())
			fprintf(stderr, "publish msg %u kind %d slot %u gen %u to %u ids (%d,%d): %d; after: kind %d\n", x->seq,
				sv2shm_slice_kind(&before), before._slot, before._gen, n, ids[0], n > 1 ? ids[1] : 0, r,
				sv2shm_slice_kind(&s));
		/* Publish never blocks (the sanitizers make it slow, not that slow). */
		FZ_CHECK(took < UINT64_C(500000000), "publish took %llu ms", (unsigned long long)(took / 1000000u));
		if (r >= 0) {
			FZ_CHECK(sv2shm_slice_kind(&s) == SV2SHM_SLICE_NONE, "published slice not cleared (publish: %d)", r);
			FZ_CHECK((unsigned)r <= n, "publish to %u consumers: %d did not get it", n, r);
			for (unsigned i = 0; i < n; i++)
				x->published[who[i]]++;
			/* Under REFUSE a consumer at its limit fails the whole call; only
			 * a full (or closed) socket can still leave one out. */
			FZ_CHECK(r == 0 || x->on_limit == SV2SHM_LIMIT_SKIP || x->socket_transport || !pool_slice,
				 "publish under REFUSE over the ring: %d consumers did not get message %u", r, x->seq);
			x->missing += (uint32_t)r;
			if (pflags & 2u)
				FZ_CHECK(sv2shm_producer_flush(x->p) == 0, "flush");
			return;
		}
		if (r == -EAGAIN) {
			/* REFUSE: a consumer is at its limit; nothing was published. */
			FZ_CHECK(x->on_limit == SV2SHM_LIMIT_REFUSE, "publish: -EAGAIN under SKIP");
			FZ_CHECK(sv2shm_slice_kind(&s) == sv2shm_slice_kind(&before) && s.data == before.data,
				 "a refused publish consumed the slice");
			if (!x->die_planned && fz_now_ns() - start >= UINT64_C(3000000000))
				check_consumers(x, "consumer at its limit for 3 s");
			FZ_CHECK(x->die_planned || fz_now_ns() - start < UINT64_C(3000000000),
				 "publish refused for 3 s while the consumers release");
			sv2shm_producer_flush(x->p);
			fz_sleep_us(20);
			if (x->die_planned) {
				process_deaths(x);
				if (fz_now_ns() - start > UINT64_C(50000000))
					consumer_gone(x);
			}
			continue;
		}
		/* -ESRCH: the consumer meant to die was removed (a WAIT get_writable
		 * noticed its hang-up) and its event says so: nothing published. */
		FZ_CHECK(r == -ESRCH && x->die_planned, "publish of message %u to %u consumers: %d (%s)", x->seq, n, r,
			 sv2shm_strerror(r));
		FZ_CHECK(sv2shm_slice_kind(&s) == sv2shm_slice_kind(&before), "publish: -ESRCH consumed the slice");
		drain_events(x);
		FZ_CHECK(x->dead[x->die_index], "publish: -ESRCH and no removal event");
	}
}

static void read_proc(pid_t pid, const char *what, char *out, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	out[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t k = read(fd, out, n - 1);
	close(fd);
	out[k > 0 ? k : 0] = '\0';
	for (char *c = out; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

static void read_result(int fd, struct cresult *res, pid_t pid)
{
	if (poll_in(fd, 25000) != 1) {
		/* Say where the consumer is stuck, then end it. */
		char wchan[64], sys[128], stack[512];
		read_proc(pid, "wchan", wchan, sizeof(wchan));
		read_proc(pid, "syscall", sys, sizeof(sys));
		read_proc(pid, "stack", stack, sizeof(stack));
		const char *gdb = getenv("SV2SHM_FUZZ_GDB");
		if (gdb && *gdb == '1') {
			char cmd[128];
			snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt' </dev/null >&2", (int)pid);
			if (system(cmd) != 0) {
				/* best effort */
			}
		}
		kill(pid, SIGUSR1);
		fz_sleep_us(200000);
		kill(pid, SIGABRT);
		fz_sleep_us(200000);
		kill(pid, SIGKILL);
		FZ_CHECK(0,
			 "request %llu: no result from consumer pid %d within 25 s; it was in wchan %s, syscall %s, "
			 "kernel stack %s",
			 (unsigned long long)inputs_run, (int)pid, wchan, sys, stack);
	}
	ssize_t n = read(fd, res, sizeof(*res));
	if (n != (ssize_t)sizeof(*res)) {
		memset(res, 0, sizeof(*res));
		res->status = -1;
		snprintf(res->msg, sizeof(res->msg), "no result (the consumer crashed?)");
	}
	res->msg[sizeof(res->msg) - 1] = '\0';
}

int sv2shm_fuzz_cross_process(const uint8_t *data, size_t size)
{
	sv2shm_fuzz_cross_process_init();
	static const uint64_t caps[] = {0, 64, 256, 1000, 4096, 65536};
	struct fz in;
	fz_init(&in, data, size);
	struct xrun x;
	memset(&x, 0, sizeof(x));
	x.seed = fz_hash(data, size);

	uint8_t cb = fz_u8(&in);
	x.cap = cb < 0xc0 ? caps[cb % 6u] : fz_u16(&in);
	x.slots = 1u + fz_u8(&in) % 64u;
	uint8_t pb = fz_u8(&in) & 7u;
	x.policy = pb < 6 ? SV2SHM_POOL_WAIT : pb == 6 ? SV2SHM_POOL_FAIL : SV2SHM_POOL_FALLBACK;
	uint8_t fl = fz_u8(&in);
	uint8_t rb = fz_u8(&in);
	uint8_t db = fz_u8(&in);
	uint8_t sb = fz_u8(&in);
	x.n = (fl & 16u) ? 2u : 1u;
	x.die_planned = (fl & 128u) && (db & 0x70u) == 0x70u;
	x.die_index = x.die_planned ? (int)((db >> 7) % x.n) : -1;

	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = x.cap;
	o.pool.slots = x.slots;
	o.pool.policy = x.policy;
	o.pool.wait_timeout_ms = x.die_planned ? 20 : 2000;
	o.ring_entries = 2u << (rb % 8u);
	static const unsigned held_sel[4] = {64, 0, 1, 2};
	o.max_held = held_sel[(rb >> 3) & 3u];
	if (o.max_held > x.slots)
		o.max_held = x.slots;
	o.on_limit = (fl & 8u) ? SV2SHM_LIMIT_SKIP : SV2SHM_LIMIT_REFUSE;
	x.on_limit = o.on_limit;
	o.notify = (fl & 4u) ? SV2SHM_NOTIFY_SOCKET : SV2SHM_NOTIFY_DEFAULT;
	o.no_io_uring = (fl & 2u) != 0;
	o.socket_transport = (fl & 1u) != 0;
	x.socket_transport = o.socket_transport;
	int r = sv2shm_producer_new(&o, &x.p);
	FZ_CHECK(r == 0, "producer_new(cap %llu, slots %u, policy %d, notify %d): %d (%s)", (unsigned long long)x.cap,
		 x.slots, x.policy, o.notify, r, sv2shm_strerror(r));
	x.pool = sv2shm_producer_pool(x.p);
	x.b = sv2shm_producer_buffer(x.p);
	x.msgbuf = malloc(MAX_MSG);
	FZ_CHECK(x.msgbuf != NULL, "malloc");

	/* Consumers: sockets and result pipes to the zygote, which forks them. */
	struct zreq req;
	memset(&req, 0, sizeof(req));
	req.magic = ZMAGIC;
	req.n = x.n;
	req.seed = x.seed;
	int sendfds[2 * MAX_CONSUMERS], resfd[MAX_CONSUMERS];
	static const uint32_t spins[] = {0, SV2SHM_SPIN_NONE, 1, 200};
	for (unsigned i = 0; i < x.n; i++) {
		int sv[2], pp[2];
		FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
		FZ_CHECK(pipe2(pp, O_CLOEXEC) == 0, "pipe2");
		x.id[i] = sv2shm_producer_add_consumer(x.p, sv[0]);
		FZ_CHECK(x.id[i] >= 1, "add_consumer: %d (%s)", x.id[i], sv2shm_strerror(x.id[i]));
		sendfds[2 * i] = sv[1];
		sendfds[2 * i + 1] = pp[1];
		resfd[i] = x.resfd[i] = pp[0];
		req.c[i].spin_us = spins[(sb >> (2 * i)) & 3u];
		req.c[i].no_io_uring = (fl >> (5 + i)) & 1u;
		req.c[i].event_loop = (sb >> (4 + i)) & 1u;
		req.c[i].die_after = (int)i == x.die_index ? 1u + (db & 7u) : 0;
	}
	char cbuf[CMSG_SPACE(sizeof(sendfds))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = CMSG_SPACE(2 * x.n * sizeof(int))};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(2 * x.n * sizeof(int));
	memcpy(CMSG_DATA(cm), sendfds, 2 * x.n * sizeof(int));
	FZ_CHECK(sendmsg(zsock, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(req), "the zygote is gone");
	inputs_run++;
	for (unsigned i = 0; i < 2 * x.n; i++)
		close(sendfds[i]);
	struct zpids zp;
	FZ_CHECK(poll_in(zsock, 10000) == 1 && recv(zsock, &zp, sizeof(zp), 0) == (ssize_t)sizeof(zp) &&
			 zp.magic == ZMAGIC && zp.n == x.n,
		 "the zygote did not fork the consumers");
	for (unsigned i = 0; i < x.n; i++)
		FZ_CHECK(zp.pid[i] > 0, "the zygote could not fork consumer %u", i);

	check_pool(&x, "setup");
	for (unsigned m = 0; m < MAX_MESSAGES && !fz_empty(&in); m++) {
		do_message(&x, &in);
		check_pool(&x, "a message");
	}

	/* Everything published comes back. */
	FZ_CHECK(sv2shm_producer_flush(x.p) == 0 || x.die_planned, "flush");
	uint64_t start = fz_now_ns();
	for (;;) {
		if (x.die_planned)
			process_deaths(&x);
		struct sv2shm_pool_stats st;
		sv2shm_pool_stats(x.pool, &st);
		if (st.mask == 0)
			break;
		if (x.die_planned && fz_now_ns() - start > UINT64_C(100000000))
			consumer_gone(&x);
		if (fz_now_ns() - start >= UINT64_C(5000000000))
			check_consumers(&x, "slots not back after 5 s");
		FZ_CHECK(fz_now_ns() - start < UINT64_C(5000000000),
			 "slots %#llx not back 5 s after the last publish (notify %s)", (unsigned long long)st.mask,
			 sv2shm_producer_notify_name(x.p));
		fz_sleep_us(50);
	}
	check_pool(&x, "the end");
	drain_events(&x);
	for (unsigned i = 0; i < x.n; i++) {
		int h = sv2shm_producer_held(x.p, x.id[i]);
		FZ_CHECK(x.dead[i] ? h == -ESRCH : h == 0, "consumer %u (id %d%s) holds %d slots with mask 0", i, x.id[i],
			 x.dead[i] ? ", removed" : "", h);
	}
	FZ_CHECK(sv2shm_buffer_is_droppable(x.b), "not droppable with mask 0");
	r = sv2shm_producer_destroy(x.p);
	FZ_CHECK(r == 0, "producer_destroy: %d (%s)", r, sv2shm_strerror(r));

	/* The consumers see the producer go, release nothing more, and report. */
	uint32_t missed_total = 0;
	for (unsigned i = 0; i < x.n; i++) {
		struct cresult res;
		read_result(resfd[i], &res, zp.pid[i]);
		close(resfd[i]);
		bool dying = (int)i == x.die_index;
		FZ_CHECK(res.status == C_OK || (dying && (res.status == C_DIED || x.forced_removal)),
			 "consumer %u (id %d): status %d: %s (err %d %s)", i, x.id[i], res.status, res.msg, res.err,
			 sv2shm_strerror(res.err));
		if (!dying) {
			FZ_CHECK(res.count + res.missed == x.published[i],
				 "consumer %u received %u slices and missed %u, %u were published to it", i, res.count,
				 res.missed, x.published[i]);
			missed_total += res.missed;
		}
	}
	FZ_CHECK(x.die_planned ? missed_total <= x.missing : missed_total == x.missing,
		 "publish reported %u consumers left out, the consumers counted %u missed slices", x.missing, missed_total);
	struct zrep rep;
	if (poll_in(zsock, 20000) != 1) {
		char stat[256], wchan[64], stack[1024], tasks[256];
		for (unsigned i = 0; i < x.n; i++) {
			read_proc(zp.pid[i], "stat", stat, sizeof(stat));
			read_proc(zp.pid[i], "wchan", wchan, sizeof(wchan));
			read_proc(zp.pid[i], "stack", stack, sizeof(stack));
			char tpath[64];
			snprintf(tpath, sizeof(tpath), "task/%d/children", zp.pid[i]);
			read_proc(zp.pid[i], tpath, tasks, sizeof(tasks));
			fprintf(stderr, "consumer %u pid %d: stat %s\n  wchan %s\n  stack %s\n", i, zp.pid[i], stat, wchan,
				stack);
		}
		FZ_CHECK(0, "the zygote did not report within 20 s: a consumer did not finish exiting");
	}
	FZ_CHECK(recv(zsock, &rep, sizeof(rep), 0) == (ssize_t)sizeof(rep) && rep.magic == ZMAGIC && rep.n == x.n,
		 "zygote reply");
	for (unsigned i = 0; i < x.n; i++) {
		int st = rep.wstatus[i];
		bool dying = (int)i == x.die_index;
		FZ_CHECK(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || (dying && (WEXITSTATUS(st) == EXIT_DIED ||
										x.forced_removal))),
			 "consumer %u ended with status %#x (%s %d)", i, st, WIFSIGNALED(st) ? "signal" : "exit",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	free(x.msgbuf);
	return 0;
}
