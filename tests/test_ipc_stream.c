/*
 * Multi-process streaming: one producer (this process) writes a stream of
 * slices of random sizes (1 B .. 64 KiB, log-uniform so that tiny and large
 * slices are both common, plus the exact extremes) and publishes every slice
 * to all K consumer processes (fan-out, K = 1, 2, 4). Each consumer checks
 * that it gets every slice in order (length and bytes follow from the
 * sequence number), holds a small random window of slices, and checks every
 * slice's bytes again right before it releases it after a random 0..20 us
 * delay — so a slice whose bytes changed while it was live (overlap, early
 * reuse of a slot) is caught.
 *
 * Matrix: policy SV2SHM_POOL_WAIT (the producer sleeps for room, no system
 * memory) and SV2SHM_POOL_FALLBACK (alloc-mode slices travel as MAPPED memfd
 * slices; their bytes are checked too), each with notify EVENTFD and FUTEX.
 * At the end: every slot free (mask 0) as soon as the consumers are done,
 * from_pool + from_system == slices, each consumer saw from_pool SHARED and
 * from_system MAPPED slices, and the pool is back in BACK mode at the next
 * slice.
 *
 * Two more runs use the socket transport (descriptors over the socket).
 *
 * The full 100 000 slices run through 1, 2 and 4 consumers with policy WAIT
 * and the FUTEX notification (this kernel's default); the other
 * combinations (EVENTFD, and FALLBACK, whose every alloc-mode slice costs a
 * memfd) run a quarter of that, to keep the program well under a minute on
 * 2 vCPUs.
 *
 * Environment: SV2SHM_IPC_SLICES (default 100000; ~20 s under ASan too) sets the
 * slices of the full runs; SV2SHM_IPC_SEED the stream seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ipc_common.h"

#define MAX_K 4
#define WINDOW_MAX 4
#define RESULT_MAGIC UINT64_C(0x53545245414d3031)

struct stream_cfg {
	unsigned consumers;
	int policy;
	int notify;
	unsigned divisor; /* runs SV2SHM_IPC_SLICES / divisor slices */
	bool socket;      /* the socket transport (descriptors over the socket, not the ring) */
};

struct stream_result {
	uint64_t magic;
	uint64_t received;
	uint64_t shared;
	uint64_t mapped;
	uint64_t bytes;
};

struct consumer_arg {
	int sock;
	int ctl;
	unsigned idx;
	uint64_t seed;
	uint64_t slices;
	struct stream_cfg cfg;
};

static uint64_t stream_slices(void)
{
	return ipc_env_ulong("SV2SHM_IPC_SLICES", 100000ul);
}

static uint64_t stream_seed(void)
{
	return ipc_env_ulong("SV2SHM_IPC_SEED", 0x5eed1234ul);
}

/* Length of slice `seq`: log-uniform over 1 .. 65536, with 1 and 65536
 * themselves every 64 slices. */
static size_t stream_len(uint64_t seed, uint64_t seq)
{
	switch (seq % 64u) {
	case 5:
		return 1;
	case 37:
		return 65536;
	default:
		break;
	}
	uint64_t r = ipc_mix64(seed * 7u + seq * UINT64_C(0xa24baed4963ee407));
	unsigned b = (unsigned)(r % 17u); /* 0 .. 16 */
	uint64_t span = UINT64_C(1) << b;
	return (size_t)(1u + (r >> 8) % span);
}

/* --- consumer process --------------------------------------------------------- */

struct held {
	struct sv2shm_slice s;
	uint64_t seq;
};

static void check_and_release(struct held *h, uint64_t seed)
{
	size_t len = h->s.len;
	size_t bad = pat_check(h->s.data, pat_key(seed, h->seq), len);
	if (bad != len)
		CHILD_FAIL("slice %" PRIu64 " (kind %d, %zu bytes) changed while held: byte %zu is 0x%02x, "
			   "expected 0x%02x",
			   h->seq, sv2shm_slice_kind(&h->s), len, bad, h->s.data[bad],
			   pat_byte(pat_key(seed, h->seq), bad));
	int r = sv2shm_slice_release(&h->s);
	if (r != 0)
		CHILD_FAIL("release of slice %" PRIu64 ": %d (%s)", h->seq, r, sv2shm_strerror(r));
}

