/*
 * Hostile peers: the regression tests of the hardening issue, one (or more)
 * per finding, each named after it. Every one of them failed on the code
 * before the hardening (eventfds, a control block every consumer could
 * write, a two-step release); see docs/ARCHITECTURE.md, "Trust".
 *
 *   1  hang_producer_*       a consumer cannot make a producer call block:
 *                            its wake socket flooded and switched to
 *                            blocking, its queue towards it full
 *   2  hang_consumer_*       a producer cannot make recv or release block
 *   3  ctl_write_sealed      nothing a consumer can do writes the control
 *                            block (mmap, write, punch, mprotect); a hostile
 *                            ring record pins only its own slots, and the
 *                            pool is whole again once it is gone
 *   4  wait_epoch_scribbled  a consumer that flips the wait epoch in its ring
 *                            slows only itself: the producer still wakes at
 *                            once on an honest release
 *      wake_sent_as_wait_begins  the producer's futex wait is queued before
 *                            any consumer can see that it waits (found by
 *                            the hostile fuzz target); own_thread_wake_*:
 *                            before its own threads can (found in review)
 *      long_wait_sleeps      a WAIT past one wait slice sleeps again
 *   5  attach_after_attack   new consumers attach after every attack
 *   6  late_release_replay   the lost-message interleaving, replayed step by
 *                            step: a late release store never touches a
 *                            reused slot
 *   7  reclaim_while_waiting a producer blocked in WAIT reclaims a SIGKILLed
 *                            consumer's slots at once (also when the
 *                            application polls sv2shm_producer_fd())
 *   8  removal_events        every removal is an event with the id and why;
 *                            a stale id is -ESRCH, never the new consumer
 *   9  stuck_consumer_*      one consumer that never reads stops nobody
 *                            (SKIP, DISCONNECT, REFUSE)
 *  10  overflow_bounded      a huge alloc-mode memfd is refused unmapped
 *  11  dead_channel_once     see test_ipc_region.c (recv_rejects_ring_garbage);
 *                            here: a loop waiting for -EPIPE ends
 *  12  stats_and_empty_datagrams  stats from private state; zero-length
 *                            datagrams are not hang-ups
 *  13  (frame decoder codes: test_frame.c, pool_too_small)
 */
#include <linux/futex.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ipc_common.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

#define SEED UINT64_C(0x405711e)
#define CAP (64 * 1024)

static int teardown(void **state)
{
	(void)state;
	ipc_kill_children();
	alarm(0);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	alarm(240);
	return 0;
}

static struct sv2shm_producer *producer(int policy, unsigned slots, int wait_ms, unsigned max_held, int on_limit)
{
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = CAP;
	o.pool.slots = slots;
	o.pool.policy = policy;
	o.pool.wait_timeout_ms = wait_ms;
	o.max_held = max_held;
	o.on_limit = on_limit;
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_producer_new(&o, &p);
	if (r != 0)
		fail_msg("sv2shm_producer_new: %d (%s)", r, sv2shm_strerror(r));
	ipc_hold(p);
	return p;
}

static struct sv2shm_consumer *inproc(struct sv2shm_producer *p, int *id)
{
	int sv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	*id = sv2shm_producer_add_consumer(p, sv[0]);
	assert_true(*id > 0);
	struct sv2shm_consumer *c = NULL;
	assert_int_equal(sv2shm_consumer_new(sv[1], NULL, &c), 0);
	ipc_hold(c);
	return c;
}

static void make(struct sv2shm_producer *p, uint64_t seq, size_t len, struct sv2shm_slice *s)
{
	int r = ipc_make_slice(p, pat_key(SEED, seq), len, s);
	if (r != 0)
		fail_msg("making slice %" PRIu64 ": %d (%s)", seq, r, sv2shm_strerror(r));
}

static double ms_since(uint64_t t0)
{
	return (double)(ipc_now_ns() - t0) / 1e6;
}

/* Receive one slice on c and check it is pattern `seq`; release it. */
static void recv_check(struct sv2shm_consumer *c, uint64_t seq)
{
	struct sv2shm_slice s;
	int r = sv2shm_consumer_recv(c, &s, 2000);
	if (r != 1)
		fail_msg("recv of slice %" PRIu64 ": %d (%s)", seq, r, r < 0 ? sv2shm_strerror(r) : "timeout");
	assert_int_equal(pat_check(s.data, pat_key(SEED, seq), s.len), s.len);
	assert_int_equal(sv2shm_slice_release(&s), 0);
}

static void clear_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	assert_true(fl >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK), 0);
}

