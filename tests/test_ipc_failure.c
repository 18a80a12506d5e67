/*
 * Failures across processes: producers that die, consumers that die or
 * misbehave, back-pressure, and forged setup messages.
 *
 *   producer_gone_*        a consumer holds a slice (and has more queued: a
 *                          pool slice and an alloc-mode MAPPED one) when the
 *                          producer process is SIGKILLed / exits without
 *                          cleaning up / destroys its producer: the consumer
 *                          still reads the right bytes, releases fine, and
 *                          then recv returns -EPIPE. Also over the socket
 *                          transport.
 *   backpressure_wait_*    policy WAIT, every slot (or every byte) held by a
 *                          consumer process: get_writable sleeps, and returns
 *                          within a bounded time after the consumer releases
 *                          one ~50 ms later; stats.waits > 0. For EVENTFD and
 *                          FUTEX notifications.
 *   wait_timeout           wait_timeout_ms = 100 and nobody releasing:
 *                          -ETIMEDOUT after >= 100 ms; a slice larger than the
 *                          pool is -EMSGSIZE at once.
 *   wait_timeout_woken     the same while releases that make no room wake the
 *                          waiting producer halfway: still >= 100 ms.
 *   fail_eagain            policy FAIL: -EAGAIN at once.
 *   consumer_killed        a consumer holding slices (and with descriptors
 *                          queued) is SIGKILLed; sv2shm_producer_process()
 *                          after polling sv2shm_producer_fd() removes it and
 *                          every slot it held comes back; the other consumer is
 *                          unaffected.
 *   consumer_killed_mid_release  a consumer dies inside a release, after
 *                          clearing its holder bit and before clearing the
 *                          mask bit: the slot must not leak.
 *   consumer_removed       sv2shm_producer_remove_consumer() on a live consumer.
 *   consumer_bad_ring_tail a consumer that scribbles its ring's tail is
 *                          dropped (-EPIPE) and its slots come back.
 *   consumer_sends_garbage a consumer writing junk (and fds) on its socket is
 *                          ignored by sv2shm_producer_process() and stays.
 *   malformed_setup        forged setup messages (garbage, wrong fd counts,
 *                          every field wrong, wrong fds) make
 *                          sv2shm_consumer_new fail with -EPROTO (or the
 *                          region's own error), in a child that must not crash
 *                          or leak an fd.
 *   publish_atomic_*       a publish to two consumers whose socket to the
 *                          second is full fails with -EAGAIN after 1 s; then,
 *                          as ipc.h says, with the ring transport nothing
 *                          reached the first one either, and with the socket
 *                          transport the slice went to the other one and *s
 *                          is cleared.
 *   wait_wakes_more        slices published with SV2SHM_PUBLISH_MORE to a
 *                          sleeping consumer, then get_writable (WAIT) for
 *                          room: must not deadlock.
 *   publish_wakes_more     a slice published with SV2SHM_PUBLISH_MORE to
 *                          sleeping consumer A, then one without it to B:
 *                          A is woken too (ipc.h: "the next publish without
 *                          it does"), well before its 5 s recv timeout.
 *   skip_wakes_more        SV2SHM_LIMIT_SKIP, a 2-entry ring filled with
 *                          SV2SHM_PUBLISH_MORE for a sleeping consumer, then
 *                          a publish without it that skips the consumer
 *                          (delivers to nobody): the consumer is woken all
 *                          the same and gets its two slices.
 *   refuse_wakes_more      SV2SHM_LIMIT_REFUSE, a 2-entry ring filled with
 *                          SV2SHM_PUBLISH_MORE for a sleeping consumer: the
 *                          -EAGAIN that refuses the third wakes it, so a
 *                          caller retrying gets room without a flush.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ipc_common.h"

#define SEED UINT64_C(0xfa11ed)
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

static struct sv2shm_producer *new_producer_opts(const struct sv2shm_producer_options *o)
{
	/* These tests hold every slot in one consumer on purpose, and retry on
	 * -EAGAIN: the limits tested in test_ipc_hostile.c are off here. */
	struct sv2shm_producer_options oo = *o;
	if (!oo.max_held)
		oo.max_held = oo.pool.slots ? oo.pool.slots : SV2SHM_DEFAULT_SLOTS;
	oo.on_limit = SV2SHM_LIMIT_REFUSE;
	o = &oo;
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_producer_new(o, &p);
	if (r != 0)
		fail_msg("sv2shm_producer_new: %d (%s)", r, sv2shm_strerror(r));
	ipc_hold(p);
	return p;
}

static struct sv2shm_producer *new_producer(int policy, unsigned slots, uint64_t cap, int wait_ms, int notify)
{
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = cap;
	o.pool.slots = slots;
	o.pool.policy = policy;
	o.pool.wait_timeout_ms = wait_ms;
	o.notify = notify;
	return new_producer_opts(&o);
}

static uint64_t make(struct sv2shm_producer *p, uint64_t seq, size_t len, struct sv2shm_slice *s)
{
	uint64_t before = ipc_mask(p);
	int r = ipc_make_slice(p, pat_key(SEED, seq), len, s);
	if (r != 0)
		fail_msg("making slice %" PRIu64 ": %d (%s)", seq, r, sv2shm_strerror(r));
	return ipc_mask(p) & ~before;
}

static void publish(struct sv2shm_producer *p, struct sv2shm_slice *s, const int *ids, unsigned n)
{
	int r = sv2shm_producer_publish(p, s, ids, n, 0);
	if (r != 0)
		fail_msg("publish: %d (%s)", r, sv2shm_strerror(r));
}

static double ms_between(uint64_t a, uint64_t b)
{
	return ((double)b - (double)a) / 1e6;
}

/* --- 5. the producer goes away ------------------------------------------------ */

enum { GONE_KILL, GONE_EXIT, GONE_DESTROY };

struct gone_arg {
	int sock;
	int ctl;
	int how;
	bool socket_transport;
};

/* Producer process: three slices to the consumer (pool, alloc-mode, pool). */
static int gone_producer(void *argp)
{
	const struct gone_arg *a = argp;
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = 4096;
	o.pool.slots = 4;
	o.pool.policy = SV2SHM_POOL_FALLBACK;
	o.socket_transport = a->socket_transport;
	struct sv2shm_producer *p = NULL;
	CHECK_EQ(sv2shm_producer_new(&o, &p), 0);
	int id = sv2shm_producer_add_consumer(p, a->sock);
	CHECK_EQ(id, 1);
	static const size_t lens[3] = {3000, 3000, 100};
	static const int kinds[3] = {SV2SHM_SLICE_POOL, SV2SHM_SLICE_SYSTEM, SV2SHM_SLICE_POOL};
	for (unsigned i = 0; i < 3; i++) {
		struct sv2shm_slice s;
		CHECK_EQ(ipc_make_slice(p, pat_key(SEED, 100 + i), lens[i], &s), 0);
		CHECK_EQ(sv2shm_slice_kind(&s), kinds[i]);
		CHECK_EQ(sv2shm_producer_publish(p, &s, &id, 1, 0), 0);
	}
	CHECK_EQ(ipc_send_u64(a->ctl, 3), 0);
	uint64_t how = child_wait_cmd(a->ctl, 30000);
	if (how == GONE_EXIT)
		_exit(0); /* no cleanup at all, like a crash */
	CHECK_EQ(how, GONE_DESTROY);
	/* The consumer still holds a slice: that does not stop the producer. */
	CHECK_EQ(sv2shm_producer_destroy(p), 0);
	return 0;
}

