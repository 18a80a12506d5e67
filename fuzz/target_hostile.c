/*
 * `hostile`: a consumer that breaks every rule, against a live producer,
 * while an honest consumer checks every byte it receives.
 *
 * Per input the fuzzer process is the producer: a small pool (1..8 slots,
 * 256 B .. 8 KiB, policy FAIL or WAIT with a 1..10 ms wait_timeout_ms), its
 * max_held, on_limit policy (SKIP / DISCONNECT / REFUSE), ring size and
 * transport chosen by the input. Two consumers:
 *
 *   - honest: a process forked (by a small helper process made once, before
 *     libFuzzer starts threads, as in cross_process) that runs
 *     sv2shm_consumer_recv(), checks each slice's header and every byte on
 *     arrival and again just before releasing it, checks that it gets the
 *     messages published to it in order with no gap, releases them after the
 *     hold time the header says, and reports through a pipe;
 *   - hostile: no process and no library code, just the fds of the SETUP
 *     message, received by the fuzzer process itself (ctl, data, ring,
 *     wake) plus its end of the channel. The input drives it: pop ring
 *     entries, release honestly, twice, out of order or with wrong
 *     generations, "un-release", move its tail anywhere, write the ring's
 *     producer fields (head, waiting, missed) and its identity, scribble or
 *     punch holes in the ring, try to write, map writable, mprotect, punch,
 *     truncate, grow or reseal the ctl and data memfds (all must fail), send
 *     garbage, zero-length, fd-carrying or flooding datagrams on the wake
 *     socket and the channel, clear O_NONBLOCK or shrink buffers on its own
 *     ends, shut them down, hang up at any point; futex calls on the words it
 *     maps (wake or requeue whoever sleeps on the control block's
 *     release_seq, FUTEX_WAKE_OP that must not write the sealed block, its
 *     ring's wake_seq).
 *
 * Invariants (a broken one aborts the fuzzer process):
 *   1. no producer call blocks: publish, process, flush, remove_consumer,
 *      held and next_event return within 50 ms, get_writable within
 *      wait_timeout_ms + 50 ms (CLOCK_MONOTONIC around each call, less the
 *      time the thread waited for a CPU: runq_ns()), and the whole input
 *      within 10 s (a POSIX timer aborts it otherwise); a WAIT
 *      that finds room is woken by the honest consumer's release that made
 *      it (see timed_writable());
 *   2. the honest consumer sees every message published to it, intact, in
 *      order, with no gap: the producer paces it (waits until it holds fewer
 *      than min(max_held, ring size) slots before naming it in a publish),
 *      so publish may leave only the hostile one out, and publish's return
 *      value must say exactly that; the honest consumer's missed count stays
 *      0; it is never removed (every removal event names the hostile one);
 *   3. a hostile consumer can only hurt itself and pin up to max_held slots:
 *      sv2shm_producer_held() of the hostile id never exceeds max_held;
 *      slots it holds by the rules (popped, generation published to it in
 *      the read-only control block, still live for the producer, its release
 *      record never set to that generation since) keep their bytes while it
 *      lives; a SKIP miss shows
 *      in the ring's missed field;
 *   4. after the hostile consumer is removed (hang-up or remove_consumer,
 *      chosen by the input) and the honest one released everything, the pool
 *      is back to full capacity: sv2shm_pool_stats().live == 0 and one slice
 *      of the whole capacity can be taken (and is published to the honest
 *      consumer, which checks it); then sv2shm_producer_destroy() is 0 and
 *      the honest consumer reports success.
 *
 * Input: [b0] [b1] [b2] then operations (see the OP_* table below).
 *   b0: bits 0-2 slots - 1, 3 WAIT (else FAIL), 4 socket transport, 5 honest
 *       without io_uring, 6 hostile reads SETUP only when first needed,
 *       7 remove the hostile with remove_consumer() at the end (else hang up)
 *   b1: bits 0-1 capacity (256, 1024, 4096, 8192), 2-3 on_limit (SKIP,
 *       DISCONNECT, REFUSE, SKIP), 4-5 wait_timeout_ms (1, 2, 5, 10),
 *       6-7 honest spin (default, none, 1 us, 200 us)
 *   b2: bits 0-3 max_held (% (slots + 1); 0 = the default), 4-6 ring entries
 *       2 << (n % 6), 7 notify SOCKET (else the default: FUTEX where the
 *       kernel's io_uring has futex ops)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sv2shm/ipc.h>

#include "fuzz_common.h"
#include "region.h"
#include "targets.h"
#include "wire.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif

#define MAX_OPS 160u
#define MAX_MSGS 128u  /* messages to the honest consumer per input */
#define MAX_HOLDS 64u  /* hostile holds tracked */
#define HDR 16u
#define NO_HIDX UINT32_C(0xffffffff)
#define CALL_NS UINT64_C(50000000) /* 50 ms: the bound of a producer call that never waits */
#define INPUT_BUDGET_NS UINT64_C(50000000) /* ops stop after 50 ms; the finale still runs */
#define WATCHDOG_S 10

#define HMAGIC 0x74736f68u /* "host" */

/* --- message bytes -------------------------------------------------------- */

/* Header: [0..3] seq, [4..7] index among the honest consumer's messages
 * (NO_HIDX: not meant for it), [8..9] hold in us, [10..14] 0, [15] check. */