/* Fill the queue towards the other end of `sock` until it refuses. */
static unsigned flood(int sock)
{
	static const uint8_t b = 7;
	unsigned n = 0;
	while (n < 1000000 && send(sock, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
		n++;
	return n;
}

/* --- 1. a consumer cannot make the producer block -------------------------------- */

static void test_hang_producer_publish(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 8, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	int wake = m.fds[SETUP_FD_WAKE];
	/* The hostile consumer's end: blocking, its queue towards the producer
	 * full, and "wake me" set for good, so every publish sends a wake-up
	 * into a queue that never drains (we never read it). */
	clear_nonblock(wake);
	unsigned sent = flood(wake);
	printf("  %u wake-ups queued towards the producer\n", sent);
	assert_true(sent > 0);
	double worst = 0;
	for (unsigned i = 0; i < 2000; i++) {
		atomic_store(&m.ring->consumer_sleeping, 1u);
		struct sv2shm_slice s;
		make(p, i, 64, &s);
		uint64_t t0 = ipc_now_ns();
		int r = sv2shm_producer_publish(p, &s, &id, 1, 0);
		double ms = ms_since(t0);
		worst = ms > worst ? ms : worst;
		assert_int_equal(r, 0);
		assert_int_equal(sv2shm_producer_process(p), 0);
		recv_check(c, i);
	}
	printf("  slowest publish: %.3f ms\n", worst);
	assert_true(worst < 100.0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* The producer waits (WAIT) while a hostile consumer floods its wake-up
 * socket: it is woken again and again but returns at its timeout. */
static void test_hang_producer_wait(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 2, 200, 2, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	struct sv2shm_slice a, b, s1, s2;
	make(p, 1, 100, &a);
	make(p, 2, 100, &b);
	assert_int_equal(sv2shm_producer_publish(p, &a, &id, 1, 0), 0);
	assert_int_equal(sv2shm_producer_publish(p, &b, &id, 1, 0), 0);
	assert_int_equal(sv2shm_consumer_recv(c, &s1, 1000), 1);
	assert_int_equal(sv2shm_consumer_recv(c, &s2, 1000), 1);
	clear_nonblock(m.fds[SETUP_FD_WAKE]);
	flood(m.fds[SETUP_FD_WAKE]);
	struct sv2shm_buffer *buf = sv2shm_producer_buffer(p);
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = ipc_now_ns();
		assert_null(sv2shm_buffer_get_writable(buf, 100));
		double ms = ms_since(t0);
		assert_int_equal(sv2shm_buffer_last_error(buf), -ETIMEDOUT);
		printf("  -ETIMEDOUT after %.1f ms (timeout 200 ms)\n", ms);
		assert_true(ms >= 199.0 && ms < 1000.0);
	}
	assert_int_equal(sv2shm_slice_release(&s1), 0);
	assert_int_equal(sv2shm_slice_release(&s2), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- 2. a producer cannot make the consumer block -------------------------------- */

static void test_hang_consumer_recv(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 8, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	/* We are the producer of this consumer now: its wake socket flooded
	 * (recv keeps being woken for nothing) and our end made blocking. */
	int wake = m.fds[SETUP_FD_WAKE];
	clear_nonblock(wake);
	flood(wake);
	struct sv2shm_slice s;
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = ipc_now_ns();
		assert_int_equal(sv2shm_consumer_recv(c, &s, 200), 0);
		double ms = ms_since(t0);
		printf("  recv(200 ms) returned after %.1f ms\n", ms);
		assert_true(ms >= 199.0 && ms < 1000.0);
	}
	uint64_t t0 = ipc_now_ns();
	assert_int_equal(sv2shm_consumer_recv(c, &s, 0), 0);
	assert_true(ms_since(t0) < 100.0);
	assert_int_equal(sv2shm_consumer_prepare_wait(c), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

static void test_hang_consumer_release(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 8, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	/* The "producer" never reads its wake socket and says it waits, so every
	 * release sends a wake-up into a full queue. */
	clear_nonblock(m.fds[SETUP_FD_WAKE]);
	double worst = 0;
	for (unsigned i = 0; i < 3000; i++) {
		atomic_store(&m.ring->waiting, 2u * i + 1u); /* a new wait epoch each time */
		struct sv2shm_slice x, s;
		make(p, i, 64, &x);
		assert_int_equal(sv2shm_producer_publish(p, &x, &id, 1, 0), 0);
		assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
		uint64_t t0 = ipc_now_ns();
		assert_int_equal(sv2shm_slice_release(&s), 0);
		double ms = ms_since(t0);
		worst = ms > worst ? ms : worst;
		assert_int_equal(sv2shm_consumer_flush(c), 0);
	}
	printf("  slowest release: %.3f ms\n", worst);
	assert_true(worst < 100.0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- 3, 5. the control block is out of every consumer's reach -------------------- */

/* Everything a consumer could try on the control block and the data. */
static void attack_memfds(int cfd, int dfd)
{
	int fds[2] = {cfd, dfd};
	for (int k = 0; k < 2; k++) {
		int fd = fds[k];
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		errno = 0;
		assert_true(mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
		assert_int_equal(errno, EPERM);
		uint8_t junk[64];
		memset(junk, 0xff, sizeof(junk));
		assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, st.st_size), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(ftruncate(fd, 0), -1);
		assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1); /* sealed against new seals */
		void *ro = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		assert_true(ro != MAP_FAILED);
		assert_int_equal(mprotect(ro, (size_t)st.st_size, PROT_READ | PROT_WRITE), -1);
		munmap(ro, (size_t)st.st_size);
	}
}

static void test_ctl_write_sealed(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 0, SV2SHM_LIMIT_SKIP);
	struct mitm h; /* the hostile one: we hold its setup fds */
	mitm_capture(p, &h, 1);
	int idh = 1, idc;
	struct sv2shm_consumer *c = inproc(p, &idc);
	attack_memfds(h.fds[SETUP_FD_CTL], h.fds[SETUP_FD_DATA]);
	assert_int_equal(h.ctl->magic, SV2SHM_CTL_MAGIC);
	/* What it can write is its own ring: claim releases it never made,
	 * deny releases, garbage everywhere. Slices to both, so that its records
	 * matter. */
	int both[2] = {idh, idc};
	for (unsigned i = 0; i < 20; i++) {
		struct sv2shm_slice s;
		make(p, i, 500, &s);
		int r = sv2shm_producer_publish(p, &s, both, 2, 0);
		assert_true(r == 0 || r == 1); /* 1: the hostile one was at its limit */
		recv_check(c, i);
		for (unsigned k = 0; k < 64; k++)
			atomic_store(&h.ring->released[k], (uint32_t)ipc_rand(&(uint64_t){i * 64 + k + 1}));
		atomic_store(&h.ring->consumer_sleeping, 1u);
	}
	/* It pins at most its limit (slots - 1); the honest one still gets every
	 * slice. */
	int held = sv2shm_producer_held(p, idh);
	printf("  the hostile consumer holds %d slots\n", held);
	assert_true(held >= 0 && held <= 7);
	/* Gone: the pool is whole again, at full capacity, with no repair. */
	mitm_close(&h);
	assert_int_equal(sv2shm_producer_process(p), 1);
	struct sv2shm_pool_stats st = ipc_stats(p);
	assert_int_equal(st.live, 0);
	assert_int_equal(st.mask, 0);
	struct sv2shm_slice all;
	make(p, 100, CAP, &all); /* the whole region in one slice */
	assert_int_equal(sv2shm_slice_kind(&all), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_slice_release(&all), 0);
	/* And a new consumer attaches to the same region after all of that. */
	int idn;
	struct sv2shm_consumer *n = inproc(p, &idn);
	int two[2] = {idc, idn};
	struct sv2shm_slice s;
	make(p, 101, 1000, &s);
	assert_int_equal(sv2shm_producer_publish(p, &s, two, 2, 0), 0);
	recv_check(c, 101);
	recv_check(n, 101);
	free_consumer(n);
	free_consumer(c);
	destroy_producer(p);
}

/* --- 4. the wait epoch ---------------------------------------------------------------- */

struct release_later {
	struct sv2shm_consumer *c;
	struct sv2shm_slice s;
	unsigned delay_ms;
	uint64_t t_release;
};

static void *release_later_fn(void *argp)
{
	struct release_later *a = argp;
	ipc_sleep_ms(a->delay_ms);
	a->t_release = ipc_now_ns();
	if (sv2shm_slice_release(&a->s) != 0)
		abort();
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void test_wait_epoch_scribbled(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 2, 5000, 2, SV2SHM_LIMIT_SKIP);
	struct mitm h;
	mitm_capture(p, &h, 1); /* hostile, never reads: holds nothing */
	int idc;
	struct sv2shm_consumer *c = inproc(p, &idc);
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	enum { ROUNDS = 15 };
	double lat[ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		/* The honest consumer holds both slots; it releases one 20 ms from
		 * now, from another thread, while the producer waits. The hostile
		 * one flips the wait epoch in its own ring as often as it likes. */
		struct sv2shm_slice x, y, other;
		make(p, 2u * (unsigned)i, 100, &x);
		make(p, 2u * (unsigned)i + 1u, 100, &y);
		assert_int_equal(sv2shm_producer_publish(p, &x, &idc, 1, 0), 0);
		assert_int_equal(sv2shm_producer_publish(p, &y, &idc, 1, 0), 0);
		struct release_later rl = {.c = c, .delay_ms = 20};
		assert_int_equal(sv2shm_consumer_recv(c, &rl.s, 1000), 1);
		assert_int_equal(sv2shm_consumer_recv(c, &other, 1000), 1);
		for (uint32_t k = 0; k < 1000; k++)
			atomic_store(&h.ring->waiting, k);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, release_later_fn, &rl), 0);
		uint8_t *w = sv2shm_buffer_get_writable(b, 100);
		uint64_t t1 = ipc_now_ns();
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_non_null(w);
		lat[i] = (double)(t1 - rl.t_release) / 1e6;
		struct sv2shm_slice z;
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &z), 0);
		assert_int_equal(sv2shm_slice_release(&z), 0);
		assert_int_equal(sv2shm_slice_release(&other), 0);
	}
	qsort(lat, ROUNDS, sizeof(lat[0]), cmp_double);
	printf("  release -> producer awake: median %.3f ms, max %.3f ms (the wait slice is 100 ms)\n",
	       lat[ROUNDS / 2], lat[ROUNDS - 1]);
	assert_true(lat[ROUNDS / 2] < 30.0);
	free_consumer(c);
	mitm_close(&h);
	destroy_producer(p);
}

/* A consumer that sees the producer waiting may wake it at once: the one
 * wake-up of that wait epoch (a consumer wakes the producer once per epoch)
 * must find the producer's futex wait queued. It did not when the producer
 * said it waits before it queued the wait: a quick consumer's FUTEX_WAKE
 * fell into the gap, and when that release freed a slot in the middle of
 * the run (no room yet), the release that freed the run's end did not wake
 * again, and the producer slept to the end of its wait slice (the hostile
 * fuzz target found it: ~1 wait in 30 of one input). Checked directly: the
 * moment the epoch turns odd, a FUTEX_WAKE on the word the producer waits
 * on must find a waiter, every time. */
struct wake_race {
	const _Atomic uint32_t *epoch; /* the epoch word the waker watches */
	const struct sv2shm_ctl *ctl;
	struct sv2shm_slice middle, end;
	uint64_t t_release;
	long woken; /* FUTEX_WAKE's count the moment the epoch turned odd */
};

/* Spin until the epoch is odd (the producer waits), 1 s at most. */
static void await_odd(const _Atomic uint32_t *epoch)
{
	uint64_t t0 = ipc_now_ns();
	while (!(atomic_load(epoch) & 1u) && ipc_now_ns() - t0 < UINT64_C(1000000000))
		;
}

static void *wake_race_fn(void *argp)
{
	struct wake_race *a = argp;
	await_odd(a->epoch);
	a->woken = syscall(SYS_futex, (const uint32_t *)(const void *)&a->ctl->release_seq, FUTEX_WAKE, INT32_MAX,
			   NULL, NULL, 0);
	/* The wake-up above ended that wait early; the producer waits again. */
	await_odd(a->epoch);
	if (sv2shm_slice_release(&a->middle) != 0)
		abort();
	ipc_sleep_ms(5);
	a->t_release = ipc_now_ns();
	if (sv2shm_slice_release(&a->end) != 0)
		abort();
	return NULL;
}

/* own_threads: watch the control block's producer_waiting, the epoch the
 * producer's own threads read when they release its slices (they wake it
 * once per epoch too); else the consumer's ring. */
static void wake_sent_as_wait_begins(bool own_threads)
{
	enum { ROUNDS = 40 };
	double worst = 0;
	bool futex = true;
	for (int i = 0; i < ROUNDS; i++) {
		struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 3, 2000, 3, SV2SHM_LIMIT_SKIP);
		futex = strstr(sv2shm_producer_notify_name(p), "futex") != NULL;
		struct mitm m;
		struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
		int id = 1;
		struct sv2shm_slice s[3];
		for (unsigned k = 0; k < 3; k++) {
			struct sv2shm_slice x;
			make(p, k, 100, &x);
			assert_int_equal(sv2shm_producer_publish(p, &x, &id, 1, 0), 0);
			assert_int_equal(sv2shm_consumer_recv(c, &s[k], 1000), 1);
			assert_int_equal(s[k]._slot, k); /* one run: 0 1 2, its ends 0 and 2 */
		}
		struct wake_race a = {.epoch = own_threads ? &m.ctl->producer_waiting : &m.ring->waiting,
				      .ctl = m.ctl,
				      .middle = s[1],
				      .end = s[0],
				      .woken = -1};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, wake_race_fn, &a), 0);
		uint8_t *w = sv2shm_buffer_get_writable(sv2shm_producer_buffer(p), 100);
		uint64_t t1 = ipc_now_ns();
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_non_null(w);
		if (futex && a.woken != 1)
			fail_msg("round %d: the producer said it waits before its futex wait was queued (FUTEX_WAKE "
				 "woke %ld)",
				 i, a.woken);
		double lat = (double)(t1 - a.t_release) / 1e6;
		if (lat > worst)
			worst = lat;
		struct sv2shm_slice z;
		assert_int_equal(sv2shm_buffer_get_data_owned(sv2shm_producer_buffer(p), &z), 0);
		assert_int_equal(sv2shm_slice_release(&z), 0);
		assert_int_equal(sv2shm_slice_release(&s[2]), 0);
		free_consumer(c);
		mitm_close(&m);
		destroy_producer(p);
	}
	printf("  %s: %s; end released -> producer awake: worst %.3f ms of %d waits (deadline 2000 ms)\n",
	       own_threads ? "producer_waiting" : "ring->waiting",
	       futex ? "the futex wait was queued every time the epoch turned odd"
		     : "no futex wait here (socket wake-ups stay queued in the socket)",
	       worst, ROUNDS);
	assert_true(worst < 500.0);
}