static int gone_consumer(void *argp)
{
	const struct gone_arg *a = argp;
	struct sv2shm_consumer *c = NULL;
	CHECK_EQ(sv2shm_consumer_new(a->sock, NULL, &c), 0);
	struct sv2shm_slice s[3];
	CHECK_EQ(sv2shm_consumer_recv(c, &s[0], 5000), 1);
	CHECK_EQ(sv2shm_slice_kind(&s[0]), SV2SHM_SLICE_SHARED);
	CHECK_EQ(s[0].len, 3000);
	CHECK_EQ(ipc_send_u64(a->ctl, 1), 0);
	(void)child_wait_cmd(a->ctl, 30000); /* the producer is gone now */
	/* What we hold is intact; what was queued still arrives, intact. */
	CHECK_EQ(pat_check(s[0].data, pat_key(SEED, 100), s[0].len), s[0].len);
	CHECK_EQ(sv2shm_consumer_recv(c, &s[1], 5000), 1);
	CHECK_EQ(sv2shm_slice_kind(&s[1]), SV2SHM_SLICE_MAPPED);
	CHECK_EQ(s[1].len, 3000);
	CHECK_EQ(pat_check(s[1].data, pat_key(SEED, 101), s[1].len), s[1].len);
	CHECK_EQ(sv2shm_consumer_recv(c, &s[2], 5000), 1);
	CHECK_EQ(sv2shm_slice_kind(&s[2]), SV2SHM_SLICE_SHARED);
	CHECK_EQ(s[2].len, 100);
	CHECK_EQ(pat_check(s[2].data, pat_key(SEED, 102), s[2].len), s[2].len);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(sv2shm_slice_release(&s[i]), 0);
	struct sv2shm_slice x;
	uint64_t t0 = ipc_now_ns();
	int r = sv2shm_consumer_recv(c, &x, 3000);
	if (r != -EPIPE)
		CHILD_FAIL("recv after the producer left returned %d, expected -EPIPE", r);
	CHECK(ipc_now_ns() - t0 < UINT64_C(2000000000)); /* noticed, not timed out */
	CHECK_EQ(sv2shm_consumer_recv(c, &x, 0), -EPIPE);
	CHECK_EQ(sv2shm_consumer_recv(c, &x, -1), -EPIPE);
	CHECK_EQ(sv2shm_consumer_free(c), 0);
	return 0;
}

static void run_producer_gone(int how, bool socket_transport)
{
	int sv[2], pc[2], cc[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	assert_int_equal(ipc_seqpacket_pair(pc), 0);
	assert_int_equal(ipc_seqpacket_pair(cc), 0);
	struct gone_arg ca = {.sock = sv[1], .ctl = cc[1], .how = how, .socket_transport = socket_transport};
	struct gone_arg pa = {.sock = sv[0], .ctl = pc[1], .how = how, .socket_transport = socket_transport};
	int ckeep[2] = {sv[1], cc[1]}, pkeep[2] = {sv[0], pc[1]};
	pid_t cpid = ipc_spawn(gone_consumer, &ca, ckeep, 2, 60);
	pid_t ppid = ipc_spawn(gone_producer, &pa, pkeep, 2, 60);
	assert_true(cpid > 0 && ppid > 0);
	close(sv[0]);
	close(sv[1]);
	close(pc[1]);
	close(cc[1]);
	uint64_t v = 0;
	parent_wait_u64(pc[0], &v, 20000);
	assert_int_equal(v, 3);
	parent_wait_u64(cc[0], &v, 20000);
	assert_int_equal(v, 1);
	int st = 0;
	if (how == GONE_KILL) {
		assert_int_equal(kill(ppid, SIGKILL), 0);
		assert_int_equal(ipc_wait_child(ppid, 10000, &st), 0);
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	} else {
		assert_int_equal(ipc_send_u64(pc[0], (uint64_t)how), 0);
		assert_child_ok(ppid, 10000);
	}
	assert_int_equal(ipc_send_u64(cc[0], 1), 0);
	assert_child_ok(cpid, 20000);
	close(pc[0]);
	close(cc[0]);
}

static void test_producer_gone_killed(void **state)
{
	(void)state;
	run_producer_gone(GONE_KILL, false);
}

static void test_producer_gone_exit(void **state)
{
	(void)state;
	run_producer_gone(GONE_EXIT, false);
}

static void test_producer_gone_destroy(void **state)
{
	(void)state;
	run_producer_gone(GONE_DESTROY, false);
}

static void test_producer_gone_killed_socket(void **state)
{
	(void)state;
	run_producer_gone(GONE_KILL, true);
}

/* --- 6. back-pressure --------------------------------------------------------- */

/* A consumer process holds `n` slices of `len` bytes (seq 0..n-1); returns
 * its pid and sockets. */
static pid_t holder(struct sv2shm_producer *p, unsigned n, size_t len, int *ctl, int *id, struct cmd_child *arg)
{
	int sock;
	pid_t pid = spawn_cmd_consumer(&sock, ctl, arg, SEED);
	*id = sv2shm_producer_add_consumer(p, sock);
	assert_true(*id >= 1);
	for (unsigned i = 0; i < n; i++) {
		struct sv2shm_slice s;
		make(p, i, len, &s);
		publish(p, &s, id, 1);
		assert_int_equal(cmd(*ctl, CMD(OP_RECV, i, i)), 1);
	}
	return pid;
}

static void finish_holder(int ctl, pid_t pid)
{
	(void)cmd(ctl, CMD(OP_RELEASE_ALL, 0, 0));
	assert_int_equal(cmd(ctl, CMD(OP_EXIT, 0, 0)), 0);
	assert_child_ok(pid, 10000);
	close(ctl);
}

static void run_backpressure(int notify, bool by_bytes)
{
	/* by_bytes: 8 slots, 4 KiB, four 1 KiB slices fill the bytes; else 4
	 * slots, 64 KiB, four 1000-byte slices take every slot. */
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_WAIT, by_bytes ? 8 : 4, by_bytes ? 4096 : CAP, 10000,
						 notify);
	const char *pn = sv2shm_producer_notify_name(p);
	printf("  notify %d: producer path \"%s\"\n", notify, pn);
	if (!strstr(pn, notify == SV2SHM_NOTIFY_SOCKET || ipc_no_uring_env() ? "socket" : "") ||
	    (!strstr(pn, "socket") && !strstr(pn, "futex")))
		fail_msg("producer notify path \"%s\" does not fit notify=%d", pn, notify);
	const size_t len = by_bytes ? 1024 : 1000;
	int ctl, id;
	struct cmd_child arg;
	pid_t pid = holder(p, 4, len, &ctl, &id, &arg);
	assert_int_equal(ipc_mask(p), 0x0f);
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);

	for (int round = 0; round < 3; round++) {
		uint64_t waits0 = ipc_stats(p).waits;
		/* The consumer lets go of its oldest slice 50 ms from now. */
		unsigned idx = (unsigned)round % 4u;
		assert_int_equal(ipc_send_u64(ctl, CMD(OP_RELEASE_AT, idx, 50)), 0);
		uint64_t t0 = ipc_now_ns();
		uint8_t *w = sv2shm_buffer_get_writable(b, len);
		uint64_t t1 = ipc_now_ns();
		if (!w)
			fail_msg("round %d: get_writable returned NULL: %s after %.1f ms", round,
				 sv2shm_strerror(sv2shm_buffer_last_error(b)), ms_between(t0, t1));
		uint64_t t_rel = 0;
		parent_wait_u64(ctl, &t_rel, 10000);
		printf("  round %d: blocked %.2f ms, returned %.3f ms after the release\n", round, ms_between(t0, t1),
		       ms_between(t_rel, t1));
		if (t1 < t_rel)
			fail_msg("get_writable returned %.3f ms before the only release that could make room",
				 ms_between(t1, t_rel));
		if (t1 - t_rel >= UINT64_C(1000000000))
			fail_msg("get_writable returned %.1f ms after the release (limit 1000 ms)", ms_between(t_rel, t1));
		assert_true(ms_between(t0, t1) >= 30.0);
		assert_true(ipc_stats(p).waits > waits0);
		if (by_bytes && round == 0)
			assert_int_equal(sv2shm_pool_mode(sv2shm_producer_pool(p)), SV2SHM_MODE_FRONT);
		pat_fill(w, pat_key(SEED, 10u + (unsigned)round), 0, len);
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
		publish(p, &s, &id, 1);
		/* The wake-up that ended the wait is read by now: the producer's
		 * fd does not call an event loop in for nothing. */
		struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
		if (poll(&pfd, 1, 0) != 0)
			fail_msg("round %d: sv2shm_producer_fd() readable after the publish (revents 0x%x)", round,
				 (unsigned)pfd.revents);
		assert_int_equal(cmd(ctl, CMD(OP_RECV, idx, 10u + (unsigned)round)), 1);
		assert_int_equal(__builtin_popcountll(ipc_mask(p)), 4);
	}
	struct sv2shm_pool_stats st = ipc_stats(p);
	assert_true(st.waits > 0);
	assert_int_equal(st.from_system, 0);
	finish_holder(ctl, pid);
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