static uint8_t hdr_check(const uint8_t *h, uint64_t seed)
{
	uint64_t x = seed ^ UINT64_C(0x9e3779b97f4a7c15);
	for (unsigned i = 0; i < HDR - 1; i++)
		x = (x ^ h[i]) * UINT64_C(0x100000001b3);
	return (uint8_t)(x >> 29);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint64_t pattern_seq(uint64_t seed, uint32_t seq)
{
	return (seed % 999983u) * 256u + seq;
}

static void make_message(uint8_t *m, size_t len, uint64_t seed, uint32_t seq, uint32_t hidx, uint16_t hold_us)
{
	memset(m, 0, HDR);
	wr32(m, seq);
	wr32(m + 4, hidx);
	m[8] = (uint8_t)hold_us;
	m[9] = (uint8_t)(hold_us >> 8);
	m[HDR - 1] = hdr_check(m, seed);
	fz_pattern_fill(m + HDR, pattern_seq(seed, seq), HDR, len - HDR);
}

/* 0 when [m, m+len) is an intact message, else -1 and why in msg. */
static int check_message(const uint8_t *m, size_t len, uint64_t seed, uint32_t *seq, uint32_t *hidx, uint16_t *hold,
			 char *msg, size_t msz)
{
	if (len < HDR || !m) {
		snprintf(msg, msz, "slice of %zu bytes (at least %u expected)", len, HDR);
		return -1;
	}
	for (unsigned i = 10; i < HDR - 1; i++)
		if (m[i] != 0) {
			snprintf(msg, msz, "header byte %u is %#x (%zu-byte slice)", i, m[i], len);
			return -1;
		}
	if (m[HDR - 1] != hdr_check(m, seed)) {
		snprintf(msg, msz, "header check byte wrong (%zu-byte slice)", len);
		return -1;
	}
	*seq = rd32(m);
	*hidx = rd32(m + 4);
	*hold = (uint16_t)(m[8] | m[9] << 8);
	long bad = fz_pattern_check(m + HDR, pattern_seq(seed, *seq), HDR, len - HDR);
	if (bad >= 0) {
		snprintf(msg, msz, "message %u (%zu bytes) differs at byte %ld", *seq, len, bad + (long)HDR);
		return -1;
	}
	return 0;
}

/* --- the honest consumer (a child of the helper process) ------------------ */

enum hstatus {
	H_OK = 0,
	H_SETUP = 2,    /* consumer_new failed */
	H_CORRUPT = 3,  /* bytes or header wrong */
	H_ORDER = 4,    /* a message out of order, twice, or a gap */
	H_RECV = 5,     /* recv returned an error */
	H_RELEASE = 6,  /* release refused */
	H_FREE = 7,     /* consumer_free refused */
	H_TIMEOUT = 8,  /* no end within 20 s */
	H_LEFTOVER = 9, /* the producer went away while we held a slice */
	H_MISSED = 10,  /* sv2shm_consumer_missed() is not 0 */
};

struct hparams {
	uint32_t spin_us;
	uint32_t no_io_uring;
};

/* Shared with the honest consumer (a MAP_SHARED page made before the helper
 * is forked): when it last released a slice, for the lost wake-up check. */
struct hshared {
	_Atomic uint64_t last_release_ns; /* CLOCK_MONOTONIC, after the release returned */
	_Atomic uint64_t releases;
};
static struct hshared *hsh;

struct hresult {
	int32_t status;
	int32_t err;
	uint32_t count; /* messages received = the next index expected */
	uint32_t missed;
	char msg[192];
};

static _Noreturn void __attribute__((format(printf, 5, 6)))
honest_exit(int resfd, struct hresult *res, int status, int err, const char *fmt, ...)
{
	res->status = status;
	res->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
	va_end(ap);
	if (write(resfd, res, sizeof(*res)) != (ssize_t)sizeof(*res)) {
		/* the parent reports a missing result */
	}
	_exit(status == H_OK ? 0 : 10 + status);
}

struct hheld {
	struct sv2shm_slice s;
	uint32_t seq, hidx;
	uint64_t deadline;
};

static _Noreturn void honest_main(int sock, int resfd, uint64_t seed, const struct hparams *hp)
{
	struct hresult res;
	memset(&res, 0, sizeof(res));
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = hp->spin_us;
	co.no_io_uring = hp->no_io_uring != 0;
	struct sv2shm_consumer *c;
	int r = sv2shm_consumer_new(sock, &co, &c);
	if (r < 0)
		honest_exit(resfd, &res, H_SETUP, r, "consumer_new: %s", sv2shm_strerror(r));
	enum { MAXH = MAX_MSGS + 8 };
	struct hheld held[MAXH];
	unsigned nheld = 0;
	bool gone = false;
	char msg[128];
	uint64_t end = fz_now_ns() + UINT64_C(20000000000);
	while (!gone || nheld) {
		if (fz_now_ns() > end)
			honest_exit(resfd, &res, H_TIMEOUT, 0, "no end after 20 s (%u received, %u held)", res.count,
				    nheld);
		int timeout = nheld ? 0 : 20;
		while (!gone) {
			struct sv2shm_slice s;
			r = sv2shm_consumer_recv(c, &s, timeout);
			if (r == 0)
				break;
			if (r == -EPIPE) {
				/* The producer is destroyed only once every slot is free:
				 * nothing may be held (or queued) here by then. */
				if (nheld)
					honest_exit(resfd, &res, H_LEFTOVER, 0,
						    "the producer went away while message %u (index %u) was held",
						    held[0].seq, held[0].hidx);
				gone = true;
				break;
			}
			if (r < 0)
				honest_exit(resfd, &res, H_RECV, r, "recv: %d (%s) after %u messages", r,
					    sv2shm_strerror(r), res.count);
			uint32_t seq, hidx;
			uint16_t hold;
			if (sv2shm_slice_kind(&s) != SV2SHM_SLICE_SHARED)
				honest_exit(resfd, &res, H_CORRUPT, 0, "slice kind %d", sv2shm_slice_kind(&s));
			if (check_message(s.data, s.len, seed, &seq, &hidx, &hold, msg, sizeof(msg)) < 0)
				honest_exit(resfd, &res, H_CORRUPT, 0, "on arrival (after %u messages): %s", res.count, msg);
			if (hidx != res.count)
				honest_exit(resfd, &res, H_ORDER, 0,
					    "message %u has index %u, %u expected (a gap, a duplicate or a message "
					    "not meant for this consumer)",
					    seq, hidx, res.count);
			res.count++;
			if (nheld == MAXH)
				honest_exit(resfd, &res, H_ORDER, 0, "more than %d slices held", MAXH);
			held[nheld++] = (struct hheld){s, seq, hidx, fz_now_ns() + (uint64_t)hold * 1000u};
			timeout = 0;
		}
		uint64_t now = fz_now_ns();
		for (unsigned i = 0; i < nheld;) {
			if (held[i].deadline > now && !gone) {
				i++;
				continue;
			}
			uint32_t seq, hidx;
			uint16_t hold;
			if (check_message(held[i].s.data, held[i].s.len, seed, &seq, &hidx, &hold, msg, sizeof(msg)) < 0 ||
			    seq != held[i].seq)
				honest_exit(resfd, &res, H_CORRUPT, 0, "message %u (index %u), before its release: %s",
					    held[i].seq, held[i].hidx, msg);
			r = sv2shm_slice_release(&held[i].s);
			if (r != 0)
				honest_exit(resfd, &res, H_RELEASE, r, "release of message %u: %s", seq,
					    sv2shm_strerror(r));
			atomic_store(&hsh->last_release_ns, fz_now_ns());
			atomic_fetch_add(&hsh->releases, 1);
			held[i] = held[--nheld];
		}
		if (nheld)
			fz_sleep_us(20);
	}
	res.missed = (uint32_t)sv2shm_consumer_missed(c);
	r = sv2shm_consumer_free(c);
	if (r != 0)
		honest_exit(resfd, &res, H_FREE, r, "consumer_free: %s", sv2shm_strerror(r));
	if (res.missed)
		honest_exit(resfd, &res, H_MISSED, 0, "missed %u slices (it was never at its limit)", res.missed);
	honest_exit(resfd, &res, H_OK, 0, "ok");
}

/* --- the helper process that forks honest consumers ----------------------- */

struct zreq {
	uint32_t magic;
	uint32_t reserved;
	uint64_t seed;
	struct hparams hp;
};

struct zrep {
	uint32_t magic;
	int32_t value; /* first reply: the child's pid; second: its wait status */
};

static int zsock = -1;
static pthread_once_t zygote_once = PTHREAD_ONCE_INIT;

static _Noreturn void zygote_main(int s)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		struct zreq req;
		int fds[2];
		union {
			char buf[CMSG_SPACE(sizeof(fds))];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
		ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			_exit(0);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (n != (ssize_t)sizeof(req) || req.magic != HMAGIC || !cm || cm->cmsg_type != SCM_RIGHTS ||
		    cm->cmsg_len != CMSG_LEN(sizeof(fds)))
			_exit(3);
		memcpy(fds, CMSG_DATA(cm), sizeof(fds));
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(s);
			honest_main(fds[0], fds[1], req.seed, &req.hp);
		}
		close(fds[0]);
		close(fds[1]);
		struct zrep rep = {.magic = HMAGIC, .value = (int32_t)pid};
		if (send(s, &rep, sizeof(rep), MSG_NOSIGNAL) != (ssize_t)sizeof(rep))
			_exit(4);
		int st = -1;
		if (pid > 0)
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
			}
		rep.value = st;
		if (send(s, &rep, sizeof(rep), MSG_NOSIGNAL) != (ssize_t)sizeof(rep))
			_exit(4);
	}
}

/* --- the watchdog: a hang is a crash ---------------------------------------- */

static timer_t wd_timer;
static bool wd_ready;
static const char *volatile wd_stage = "start";

static void wd_handler(int sig)
{
	(void)sig;
	static const char pre[] = "\n==hostile== sv2shm fuzz: input still running after 10 s; stage: ";
	const char *st = wd_stage;
	if (write(2, pre, sizeof(pre) - 1) < 0 || write(2, st, strlen(st)) < 0 || write(2, "\n", 1) < 0) {
		/* nothing more to say */
	}
	const char *log = getenv("SV2SHM_FUZZ_FAIL_LOG"); /* see fz_fail() */
	int fd = log && *log ? open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
	if (fd >= 0) {
		if (write(fd, pre + 1, sizeof(pre) - 2) < 0 || write(fd, st, strlen(st)) < 0 || write(fd, "\n", 1) < 0) {
			/* best effort */
		}
		close(fd);
	}
	abort();
}

static void init_once(void)
{
	void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		perror("mmap");
		abort();
	}
	hsh = page;
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

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wd_handler;
	sigaction(SIGRTMIN + 4, &sa, NULL);
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 4;
	wd_ready = timer_create(CLOCK_MONOTONIC, &sev, &wd_timer) == 0;
}

void sv2shm_fuzz_hostile_init(void)
{
	pthread_once(&zygote_once, init_once);
}

static void wd_arm(unsigned seconds)
{
	if (!wd_ready)
		return;
	struct itimerspec its;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = seconds;
	timer_settime(wd_timer, 0, &its, NULL);
}

/* poll() one fd for POLLIN through EINTR: 1 readable, 0 timeout. */
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

/* SV2SHM_FUZZ_VERBOSE=1: trace every operation. */
static int verbose = -1;