static void test_wake_sent_as_wait_begins(void **state)
{
	(void)state;
	wake_sent_as_wait_begins(false);
}

/* The same for the producer's own threads, which read the control block's
 * epoch: it was stored before the wait was queued (found in review). */
static void test_own_thread_wake_as_wait_begins(void **state)
{
	(void)state;
	wake_sent_as_wait_begins(true);
}

/* A WAIT longer than the producer's wait slice (100 ms), and one a stray
 * byte from a consumer wakes, sleeps again after each: every sleep after the
 * first used to return at once, ended by the completions of cancelling the
 * previous futex wait — a busy loop to the deadline (found in review: ~16 000
 * waits and ~0.9 s of CPU in a 1 s WAIT). */
static void *stray_byte_fn(void *argp)
{
	ipc_sleep_ms(20);
	char b = 0;
	if (send(*(int *)argp, &b, 1, MSG_DONTWAIT) != 1)
		abort();
	return NULL;
}

static void test_long_wait_sleeps(void **state)
{
	(void)state;
	for (int stray = 0; stray < 2; stray++) {
		struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 3, 450, 3, SV2SHM_LIMIT_SKIP);
		int sv[2] = {-1, -1};
		pthread_t th;
		if (stray) { /* a consumer's channel only: it never attaches, it sends one byte */
			assert_int_equal(ipc_seqpacket_pair(sv), 0);
			assert_true(sv2shm_producer_add_consumer(p, sv[0]) > 0);
			assert_int_equal(pthread_create(&th, NULL, stray_byte_fn, &sv[1]), 0);
		}
		struct sv2shm_slice s[3];
		for (unsigned k = 0; k < 3; k++)
			make(p, k, 100, &s[k]); /* the producer holds every slot: no room will come */
		uint64_t waits0 = ipc_stats(p).waits;
		struct rusage r0, r1;
		assert_int_equal(getrusage(RUSAGE_THREAD, &r0), 0);
		uint64_t t0 = ipc_now_ns();
		struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
		assert_null(sv2shm_buffer_get_writable(b, 100));
		double took = ms_since(t0);
		assert_int_equal(getrusage(RUSAGE_THREAD, &r1), 0);
		assert_int_equal(sv2shm_buffer_last_error(b), -ETIMEDOUT);
		uint64_t waits = ipc_stats(p).waits - waits0;
		double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e3 +
			     (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e3;
		printf("  %s%s: a 450 ms WAIT took %.0f ms, %" PRIu64 " sleeps, %.1f ms of CPU\n",
		       sv2shm_producer_notify_name(p), stray ? ", a stray byte at 20 ms" : "", took, waits, cpu);
		assert_true(waits <= 12); /* 100 ms slices: 5, and one the byte ended */
		if (stray) {
			assert_int_equal(pthread_join(th, NULL), 0);
			close(sv[1]);
		}
		for (unsigned k = 0; k < 3; k++)
			assert_int_equal(sv2shm_slice_release(&s[k]), 0);
		destroy_producer(p);
	}
}