static void test_backpressure_wait_socket(void **state)
{
	(void)state;
	run_backpressure(SV2SHM_NOTIFY_SOCKET, false);
}

static void test_backpressure_wait_default(void **state)
{
	(void)state;
	run_backpressure(SV2SHM_NOTIFY_DEFAULT, false);
}

static void test_backpressure_wait_bytes(void **state)
{
	(void)state;
	run_backpressure(SV2SHM_NOTIFY_DEFAULT, true);
}

static void test_wait_timeout(void **state)
{
	(void)state;
	static const int notifies[2] = {SV2SHM_NOTIFY_SOCKET, SV2SHM_NOTIFY_DEFAULT};
	for (int k = 0; k < 2; k++) {
		struct sv2shm_producer *p = new_producer(SV2SHM_POOL_WAIT, 4, CAP, 100, notifies[k]);
		int ctl, id;
		struct cmd_child arg;
		pid_t pid = holder(p, 4, 1000, &ctl, &id, &arg);
		struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
		for (int i = 0; i < 5; i++) {
			uint64_t waits0 = ipc_stats(p).waits;
			uint64_t t0 = ipc_now_ns();
			void *w = sv2shm_buffer_get_writable(b, 1000);
			uint64_t t1 = ipc_now_ns();
			assert_null(w);
			assert_int_equal(sv2shm_buffer_last_error(b), -ETIMEDOUT);
			if (ms_between(t0, t1) < 100.0)
				fail_msg("notify %d, try %d: -ETIMEDOUT after %.3f ms, before the 100 ms timeout",
					 notifies[k], i, ms_between(t0, t1));
			assert_true(ms_between(t0, t1) < 2000.0);
			assert_true(ipc_stats(p).waits > waits0);
			if (i == 0)
				printf("  notify %d: -ETIMEDOUT after %.2f ms\n", notifies[k], ms_between(t0, t1));
		}
		/* Larger than the pool: waiting could never help. */
		uint64_t t0 = ipc_now_ns();
		assert_null(sv2shm_buffer_get_writable(b, CAP + 1));
		assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
		assert_true(ms_between(t0, ipc_now_ns()) < 50.0);
		/* Once the oldest slice goes, room comes at once. */
		assert_int_equal(cmd(ctl, CMD(OP_RELEASE, 0, 0)), 0);
		t0 = ipc_now_ns();
		uint8_t *w = sv2shm_buffer_get_writable(b, 1000);
		assert_non_null(w);
		assert_true(ms_between(t0, ipc_now_ns()) < 50.0);
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
		assert_int_equal(sv2shm_slice_release(&s), 0);
		finish_holder(ctl, pid);
		assert_int_equal(ipc_mask(p), 0);
		destroy_producer(p);
	}
}

/* The same, while releases that make no room (slices in the middle of the
 * run) wake the producer halfway: it goes back to sleep, and still times out
 * no earlier than wait_timeout_ms after the call. */
static void test_wait_timeout_woken(void **state)
{
	(void)state;
	static const int notifies[2] = {SV2SHM_NOTIFY_SOCKET, SV2SHM_NOTIFY_DEFAULT};
	for (int k = 0; k < 2; k++) {
		struct sv2shm_producer *p = new_producer(SV2SHM_POOL_WAIT, 8, CAP, 100, notifies[k]);
		int ctl, id;
		struct cmd_child arg;
		pid_t pid = holder(p, 8, 1000, &ctl, &id, &arg);
		struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
		for (unsigned i = 1; i < 7; i++) {
			uint64_t waits0 = ipc_stats(p).waits;
			/* Slice i is in the middle of the run: freeing it makes no room. */
			assert_int_equal(ipc_send_u64(ctl, CMD(OP_RELEASE_AT, i, 20u + 10u * i)), 0);
			uint64_t t0 = ipc_now_ns();
			void *w = sv2shm_buffer_get_writable(b, 1000);
			uint64_t t1 = ipc_now_ns();
			uint64_t t_rel = 0;
			parent_wait_u64(ctl, &t_rel, 10000);
			assert_null(w);
			assert_int_equal(sv2shm_buffer_last_error(b), -ETIMEDOUT);
			assert_true(t_rel > t0 && t_rel < t1); /* the release came while it waited */
			assert_true(ipc_stats(p).waits > waits0);
			if (ms_between(t0, t1) < 100.0)
				fail_msg("notify %d, round %u: -ETIMEDOUT %.3f ms after the call (woken by a release at "
					 "%.3f ms), before the 100 ms timeout",
					 notifies[k], i, ms_between(t0, t1), ms_between(t0, t_rel));
			assert_true(ms_between(t0, t1) < 2000.0);
		}
		finish_holder(ctl, pid);
		assert_int_equal(ipc_mask(p), 0);
		destroy_producer(p);
	}
}