static void __attribute__((format(printf, 1, 2))) trace(const char *fmt, ...)
{
	if (verbose < 0) {
		const char *v = getenv("SV2SHM_FUZZ_VERBOSE");
		verbose = v && *v == '1';
	}
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* --- the run ------------------------------------------------------------------ */

struct hold {
	uint16_t slot;
	uint32_t gen;
	uint64_t off, len;
	uint32_t seq;
};

struct run {
	struct sv2shm_producer *p;
	struct sv2shm_pool *pool;
	struct sv2shm_buffer *b;
	uint64_t cap;
	unsigned slots;
	int policy;
	int wait_ms;
	int on_limit;
	unsigned max_held;  /* effective */
	unsigned entries;   /* ring entries */
	bool socket_transport;
	uint64_t seed;
	uint64_t t_start;
	uint8_t *msgbuf;
	uint32_t seq;

	/* honest */
	int honest_id;
	int resfd;
	pid_t honest_pid;
	uint32_t hidx_next; /* messages published to it */

	/* hostile */
	int hostile_id;
	unsigned hbit;
	bool hostile_gone;  /* removed from the producer (an event said so) */
	int hostile_reason; /* the reason it was removed */
	bool hostile_hung_up; /* it closed its channel or shut it down for writing */
	int chan, ctl_fd, data_fd, ring_fd, wake;
	bool setup_read, lazy_setup;
	bool chan_meddled; /* it read from or shut down its channel: the SETUP may be gone */
	struct sv2shm_ring *R; /* its ring mapping (read-write), or NULL */
	size_t ring_size;
	const struct sv2shm_ctl *ctl; /* read-only view, for checking */
	const uint8_t *data;          /* read-only view, for checking */
	struct hold holds[MAX_HOLDS]; /* slots it holds by the rules */
	/* Per slot: a generation the hostile consumer's release record showed
	 * at a check point while the slot had it. The producer latches a release
	 * it sees (it checks only during its own calls, and a check point
	 * follows every op), so that generation is given up for good, whatever
	 * the record says later or a re-read ring entry names (0: none). */
	uint32_t gaveup[64];
	unsigned nholds;
	uint32_t hmissed;       /* SKIP misses publish reported for it */
	bool hmissed_exact;     /* no removal yet: its ring's missed field must say hmissed */
};

/*
 * Durations exclude the time this thread waited for a CPU (run_delay of
 * /proc/thread-self/schedstat, accounted each time it is switched in): on a
 * loaded machine a call can be preempted for tens of milliseconds without
 * blocking. What is left is time running or sleeping. 0 when unavailable.
 */
static int schedstat_fd = -2;

/* The thread's schedstat in one read: *cpu = time on a CPU, return = time
 * waiting for one. */
static uint64_t schedstat(uint64_t *cpu)
{
	*cpu = 0;
	if (schedstat_fd == -2)
		schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	char b[96];
	ssize_t n = schedstat_fd >= 0 ? pread(schedstat_fd, b, sizeof(b) - 1, 0) : -1;
	if (n <= 0)
		return 0;
	b[n] = '\0';
	char *p;
	*cpu = strtoull(b, &p, 10);
	return strtoull(p, NULL, 10);
}

static uint64_t runq_ns(void)
{
	uint64_t cpu;
	return schedstat(&cpu);
}

/* This thread's voluntary context switches: a call that blocked (slept in
 * the kernel) made one. */
static long voluntary_switches(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
}

/* Time one producer call that must not wait. Over CALL_NS it failed — unless
 * the thread neither slept, nor waited for a CPU, nor ran for CALL_NS
 * meanwhile: then the time went below the scheduler (the VM's vCPU
 * descheduled by its host: steal time, which runq_ns() does not see and the
 * kernel leaves out of the time on a CPU; seen once, 66 ms in a call that only
 * reads memory), excused up to 4 x CALL_NS. A call that blocks sleeps; one
 * that spins runs. */
#define QUICK(x, what, call)                                                                                       \
	__extension__({                                                                                            \
		uint64_t c0_, c1_, t0_ = fz_now_ns(), q0_ = schedstat(&c0_);                                       \
		long v0_ = voluntary_switches();                                                                   \
		__typeof__(call) r_ = (call);                                                                      \
		uint64_t q_ = schedstat(&c1_) - q0_, d_ = fz_now_ns() - t0_, c_ = c1_ - c0_;                     \
		long v_ = voluntary_switches() - v0_;                                                              \
		FZ_CHECK(d_ < CALL_NS + q_ || (v_ == 0 && c_ < CALL_NS && d_ < 4u * CALL_NS + q_),                \
			 "%s took %llu ms, %llu of them waiting for a CPU, %ld sleeps (a producer call must never block)", \
			 what, (unsigned long long)(d_ / 1000000u), (unsigned long long)(q_ / 1000000u), v_);            \
		r_;                                                                                                \
	})

static int hostile_is(const struct run *x, int id)
{
	return id == x->hostile_id;
}

/* Removal events: only the hostile consumer may be removed, once. */
static void drain_events(struct run *x)
{
	struct sv2shm_producer_event ev;
	for (;;) {
		int r = QUICK(x, "next_event", sv2shm_producer_next_event(x->p, &ev));
		FZ_CHECK(r == 0 || r == 1, "next_event: %d", r);
		if (r == 0)
			return;
		trace("  event: id %d removed, reason %d, held %u\n", ev.id, ev.reason, ev.held);
		FZ_CHECK(ev.id != x->honest_id, "the honest consumer (id %d) was removed: reason %d, holding %u", ev.id,
			 ev.reason, ev.held);
		FZ_CHECK(hostile_is(x, ev.id), "event for id %d, none of ours (reason %d)", ev.id, ev.reason);
		FZ_CHECK(!x->hostile_gone, "a second removal event for the hostile consumer (reason %d, first %d)",
			 ev.reason, x->hostile_reason);
		FZ_CHECK(ev.reason >= SV2SHM_EVENT_HANGUP && ev.reason <= SV2SHM_EVENT_REMOVED, "event reason %d",
			 ev.reason);
		FZ_CHECK(ev.reason != SV2SHM_EVENT_LIMIT || x->on_limit == SV2SHM_LIMIT_DISCONNECT,
			 "removed for its limit under on_limit %d", x->on_limit);
		FZ_CHECK(ev.held <= x->max_held, "the hostile consumer held %u slots when removed, max_held %u", ev.held,
			 x->max_held);
		x->hostile_gone = true;
		x->hostile_reason = ev.reason;
		x->nholds = 0; /* its holds vanished with it */
		x->hmissed_exact = false;
	}
}

/* --- the hostile consumer's side ------------------------------------------ */

static void hostile_read_setup(struct run *x)
{
	if (x->setup_read || x->chan < 0)
		return;
	x->setup_read = true;
	struct sv2shm_msg_setup m;
	int fds[SETUP_NFDS] = {-1, -1, -1, -1};
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n = recvmsg(x->chan, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if ((x->chan_meddled || x->hostile_gone) && (n != (ssize_t)sizeof(m) || !cm)) {
		/* It read the SETUP away or shut its channel, or the producer
		 * removed it (ECONNRESET when it had sent data the producer never
		 * read): no fds, no ring. */
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(fd);
			}
		return;
	}
	/* The producer sent it in add_consumer, before anything else. */
	FZ_CHECK(n == (ssize_t)sizeof(m), "hostile: SETUP message of %zd bytes (%s)", n, n < 0 ? strerror(errno) : "");
	FZ_CHECK(cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(fds)), "hostile: SETUP fds");
	memcpy(fds, CMSG_DATA(cm), sizeof(fds));
	FZ_CHECK(m.hdr.magic == SV2SHM_MSG_MAGIC && m.hdr.version == SV2SHM_MSG_VERSION && m.hdr.type == SV2SHM_MSG_SETUP &&
			 m.holder == x->hbit && m.nslots == x->slots && m.capacity == x->cap &&
			 m.ring_entries == x->entries &&
			 (m.notify == SV2SHM_NOTIFY_SOCKET || m.notify == SV2SHM_NOTIFY_FUTEX),
		 "hostile: SETUP message fields");
	x->ctl_fd = fds[SETUP_FD_CTL];
	x->data_fd = fds[SETUP_FD_DATA];
	x->ring_fd = fds[SETUP_FD_RING];
	x->wake = fds[SETUP_FD_WAKE];
	/* What a consumer can never get: write access to the shared region. */
	int cs = fcntl(x->ctl_fd, F_GET_SEALS), ds = fcntl(x->data_fd, F_GET_SEALS), rs = fcntl(x->ring_fd, F_GET_SEALS);
	FZ_CHECK(cs >= 0 && ((unsigned)cs & REGION_CTL_SEALS) == REGION_CTL_SEALS, "ctl memfd seals %#x", cs);
	FZ_CHECK(ds >= 0 && ((unsigned)ds & REGION_DATA_SEALS) == REGION_DATA_SEALS, "data memfd seals %#x", ds);
	FZ_CHECK(rs >= 0 && ((unsigned)rs & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
				    (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
		 "ring memfd seals %#x", rs);
	int type = 0;
	socklen_t tl = sizeof(type);
	FZ_CHECK(getsockopt(x->wake, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM, "wake fd type");
	x->ctl = mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ, MAP_SHARED, x->ctl_fd, 0);
	FZ_CHECK(x->ctl != MAP_FAILED, "hostile: mmap ctl read-only: %s", strerror(errno));
	FZ_CHECK(x->ctl->region_id == m.region_id && x->ctl->nslots == x->slots, "ctl identity");
	if (x->cap) {
		x->data = mmap(NULL, (size_t)x->cap, PROT_READ, MAP_SHARED, x->data_fd, 0);
		FZ_CHECK(x->data != MAP_FAILED, "hostile: mmap data read-only: %s", strerror(errno));
	} else {
		x->data = NULL;
	}
	x->ring_size = ring_bytes(x->entries);
	struct stat st;
	FZ_CHECK(fstat(x->ring_fd, &st) == 0 && (size_t)st.st_size == x->ring_size, "ring size");
	void *rm = mmap(NULL, x->ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, x->ring_fd, 0);
	FZ_CHECK(rm != MAP_FAILED, "hostile: mmap ring: %s", strerror(errno));
	x->R = rm;
	FZ_CHECK(x->R->magic == SV2SHM_RING_MAGIC && x->R->nentries == x->entries, "ring identity");
}

static bool need_ring(struct run *x)
{
	if (!x->setup_read && x->lazy_setup)
		hostile_read_setup(x);
	return x->R != NULL;
}

/* A hold (slot, gen) is by the rules while the producer's view gives that
 * generation to the hostile bit and its release record is not that
 * generation: its bytes must stay. Drop holds it gave up (its record says
 * the generation, however it got there). */
static uint32_t ctl_gen(const struct run *x, unsigned slot);

static void holds_update(struct run *x)
{
	if (!x->R || x->hostile_gone) {
		if (x->hostile_gone)
			x->nholds = 0;
		return;
	}
	for (unsigned s = 0; s < x->slots && s < 64; s++) {
		uint32_t g = ctl_gen(x, s);
		if (g && atomic_load(&x->R->released[s]) == g)
			x->gaveup[s] = g;
	}
	for (unsigned i = 0; i < x->nholds;) {
		struct hold *h = &x->holds[i];
		if (atomic_load(&x->R->released[h->slot]) == h->gen || x->gaveup[h->slot] == h->gen) {
			x->holds[i] = x->holds[--x->nholds];
			continue;
		}
		i++;
	}
}

static void holds_check(struct run *x, const char *after)
{
	holds_update(x);
	if (x->hostile_gone || !x->ctl)
		return;
	char msg[128];
	for (unsigned i = 0; i < x->nholds; i++) {
		const struct hold *h = &x->holds[i];
		uint64_t st = atomic_load(&((struct sv2shm_ctl *)(uintptr_t)x->ctl)->slots[h->slot].state);
		uint64_t off, len;
		FZ_CHECK(SV2SHM_STATE_GEN(st) == h->gen && sv2shm_pool_slot_range(x->pool, h->slot, &off, &len) == 1,
			 "after %s: slot %u, generation %u held by the hostile consumer by the rules, was claimed again "
			 "(generation %u now)",
			 after, h->slot, h->gen, SV2SHM_STATE_GEN(st));
		uint32_t seq, hidx;
		uint16_t hold;
		FZ_CHECK(check_message(x->data + h->off, (size_t)h->len, x->seed, &seq, &hidx, &hold, msg, sizeof(msg)) ==
					 0 &&
				 seq == h->seq,
			 "after %s: slot %u (generation %u) held by the hostile consumer by the rules changed: %s", after,
			 h->slot, h->gen, msg);
	}
}

/* The hostile consumer takes a descriptor (from wherever its tail points,
 * or from the socket) and, if it is a real hold, remembers it. */
static void hostile_take(struct run *x, const uint8_t raw[SV2SHM_DESC_SIZE])
{
	struct sv2shm_desc d;
	if (sv2shm_desc_decode(raw, &d) < 0 || d.kind != SV2SHM_DESC_POOL || d.slot >= x->slots || !x->ctl ||
	    x->hostile_gone || !x->R)
		return;
	uint64_t st = atomic_load(&((struct sv2shm_ctl *)(uintptr_t)x->ctl)->slots[d.slot].state);
	const struct sv2shm_ctl_slot *cs = &x->ctl->slots[d.slot];
	if (SV2SHM_STATE_GEN(st) != d.generation || !(SV2SHM_STATE_HOLDERS(st) & (UINT32_C(1) << x->hbit)) ||
	    atomic_load(&x->R->released[d.slot]) == d.generation || x->gaveup[d.slot] == d.generation ||
	    d.offset != cs->offset || d.length != cs->length ||
	    d.offset > x->cap || d.length > x->cap - d.offset)
		return; /* stale, forged or already given up: not a hold by the rules */
	/* And the producer still counts the slot live (a slot it dropped keeps
	 * its last view in the control block; its memory is free for reuse). */
	uint64_t off, len;
	if (sv2shm_pool_slot_range(x->pool, d.slot, &off, &len) != 1 || off != d.offset || len != d.length)
		return;
	char msg[128];
	uint32_t seq, hidx;
	uint16_t hold;
	FZ_CHECK(check_message(x->data + d.offset, (size_t)d.length, x->seed, &seq, &hidx, &hold, msg, sizeof(msg)) == 0,
		 "hostile: a live slot (%u, generation %u) published to it does not hold a message: %s", d.slot,
		 d.generation, msg);
	for (unsigned i = 0; i < x->nholds; i++)
		if (x->holds[i].slot == d.slot && x->holds[i].gen == d.generation)
			return;
	if (x->nholds < MAX_HOLDS)
		x->holds[x->nholds++] = (struct hold){d.slot, d.generation, d.offset, d.length, seq};
}

static void op_pop(struct run *x, struct fz *in)
{
	unsigned n = 1u + fz_u8(in) % 8u;
	if (!need_ring(x))
		return;
	for (unsigned i = 0; i < n; i++) {
		uint8_t raw[SV2SHM_DESC_SIZE];
		if (x->socket_transport) {
			struct sv2shm_msg_desc m;
			if (x->chan < 0)
				return;
			ssize_t k = recv(x->chan, &m, sizeof(m), MSG_DONTWAIT);
			if (k != (ssize_t)sizeof(m))
				return;
			memcpy(raw, m.desc, sizeof(raw));
		} else {
			uint32_t head = atomic_load(&x->R->head), tail = atomic_load(&x->R->tail);
			if (head == tail)
				return;
			memcpy(raw, x->R->slots + (size_t)(tail & (x->entries - 1u)) * SV2SHM_RING_ENTRY_SIZE, sizeof(raw));
			atomic_store(&x->R->tail, tail + 1u);
		}
		hostile_take(x, raw);
	}
}

static uint32_t ctl_gen(const struct run *x, unsigned slot)
{
	if (!x->ctl || slot >= x->slots)
		return 0;
	return SV2SHM_STATE_GEN(atomic_load(&((struct sv2shm_ctl *)(uintptr_t)x->ctl)->slots[slot].state));
}

static void op_release(struct run *x, struct fz *in)
{
	uint8_t a = fz_u8(in);
	if (!need_ring(x) || !x->nholds)
		return;
	const struct hold *h = &x->holds[a % x->nholds];
	atomic_store(&x->R->released[h->slot], h->gen);
	if (a & 0x80u) /* and once more */
		atomic_store(&x->R->released[h->slot], h->gen);
}

static void op_release_raw(struct run *x, struct fz *in)
{
	unsigned slot = fz_u8(in) % 64u;
	uint8_t mode = fz_u8(in);
	uint32_t v = (mode & 4u) ? fz_u32(in) : 0;
	if (!need_ring(x))
		return;
	uint32_t g = ctl_gen(x, slot);
	switch (mode & 3u) {
	case 0: /* the slot's current generation, given to us or not */
		v = g;
		break;
	case 1: /* the next one: released before it is even published */
		v = g + 1u;
		break;
	case 2:
		v = g - 1u;
		break;
	default:
		break;
	}
	atomic_store(&x->R->released[slot], v);
}

/* Take a release back: the record no longer says the generation it said. */
static void op_unrelease(struct run *x, struct fz *in)
{
	uint8_t a = fz_u8(in);
	if (!need_ring(x))
		return;
	if (a & 0x80u) {
		for (unsigned s = 0; s < 64; s++)
			atomic_store(&x->R->released[s], 0);
	} else {
		unsigned s = a % 64u;
		atomic_store(&x->R->released[s], atomic_load(&x->R->released[s]) ^ 0x80000000u);
	}
}

static void op_tail(struct run *x, struct fz *in)
{
	uint8_t mode = fz_u8(in);
	uint32_t v = fz_u32(in);
	if (!need_ring(x))
		return;
	uint32_t head = atomic_load(&x->R->head), tail = atomic_load(&x->R->tail);
	switch (mode % 5u) {
	case 0: /* skip everything queued (the holds stay ours) */
		atomic_store(&x->R->tail, head);
		break;
	case 1:
		atomic_store(&x->R->tail, head + (uint32_t)(int32_t)(int8_t)v);
		break;
	case 2:
		atomic_store(&x->R->tail, v);
		break;
	case 3: /* read an entry again */
		atomic_store(&x->R->tail, tail - 1u - (v & 7u));
		break;
	default: /* exactly one ring ahead of the producer */
		atomic_store(&x->R->tail, head - x->entries - (v & 1u));
		break;
	}
}

static void op_field(struct run *x, struct fz *in)
{
	uint8_t which = fz_u8(in);
	uint32_t v = fz_u32(in);
	if (!need_ring(x))
		return;
	struct sv2shm_ring *R = x->R;
	switch (which % 11u) {
	case 10:
		atomic_store(&R->wake_seq, v);
		break;
	case 0:
		atomic_store(&R->head, v);
		break;
	case 1:
		atomic_store(&R->waiting, v);
		break;
	case 2:
		atomic_store(&R->missed, v);
		break;
	case 3:
		atomic_store(&R->consumer_sleeping, v & 0x80u ? v : v % 3u); /* SLEEP_NO, _FUTEX, _SOCKET */
		break;
	case 4:
		R->magic = v;
		break;
	case 5:
		R->version = v;
		break;
	case 6:
		R->nentries = v;
		break;
	case 7:
		R->entry_size = v;
		break;
	case 8:
		R->region_id = v;
		break;
	default: /* a forged descriptor in the next entry the producer fills */
	{
		struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
					.kind = SV2SHM_DESC_POOL,
					.slot = (uint16_t)(v % x->slots),
					.generation = ctl_gen(x, v % x->slots),
					.region_id = x->ctl ? x->ctl->region_id : 0,
					.offset = (v >> 8) % (x->cap + 1u),
					.length = 0};
		sv2shm_desc_encode(&d, R->slots + (size_t)(atomic_load(&R->head) & (x->entries - 1u)) * SV2SHM_RING_ENTRY_SIZE);
		break;
	}
	}
}

static void op_scribble(struct run *x, struct fz *in)
{
	uint16_t off = fz_u16(in);
	uint8_t len = fz_u8(in), byte = fz_u8(in);
	if (!need_ring(x))
		return;
	size_t o = off % x->ring_size, n = len;
	if (n > x->ring_size - o)
		n = x->ring_size - o;
	memset((uint8_t *)x->R + o, byte, n);
}

/* Attacks on the memfds. ctl and data: every write path must fail. The
 * ring is writable by design: punching it is like zeroing it. */
static void op_attack(struct run *x, struct fz *in)
{
	uint8_t a = fz_u8(in);
	if (!need_ring(x))
		return;
	unsigned which = (a >> 4) % 3u; /* 0 ctl, 1 data, 2 ring */
	int fd = which == 0 ? x->ctl_fd : which == 1 ? x->data_fd : x->ring_fd;
	if (fd < 0)
		return;
	size_t size = which == 0 ? sizeof(struct sv2shm_ctl) : which == 1 ? (size_t)x->cap : x->ring_size;
	if (size == 0)
		return;
	bool sealed = which != 2;
	const char *name = which == 0 ? "ctl" : which == 1 ? "data" : "ring";
	static const uint8_t junk[8] = {0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef};
	switch (a % 12u) {
	case 0: {
		ssize_t k = pwrite(fd, junk, sizeof(junk) < size ? sizeof(junk) : size, 0);
		FZ_CHECK(!sealed || k < 0, "hostile: pwrite() on the %s memfd wrote %zd bytes", name, k);
		break;
	}
	case 1: {
		void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		FZ_CHECK(!sealed || m == MAP_FAILED, "hostile: a writable shared mapping of the %s memfd", name);
		if (m != MAP_FAILED)
			munmap(m, size);
		break;
	}
	case 2: {
		void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		FZ_CHECK(m != MAP_FAILED, "read-only mapping of the %s memfd: %s", name, strerror(errno));
		int r = mprotect(m, size, PROT_READ | PROT_WRITE);
		FZ_CHECK(!sealed || r < 0, "hostile: mprotect(PROT_WRITE) of a shared mapping of the %s memfd", name);
		munmap(m, size);
		break;
	}
	case 3: {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		int rw = open(path, O_RDWR | O_CLOEXEC);
		if (rw < 0)
			break;
		ssize_t k = pwrite(rw, junk, 1, 0);
		FZ_CHECK(!sealed || k < 0, "hostile: the %s memfd reopened O_RDWR took a write", name);
		void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
		FZ_CHECK(!sealed || m == MAP_FAILED, "hostile: the %s memfd reopened O_RDWR mapped writable", name);
		if (m != MAP_FAILED)
			munmap(m, size);
		close(rw);
		break;
	}
	case 4: {
		int r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
		FZ_CHECK(!sealed || r < 0, "hostile: punched a hole in the %s memfd", name);
		break;
	}
	case 5: {
		int r = fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
		FZ_CHECK(!sealed || r < 0, "hostile: zeroed a range of the %s memfd", name);
		break;
	}
	case 6: {
		int r1 = ftruncate(fd, 0), r2 = ftruncate(fd, (off_t)size * 2);
		FZ_CHECK(r1 < 0 && r2 < 0, "hostile: truncated (%d) or grew (%d) the %s memfd", r1, r2, name);
		break;
	}
	case 7: {
		int r = fallocate(fd, 0, 0, (off_t)size + 4096);
		FZ_CHECK(r < 0, "hostile: fallocate() grew the %s memfd", name);
		break;
	}
	case 8: {
		int r = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_FUTURE_WRITE);
		FZ_CHECK(r < 0, "hostile: added seals to the %s memfd (F_SEAL_SEAL is missing)", name);
		break;
	}
	case 9: {
		if (which == 2) {
			/* Our own writable mapping: MADV_REMOVE frees (zeroes) it. */
			madvise(x->R, x->ring_size, MADV_REMOVE);
			break;
		}
		void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		FZ_CHECK(m != MAP_FAILED, "read-only mapping: %s", strerror(errno));
		int r = madvise(m, size, MADV_REMOVE);
		FZ_CHECK(r < 0, "hostile: MADV_REMOVE on a read-only mapping of the %s memfd", name);
		madvise(m, size, MADV_DONTNEED); /* harmless: drops our own pages */
		munmap(m, size);
		break;
	}
	case 10: {
		/* A private writable mapping is allowed: copy-on-write, the file
		 * (and everyone else's view) stays. */
		uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED) {
			memset(m, 0xa5, size);
			munmap(m, size);
		}
		if (which == 0)
			FZ_CHECK(x->ctl->magic == SV2SHM_CTL_MAGIC && x->ctl->nslots == x->slots,
				 "a private mapping's writes reached the control block");
		break;
	}
	default: {
		ssize_t k = write(fd, junk, 1);
		FZ_CHECK(!sealed || k < 0, "hostile: write() on the %s memfd wrote %zd bytes", name, k);
		break;
	}
	}
}