/* --- 6. the lost-message interleaving, replayed ----------------------------------- */

static void test_late_release_replay(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 2, 0, 2, SV2SHM_LIMIT_SKIP);
	struct mitm x; /* the consumer that gets descheduled mid-release: its ring is ours */
	struct sv2shm_consumer *cx = mitm_consumer(p, &x, 1);
	int idx = 1, idy, idz;
	struct sv2shm_consumer *cy = inproc(p, &idy);
	struct sv2shm_consumer *cz = inproc(p, &idz);
	/* X holds slot s at generation g. */
	struct sv2shm_slice a, sx;
	make(p, 1, 1000, &a);
	assert_int_equal(sv2shm_producer_publish(p, &a, &idx, 1, 0), 0);
	assert_int_equal(sv2shm_consumer_recv(cx, &sx, 1000), 1);
	unsigned slot = sx._slot;
	uint32_t gen = sx._gen;
	/* X releases (its one step: the record in its ring)... */
	assert_int_equal(sv2shm_slice_release(&sx), 0);
	assert_int_equal(atomic_load(&x.ring->released[slot]), gen);
	/* ...the producer removes another consumer, Y... */
	assert_int_equal(sv2shm_producer_remove_consumer(p, idy), 0);
	/* ...reuses the slot for a new slice and publishes it to Z... */
	struct sv2shm_slice b, sz;
	int r = ipc_make_slice_in(p, pat_key(SEED, 2), 1000, slot, &b);
	if (r != 0)
		fail_msg("making slice 2 in slot %u: %d (%s)", slot, r, sv2shm_strerror(r));
	assert_true(b._gen != gen);
	assert_int_equal(sv2shm_producer_publish(p, &b, &idz, 1, 0), 0);
	/* ...and X's late step lands now, as late as it likes: a replayed store
	 * of the old record, and a stale release through the API. */
	atomic_store(&x.ring->released[slot], gen);
	struct sv2shm_slice stale = sx;
	stale._kind = SV2SHM_SLICE_SHARED;
	stale._owner = sv2shm_consumer_region(cx);
	stale._slot = (uint16_t)slot;
	stale._gen = gen;
	assert_int_equal(sv2shm_slice_release(&stale), -EALREADY);
	/* Z still receives the valid descriptor (it was refused with -ENOENT
	 * before), and the slot stays Z's: nothing else can take its bytes. */
	assert_int_equal(sv2shm_consumer_recv(cz, &sz, 1000), 1);
	assert_int_equal(pat_check(sz.data, pat_key(SEED, 2), sz.len), sz.len);
	assert_int_equal(sv2shm_producer_held(p, idz), 1);
	struct sv2shm_slice c2;
	make(p, 3, 1000, &c2);
	assert_true(c2._slot != slot);
	assert_int_equal(pat_check(sz.data, pat_key(SEED, 2), sz.len), sz.len);
	assert_int_equal(sv2shm_slice_release(&c2), 0);
	assert_int_equal(sv2shm_slice_release(&sz), 0);
	assert_int_equal(ipc_stats(p).live, 0);
	free_consumer(cz);
	free_consumer(cy);
	free_consumer(cx);
	mitm_close(&x);
	destroy_producer(p);
}