static void test_fail_eagain(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	int ctl, id;
	struct cmd_child arg;
	pid_t pid = holder(p, 4, 1000, &ctl, &id, &arg);
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	uint64_t t0 = ipc_now_ns();
	assert_null(sv2shm_buffer_get_writable(b, 1000));
	uint64_t t1 = ipc_now_ns();
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	printf("  -EAGAIN after %.3f ms\n", ms_between(t0, t1));
	assert_true(ms_between(t0, t1) < 20.0);
	assert_int_equal(ipc_stats(p).waits, 0);
	assert_null(sv2shm_buffer_get_writable(b, CAP + 1));
	assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
	assert_int_equal(cmd(ctl, CMD(OP_RELEASE, 0, 0)), 0);
	uint8_t *w = sv2shm_buffer_get_writable(b, 1000);
	assert_non_null(w);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	finish_holder(ctl, pid);
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

/* --- 7. consumer death ------------------------------------------------------------ */

/* Wait until the producer's fd reports a hang-up, then process it. */
static int process_after_poll(struct sv2shm_producer *p, int timeout_ms)
{
	struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
	assert_true(pfd.fd >= 0);
	int pr = poll(&pfd, 1, timeout_ms);
	if (pr != 1)
		fail_msg("sv2shm_producer_fd did not become readable within %d ms (poll %d)", timeout_ms, pr);
	return sv2shm_producer_process(p);
}

static void run_consumer_killed(bool socket_transport)
{
	int sa, ca, sb, cb;
	struct cmd_child aa, ab;
	pid_t pa = spawn_cmd_consumer(&sa, &ca, &aa, SEED);
	pid_t pb = spawn_cmd_consumer(&sb, &cb, &ab, SEED);
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = CAP;
	o.pool.slots = 8;
	o.pool.policy = SV2SHM_POOL_FAIL;
	o.socket_transport = socket_transport;
	struct sv2shm_producer *p = new_producer_opts(&o);
	int ida = sv2shm_producer_add_consumer(p, sa), idb = sv2shm_producer_add_consumer(p, sb);
	assert_true(ida >= 1 && idb >= 1 && ida != idb);
	int both[2] = {ida, idb};
	struct sv2shm_slice s1, s2, s3, s4, s5;
	uint64_t b1 = make(p, 1, 1000, &s1), b2 = make(p, 2, 2000, &s2), b3 = make(p, 3, 3000, &s3);
	uint64_t b4 = make(p, 4, 4000, &s4), b5 = make(p, 5, 5000, &s5);
	publish(p, &s1, &ida, 1);
	publish(p, &s2, both, 2);
	publish(p, &s3, &idb, 1);
	publish(p, &s4, &ida, 1);
	publish(p, &s5, &ida, 1); /* A never takes this one: it stays queued */
	assert_int_equal(cmd(ca, CMD(OP_RECV, 0, 1)), 1);
	assert_int_equal(cmd(ca, CMD(OP_RECV, 1, 2)), 1);
	assert_int_equal(cmd(ca, CMD(OP_RECV, 2, 4)), 1);
	assert_int_equal(cmd(cb, CMD(OP_RECV, 0, 2)), 1);
	assert_int_equal(cmd(cb, CMD(OP_RECV, 1, 3)), 1);
	assert_int_equal(ipc_mask(p), b1 | b2 | b3 | b4 | b5);

	/* Nothing to process while both live. */
	assert_int_equal(sv2shm_producer_process(p), 0);
	assert_int_equal(kill(pa, SIGKILL), 0);
	int st = 0;
	assert_int_equal(ipc_wait_child(pa, 10000, &st), 0);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(ca);
	assert_int_equal(process_after_poll(p, 5000), 1);
	/* A's slots are back; what B holds stays. */
	uint64_t m = ipc_mask(p);
	if (m != (b2 | b3))
		fail_msg("mask 0x%" PRIx64 " after removing the dead consumer, expected 0x%" PRIx64, m, b2 | b3);
	assert_int_equal(sv2shm_producer_process(p), 0);
	/* A's id is stale now, and says so. */
	struct sv2shm_slice s6;
	uint64_t b6 = make(p, 6, 600, &s6);
	assert_int_equal(sv2shm_producer_publish(p, &s6, &ida, 1, 0), -ESRCH);
	assert_int_equal(sv2shm_producer_publish(p, &s6, both, 2, 0), -ESRCH);
	assert_int_equal(sv2shm_slice_kind(&s6), SV2SHM_SLICE_POOL);
	/* B carries on. */
	publish(p, &s6, &idb, 1);
	assert_int_equal(cmd(cb, CMD(OP_CHECK, 0, 0)), 0);
	assert_int_equal(cmd(cb, CMD(OP_CHECK, 1, 0)), 0);
	assert_int_equal(cmd(cb, CMD(OP_RECV, 2, 6)), 1);
	assert_int_equal(ipc_mask(p), b2 | b3 | b6);
	assert_int_equal(cmd(cb, CMD(OP_RELEASE_ALL, 0, 0)), 3);
	assert_int_equal(ipc_mask(p), 0);
	/* The pool hands out every slot again. */
	struct sv2shm_slice all[8];
	for (int i = 0; i < 8; i++)
		make(p, 20u + (unsigned)i, 100, &all[i]);
	assert_int_equal(ipc_mask(p), 0xff);
	for (int i = 0; i < 8; i++)
		assert_int_equal(sv2shm_slice_release(&all[i]), 0);
	assert_int_equal(cmd(cb, CMD(OP_EXIT, 0, 0)), 0);
	assert_child_ok(pb, 10000);
	close(cb);
	assert_int_equal(process_after_poll(p, 5000), 1);
	destroy_producer(p);
}

static void test_consumer_killed(void **state)
{
	(void)state;
	run_consumer_killed(false);
}

static void test_consumer_killed_socket(void **state)
{
	(void)state;
	run_consumer_killed(true);
}

static void test_consumer_killed_mid_release(void **state)
{
	(void)state;
	int sock, ctl;
	struct cmd_child arg;
	pid_t pid = spawn_cmd_consumer(&sock, &ctl, &arg, SEED);
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 2, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	int id = sv2shm_producer_add_consumer(p, sock);
	assert_int_equal(id, 1);
	struct sv2shm_slice s;
	uint64_t bit = make(p, 1, 1000, &s);
	publish(p, &s, &id, 1);
	assert_int_equal(cmd(ctl, CMD(OP_RECV, 0, 1)), 1);
	assert_int_equal(ipc_mask(p), bit);
	/* The consumer dies halfway through its release. */
	assert_int_equal(ipc_send_u64(ctl, CMD(OP_DIE_MID_RELEASE, 0, 0)), 0);
	int st = 0;
	assert_int_equal(ipc_wait_child(pid, 10000, &st), 0);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(ctl);
	assert_int_equal(process_after_poll(p, 5000), 1);
	/* Nobody holds the slot any more: it must come back. */
	uint64_t m = ipc_mask(p);
	if (m != 0)
		fail_msg("slot mask 0x%" PRIx64 " after the consumer that died inside its release was removed: "
			 "the slot leaked (its holders word is 0, its mask bit stays set)",
			 m);
	struct sv2shm_slice a, b;
	make(p, 2, 10, &a);
	make(p, 3, 10, &b);
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_slice_release(&b), 0);
	destroy_producer(p);
}

static void test_consumer_removed(void **state)
{
	(void)state;
	int sock, ctl;
	struct cmd_child arg;
	pid_t pid = spawn_cmd_consumer(&sock, &ctl, &arg, SEED);
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	int id = sv2shm_producer_add_consumer(p, sock);
	struct sv2shm_slice s1, s2, s3;
	make(p, 1, 100, &s1);
	make(p, 2, 100, &s2);
	uint64_t b3 = make(p, 3, 100, &s3);
	publish(p, &s1, &id, 1);
	publish(p, &s2, &id, 1);
	assert_int_equal(cmd(ctl, CMD(OP_RECV, 0, 1)), 1);
	assert_int_equal(cmd(ctl, CMD(OP_RECV, 1, 2)), 1);
	assert_int_equal(sv2shm_producer_remove_consumer(p, 99), -EINVAL);
	assert_int_equal(sv2shm_producer_remove_consumer(p, id + 1), -EINVAL);
	/* Reclaims the two slots it held; our own slice S3 stays. */
	assert_int_equal(sv2shm_producer_remove_consumer(p, id), 2);
	assert_int_equal(ipc_mask(p), b3);
	assert_int_equal(sv2shm_producer_remove_consumer(p, id), -ESRCH);
	assert_int_equal(sv2shm_producer_publish(p, &s3, &id, 1, 0), -ESRCH);
	struct sv2shm_producer_event ev;
	assert_int_equal(sv2shm_producer_next_event(p, &ev), 1);
	assert_int_equal(ev.id, id);
	assert_int_equal(ev.reason, SV2SHM_EVENT_REMOVED);
	assert_int_equal(ev.held, 2);
	assert_int_equal(sv2shm_producer_next_event(p, &ev), 0);
	/* The consumer's own release is local now: it changes nothing here... */
	assert_int_equal(cmd(ctl, CMD(OP_RELEASE, 0, 0)), 0);
	assert_int_equal(ipc_mask(p), b3);
	/* ...and it learns that it was dropped. */
	assert_int_equal(cmd(ctl, CMD(OP_RECV, 2, 0)), -EPIPE);
	int64_t fr = cmd(ctl, CMD(OP_FREE, 0, 0));
	printf("  sv2shm_consumer_free after being removed: %" PRId64 " (%s)\n", fr, sv2shm_strerror((int)fr));
	assert_true(fr == 0 || fr == -EBUSY); /* -EBUSY: slice 1 is still open */
	assert_int_equal(cmd(ctl, CMD(OP_ABANDON, 0, 0)), 0);
	assert_child_ok(pid, 10000);
	close(ctl);
	assert_int_equal(sv2shm_slice_release(&s3), 0);
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

/* A removed consumer with slices still queued in its ring: the producer
 * takes their slots back and reuses them at once. The consumer must not
 * hand out those entries (their bytes are someone else's now): the ring's
 * revoked word, set before the holds are taken back, turns them into -EPIPE. */
static void test_removed_consumer_queue_void(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	struct sv2shm_slice a, b, x[4], s;
	make(p, 1, 100, &a);
	make(p, 2, 100, &b);
	publish(p, &a, &id, 1);
	publish(p, &b, &id, 1); /* both queued in its ring, none received */
	assert_int_equal(atomic_load(&m.ring->revoked), 0u);
	assert_int_equal(sv2shm_producer_remove_consumer(p, id), 2);
	assert_int_equal(atomic_load(&m.ring->revoked), 1u);
	/* Every slot is the producer's again, and written with new bytes. */
	for (int k = 0; k < 4; k++)
		make(p, 10 + (uint64_t)k, 100, &x[k]);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 0), -EPIPE);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 100), -EPIPE);
	for (int k = 0; k < 4; k++)
		assert_int_equal(sv2shm_slice_release(&x[k]), 0);
	assert_int_equal(ipc_mask(p), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* A consumer writes nonsense into its ring's tail: the producer drops it
 * the next time it needs the tail — when the ring looks full (it does not
 * read the consumer's line while there is room it knows of). A ring of two
 * entries is full with one slice received and one queued. */
static void test_consumer_bad_ring_tail(void **state)
{
	(void)state;
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = CAP;
	o.pool.slots = 4;
	o.pool.policy = SV2SHM_POOL_FAIL;
	o.ring_entries = 2;
	struct sv2shm_producer *p = new_producer_opts(&o);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	struct sv2shm_slice a, b, x, s;
	make(p, 1, 100, &a);
	publish(p, &a, &id, 1);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1); /* held */
	make(p, 2, 100, &b);
	publish(p, &b, &id, 1); /* queued */
	uint64_t bx = make(p, 3, 100, &x);
	atomic_store(&m.ring->tail, atomic_load(&m.ring->head) + 1000u);
	/* Nobody could take it: removed (an event says why), and the slice,
	 * delivered to no one, is consumed (the slot frees at once). */
	assert_int_equal(sv2shm_producer_publish(p, &x, &id, 1, 0), 1);
	assert_int_equal(sv2shm_slice_kind(&x), SV2SHM_SLICE_NONE);
	(void)bx;
	struct sv2shm_producer_event ev;
	assert_int_equal(sv2shm_producer_next_event(p, &ev), 1);
	assert_int_equal(ev.id, id);
	assert_int_equal(ev.reason, SV2SHM_EVENT_PROTOCOL);
	assert_int_equal(ev.held, 2); /* one received, one queued */
	/* What it held or had queued is back. */
	assert_int_equal(ipc_mask(p), 0);
	make(p, 4, 100, &x);
	assert_int_equal(sv2shm_producer_publish(p, &x, &id, 1, 0), -ESRCH);
	assert_int_equal(sv2shm_slice_release(&x), 0);
	assert_int_equal(ipc_mask(p), 0);
	/* Its release is local only now. */
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_NONE);
	mitm_close(&m);
	assert_int_equal(sv2shm_consumer_free(c), 0);
	destroy_producer(p);
}