static int stream_consumer(void *argp)
{
	const struct consumer_arg *a = argp;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	/* Half the consumers spin before sleeping (the default), half sleep at once. */
	co.spin_us = (a->idx % 2u) ? SV2SHM_SPIN_NONE : 0;
	struct sv2shm_consumer *c = NULL;
	int r = sv2shm_consumer_new(a->sock, &co, &c);
	if (r != 0)
		CHILD_FAIL("sv2shm_consumer_new: %d (%s)", r, sv2shm_strerror(r));
	const char *nn = sv2shm_consumer_notify_name(c);
	if (!ipc_notify_name_ok(nn, a->cfg.notify))
		CHILD_FAIL("consumer notify path \"%s\" does not fit notify=%d", nn, a->cfg.notify);
	if (a->idx == 0)
		fprintf(stderr, "  consumer notify path: %s\n", nn);

	uint64_t rng = a->seed ^ (0x1234567u * (a->idx + 1u));
	unsigned window = 1u + a->idx % 3u; /* slices held at once: 1..3 */
	struct held win[WINDOW_MAX + 1];
	unsigned nwin = 0;
	struct stream_result res;
	memset(&res, 0, sizeof(res));
	res.magic = RESULT_MAGIC;

	for (uint64_t seq = 0; seq < a->slices; seq++) {
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(c, &s, 0);
		if (r == 0) {
			/* Nothing pending: let go of everything before sleeping, as a
			 * real consumer would (and so the producer can go on). */
			while (nwin) {
				unsigned j = (unsigned)(ipc_rand(&rng) % nwin);
				check_and_release(&win[j], a->seed);
				win[j] = win[--nwin];
			}
			r = sv2shm_consumer_recv(c, &s, 30000);
		}
		if (r != 1)
			CHILD_FAIL("consumer %u: recv of slice %" PRIu64 " returned %d (%s)", a->idx, seq, r,
				   r < 0 ? sv2shm_strerror(r) : "timeout");
		size_t len = stream_len(a->seed, seq);
		int kind = sv2shm_slice_kind(&s);
		if (kind == SV2SHM_SLICE_SHARED)
			res.shared++;
		else if (kind == SV2SHM_SLICE_MAPPED)
			res.mapped++;
		else
			CHILD_FAIL("slice %" PRIu64 ": kind %d", seq, kind);
		if (kind == SV2SHM_SLICE_MAPPED && a->cfg.policy == SV2SHM_POOL_WAIT)
			CHILD_FAIL("slice %" PRIu64 ": a MAPPED slice with policy WAIT", seq);
		if (s.len != len || !s.data) {
			uint64_t got = 0;
			if (s.data && s.len >= 8)
				memcpy(&got, s.data, 8);
			CHILD_FAIL("consumer %u: slice %" PRIu64 " has %zu bytes, expected %zu (lost, duplicated or "
				   "reordered? first word %016" PRIx64 ", expected %016" PRIx64 ")",
				   a->idx, seq, s.len, len, got, pat_word(pat_key(a->seed, seq), 0));
		}
		/* The head at once (order), the whole slice right before release. */
		size_t head = len < 64 ? len : 64;
		if (pat_check(s.data, pat_key(a->seed, seq), head) != head)
			CHILD_FAIL("consumer %u: slice %" PRIu64 " does not start with its own bytes (out of order?)",
				   a->idx, seq);
		res.received++;
		res.bytes += len;
		ipc_spin_us(ipc_rand(&rng) % 21u); /* 0..20 us of "work" */
		win[nwin].s = s;
		win[nwin].seq = seq;
		nwin++;
		if (nwin > window) {
			unsigned j = (unsigned)(ipc_rand(&rng) % nwin);
			check_and_release(&win[j], a->seed);
			win[j] = win[--nwin];
		}
	}
	while (nwin) {
		check_and_release(&win[nwin - 1], a->seed);
		nwin--;
	}
	struct sv2shm_slice extra;
	r = sv2shm_consumer_recv(c, &extra, 0);
	if (r != 0)
		CHILD_FAIL("consumer %u: recv after the last slice returned %d, expected 0 (nothing more)", a->idx, r);
	CHECK_EQ(ipc_send_blob(a->ctl, &res, sizeof(res)), 0);
	CHECK_EQ(sv2shm_consumer_free(c), 0);
	/* Stay until the parent has checked the mask (it reads our result
	 * first): then exit. */
	(void)child_wait_cmd(a->ctl, 60000);
	close(a->ctl);
	return 0;
}