/* --- 7. reclaim while the producer waits ------------------------------------------ */

struct killer {
	pid_t pid;
	unsigned delay_ms;
	uint64_t t_kill;
};

static void *killer_fn(void *argp)
{
	struct killer *k = argp;
	ipc_sleep_ms(k->delay_ms);
	k->t_kill = ipc_now_ns();
	kill(k->pid, SIGKILL);
	return NULL;
}

/* A consumer process that holds both slots; SIGKILL it while the producer
 * waits (WAIT, no timeout) or while the application polls the producer fd. */
static void run_reclaim(bool app_polls)
{
	struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 2, -1, 2, SV2SHM_LIMIT_SKIP);
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	enum { ROUNDS = 12 };
	double lat[ROUNDS];
	for (int i = 0; i < ROUNDS; i++) {
		int sock, ctl;
		struct cmd_child arg;
		pid_t pid = spawn_cmd_consumer(&sock, &ctl, &arg, SEED);
		int id = sv2shm_producer_add_consumer(p, sock);
		assert_true(id > 0);
		for (unsigned k = 0; k < 2; k++) {
			struct sv2shm_slice s;
			make(p, k, 1000, &s);
			assert_int_equal(sv2shm_producer_publish(p, &s, &id, 1, 0), 0);
			assert_int_equal(cmd(ctl, CMD(OP_RECV, k, k)), 1);
		}
		struct killer k = {.pid = pid, .delay_ms = 30};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, killer_fn, &k), 0);
		uint64_t t1;
		if (app_polls) {
			struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
			int removed = 0;
			while (removed == 0) {
				assert_int_equal(poll(&pfd, 1, 5000), 1);
				removed = sv2shm_producer_process(p);
				assert_true(removed >= 0);
			}
			t1 = ipc_now_ns();
		} else {
			uint8_t *w = sv2shm_buffer_get_writable(b, 1000);
			t1 = ipc_now_ns();
			assert_non_null(w);
			struct sv2shm_slice z;
			assert_int_equal(sv2shm_buffer_get_data_owned(b, &z), 0);
			assert_int_equal(sv2shm_slice_release(&z), 0);
		}
		assert_int_equal(pthread_join(th, NULL), 0);
		lat[i] = (double)(t1 - k.t_kill) / 1e6;
		struct sv2shm_producer_event ev;
		assert_int_equal(sv2shm_producer_next_event(p, &ev), 1);
		assert_int_equal(ev.id, id);
		assert_int_equal(ev.reason, SV2SHM_EVENT_HANGUP);
		assert_int_equal(ev.held, 2);
		assert_int_equal(ipc_stats(p).live, 0);
		int st = 0;
		assert_int_equal(ipc_wait_child(pid, 10000, &st), 0);
		close(ctl);
	}
	qsort(lat, ROUNDS, sizeof(lat[0]), cmp_double);
	printf("  SIGKILL -> slots free (%s): median %.3f ms, max %.3f ms\n",
	       app_polls ? "application polls the producer fd" : "producer blocked in WAIT", lat[ROUNDS / 2],
	       lat[ROUNDS - 1]);
	/* 100 ms before (the WAIT looked for hang-ups only between sleeps). */
	assert_true(lat[ROUNDS / 2] < 30.0);
	destroy_producer(p);
}