/* Consumers send nothing on the channel: a consumer that sends garbage (with
 * fds even) is ignored, stays connected, and leaks nothing into the producer. */
static void test_consumer_sends_garbage(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int fds_before = ipc_count_fds();
	uint8_t junk[300];
	memset(junk, 0xa5, sizeof(junk));
	for (int i = 0; i < 20; i++)
		assert_int_equal(ipc_send_fds(m.real_peer, junk, (size_t)(1 + i * 13), m.fds, (unsigned)(i % 3)), 0);
	for (int i = 0; i < 25; i++)
		assert_int_equal(sv2shm_producer_process(p), 0);
	assert_int_equal(ipc_count_fds(), fds_before);
	int id = 1;
	struct sv2shm_slice a, s;
	make(p, 1, 500, &a);
	publish(p, &a, &id, 1);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 1), s.len), 500);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- 8. malformed setup messages ------------------------------------------------- */

struct setup_victim_arg {
	int sock;
	int ctl;
};

/* The consumer under test: sv2shm_consumer_new on a socket the fake producer
 * writes to. Reports the result; fails if an fd leaked. */
static int setup_victim(void *argp)
{
	const struct setup_victim_arg *a = argp;
	int before = ipc_count_fds();
	struct sv2shm_consumer *c = NULL;
	int r = sv2shm_consumer_new(a->sock, NULL, &c);
	int after = ipc_count_fds();
	CHECK_EQ(ipc_send_u64(a->ctl, (uint64_t)(int64_t)r), 0);
	if (r == 0) {
		CHECK_EQ(sv2shm_consumer_free(c), 0);
		after = ipc_count_fds();
	} else {
		CHECK(c == NULL);
	}
	/* The consumer owns the socket even on failure: one fd less, no more. */
	if (after != before - 1)
		CHILD_FAIL("%d fds open before sv2shm_consumer_new, %d after (result %d): expected %d", before, after,
			   r, before - 1);
	return 0;
}

/* Run one case: `send` writes the forged message onto sock. */
typedef void (*setup_sender)(int sock, const struct mitm *m, const void *ctx);

static void run_setup_case(const char *what, int want, setup_sender send_fn, const struct mitm *m, const void *ctx)
{
	int sv[2], cv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	struct setup_victim_arg a = {.sock = sv[1], .ctl = cv[1]};
	int keep[2] = {sv[1], cv[1]};
	pid_t pid = ipc_spawn(setup_victim, &a, keep, 2, 30);
	assert_true(pid > 0);
	close(sv[1]);
	close(cv[1]);
	send_fn(sv[0], m, ctx);
	uint64_t v = 0;
	int r = ipc_recv_u64(cv[0], &v, 10000);
	if (r != 0) {
		int st = 0;
		char buf[96];
		ipc_wait_child(pid, 1000, &st);
		fail_msg("%s: the consumer reported nothing (%s): %s", what, strerror(-r),
			 ipc_status_str(st, buf, sizeof(buf)));
	}
	int got = (int)(int64_t)v;
	if (got != want)
		fail_msg("%s: sv2shm_consumer_new returned %d (%s), expected %d (%s)", what, got, sv2shm_strerror(got),
			 want, sv2shm_strerror(want));
	close(sv[0]);
	assert_child_ok(pid, 10000);
	close(cv[0]);
}

struct raw_msg {
	const void *bytes;
	size_t len;
	const int *fds;
	unsigned nfds;
};

static void send_raw(int sock, const struct mitm *m, const void *ctx)
{
	(void)m;
	const struct raw_msg *r = ctx;
	assert_int_equal(ipc_send_fds(sock, r->bytes, r->len, r->fds, r->nfds), 0);
}

static void send_nothing(int sock, const struct mitm *m, const void *ctx)
{
	(void)m;
	(void)ctx;
	shutdown(sock, SHUT_RDWR); /* the producer hung up */
}

/* The real setup message with one change applied by ctx->edit. */
struct edit {
	void (*edit)(struct sv2shm_msg_setup *msg, int fds[SETUP_NFDS], const void *extra);
	const void *extra;
};

static void send_edited(int sock, const struct mitm *m, const void *ctx)
{
	const struct edit *e = ctx;
	struct sv2shm_msg_setup msg = m->msg;
	int fds[SETUP_NFDS];
	memcpy(fds, m->fds, sizeof(fds));
	e->edit(&msg, fds, e->extra);
	assert_int_equal(ipc_send_fds(sock, &msg, sizeof(msg), fds, SETUP_NFDS), 0);
}

#define FIELD_EDIT(name, stmt)                                                                                      \
	static void name(struct sv2shm_msg_setup *msg, int fds[SETUP_NFDS], const void *extra)                      \
	{                                                                                                           \
		(void)fds;                                                                                          \
		(void)extra;                                                                                        \
		stmt;                                                                                               \
	}