/* --- producer (this process) -------------------------------------------------- */

static int teardown(void **state)
{
	(void)state;
	ipc_kill_children();
	alarm(0);
	return 0;
}

static const char *policy_name(int policy)
{
	return policy == SV2SHM_POOL_WAIT ? "WAIT" : policy == SV2SHM_POOL_FALLBACK ? "FALLBACK" : "FAIL";
}

static void run_stream(const struct stream_cfg *cfg)
{
	const unsigned K = cfg->consumers;
	const uint64_t N = stream_slices() / cfg->divisor ? stream_slices() / cfg->divisor : 1;
	const uint64_t seed = stream_seed();
	alarm(540);
	uint64_t t0 = ipc_now_ns();

	/* Consumers first: they inherit nothing of the producer. */
	int data_sock[MAX_K], ctl_sock[MAX_K];
	pid_t pids[MAX_K];
	struct consumer_arg args[MAX_K];
	for (unsigned i = 0; i < K; i++) {
		int sv[2], cv[2];
		assert_int_equal(ipc_seqpacket_pair(sv), 0);
		assert_int_equal(ipc_seqpacket_pair(cv), 0);
		args[i] = (struct consumer_arg){.sock = sv[1], .ctl = cv[1], .idx = i, .seed = seed, .slices = N,
						.cfg = *cfg};
		int keep[2] = {sv[1], cv[1]};
		pids[i] = ipc_spawn(stream_consumer, &args[i], keep, 2, 500);
		assert_true(pids[i] > 0);
		close(sv[1]);
		close(cv[1]);
		data_sock[i] = sv[0];
		ctl_sock[i] = cv[0];
	}

	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = 256 * 1024;
	o.pool.slots = 8;
	o.pool.policy = cfg->policy;
	o.pool.wait_timeout_ms = 10000;
	o.notify = cfg->notify;
	o.socket_transport = cfg->socket;
	o.max_held = 8; /* the old back-pressure: a full ring or pool is -EAGAIN, and we retry */
	o.on_limit = SV2SHM_LIMIT_REFUSE;
	struct sv2shm_producer *p = NULL;
	assert_int_equal(sv2shm_producer_new(&o, &p), 0);
	ipc_hold(p);
	const char *pn = sv2shm_producer_notify_name(p);
	printf("  %u consumer(s), policy %s, notify %d, %s transport: producer notify path: %s\n", K,
	       policy_name(cfg->policy), cfg->notify, cfg->socket ? "socket" : "ring", pn);
	if (!strstr(pn, "socket") && !strstr(pn, "futex"))
		fail_msg("producer notify path \"%s\" does not fit notify=%d", pn, cfg->notify);

	int ids[MAX_K];
	for (unsigned i = 0; i < K; i++) {
		ids[i] = sv2shm_producer_add_consumer(p, data_sock[i]);
		assert_int_equal(ids[i], (int)i + 1);
	}

	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	uint64_t eagain = 0;
	for (uint64_t seq = 0; seq < N; seq++) {
		size_t len = stream_len(seed, seq);
		uint64_t key = pat_key(seed, seq);
		/* One slice in three is written in two get_writable() calls (the
		 * second may move it). */
		size_t first = (seq % 3u == 0) ? (len / 3u) & ~(size_t)7u : len;
		uint8_t *w = sv2shm_buffer_get_writable(b, first);
		if (!w)
			fail_msg("slice %" PRIu64 ": get_writable(%zu): %s", seq, first,
				 sv2shm_strerror(sv2shm_buffer_last_error(b)));
		pat_fill(w, key, 0, first);
		if (first < len) {
			w = sv2shm_buffer_get_writable(b, len - first);
			if (!w)
				fail_msg("slice %" PRIu64 ": get_writable(%zu): %s", seq, len - first,
					 sv2shm_strerror(sv2shm_buffer_last_error(b)));
			pat_fill(w, key, first, len);
		}
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
		assert_int_equal(s.len, len);
		int kind = sv2shm_slice_kind(&s);
		if (cfg->policy == SV2SHM_POOL_WAIT)
			assert_int_equal(kind, SV2SHM_SLICE_POOL);
		else
			assert_true(kind == SV2SHM_SLICE_POOL || kind == SV2SHM_SLICE_SYSTEM);
		/* With FALLBACK, three slices in four are published with
		 * SV2SHM_PUBLISH_MORE (the next publish or a flush wakes). */
		unsigned flags = (cfg->policy == SV2SHM_POOL_FALLBACK && seq % 4u != 3u && seq + 1 < N)
					 ? SV2SHM_PUBLISH_MORE
					 : 0;
		uint64_t deadline = ipc_now_ns() + UINT64_C(30000000000);
		int r;
		while ((r = sv2shm_producer_publish(p, &s, ids, K, flags)) == -EAGAIN) {
			/* A consumer's ring is full: nothing was published; let them
			 * catch up. */
			eagain++;
			sv2shm_producer_flush(p);
			if (ipc_now_ns() > deadline)
				fail_msg("slice %" PRIu64 ": publish stayed -EAGAIN for 30 s", seq);
			ipc_sleep_us(50);
		}
		if (r != 0)
			fail_msg("slice %" PRIu64 " (kind %d, %zu bytes): publish: %d (%s)", seq, kind, len, r,
				 sv2shm_strerror(r));
		assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_NONE);
	}
	assert_int_equal(sv2shm_producer_flush(p), 0);
	uint64_t t_pub = ipc_now_ns();

	struct sv2shm_pool_stats st = ipc_stats(p);
	for (unsigned i = 0; i < K; i++) {
		struct stream_result res;
		int r = ipc_recv_blob(ctl_sock[i], &res, sizeof(res), 120000);
		if (r != 0) {
			int status = 0;
			char buf[96];
			if (ipc_wait_child(pids[i], 1000, &status) == 0)
				fail_msg("consumer %u sent no result (%s): %s", i, strerror(-r),
					 ipc_status_str(status, buf, sizeof(buf)));
			fail_msg("consumer %u sent no result: %s", i, strerror(-r));
		}
		assert_int_equal(res.magic, RESULT_MAGIC);
		assert_int_equal(res.received, N);
		/* Every pool slice arrived as SHARED, every alloc-mode slice as MAPPED. */
		assert_int_equal(res.shared, st.from_pool);
		assert_int_equal(res.mapped, st.from_system);
		if (i == 0)
			printf("  consumer 0: %" PRIu64 " slices (%" PRIu64 " shared, %" PRIu64 " mapped), %.1f MiB\n",
			       res.received, res.shared, res.mapped, (double)res.bytes / 1048576.0);
	}
	/* All consumers released everything they received: every slot is free
	 * without any reclaiming by the producer. */
	st = ipc_stats(p);
	if (st.mask != 0)
		fail_msg("slot mask 0x%" PRIx64 " after every consumer released every slice", st.mask);
	assert_int_equal(st.live, 0);
	assert_int_equal(st.from_pool + st.from_system, N);
	if (cfg->policy == SV2SHM_POOL_WAIT) {
		assert_int_equal(st.from_system, 0);
		assert_true(st.from_pool == N);
	} else {
		/* Slow consumers and a 256 KiB pool: the pool overflowed. */
		assert_true(st.from_system > 0);
	}
	assert_int_equal(st.refused_releases, 0);

	for (unsigned i = 0; i < K; i++) {
		assert_int_equal(ipc_send_u64(ctl_sock[i], 1), 0);
		assert_child_ok(pids[i], 60000);
		close(ctl_sock[i]);
	}

	/* The mode is decided when the next slice starts: with every slot free
	 * the pool restarts in BACK mode. */
	uint8_t *w = sv2shm_buffer_get_writable(b, 1);
	assert_non_null(w);
	*w = 0x5a;
	assert_int_equal(sv2shm_pool_mode(sv2shm_producer_pool(p)), SV2SHM_MODE_BACK);
	struct sv2shm_slice last;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &last), 0);
	assert_int_equal(sv2shm_slice_kind(&last), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_slice_release(&last), 0);
	st = ipc_stats(p);
	assert_int_equal(st.mask, 0);
	assert_int_equal(st.from_pool + st.from_system, N + 1);
	assert_int_equal(sv2shm_pool_mode(sv2shm_producer_pool(p)), SV2SHM_MODE_BACK);

	/* Every consumer has hung up: processing removes those a WAIT did not
	 * remove already; either way each removal is one HANGUP event. */
	int removed = sv2shm_producer_process(p);
	assert_true(removed >= 0 && removed <= (int)K);
	struct sv2shm_producer_event ev;
	unsigned hangups = 0;
	while (sv2shm_producer_next_event(p, &ev) == 1) {
		assert_int_equal(ev.reason, SV2SHM_EVENT_HANGUP);
		hangups++;
	}
	if (hangups != K)
		fail_msg("process() removed %d, %u HANGUP events, %u consumers", removed, hangups, K);
	destroy_producer(p);
	uint64_t t1 = ipc_now_ns();
	printf("  %" PRIu64 " slices: from_pool %" PRIu64 ", from_system %" PRIu64 ", waits %" PRIu64
	       ", mode switches %" PRIu64 ", resets %" PRIu64 ", moves %" PRIu64 ", publish -EAGAIN %" PRIu64
	       "; published in %.2f s, total %.2f s\n",
	       N, st.from_pool, st.from_system, st.waits, st.mode_switches, st.resets, st.moves, eagain,
	       (double)(t_pub - t0) * 1e-9, (double)(t1 - t0) * 1e-9);
	alarm(0);
}