static void test_reclaim_while_waiting(void **state)
{
	(void)state;
	run_reclaim(false);
}

static void test_reclaim_app_polls(void **state)
{
	(void)state;
	run_reclaim(true);
}

/* --- 8. removals are events; ids are never reused ------------------------------- */

static void test_removal_events(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_WAIT, 2, 2000, 2, SV2SHM_LIMIT_SKIP);
	/* A consumer that holds both slots and is killed: the WAIT removes it
	 * on its own. */
	int sock, ctl;
	struct cmd_child arg;
	pid_t pid = spawn_cmd_consumer(&sock, &ctl, &arg, SEED);
	int a = sv2shm_producer_add_consumer(p, sock);
	assert_int_equal(a, 1);
	for (unsigned k = 0; k < 2; k++) {
		struct sv2shm_slice s;
		make(p, k, 100, &s);
		assert_int_equal(sv2shm_producer_publish(p, &s, &a, 1, 0), 0);
		assert_int_equal(cmd(ctl, CMD(OP_RECV, k, k)), 1);
	}
	kill(pid, SIGKILL);
	int st = 0;
	assert_int_equal(ipc_wait_child(pid, 10000, &st), 0);
	close(ctl);
	struct sv2shm_slice s;
	make(p, 5, 100, &s); /* waits, removes the dead consumer, gets a slot */
	struct sv2shm_producer_event ev;
	assert_int_equal(sv2shm_producer_next_event(p, &ev), 1);
	assert_int_equal(ev.id, a);
	assert_int_equal(ev.reason, SV2SHM_EVENT_HANGUP);
	assert_int_equal(ev.held, 2);
	assert_int_equal(sv2shm_producer_next_event(p, &ev), 0);
	/* The next consumer gets the same holder bit but not the same id. */
	int bid;
	struct sv2shm_consumer *c = inproc(p, &bid);
	assert_int_equal(sv2shm_consumer_id(c), 1);
	assert_true(bid != a);
	assert_int_equal(bid % 32, 1);
	assert_int_equal(sv2shm_producer_publish(p, &s, &a, 1, 0), -ESRCH);
	assert_int_equal(sv2shm_producer_remove_consumer(p, a), -ESRCH);
	assert_int_equal(sv2shm_producer_held(p, a), -ESRCH);
	assert_int_equal(sv2shm_producer_held(p, bid + 32), -EINVAL); /* never handed out */
	assert_int_equal(sv2shm_producer_publish(p, &s, &bid, 1, 0), 0);
	recv_check(c, 5);
	/* Explicit removals are events too; more than 64 unread: the oldest go. */
	for (int i = 0; i < 70; i++) {
		int id;
		struct sv2shm_consumer *t = inproc(p, &id);
		assert_int_equal(sv2shm_producer_remove_consumer(p, id), 0);
		free_consumer(t);
	}
	unsigned n = 0;
	while (sv2shm_producer_next_event(p, &ev) == 1) {
		assert_int_equal(ev.reason, SV2SHM_EVENT_REMOVED);
		n++;
	}
	assert_int_equal(n, 64);
	assert_int_equal(sv2shm_producer_events_dropped(p), 6);
	free_consumer(c);
	destroy_producer(p);
}