FIELD_EDIT(ed_none, (void)msg)
FIELD_EDIT(ed_magic, msg->hdr.magic ^= 0x10u)
FIELD_EDIT(ed_version, msg->hdr.version = 2)
FIELD_EDIT(ed_type, msg->hdr.type = SV2SHM_MSG_OVERFLOW)
FIELD_EDIT(ed_holder0, msg->holder = 0)
FIELD_EDIT(ed_holder32, msg->holder = 32)
FIELD_EDIT(ed_holder_big, msg->holder = 0xffffffffu)
FIELD_EDIT(ed_notify0, msg->notify = SV2SHM_NOTIFY_DEFAULT)
FIELD_EDIT(ed_notify3, msg->notify = 3)
FIELD_EDIT(ed_ring0, msg->ring_entries = 0)
FIELD_EDIT(ed_ring3, msg->ring_entries = 3)
FIELD_EDIT(ed_ring_huge, msg->ring_entries = 1u << 17)
FIELD_EDIT(ed_ring_other, msg->ring_entries = msg->ring_entries / 2u)
FIELD_EDIT(ed_flags, msg->flags = 2)
FIELD_EDIT(ed_reserved, msg->reserved = 1)
FIELD_EDIT(ed_region, msg->region_id ^= 1u)
FIELD_EDIT(ed_capacity, msg->capacity += 4096u)
FIELD_EDIT(ed_nslots, msg->nslots += 1u)
static void ed_swap_ctl_data(struct sv2shm_msg_setup *msg, int fds[SETUP_NFDS], const void *extra)
{
	(void)msg;
	(void)extra;
	int t = fds[SETUP_FD_CTL];
	fds[SETUP_FD_CTL] = fds[SETUP_FD_DATA];
	fds[SETUP_FD_DATA] = t;
}
/* extra: an fd to put in place of fds[index]. */
struct fd_swap {
	int index;
	int fd;
};
static void ed_replace_fd(struct sv2shm_msg_setup *msg, int fds[SETUP_NFDS], const void *extra)
{
	(void)msg;
	const struct fd_swap *f = extra;
	fds[f->index] = f->fd;
}