static void test_stream(void **state)
{
	run_stream(*state);
}

#define CFG(name, k, pol, nt, div)                                                                                  \
	static struct stream_cfg name = {.consumers = (k), .policy = (pol), .notify = (nt), .divisor = (div)}
#define CFG_SOCKET(name, k, pol, nt, div)                                                                           \
	static struct stream_cfg name = {                                                                           \
		.consumers = (k), .policy = (pol), .notify = (nt), .divisor = (div), .socket = true}
CFG(wait_default_1, 1, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_DEFAULT, 1);
CFG(wait_default_2, 2, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_DEFAULT, 1);
CFG(wait_default_4, 4, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_DEFAULT, 1);
CFG(wait_socket_1, 1, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_SOCKET, 4);
CFG(wait_socket_2, 2, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_SOCKET, 4);
CFG(wait_socket_4, 4, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_SOCKET, 4);
CFG(fallback_socket_1, 1, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_SOCKET, 4);
CFG(fallback_socket_2, 2, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_SOCKET, 4);
CFG(fallback_socket_4, 4, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_SOCKET, 4);
CFG(fallback_default_1, 1, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_DEFAULT, 4);
CFG(fallback_default_2, 2, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_DEFAULT, 4);
CFG(fallback_default_4, 4, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_DEFAULT, 4);
CFG_SOCKET(socket_wait_2, 2, SV2SHM_POOL_WAIT, SV2SHM_NOTIFY_DEFAULT, 4);
CFG_SOCKET(socket_fallback_2, 2, SV2SHM_POOL_FALLBACK, SV2SHM_NOTIFY_DEFAULT, 4);