/* --- 9. one stuck consumer stops nobody ------------------------------------------- */

static void run_stuck(int on_limit)
{
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 0, on_limit);
	int ids, idh;
	struct sv2shm_consumer *stuck = inproc(p, &ids); /* never calls recv */
	struct sv2shm_consumer *honest = inproc(p, &idh);
	int both[2] = {ids, idh};
	unsigned n = 2, delivered = 0, skipped = 0;
	for (unsigned i = 0; i < 200; i++) {
		struct sv2shm_slice s;
		make(p, i, 200, &s);
		int r = sv2shm_producer_publish(p, &s, both, n, 0);
		if (r == 1 && on_limit == SV2SHM_LIMIT_DISCONNECT) {
			both[0] = idh; /* removed: its id is stale from now on */
			n = 1;
		}
		if (on_limit == SV2SHM_LIMIT_REFUSE && r == -EAGAIN) {
			/* Back-pressure, opt-in: nothing published; the honest one
			 * alone takes it. */
			skipped++;
			assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_POOL);
			assert_int_equal(sv2shm_producer_publish(p, &s, &idh, 1, 0), 0);
		} else {
			assert_true(r == 0 || r == 1);
			skipped += (unsigned)r;
		}
		recv_check(honest, i);
		delivered++;
	}
	printf("  200 slices to the honest consumer, %u skipped the stuck one\n", skipped);
	assert_int_equal(delivered, 200);
	/* The default limit is slots - 1 = 7 held; DISCONNECT misses it once. */
	assert_int_equal(skipped, on_limit == SV2SHM_LIMIT_DISCONNECT ? 1 : 200 - 7);
	if (on_limit == SV2SHM_LIMIT_DISCONNECT) {
		struct sv2shm_producer_event ev;
		assert_int_equal(sv2shm_producer_next_event(p, &ev), 1);
		assert_int_equal(ev.id, ids);
		assert_int_equal(ev.reason, SV2SHM_EVENT_LIMIT);
		assert_int_equal(ev.held, 7);
		assert_int_equal(ipc_stats(p).live, 0);
		/* Its holds were reclaimed (the slots reused since): what is left in
		 * its ring is refused, skippably, and then it learns it was dropped. */
		struct sv2shm_slice s;
		int r, calls = 0;
		while ((r = sv2shm_consumer_recv(stuck, &s, 1000)) != -EPIPE && calls < 20) {
			if (r == 1)
				assert_int_equal(sv2shm_slice_release(&s), 0);
			else
				assert_true(r == -ESTALE || r == -EACCES);
			calls++;
		}
		assert_int_equal(r, -EPIPE);
		assert_true(calls <= 7);
	} else {
		assert_int_equal(sv2shm_producer_held(p, ids), 7);
		if (on_limit == SV2SHM_LIMIT_SKIP)
			assert_int_equal(sv2shm_consumer_missed(stuck), 200 - 7);
		/* It wakes up, reads its 7, and is fed again. */
		struct sv2shm_slice s;
		for (unsigned i = 0; i < 7; i++) {
			assert_int_equal(sv2shm_consumer_recv(stuck, &s, 1000), 1);
			assert_int_equal(pat_check(s.data, pat_key(SEED, i), s.len), s.len);
			assert_int_equal(sv2shm_slice_release(&s), 0);
		}
		assert_int_equal(sv2shm_producer_held(p, ids), 0);
		make(p, 1000, 200, &s);
		assert_int_equal(sv2shm_producer_publish(p, &s, both, 2, 0), 0);
		recv_check(stuck, 1000);
		recv_check(honest, 1000);
	}
	free_consumer(stuck);
	free_consumer(honest);
	destroy_producer(p);
}

static void test_stuck_consumer_skip(void **state)
{
	(void)state;
	run_stuck(SV2SHM_LIMIT_SKIP);
}

static void test_stuck_consumer_disconnect(void **state)
{
	(void)state;
	run_stuck(SV2SHM_LIMIT_DISCONNECT);
}

static void test_stuck_consumer_refuse(void **state)
{
	(void)state;
	run_stuck(SV2SHM_LIMIT_REFUSE);
}

/* --- 10. alloc-mode slices are bounded ------------------------------------------ */

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void send_overflow(struct mitm *m, uint64_t length, int fd)
{
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	msg.hdr.magic = SV2SHM_MSG_MAGIC;
	msg.hdr.version = SV2SHM_MSG_VERSION;
	msg.hdr.type = SV2SHM_MSG_OVERFLOW;
	struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION, .kind = SV2SHM_DESC_OVERFLOW, .length = length};
	encode(&d, msg.desc);
	assert_int_equal(ipc_send_fds(m->fake_sock, &msg, sizeof(msg), &fd, 1), 0);
	inject(m, &d);
}