static void test_malformed_setup(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 8, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	struct mitm m;
	mitm_capture(p, &m, 1);
	int devnull[9];
	for (int i = 0; i < 9; i++) {
		devnull[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
		assert_true(devnull[i] >= 0);
	}
	uint8_t garbage[4096];
	uint64_t g = 99;
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)ipc_rand(&g);
	const size_t L = sizeof(struct sv2shm_msg_setup);
	int fds5[5], fds9[9];
	memcpy(fds5, m.fds, sizeof(m.fds));
	fds5[SETUP_NFDS] = devnull[0];
	memcpy(fds9, m.fds, sizeof(m.fds));
	for (int i = SETUP_NFDS; i < 9; i++)
		fds9[i] = devnull[i];

	/* The real message works (the forging machinery is right). */
	struct edit none = {ed_none, NULL};
	run_setup_case("the real setup message", 0, send_edited, &m, &none);

	/* Garbage and wrong shapes. */
	struct raw_msg raws[] = {
		{garbage, L, NULL, 0},       {garbage, L, devnull, 5},  {&m.msg, L, NULL, 0},
		{&m.msg, L, m.fds, 1},       {&m.msg, L, m.fds, 3},     {&m.msg, L, fds5, 5},
		{&m.msg, L, fds9, 9},        {&m.msg, L - 1, m.fds, 4}, {garbage, L + 1, m.fds, 4},
		{garbage, 1, m.fds, 4},      {garbage, 4000, m.fds, 4}, {garbage, 8, NULL, 0},
		{garbage, 40, m.fds, 4},
	};
	static const char *const raw_what[] = {
		"garbage, no fds",
		"garbage with five /dev/null fds",
		"the real message without fds",
		"the real message with 1 fd",
		"the real message with 3 fds",
		"the real message with 5 fds",
		"the real message with 9 fds",
		"the real message one byte short",
		"garbage one byte long",
		"a single byte",
		"4000 bytes",
		"8 bytes of garbage, no fds",
		"the old 40-byte setup size",
	};
	for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++)
		run_setup_case(raw_what[i], -EPROTO, send_raw, &m, &raws[i]);

	/* Every field wrong in turn. */
	struct {
		const char *what;
		struct edit e;
		int want;
	} edits[] = {
		{"bad magic", {ed_magic, NULL}, -EPROTO},
		{"bad version", {ed_version, NULL}, -EPROTO},
		{"wrong message type", {ed_type, NULL}, -EPROTO},
		{"holder 0", {ed_holder0, NULL}, -EPROTO},
		{"holder 32", {ed_holder32, NULL}, -EPROTO},
		{"holder 2^32-1", {ed_holder_big, NULL}, -EPROTO},
		{"notify DEFAULT", {ed_notify0, NULL}, -EPROTO},
		{"notify 3", {ed_notify3, NULL}, -EPROTO},
		{"ring_entries 0", {ed_ring0, NULL}, -EPROTO},
		{"ring_entries 3", {ed_ring3, NULL}, -EPROTO},
		{"ring_entries 2^17", {ed_ring_huge, NULL}, -EPROTO},
		{"ring_entries not the ring's", {ed_ring_other, NULL}, -EPROTO},
		{"unknown flag", {ed_flags, NULL}, -EPROTO},
		{"reserved not 0", {ed_reserved, NULL}, -EPROTO},
		{"region id not the region's", {ed_region, NULL}, -EPROTO},
		{"capacity not the region's", {ed_capacity, NULL}, -EPROTO},
		{"slot count not the region's", {ed_nslots, NULL}, -EPROTO},
		/* Wrong fds: the region's own checks answer. */
		{"ctl and data fds swapped", {ed_swap_ctl_data, NULL}, -EMSGSIZE},
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++)
		run_setup_case(edits[i].what, edits[i].want, send_edited, &m, &edits[i].e);

	/* Forged fds. */
	struct sv2shm_ring ring_hdr;
	memcpy(&ring_hdr, m.ring, sizeof(ring_hdr));
	size_t rb = ring_bytes(m.msg.ring_entries);
	uint8_t *ring_copy = calloc(1, rb);
	assert_non_null(ring_copy);
	memcpy(ring_copy, &ring_hdr, sizeof(ring_hdr));
	int ring_unsealed = fake_memfd(rb, ring_copy, 0, 0);
	int ring_garbage = fake_memfd(rb, NULL, 77, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	((struct sv2shm_ring *)(void *)ring_copy)->region_id ^= 1u;
	int ring_other = fake_memfd(rb, ring_copy, 0, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	free(ring_copy);
	int ctl_garbage = fake_memfd(sizeof(struct sv2shm_ctl), NULL, 5,
				     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE);
	int ctl_writable = fake_memfd(sizeof(struct sv2shm_ctl), NULL, 5, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	int wake_pipe[2], wake_stream[2], wake_seq[2];
	assert_int_equal(pipe2(wake_pipe, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, wake_stream), 0);
	assert_int_equal(ipc_seqpacket_pair(wake_seq), 0);
	int wake_efd = eventfd(0, EFD_CLOEXEC);
	assert_true(wake_efd >= 0);
	struct fd_swap swaps[] = {
		{SETUP_FD_RING, devnull[0]},  {SETUP_FD_RING, ring_unsealed}, {SETUP_FD_RING, ring_garbage},
		{SETUP_FD_RING, ring_other},  {SETUP_FD_CTL, ctl_garbage},    {SETUP_FD_CTL, devnull[0]},
		{SETUP_FD_DATA, devnull[0]},  {SETUP_FD_RING, m.fds[SETUP_FD_CTL]}, {SETUP_FD_CTL, ctl_writable},
		{SETUP_FD_WAKE, wake_pipe[1]}, {SETUP_FD_WAKE, wake_stream[0]}, {SETUP_FD_WAKE, wake_seq[0]},
		{SETUP_FD_WAKE, wake_efd},    {SETUP_FD_WAKE, devnull[0]},
	};
	static const char *const swap_what[] = {
		"/dev/null as the ring",
		"a ring memfd without seals",
		"a sealed ring memfd of garbage",
		"a ring for another region",
		"a sealed control block of garbage",
		"/dev/null as the control block",
		"/dev/null as the data",
		"the control block as the ring",
		"a control block without the write seal (a consumer could scribble on it)",
		"a pipe as the wake socket",
		"a stream socket as the wake socket",
		"a seqpacket socket as the wake socket",
		"an eventfd as the wake socket (its O_NONBLOCK is the peer's to clear)",
		"/dev/null as the wake socket",
	};
	/* /dev/null as the data has no seals and the wrong size: -EPERM. */
	static const int swap_want[] = {-EPROTO, -EPERM, -EPROTO, -EPROTO, -EPROTO, -EMSGSIZE, -EPERM,
					-EPROTO, -EPERM,  -EPROTO, -EPROTO, -EPROTO, -EPROTO, -EPROTO};
	for (size_t i = 0; i < sizeof(swaps) / sizeof(swaps[0]); i++) {
		struct edit e = {ed_replace_fd, &swaps[i]};
		run_setup_case(swap_what[i], swap_want[i], send_edited, &m, &e);
	}
	/* The producer hangs up before sending anything. */
	run_setup_case("producer hung up before the setup", -EPIPE, send_nothing, &m, NULL);

	close(ring_unsealed);
	close(ring_garbage);
	close(ring_other);
	close(ctl_garbage);
	close(ctl_writable);
	close(wake_pipe[0]);
	close(wake_pipe[1]);
	close(wake_stream[0]);
	close(wake_stream[1]);
	close(wake_seq[0]);
	close(wake_seq[1]);
	close(wake_efd);
	for (int i = 0; i < 9; i++)
		close(devnull[i]);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- publishing to two consumers when the second's socket is full ---------------- */

/*
 * Consumer 1 reads everything; consumer 2 never reads, and the producer's end
 * of its socket has a small send buffer, so a publish to both eventually
 * finds consumer 2's socket full. What ipc.h promises under
 * SV2SHM_LIMIT_REFUSE: -EAGAIN, "delivers to nobody" (the caller keeps the
 * slice and may publish it again).
 * The ring variant lists consumer 1 first, the socket variants last.
 */
static void run_publish_atomic(bool socket_transport, bool pool_slices)
{
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	/* Pool slices: 64 slots, more than the small socket holds. Otherwise
	 * capacity 0: every slice is alloc-mode, sent as a memfd. */
	o.pool.capacity = pool_slices ? CAP : 0;
	o.pool.slots = 64;
	o.pool.policy = pool_slices ? SV2SHM_POOL_FAIL : SV2SHM_POOL_FALLBACK;
	o.socket_transport = socket_transport;
	struct sv2shm_producer *p = new_producer_opts(&o);
	int s1[2], s2[2];
	assert_int_equal(ipc_seqpacket_pair(s1), 0);
	assert_int_equal(ipc_seqpacket_pair(s2), 0);
	int small = 4096;
	assert_int_equal(setsockopt(s2[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	assert_int_equal(sv2shm_producer_add_consumer(p, s1[0]), 1);
	assert_int_equal(sv2shm_producer_add_consumer(p, s2[0]), 2);
	struct sv2shm_consumer *c1 = NULL, *c2 = NULL;
	assert_int_equal(sv2shm_consumer_new(s1[1], NULL, &c1), 0);
	ipc_hold(c1);
	assert_int_equal(sv2shm_consumer_new(s2[1], NULL, &c2), 0);
	ipc_hold(c2);
	int ids[2] = {1, 2};
	if (socket_transport) {
		ids[0] = 2;
		ids[1] = 1;
	}
	int r = 0;
	unsigned ok = 0;
	struct sv2shm_slice s, got;
	uint64_t t_fail = 0;
	for (unsigned i = 0; i < 60; i++) {
		assert_int_equal(ipc_make_slice(p, pat_key(SEED, 1000 + i), 64, &s), 0);
		assert_int_equal(sv2shm_slice_kind(&s), pool_slices ? SV2SHM_SLICE_POOL : SV2SHM_SLICE_SYSTEM);
		t_fail = ipc_now_ns();
		r = sv2shm_producer_publish(p, &s, ids, 2, 0);
		if (r != 0)
			break;
		ok++;
		assert_int_equal(sv2shm_consumer_recv(c1, &got, 1000), 1);
		assert_int_equal(pat_check(got.data, pat_key(SEED, 1000 + ok - 1), got.len), 64);
		assert_int_equal(sv2shm_slice_release(&got), 0);
	}
	printf("  %u publishes to both succeeded, then %d (%s) after %.0f ms\n", ok, r, sv2shm_strerror(r),
	       ms_between(t_fail, ipc_now_ns()));
	if (r == 0)
		fail_msg("the second consumer's socket never filled up: the test did not test anything");
	bool still_ours = sv2shm_slice_kind(&s) != SV2SHM_SLICE_NONE;
	int extra = sv2shm_consumer_recv(c1, &got, 0);
	if (extra == 1) {
		assert_int_equal(pat_check(got.data, pat_key(SEED, 1000 + ok), got.len), 64);
		assert_int_equal(sv2shm_slice_release(&got), 0);
	}
	int extra2 = sv2shm_consumer_recv(c1, &got, 0);
	if (extra2 == 1)
		sv2shm_slice_release(&got);
	if (still_ours)
		assert_int_equal(sv2shm_slice_release(&s), 0);
	/* Consumer 2 gets exactly the slices that were published. */
	for (unsigned k = 0; k < ok; k++) {
		assert_int_equal(sv2shm_consumer_recv(c2, &got, 1000), 1);
		assert_int_equal(pat_check(got.data, pat_key(SEED, 1000 + k), got.len), 64);
		assert_int_equal(sv2shm_slice_release(&got), 0);
	}
	int extra_c2 = sv2shm_consumer_recv(c2, &got, 0);
	if (extra_c2 == 1)
		sv2shm_slice_release(&got);
	assert_int_equal(ipc_mask(p), 0);
	free_consumer(c1);
	free_consumer(c2);
	destroy_producer(p);

	/* SV2SHM_LIMIT_REFUSE (this file's producers): the full socket is seen
	 * before anything is sent, so nothing was published to anyone and *s
	 * is still ours, on every transport and for every kind of slice. */
	assert_int_equal(r, -EAGAIN);
	assert_int_equal(extra2, 0);
	assert_int_equal(extra_c2, 0);
	assert_int_equal(extra, 0);
	assert_true(still_ours);
}

static void test_publish_atomic_overflow(void **state)
{
	(void)state;
	run_publish_atomic(false, false);
}

static void test_publish_atomic_socket_pool(void **state)
{
	(void)state;
	run_publish_atomic(true, true);
}

static void test_publish_atomic_socket_overflow(void **state)
{
	(void)state;
	run_publish_atomic(true, false);
}

/* --- PUBLISH_MORE, then waiting for room ------------------------------------------ */

/* The command consumer exits cleanly and every slot is free again; the
 * producer goes. */
static void exit_cmd_consumer(struct sv2shm_producer *p, int ctl, pid_t pid)
{
	assert_int_equal(cmd(ctl, CMD(OP_EXIT, 0, 0)), 0);
	assert_child_ok(pid, 10000);
	close(ctl);
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

static void test_wait_wakes_more(void **state)
{
	(void)state;
	int sock, ctl;
	struct cmd_child arg;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = SV2SHM_SPIN_NONE;
	pid_t pid = spawn_cmd_consumer_opts(&sock, &ctl, &arg, SEED, &co);
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_WAIT, 2, CAP, 3000, SV2SHM_NOTIFY_DEFAULT);
	int id = sv2shm_producer_add_consumer(p, sock);
	/* The consumer goes to sleep in recv. */
	assert_int_equal(ipc_send_u64(ctl, CMD(OP_RECV_RELEASE, 3, 1)), 0);
	ipc_sleep_ms(100);
	struct sv2shm_slice a, b;
	make(p, 1, 100, &a);
	make(p, 2, 100, &b);
	assert_int_equal(sv2shm_producer_publish(p, &a, &id, 1, SV2SHM_PUBLISH_MORE), 0);
	assert_int_equal(sv2shm_producer_publish(p, &b, &id, 1, SV2SHM_PUBLISH_MORE), 0);
	/* Both slots are queued for the sleeping consumer; room needs it awake. */
	struct sv2shm_buffer *buf = sv2shm_producer_buffer(p);
	uint64_t t0 = ipc_now_ns();
	uint8_t *w = sv2shm_buffer_get_writable(buf, 100);
	uint64_t t1 = ipc_now_ns();
	if (!w) {
		sv2shm_producer_flush(p); /* let the consumer finish */
		fail_msg("get_writable (WAIT) after two SV2SHM_PUBLISH_MORE publishes: %s after %.0f ms: the "
			 "producer slept without waking the consumer its room depends on",
			 sv2shm_strerror(sv2shm_buffer_last_error(buf)), ms_between(t0, t1));
	}
	printf("  room after %.2f ms\n", ms_between(t0, t1));
	pat_fill(w, pat_key(SEED, 3), 0, 100);
	struct sv2shm_slice c;
	assert_int_equal(sv2shm_buffer_get_data_owned(buf, &c), 0);
	publish(p, &c, &id, 1);
	uint64_t v = 0;
	parent_wait_u64(ctl, &v, 10000);
	assert_int_equal(v, 3);
	exit_cmd_consumer(p, ctl, pid);
}

/* A publish without SV2SHM_PUBLISH_MORE wakes every consumer with entries
 * pending, not only those it delivers to. */
static void test_publish_wakes_more(void **state)
{
	(void)state;
	int sock[2], ctl[2];
	struct cmd_child arg[2];
	pid_t pid[2];
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = SV2SHM_SPIN_NONE;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0, SV2SHM_NOTIFY_DEFAULT);
	int id[2];
	for (int k = 0; k < 2; k++) {
		pid[k] = spawn_cmd_consumer_opts(&sock[k], &ctl[k], &arg[k], SEED, &co);
		id[k] = sv2shm_producer_add_consumer(p, sock[k]);
		assert_true(id[k] > 0);
		/* It goes to sleep in recv (5 s). */
		assert_int_equal(ipc_send_u64(ctl[k], CMD(OP_RECV, 0, 10 + k)), 0);
	}
	ipc_sleep_ms(100);
	struct sv2shm_slice a, b;
	make(p, 10, 100, &a);
	make(p, 11, 100, &b);
	uint64_t t0 = ipc_now_ns();
	assert_int_equal(sv2shm_producer_publish(p, &a, &id[0], 1, SV2SHM_PUBLISH_MORE), 0);
	assert_int_equal(sv2shm_producer_publish(p, &b, &id[1], 1, 0), 0);
	uint64_t v = 0;
	parent_wait_u64(ctl[0], &v, 10000);
	double ms = ms_between(t0, ipc_now_ns());
	if (v != 1)
		fail_msg("consumer A, sent a slice with SV2SHM_PUBLISH_MORE before B's without it: recv returned %" PRId64
			 " after %.0f ms (0: its 5 s timeout — it was never woken)",
			 (int64_t)v, ms);
	assert_true(ms < 2500);
	parent_wait_u64(ctl[1], &v, 10000);
	assert_int_equal(v, 1);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(cmd(ctl[k], CMD(OP_RELEASE, 0, 0)), 0);
		assert_int_equal(cmd(ctl[k], CMD(OP_EXIT, 0, 0)), 0);
		assert_child_ok(pid[k], 10000);
		close(ctl[k]);
	}
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

/* A producer (8 slots, FAIL, a 2-entry ring, limit policy `on_limit`) and
 * one command consumer that never spins, told to receive and release `n`
 * slices (patterns seq, seq + 1, ...) and given 100 ms to fall asleep in
 * recv; three slices of those patterns made in *s. */
static struct sv2shm_producer *sleeping_two_entry_consumer(int on_limit, unsigned n, uint64_t seq, int *ctl,
							 pid_t *pid, int *id, struct sv2shm_slice s[3])
{
	int sock;
	struct cmd_child arg;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = SV2SHM_SPIN_NONE;
	*pid = spawn_cmd_consumer_opts(&sock, ctl, &arg, SEED, &co);
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = CAP;
	o.pool.slots = 8;
	o.pool.policy = SV2SHM_POOL_FAIL;
	o.ring_entries = 2;
	o.max_held = 8;
	o.on_limit = on_limit;
	struct sv2shm_producer *p = NULL;
	assert_int_equal(sv2shm_producer_new(&o, &p), 0);
	ipc_hold(p);
	*id = sv2shm_producer_add_consumer(p, sock);
	assert_true(*id > 0);
	assert_int_equal(ipc_send_u64(*ctl, CMD(OP_RECV_RELEASE, n, seq)), 0);
	ipc_sleep_ms(100);
	for (int k = 0; k < 3; k++)
		make(p, seq + (uint64_t)k, 100, &s[k]);
	return p;
}

/* SV2SHM_LIMIT_SKIP: a publish without SV2SHM_PUBLISH_MORE that delivers to
 * nobody still wakes the consumers with entries pending. */
static void test_skip_wakes_more(void **state)
{
	(void)state;
	int ctl, id;
	pid_t pid;
	struct sv2shm_slice s[3];
	/* It receives and releases two slices, sleeping in recv. */
	struct sv2shm_producer *p = sleeping_two_entry_consumer(SV2SHM_LIMIT_SKIP, 2, 30, &ctl, &pid, &id, s);
	assert_int_equal(sv2shm_producer_publish(p, &s[0], &id, 1, SV2SHM_PUBLISH_MORE), 0);
	assert_int_equal(sv2shm_producer_publish(p, &s[1], &id, 1, SV2SHM_PUBLISH_MORE), 0);
	/* The ring is full: this one skips the consumer (1 = one did not get
	 * it), and must wake it for the two it has. */
	assert_int_equal(sv2shm_producer_publish(p, &s[2], &id, 1, 0), 1);
	uint64_t t0 = ipc_now_ns();
	uint64_t v = 0;
	parent_wait_u64(ctl, &v, 10000);
	assert_int_equal(v, 2);
	printf("  both slices after %.1f ms\n", ms_between(t0, ipc_now_ns()));
	assert_true(ms_between(t0, ipc_now_ns()) < 2500);
	exit_cmd_consumer(p, ctl, pid);
}

/* SV2SHM_LIMIT_REFUSE and a full ring of entries published with
 * SV2SHM_PUBLISH_MORE to a sleeping consumer: the refusal wakes it. */
static void test_refuse_wakes_more(void **state)
{
	(void)state;
	int ctl, id;
	pid_t pid;
	struct sv2shm_slice s[3];
	/* It receives and releases three slices, sleeping in recv for each. */
	struct sv2shm_producer *p = sleeping_two_entry_consumer(SV2SHM_LIMIT_REFUSE, 3, 20, &ctl, &pid, &id, s);
	assert_int_equal(sv2shm_producer_publish(p, &s[0], &id, 1, SV2SHM_PUBLISH_MORE), 0);
	assert_int_equal(sv2shm_producer_publish(p, &s[1], &id, 1, SV2SHM_PUBLISH_MORE), 0);
	/* The ring is full; nothing woke the consumer yet. Retry for 2 s. */
	uint64_t t0 = ipc_now_ns();
	int r;
	while ((r = sv2shm_producer_publish(p, &s[2], &id, 1, SV2SHM_PUBLISH_MORE)) == -EAGAIN &&
	       ms_between(t0, ipc_now_ns()) < 2000)
		ipc_sleep_ms(1);
	if (r != 0) {
		sv2shm_producer_flush(p); /* let the consumer finish */
		fail_msg("publish to a full ring of SV2SHM_PUBLISH_MORE entries: %d (%s) for %.0f ms: the refusal "
			 "did not wake the sleeping consumer",
			 r, sv2shm_strerror(r), ms_between(t0, ipc_now_ns()));
	}
	assert_int_equal(sv2shm_producer_flush(p), 0);
	uint64_t v = 0;
	parent_wait_u64(ctl, &v, 10000);
	assert_int_equal(v, 3);
	exit_cmd_consumer(p, ctl, pid);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SV2SHM_IPC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SV2SHM_IPC_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_producer_gone_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_producer_gone_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_producer_gone_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_producer_gone_killed_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure_wait_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure_wait_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure_wait_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_timeout_woken, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_killed_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_killed_mid_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_consumer_queue_void, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_bad_ring_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_sends_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_setup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_atomic_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_atomic_socket_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_atomic_socket_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_wakes_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_wakes_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_skip_wakes_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuse_wakes_more, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