/* A word of the hostile consumer's own (private) memory, for requeues. */
static uint32_t hostile_word;

static long futex(const void *addr, int op, uint32_t val, uintptr_t val2, const void *addr2, uint32_t val3)
{
	return syscall(SYS_futex, addr, op, val, val2, addr2, val3);
}

/* Futex calls on the words it can map: the control block's (read-only;
 * the producer may sleep on release_seq) and its ring's. */
static void op_futex(struct run *x, struct fz *in)
{
	uint8_t mode = fz_u8(in), arg = fz_u8(in);
	if (!need_ring(x) || !x->ctl)
		return;
	const _Atomic uint32_t *rel = &x->ctl->release_seq;
	const uint32_t *word = (const uint32_t *)(const void *)((const uint8_t *)x->ctl +
								 (arg * 4u) % sizeof(struct sv2shm_ctl));
	switch (mode % 8u) {
	case 0: /* wake whoever sleeps on release_seq (spurious wake-ups: allowed) */
		futex(rel, FUTEX_WAKE, INT32_MAX, 0, NULL, 0);
		break;
	case 1: /* move whoever sleeps on release_seq to a word of its own */
		futex(rel, FUTEX_CMP_REQUEUE, 0, INT32_MAX, &hostile_word, atomic_load(rel));
		break;
	case 2: /* and wake them there */
		futex(&hostile_word, FUTEX_WAKE, INT32_MAX, 0, NULL, 0);
		break;
	case 3: /* any word of the control block */
		futex(word, FUTEX_WAKE, INT32_MAX, 0, NULL, 0);
		break;
	case 4: /* a requeue from any word of the control block */
		futex(word, FUTEX_CMP_REQUEUE, arg & 1u, INT32_MAX, &hostile_word, *(const volatile uint32_t *)word);
		break;
	case 5: { /* FUTEX_WAKE_OP writes its second word: never the sealed control block */
		long r = futex(&hostile_word, FUTEX_WAKE_OP, 1, 1, rel, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
		FZ_CHECK(r < 0, "hostile: FUTEX_WAKE_OP wrote to the control block (%ld)", r);
		break;
	}
	case 6: /* its own ring's words */
		if (x->R) {
			futex(&x->R->wake_seq, (arg & 1u) ? FUTEX_WAKE : FUTEX_CMP_REQUEUE, INT32_MAX, INT32_MAX,
			      &hostile_word, atomic_load(&x->R->wake_seq));
			futex(&x->R->released[arg % 64u], FUTEX_WAKE, INT32_MAX, 0, NULL, 0);
		}
		break;
	default: /* a wait that cannot sleep: a value the word does not have */
		futex(rel, FUTEX_WAIT, atomic_load(rel) + 1u, 0, NULL, 0);
		break;
	}
}

static void fill_junk(uint8_t *buf, size_t n, uint32_t salt)
{
	fz_pattern_fill(buf, salt, 0, n);
}

static void send_fd(int sock, int fd, const void *bytes, size_t n)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {.iov_base = (void *)(uintptr_t)bytes, .iov_len = n};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* full or shut down: fine */
	}
}