static void test_overflow_bounded(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 0, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	mitm_capture(p, &m, 1);
	int b[2];
	assert_int_equal(ipc_seqpacket_pair(b), 0);
	assert_int_equal(ipc_send_fds(b[0], &m.msg, sizeof(m.msg), m.fds, SETUP_NFDS), 0);
	m.fake_sock = b[0];
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.max_overflow = 1u << 20;
	struct sv2shm_consumer *c = NULL;
	assert_int_equal(sv2shm_consumer_new(b[1], &co, &c), 0);
	ipc_hold(c);
	const unsigned seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL;
	int fds_before = ipc_count_fds();
	long rss0 = rss_kib();
	/* 1 TiB, sparse and sealed: refused before it is mapped. */
	int huge = memfd_create("huge", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(huge >= 0);
	assert_int_equal(ftruncate(huge, (off_t)1 << 40), 0);
	assert_int_equal(fcntl(huge, F_ADD_SEALS, seals), 0);
	send_overflow(&m, UINT64_C(1) << 40, huge);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), -EMSGSIZE);
	/* Just over the option; then just at it, which is accepted. */
	int over = fake_memfd((1u << 20) + 4096, NULL, 0, seals);
	send_overflow(&m, (1u << 20) + 4096, over);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), -EMSGSIZE);
	int ok = fake_memfd(1u << 20, NULL, 3, 0);
	assert_int_equal(fcntl(ok, F_ADD_SEALS, seals), 0);
	send_overflow(&m, 1u << 20, ok);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(s.len, 1u << 20);
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < s.len; i += 4096)
		sink ^= s.data[i];
	(void)sink;
	assert_int_equal(sv2shm_slice_release(&s), 0);
	long rss1 = rss_kib();
	printf("  RSS %ld KiB -> %ld KiB after a refused 1 TiB slice and a 1 MiB one\n", rss0, rss1);
	assert_true(rss1 - rss0 < 8 * 1024);
	close(huge);
	close(over);
	close(ok);
	assert_int_equal(ipc_count_fds(), fds_before); /* the consumer closed what it got */
	/* The default bound is 64 MiB. */
	assert_int_equal(SV2SHM_DEFAULT_MAX_OVERFLOW, UINT64_C(64) << 20);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- 11. a loop waiting for -EPIPE ends ------------------------------------------- */

static void test_dead_channel_once(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 0, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	atomic_store(&m.ring->head, atomic_load(&m.ring->tail) + 100000u);
	unsigned calls = 0;
	int r;
	struct sv2shm_slice s;
	int first = 0;
	do {
		r = sv2shm_consumer_recv(c, &s, 100);
		if (!calls)
			first = r;
		calls++;
	} while (r != -EPIPE && calls < 1000);
	printf("  broken ring: first %d (%s), -EPIPE after %u calls\n", first, sv2shm_strerror(first), calls);
	assert_int_equal(first, -EPROTO);
	assert_int_equal(calls, 2);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- 12. stats from private state; empty datagrams ------------------------------- */

static void test_stats_and_empty_datagrams(void **state)
{
	(void)state;
	struct sv2shm_producer *p = producer(SV2SHM_POOL_FAIL, 8, 0, 0, SV2SHM_LIMIT_SKIP);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	/* Idle: nothing live, no bit beyond the slot count. */
	struct sv2shm_pool_stats st = ipc_stats(p);
	assert_int_equal(st.live, 0);
	assert_int_equal(st.mask, 0);
	/* A zero-length datagram from the consumer is not a hang-up... */
	assert_int_equal(send(m.real_peer, "", 0, MSG_DONTWAIT), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(sv2shm_producer_process(p), 0);
	struct sv2shm_slice s;
	make(p, 1, 100, &s);
	assert_int_equal(sv2shm_producer_publish(p, &s, &id, 1, 0), 0);
	/* ...nor is one from the producer. */
	assert_int_equal(send(m.fake_sock, "", 0, MSG_DONTWAIT), 0);
	recv_check(c, 1);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 50), 0);
	st = ipc_stats(p);
	assert_int_equal(st.live, 0);
	for (unsigned i = 0; i < 3; i++) {
		make(p, 10 + i, 100, &s);
		assert_int_equal(sv2shm_producer_publish(p, &s, &id, 1, 0), 0);
	}
	st = ipc_stats(p);
	assert_int_equal(st.live, 3);
	assert_int_equal(__builtin_popcountll(st.mask), 3);
	assert_int_equal(st.mask & ~UINT64_C(0xff), 0); /* 8 slots */
	for (unsigned i = 0; i < 3; i++)
		recv_check(c, 10 + i);
	assert_int_equal(ipc_stats(p).live, 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SV2SHM_IPC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SV2SHM_IPC_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hang_producer_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hang_producer_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hang_consumer_recv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hang_consumer_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctl_write_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_epoch_scribbled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wake_sent_as_wait_begins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_thread_wake_as_wait_begins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_wait_sleeps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_release_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_while_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_app_polls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removal_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stuck_consumer_skip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stuck_consumer_disconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stuck_consumer_refuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overflow_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_channel_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_and_empty_datagrams, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