#define STREAM_TEST(cfg)                                                                                            \
	{                                                                                                           \
		.name = "stream_" #cfg, .test_func = test_stream, .setup_func = NULL, .teardown_func = teardown,    \
		.initial_state = &cfg                                                                               \
	}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SV2SHM_IPC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SV2SHM_IPC_TEST_FILTER"));
	printf("stream: %" PRIu64 " slices per full run (SV2SHM_IPC_SLICES), seed 0x%" PRIx64 ", io_uring %s\n",
	       stream_slices(), stream_seed(), ipc_no_uring_env() ? "disabled by SV2SHM_NO_IO_URING" : "allowed");
	const struct CMUnitTest tests[] = {
		STREAM_TEST(wait_default_1),   STREAM_TEST(wait_default_2),     STREAM_TEST(wait_default_4),
		STREAM_TEST(wait_socket_1),     STREAM_TEST(wait_socket_2),       STREAM_TEST(wait_socket_4),
		STREAM_TEST(fallback_socket_1), STREAM_TEST(fallback_socket_2),   STREAM_TEST(fallback_socket_4),
		STREAM_TEST(fallback_default_1), STREAM_TEST(fallback_default_2), STREAM_TEST(fallback_default_4),
		STREAM_TEST(socket_wait_2),  STREAM_TEST(socket_fallback_2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