/* Datagrams and socket options on the wake socket (mode < 8) or the
 * channel (mode >= 8). Every send is MSG_DONTWAIT: the hostile consumer is
 * this process. */
static void op_socket(struct run *x, struct fz *in, bool chan)
{
	uint8_t mode = fz_u8(in), n = fz_u8(in);
	if (!chan && !need_ring(x))
		return;
	int s = chan ? x->chan : x->wake;
	if (s < 0)
		return;
	static uint8_t buf[4096];
	switch (mode % 9u) {
	case 0: /* n small datagrams of junk */
		for (unsigned i = 0; i <= n % 64u; i++) {
			size_t len = 1u + (i * 37u + n) % (chan ? 100u : 16u);
			fill_junk(buf, len, n + i);
			if (send(s, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				break;
		}
		break;
	case 1: /* n zero-length datagrams */
		for (unsigned i = 0; i <= n % 64u; i++)
			if (send(s, buf, 0, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				break;
		break;
	case 2: /* flood until the queue is full */
	{
		size_t len = (n & 1u) ? sizeof(buf) : 1u;
		fill_junk(buf, len, n);
		for (unsigned i = 0; i < 4096u; i++)
			if (send(s, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				break;
		break;
	}
	case 3: /* an fd along (the ring's, or the socket itself) */
		fill_junk(buf, 8, n);
		send_fd(s, (n & 1u) && x->ring_fd >= 0 ? x->ring_fd : s, buf, (n & 2u) ? 8u : 0u);
		break;
	case 4: /* our end blocking (a flag of our file description only) */
	{
		int fl = fcntl(s, F_GETFL);
		if (fl >= 0)
			fcntl(s, F_SETFL, (n & 1u) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
		break;
	}
	case 5: /* tiny buffers on our end */
	{
		int v = 1 + n;
		setsockopt(s, SOL_SOCKET, (n & 1u) ? SO_RCVBUF : SO_SNDBUF, &v, sizeof(v));
		break;
	}
	case 6: /* read what the producer sent us (wake-ups, descriptors, ...) */
		x->chan_meddled |= chan;
		for (unsigned i = 0; i < 64u; i++)
			if (recv(s, buf, sizeof(buf), MSG_DONTWAIT) < 0)
				break;
		break;
	case 7: /* stop reading */
		x->chan_meddled |= chan;
		shutdown(s, SHUT_RD);
		break;
	default: /* stop writing: on the channel, a hang-up */
		x->chan_meddled |= chan;
		if (shutdown(s, (n & 1u) ? SHUT_RDWR : SHUT_WR) == 0 && chan)
			x->hostile_hung_up = true;
		break;
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void op_close(struct run *x, struct fz *in)
{
	uint8_t what = fz_u8(in);
	switch (what % 5u) {
	case 0: /* hang up */
		if (x->chan >= 0)
			x->hostile_hung_up = true;
		close_fd(&x->chan);
		break;
	case 1:
		if (need_ring(x))
			close_fd(&x->wake);
		break;
	case 2:
		if (need_ring(x))
			close_fd(&x->ring_fd);
		break;
	case 3: /* no more ring: its last records stay */
		if (need_ring(x)) {
			holds_update(x);
			munmap(x->R, x->ring_size);
			x->R = NULL;
		}
		break;
	default:
		if (x->chan >= 0)
			x->hostile_hung_up = true;
		close_fd(&x->chan);
		close_fd(&x->wake);
		close_fd(&x->ring_fd);
		close_fd(&x->ctl_fd);
		close_fd(&x->data_fd);
		break;
	}
}

/* --- the producer's side -------------------------------------------------- */

static void check_pool(struct run *x, const char *after)
{
	struct sv2shm_pool_stats st;
	FZ_CHECK(sv2shm_pool_stats(x->pool, &st) == 0, "stats");
	uint64_t all = (UINT64_C(1) << x->slots) - 1u;
	FZ_CHECK((st.mask & ~all) == 0 && st.live <= x->slots, "after %s: mask %#llx, live %llu, %u slots", after,
		 (unsigned long long)st.mask, (unsigned long long)st.live, x->slots);
	FZ_CHECK(st.from_system == 0, "after %s: a FAIL/WAIT pool served from system memory", after);
	uint64_t lo[64], hi[64];
	unsigned n = 0;
	for (unsigned s = 0; s < x->slots; s++) {
		uint64_t off, len;
		if (sv2shm_pool_slot_range(x->pool, s, &off, &len) != 1 || len == 0)
			continue;
		FZ_CHECK(off <= x->cap && len <= x->cap - off, "after %s: slot %u outside the region", after, s);
		for (unsigned i = 0; i < n; i++)
			FZ_CHECK(off + len <= lo[i] || hi[i] <= off, "after %s: slot %u overlaps another live slice", after,
				 s);
		lo[n] = off;
		hi[n++] = off + len;
	}
	/* A consumer pins at most max_held slots (ipc.h: "a consumer can only
	 * hurt itself, and, while it lives, pin up to its limit of slots"). */
	int hh = QUICK(x, "held", sv2shm_producer_held(x->p, x->honest_id));
	FZ_CHECK(hh >= 0 && (unsigned)hh <= x->max_held, "after %s: the honest consumer holds %d slots, max_held %u",
		 after, hh, x->max_held);
	if (!x->hostile_gone) {
		int h = QUICK(x, "held", sv2shm_producer_held(x->p, x->hostile_id));
		FZ_CHECK(h >= 0 && (unsigned)h <= x->max_held,
			 "after %s: the hostile consumer pins %d slots, max_held is %u (%d: %s)", after, h, x->max_held,
			 h, h < 0 ? sv2shm_strerror(h) : "held");
	}
}

/* The honest consumer holds fewer than min(max_held, ring entries) slots,
 * so it cannot be at its limit: wait a little for that, else leave it out. */
static bool honest_ready(struct run *x)
{
	unsigned lim = x->max_held;
	if (!x->socket_transport && x->entries < lim)
		lim = x->entries;
	uint64_t t0 = fz_now_ns();
	for (;;) {
		int h = QUICK(x, "held", sv2shm_producer_held(x->p, x->honest_id));
		FZ_CHECK(h >= 0, "held(honest): %d (%s)", h, sv2shm_strerror(h));
		if ((unsigned)h < lim)
			return true;
		if (fz_now_ns() - t0 > UINT64_C(20000000))
			return false;
		QUICK(x, "flush", sv2shm_producer_flush(x->p));
		fz_sleep_us(30);
	}
}

/* Under valgrind everything is slow enough to blur wake-up latencies. */
static bool under_valgrind(void)
{
	static int v = -1;
	if (v < 0) {
		const char *p = getenv("LD_PRELOAD");
		v = p && strstr(p, "vgpreload") != NULL;
	}
	return v;
}

/* get_writable, timed: NULL (and why in *err) or the room.
 *
 * A WAIT that finds room must have been woken by the release that made it:
 * during the call only the honest consumer's releases (and a removal, which
 * queues an event) change which slots are free, so room at the end means
 * room since its last release (or since the start, if that came earlier).
 * So a WAIT that ran to its deadline and then found room is a lost wake-up
 * when that release came 2 ms or more before the deadline (and 4 ms or more
 * before the end): a woken producer returns at once. Time the producer spent
 * waiting for a CPU (runq_ns()) is left out of both. Checked for
 * wait_timeout_ms >= 5, not under valgrind. */
#define LOST_WAKEUP_NS UINT64_C(4000000)
static uint8_t *timed_writable(struct run *x, size_t n, int *err)
{
	bool gone_before = x->hostile_gone;
	uint64_t t0 = fz_now_ns(), q0 = runq_ns();
	uint8_t *w = sv2shm_buffer_get_writable(x->b, n);
	uint64_t q = runq_ns() - q0, t1 = fz_now_ns(), d = t1 - t0;
	uint64_t last = atomic_load(&hsh->last_release_ns);
	uint64_t bound = (uint64_t)x->wait_ms * 1000000u + CALL_NS;
	FZ_CHECK(d < bound + q, "get_writable(%zu) took %llu ms, %llu of them waiting for a CPU (%s, wait_timeout_ms %d)", n,
		 (unsigned long long)(d / 1000000u), (unsigned long long)(q / 1000000u),
		 x->policy == SV2SHM_POOL_WAIT ? "WAIT" : "FAIL", x->wait_ms);
	*err = w ? 0 : sv2shm_buffer_last_error(x->b);
	drain_events(x);
	/* Time spent waiting for a CPU counts as if it had not passed. */
	uint64_t deadline = t0 + (uint64_t)x->wait_ms * 1000000u;
	if (w && x->policy == SV2SHM_POOL_WAIT && x->wait_ms >= 5 && gone_before == x->hostile_gone &&
	    d >= q + (uint64_t)x->wait_ms * 1000000u && last + UINT64_C(2000000) <= deadline &&
	    last + LOST_WAKEUP_NS + q <= t1 && !under_valgrind()) {
		char map[65];
		sv2shm_pool_slot_map(x->pool, map, sizeof(map));
		if (last >= t0)
			FZ_CHECK(0,
				 "lost wake-up: a WAIT get_writable(%zu) ran to its deadline and found room %llu us after "
				 "the honest consumer's last release (it waited %llu us; wait_timeout_ms %d, notify %s, "
				 "slots %s)",
				 n, (unsigned long long)((t1 - last) / 1000u), (unsigned long long)(d / 1000u), x->wait_ms,
				 sv2shm_producer_notify_name(x->p), map);
		else
			FZ_CHECK(0,
				 "a WAIT get_writable(%zu) ran to its deadline (%llu us) and then found room that was "
				 "there from the start (wait_timeout_ms %d, slots %s)",
				 n, (unsigned long long)(d / 1000u), x->wait_ms, map);
	}
	return w;
}

/* Write a message of `len` bytes (1 or 2 get_writable calls) and take it:
 * 1 (slice in *s), 0 (the pool had no room). */
static int write_message(struct run *x, size_t len, uint32_t hidx, uint16_t hold, bool two, struct sv2shm_slice *s)
{
	x->seq++;
	make_message(x->msgbuf, len, x->seed, x->seq, hidx, hold);
	size_t first = two ? len / 2 : len;
	int err = 0;
	size_t need = first; /* the slice's length the failing call asked for */
	uint8_t *w = timed_writable(x, first, &err);
	if (w) {
		memcpy(w, x->msgbuf, first);
		if (first < len) {
			need = len;
			w = timed_writable(x, len - first, &err);
			if (w)
				memcpy(w, x->msgbuf + first, len - first);
		}
	}
	drain_events(x); /* a WAIT may have noticed the hostile's hang-up */
	if (!w) {
		if (need > x->cap)
			FZ_CHECK(err == -EMSGSIZE, "get_writable: a %zu-byte slice in a pool of %llu: %d (%s), not -EMSGSIZE",
				 need, (unsigned long long)x->cap, err, sv2shm_strerror(err));
		else
			FZ_CHECK(err == (x->policy == SV2SHM_POOL_WAIT ? -ETIMEDOUT : -EAGAIN),
				 "get_writable: a %zu-byte slice: %d (%s)", need, err, sv2shm_strerror(err));
	}
	FZ_CHECK(sv2shm_buffer_get_data_owned(x->b, s) == 0, "get_data_owned");
	if (!w || sv2shm_slice_kind(s) != SV2SHM_SLICE_POOL) {
		FZ_CHECK(!w || sv2shm_slice_kind(s) == SV2SHM_SLICE_EMPTY, "slice kind %d", sv2shm_slice_kind(s));
		FZ_CHECK(sv2shm_slice_release(s) == 0, "release of a dropped message");
		return 0;
	}
	FZ_CHECK(s->len == len && memcmp(s->data, x->msgbuf, len) == 0, "message %u differs after get_data_owned", x->seq);
	return 1;
}

/* Publish *s to the targets: returns publish's result, after checking it. */
static int publish(struct run *x, struct sv2shm_slice *s, bool to_honest, bool to_hostile, unsigned flags)
{
	int ids[2];
	unsigned n = 0;
	if (to_honest)
		ids[n++] = x->honest_id;
	if (to_hostile)
		ids[n++] = x->hostile_id;
	struct sv2shm_slice before = *s;
	int r = QUICK(x, "publish", sv2shm_producer_publish(x->p, s, ids, n, flags));
	trace("  publish message %u (slot %u gen %u, %zu bytes) to%s%s: %d\n", x->seq, before._slot, before._gen,
	      before.len, to_honest ? " honest" : "", to_hostile ? " hostile" : "", r);
	bool removed_before = x->hostile_gone;
	drain_events(x);
	bool removed_now = x->hostile_gone && !removed_before;
	if (r >= 0) {
		FZ_CHECK(sv2shm_slice_kind(s) == SV2SHM_SLICE_NONE, "published slice not cleared (publish: %d)", r);
		/* Only the hostile consumer may be left out: the honest one is
		 * paced below its limit. */
		FZ_CHECK(r <= (to_hostile ? 1 : 0), "publish to %s%s: %d consumers did not get it",
			 to_honest ? "honest " : "", to_hostile ? "hostile" : "", r);
		if (r == 1 && !removed_now) {
			/* Skipped: under SKIP or REFUSE (a full socket), counted in its
			 * ring for it to read. */
			FZ_CHECK(x->on_limit != SV2SHM_LIMIT_DISCONNECT,
				 "DISCONNECT: the hostile consumer missed a slice and was not removed");
			x->hmissed++;
			if (x->hmissed_exact && x->R)
				FZ_CHECK(atomic_load(&x->R->missed) == x->hmissed,
					 "the hostile consumer's ring says %u missed, publish left it out %u times",
					 atomic_load(&x->R->missed), x->hmissed);
		}
		if (r == 0 && to_hostile)
			FZ_CHECK(!removed_now, "publish delivered to the hostile consumer and removed it");
		return r;
	}
	FZ_CHECK(!removed_now || r == -EAGAIN, "publish: %d and the hostile consumer removed", r);
	FZ_CHECK(sv2shm_slice_kind(s) == sv2shm_slice_kind(&before) && s->data == before.data,
		 "publish failed (%d) and consumed the slice", r);
	/* REFUSE: the hostile consumer is at its limit (never the honest one). */
	FZ_CHECK(r == -EAGAIN && x->on_limit == SV2SHM_LIMIT_REFUSE && to_hostile,
		 "publish to %s%s: %d (%s)", to_honest ? "honest " : "", to_hostile ? "hostile" : "", r,
		 sv2shm_strerror(r));
	return r;
}

static void op_msg(struct run *x, struct fz *in)
{
	uint8_t tsel = fz_u8(in), lb = fz_u8(in), hb = fz_u8(in), fl = fz_u8(in);
	bool to_hostile = (tsel & 3u) != 0 && !x->hostile_gone;
	bool to_honest = (tsel & 3u) != 1 && x->hidx_next < MAX_MSGS;
	if (to_honest)
		to_honest = honest_ready(x);
	if (!to_honest && !to_hostile)
		return;
	size_t len;
	if ((lb & 0xc0u) == 0xc0u) {
		uint64_t d = lb & 0x1fu;
		len = x->cap > d + HDR ? (size_t)(x->cap - d) : HDR;
		if (lb & 0x20u)
			len = (size_t)x->cap + 1u; /* more than the pool: -EMSGSIZE */
	} else {
		uint64_t unit = x->cap / x->slots / 32u;
		len = HDR + (size_t)((lb & 0x3fu) * (unit ? unit : 1u)) + (lb >> 6);
	}
	if (len > x->cap + 1u)
		len = (size_t)x->cap + 1u; /* still too long: -EMSGSIZE */
	uint16_t hold = (uint16_t)(hb * 4u);
	struct sv2shm_slice s;
	if (!write_message(x, len, to_honest ? x->hidx_next : NO_HIDX, hold, (fl & 4u) != 0, &s))
		return;
	if (x->hostile_gone)
		to_hostile = false;
	if (!to_hostile && !to_honest) {
		FZ_CHECK(sv2shm_slice_release(&s) == 0, "release");
		return;
	}
	unsigned flags = (fl & 1u) ? SV2SHM_PUBLISH_MORE : 0;
	int r = publish(x, &s, to_honest, to_hostile, flags);
	if (r == -EAGAIN) {
		if (to_honest && (fl & 2u)) {
			/* Back-pressure: publish to the honest consumer alone. */
			r = publish(x, &s, true, false, flags);
			FZ_CHECK(r == 0, "publish to the honest consumer alone after -EAGAIN: %d", r);
		} else {
			FZ_CHECK(sv2shm_slice_release(&s) == 0, "release of a refused slice");
			return;
		}
	}
	if (to_honest)
		x->hidx_next++;
}

/* --- one input ------------------------------------------------------------------ */

enum {
	OP_MSG,
	OP_POP,
	OP_RELEASE,
	OP_RELEASE_RAW,
	OP_UNRELEASE,
	OP_TAIL,
	OP_FIELD,
	OP_SCRIBBLE,
	OP_ATTACK,
	OP_WAKE,
	OP_CHAN,
	OP_CLOSE,
	OP_PROCESS,
	OP_FLUSH,
	OP_SLEEP,
	OP_REMOVE,
	OP_FUTEX,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"msg",  "pop",      "release", "release_raw", "unrelease", "tail",  "field", "scribble",
	"attack", "wake", "chan",    "close",       "process",   "flush", "sleep", "remove", "futex",
};

/* Byte -> operation: messages, pops and releases come up more often. */
static int op_of(uint8_t b)
{
	if (b >= 0xf8u)
		return OP_FUTEX;
	static const uint8_t tab[32] = {
		OP_MSG,     OP_MSG,      OP_MSG,     OP_MSG,         OP_MSG,    OP_MSG,   OP_POP,    OP_POP,
		OP_POP,     OP_RELEASE,  OP_RELEASE, OP_RELEASE,     OP_RELEASE_RAW, OP_UNRELEASE, OP_TAIL, OP_FIELD,
		OP_SCRIBBLE, OP_ATTACK,  OP_WAKE,    OP_CHAN,        OP_CLOSE,  OP_PROCESS, OP_PROCESS, OP_FLUSH,
		OP_SLEEP,   OP_REMOVE,   OP_MSG,     OP_POP,         OP_RELEASE, OP_ATTACK, OP_WAKE,  OP_CHAN,
	};
	return tab[b % 32u];
}

static void op_process(struct run *x)
{
	int r = QUICK(x, "process", sv2shm_producer_process(x->p));
	FZ_CHECK(r == 0 || r == 1, "producer_process: %d (%s)", r, sv2shm_strerror(r));
	bool before = x->hostile_gone;
	drain_events(x);
	FZ_CHECK(r == 0 || (!before && x->hostile_gone), "producer_process removed %d consumers, no event", r);
}

static void op_remove(struct run *x)
{
	if (x->hostile_gone) {
		int r = QUICK(x, "remove_consumer", sv2shm_producer_remove_consumer(x->p, x->hostile_id));
		FZ_CHECK(r == -ESRCH, "remove_consumer of a removed consumer: %d", r);
		r = QUICK(x, "held", sv2shm_producer_held(x->p, x->hostile_id));
		FZ_CHECK(r == -ESRCH, "held of a removed consumer: %d", r);
		return;
	}
	int h = QUICK(x, "held", sv2shm_producer_held(x->p, x->hostile_id));
	int r = QUICK(x, "remove_consumer", sv2shm_producer_remove_consumer(x->p, x->hostile_id));
	FZ_CHECK(r == h, "remove_consumer returned %d, held said %d", r, h);
	drain_events(x);
	FZ_CHECK(x->hostile_gone && x->hostile_reason == SV2SHM_EVENT_REMOVED, "no REMOVED event after remove_consumer");
}

static void run_op(struct run *x, struct fz *in)
{
	int op = op_of(fz_u8(in));
	wd_stage = op_names[op];
	if (verbose) {
		char map[65];
		sv2shm_pool_slot_map(x->pool, map, sizeof(map));
		trace("op %s (next bytes %02x %02x %02x %02x): slots %s, hostile %s held %d, honest held %d\n", op_names[op],
		      in->n > 0 ? in->p[0] : 0, in->n > 1 ? in->p[1] : 0, in->n > 2 ? in->p[2] : 0, in->n > 3 ? in->p[3] : 0,
		      map, x->hostile_gone ? "(removed)" : "", x->hostile_gone ? -1 : sv2shm_producer_held(x->p, x->hostile_id),
		      sv2shm_producer_held(x->p, x->honest_id));
	}
	switch (op) {
	case OP_MSG:
		op_msg(x, in);
		break;
	case OP_POP:
		op_pop(x, in);
		break;
	case OP_RELEASE:
		op_release(x, in);
		break;
	case OP_RELEASE_RAW:
		op_release_raw(x, in);
		break;
	case OP_UNRELEASE:
		op_unrelease(x, in);
		break;
	case OP_TAIL:
		op_tail(x, in);
		break;
	case OP_FIELD:
		op_field(x, in);
		break;
	case OP_SCRIBBLE:
		op_scribble(x, in);
		break;
	case OP_ATTACK:
		op_attack(x, in);
		break;
	case OP_WAKE:
		op_socket(x, in, false);
		break;
	case OP_CHAN:
		op_socket(x, in, true);
		break;
	case OP_CLOSE:
		op_close(x, in);
		break;
	case OP_PROCESS:
		op_process(x);
		break;
	case OP_FLUSH: {
		int r = QUICK(x, "flush", sv2shm_producer_flush(x->p));
		FZ_CHECK(r == 0, "flush: %d", r);
		break;
	}
	case OP_SLEEP:
		fz_sleep_us(10u * fz_u8(in));
		break;
	case OP_FUTEX:
		op_futex(x, in);
		break;
	default:
		op_remove(x);
		break;
	}
	holds_check(x, op_names[op]);
	check_pool(x, op_names[op]);
}

static void read_result(struct run *x, struct hresult *res)
{
	if (poll_in(x->resfd, 25000) != 1) {
		kill(x->honest_pid, SIGKILL);
		FZ_CHECK(0, "no result from the honest consumer (pid %d) within 25 s", (int)x->honest_pid);
	}
	ssize_t n = read(x->resfd, res, sizeof(*res));
	if (n != (ssize_t)sizeof(*res)) {
		memset(res, 0, sizeof(*res));
		res->status = -1;
		snprintf(res->msg, sizeof(res->msg), "no result (it crashed?)");
	}
	res->msg[sizeof(res->msg) - 1] = '\0';
}

/* A stall: has the honest consumer ended early? Its report says why. */
static void check_honest(struct run *x, const char *what)
{
	if (poll_in(x->resfd, 0) != 1)
		return;
	struct hresult res;
	read_result(x, &res);
	FZ_CHECK(0, "%s: the honest consumer ended early, status %d: %s (err %d %s)", what, res.status, res.msg, res.err,
		 sv2shm_strerror(res.err));
}

/* Everything published comes back: 0 live slices. */
static void wait_all_free(struct run *x, const char *what)
{
	uint64_t t0 = fz_now_ns();
	for (;;) {
		struct sv2shm_pool_stats st;
		sv2shm_pool_stats(x->pool, &st);
		if (st.live == 0)
			return;
		if (fz_now_ns() - t0 > UINT64_C(3000000000)) {
			check_honest(x, what);
			char map[65];
			sv2shm_pool_slot_map(x->pool, map, sizeof(map));
			FZ_CHECK(0, "%s: %llu slices still live 3 s later (%s; honest holds %d, hostile %s)", what,
				 (unsigned long long)st.live, map, sv2shm_producer_held(x->p, x->honest_id),
				 x->hostile_gone ? "removed" : "present");
		}
		QUICK(x, "flush", sv2shm_producer_flush(x->p));
		op_process(x);
		fz_sleep_us(50);
	}
}

int sv2shm_fuzz_hostile(const uint8_t *data, size_t size)
{
	sv2shm_fuzz_hostile_init();
	wd_stage = "setup";
	wd_arm(WATCHDOG_S);
	struct fz in;
	fz_init(&in, data, size);
	struct run x;
	memset(&x, 0, sizeof(x));
	x.t_start = fz_now_ns();
	x.seed = fz_hash(data, size);
	atomic_store(&hsh->last_release_ns, 0);
	atomic_store(&hsh->releases, 0);
	x.chan = x.ctl_fd = x.data_fd = x.ring_fd = x.wake = -1;

	static const uint64_t caps[4] = {256, 1024, 4096, 8192};
	static const int waits[4] = {1, 2, 5, 10};
	static const uint32_t spins[4] = {0, SV2SHM_SPIN_NONE, 1, 200};
	static const int limits[4] = {SV2SHM_LIMIT_SKIP, SV2SHM_LIMIT_DISCONNECT, SV2SHM_LIMIT_REFUSE, SV2SHM_LIMIT_SKIP};
	uint8_t b0 = fz_u8(&in), b1 = fz_u8(&in), b2 = fz_u8(&in);
	x.slots = 1u + (b0 & 7u);
	x.policy = (b0 & 8u) ? SV2SHM_POOL_WAIT : SV2SHM_POOL_FAIL;
	x.socket_transport = (b0 & 16u) != 0;
	x.lazy_setup = (b0 & 64u) != 0;
	bool remove_at_end = (b0 & 128u) != 0;
	x.cap = caps[b1 & 3u];
	x.on_limit = limits[(b1 >> 2) & 3u];
	x.wait_ms = waits[(b1 >> 4) & 3u];
	unsigned mh = (b2 & 15u) % (x.slots + 1u);
	x.max_held = mh ? mh : (x.slots > 1u ? x.slots - 1u : 1u); /* ipc.h: 0 = slots - 1, at least 1 */
	x.entries = 2u << (((b2 >> 4) & 7u) % 6u);
	trace("hostile: %u slots, %llu bytes, %s (%d ms), max_held %u, on_limit %d, ring %u, %s transport%s%s\n",
	      x.slots, (unsigned long long)x.cap, x.policy == SV2SHM_POOL_WAIT ? "WAIT" : "FAIL", x.wait_ms, x.max_held,
	      x.on_limit, x.entries, x.socket_transport ? "socket" : "ring", x.lazy_setup ? ", lazy setup" : "",
	      remove_at_end ? ", removed at the end" : "");

	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = x.cap;
	o.pool.slots = x.slots;
	o.pool.policy = x.policy;
	o.pool.wait_timeout_ms = x.wait_ms;
	o.ring_entries = x.entries;
	o.socket_transport = x.socket_transport;
	o.max_held = mh;
	o.on_limit = x.on_limit;
	o.notify = (b2 & 0x80u) ? SV2SHM_NOTIFY_SOCKET : SV2SHM_NOTIFY_DEFAULT;
	int r = sv2shm_producer_new(&o, &x.p);
	FZ_CHECK(r == 0, "producer_new: %d (%s)", r, sv2shm_strerror(r));
	x.pool = sv2shm_producer_pool(x.p);
	x.b = sv2shm_producer_buffer(x.p);
	x.msgbuf = malloc((size_t)x.cap + 64u);
	FZ_CHECK(x.msgbuf != NULL, "malloc");

	/* The honest consumer: its socket and result pipe to the helper. */
	int hs[2], pp[2], ks[2];
	FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hs) == 0, "socketpair");
	FZ_CHECK(pipe2(pp, O_CLOEXEC) == 0, "pipe2");
	x.honest_id = QUICK(&x, "add_consumer", sv2shm_producer_add_consumer(x.p, hs[0]));
	FZ_CHECK(x.honest_id > 0, "add_consumer: %d (%s)", x.honest_id, sv2shm_strerror(x.honest_id));
	x.resfd = pp[0];
	struct zreq req = {.magic = HMAGIC, .seed = x.seed};
	req.hp.spin_us = spins[b1 >> 6];
	req.hp.no_io_uring = (b0 & 32u) != 0;
	{
		int fds[2] = {hs[1], pp[1]};
		union {
			char buf[CMSG_SPACE(sizeof(fds))];
			struct cmsghdr align;
		} u;
		memset(&u, 0, sizeof(u));
		struct iovec iov = {.iov_base = &req, .iov_len = sizeof(req)};
		struct msghdr mh2 = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh2);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(cm), fds, sizeof(fds));
		FZ_CHECK(sendmsg(zsock, &mh2, MSG_NOSIGNAL) == (ssize_t)sizeof(req), "the helper process is gone");
		close(hs[1]);
		close(pp[1]);
	}
	struct zrep zr;
	FZ_CHECK(poll_in(zsock, 10000) == 1 && recv(zsock, &zr, sizeof(zr), 0) == (ssize_t)sizeof(zr) &&
			 zr.magic == HMAGIC && zr.value > 0,
		 "the helper did not fork the honest consumer");
	x.honest_pid = zr.value;

	/* The hostile consumer: the fuzzer process holds its fds. */
	FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ks) == 0, "socketpair");
	x.hostile_id = QUICK(&x, "add_consumer", sv2shm_producer_add_consumer(x.p, ks[0]));
	FZ_CHECK(x.hostile_id > 0, "add_consumer: %d (%s)", x.hostile_id, sv2shm_strerror(x.hostile_id));
	x.hbit = (unsigned)x.hostile_id & 31u;
	x.chan = ks[1];
	x.hmissed_exact = true;
	if (!x.lazy_setup)
		hostile_read_setup(&x);

	check_pool(&x, "setup");
	for (unsigned i = 0; i < MAX_OPS && !fz_empty(&in) && fz_now_ns() - x.t_start < INPUT_BUDGET_NS; i++)
		run_op(&x, &in);

	/* The end: the hostile consumer goes, by hang-up or by removal. */
	wd_stage = "finale: hostile removal";
	if (!x.hostile_gone) {
		if (remove_at_end) {
			op_remove(&x);
		} else {
			if (x.chan >= 0)
				x.hostile_hung_up = true;
			close_fd(&x.chan);
			uint64_t t0 = fz_now_ns();
			while (!x.hostile_gone) {
				op_process(&x);
				FZ_CHECK(fz_now_ns() - t0 < UINT64_C(1000000000),
					 "the hostile consumer hung up; process() did not remove it within 1 s");
				if (!x.hostile_gone)
					fz_sleep_us(50);
			}
		}
	}
	FZ_CHECK(x.hostile_gone, "hostile still present");
	/* Whatever it writes into its ring now reaches no one. */
	if (x.R) {
		memset(x.R->released, 0xff, sizeof(x.R->released));
		atomic_store(&x.R->tail, atomic_load(&x.R->head) + 12345u);
	}
	r = QUICK(&x, "held", sv2shm_producer_held(x.p, x.hostile_id));
	FZ_CHECK(r == -ESRCH, "held of the removed hostile consumer: %d", r);

	/* The honest consumer releases everything: the pool is whole again. */
	wd_stage = "finale: all free";
	wait_all_free(&x, "after the hostile consumer left");
	check_pool(&x, "the end");
	if (x.cap > HDR) {
		wd_stage = "finale: full capacity";
		bool to_honest = x.hidx_next < MAX_MSGS && honest_ready(&x);
		struct sv2shm_slice s;
		FZ_CHECK(write_message(&x, (size_t)x.cap, to_honest ? x.hidx_next : NO_HIDX, 0, false, &s) == 1,
			 "every slot free, yet no slice of the whole capacity (%llu bytes)", (unsigned long long)x.cap);
		/* The removed consumer's id is stale for good: refused before
		 * anything is published, alone or with a live id. */
		int stale[2] = {x.honest_id, x.hostile_id};
		for (unsigned k = 0; k < 2; k++) {
			r = QUICK(&x, "publish", sv2shm_producer_publish(x.p, &s, stale + 1 - k, 1 + k, 0));
			FZ_CHECK(r == -ESRCH && sv2shm_slice_kind(&s) == SV2SHM_SLICE_POOL,
				 "publish naming the removed consumer's id: %d, slice kind %d", r, sv2shm_slice_kind(&s));
		}
		if (to_honest) {
			r = publish(&x, &s, true, false, 0);
			FZ_CHECK(r == 0, "publish: %d", r);
			x.hidx_next++;
		} else {
			FZ_CHECK(sv2shm_slice_release(&s) == 0, "release");
		}
		wait_all_free(&x, "the full-capacity slice");
	}
	wd_stage = "finale: destroy";
	r = sv2shm_producer_destroy(x.p);
	FZ_CHECK(r == 0, "producer_destroy: %d (%s)", r, sv2shm_strerror(r));

	wd_stage = "finale: honest result";
	struct hresult res;
	read_result(&x, &res);
	close(x.resfd);
	FZ_CHECK(res.status == H_OK, "the honest consumer: status %d: %s (err %d %s)", res.status, res.msg, res.err,
		 sv2shm_strerror(res.err));
	FZ_CHECK(res.count == x.hidx_next && res.missed == 0,
		 "the honest consumer received %u messages (missed %u), %u were published to it", res.count, res.missed,
		 x.hidx_next);
	FZ_CHECK(poll_in(zsock, 20000) == 1 && recv(zsock, &zr, sizeof(zr), 0) == (ssize_t)sizeof(zr) &&
			 zr.magic == HMAGIC,
		 "the helper did not report the honest consumer's exit");
	FZ_CHECK(WIFEXITED(zr.value) && WEXITSTATUS(zr.value) == 0, "the honest consumer ended with status %#x",
		 (unsigned)zr.value);

	/* The hostile consumer's leftovers. */
	if (x.R)
		munmap(x.R, x.ring_size);
	if (x.ctl && x.ctl != MAP_FAILED)
		munmap((void *)(uintptr_t)x.ctl, sizeof(struct sv2shm_ctl));
	if (x.data && x.data != MAP_FAILED)
		munmap((void *)(uintptr_t)x.data, (size_t)x.cap);
	close_fd(&x.chan);
	close_fd(&x.wake);
	close_fd(&x.ring_fd);
	close_fd(&x.ctl_fd);
	close_fd(&x.data_fd);
	free(x.msgbuf);
	wd_stage = "between inputs";
	wd_arm(0);
	return 0;
}
