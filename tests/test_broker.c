/*
 * The broker, end to end: a real sv2shmd on a temporary socket, producers and
 * consumers in their own processes through the client API (client.h).
 *
 *   pubsub_1_4_31         1, 4 and 31 consumer processes get every checksummed
 *                         slice; the 32nd subscriber is refused with -EMFILE
 *   reclaim_*             a consumer holding every slot is SIGKILLed: its
 *                         slots are free within 10 ms (median), with the
 *                         producer blocked in WAIT, and with the producer
 *                         busy in its own code (the broker releases for the
 *                         dead consumer); nothing is lost for the others
 *   producer_killed       consumers keep their slices, are told (-EPIPE),
 *                         and subscribe again when the name comes back
 *   bad_clients           garbage, truncated, oversized, wrong version and
 *                         magic: refused, the client dropped after eight,
 *                         the daemon still serving; another uid refused
 *   daemon_restart        SIGKILL the daemon mid-stream: slices keep flowing;
 *                         after a restart every client is registered again
 *
 * SV2SHMD (set by meson) is the daemon to run.
 */
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cmocka.h>

#include <sv2shm/client.h>

#include "broker_wire.h"
#include "ipc_common.h"

#define SEED UINT64_C(0xb40ce4)

struct daemon {
	char dir[48];
	char sock[96];
	pid_t pid;
};

static struct daemon D;

static void daemon_start(struct daemon *d)
{
	const char *bin = getenv("SV2SHMD");
	if (!bin)
		fail_msg("SV2SHMD is not set (meson sets it)");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0 && !getenv("SV2SHM_TEST_DAEMON_LOG"))
			dup2(null, 2);
		execl(bin, bin, "--foreground", "--socket", d->sock, "--log-level", "info", (char *)NULL);
		_exit(127);
	}
	d->pid = pid;
	ipc_track_child(pid);
	/* Ready when it answers. */
	for (int i = 0; i < 500; i++) {
		struct sv2shm_client *c;
		struct sv2shm_client_options o = {.socket_path = d->sock, .timeout_ms = 1000};
		if (sv2shm_client_connect(&o, &c) == 0) {
			sv2shm_client_close(c);
			return;
		}
		ipc_sleep_ms(10);
	}
	fail_msg("sv2shmd did not come up on %s", d->sock);
}

static void daemon_stop(struct daemon *d, int sig)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	int st = 0;
	ipc_wait_child(d->pid, 10000, &st);
	d->pid = 0;
}

static int setup(void **state)
{
	(void)state;
	alarm(240);
	snprintf(D.dir, sizeof(D.dir), "/tmp/sv2shm-test-XXXXXX");
	assert_non_null(mkdtemp(D.dir));
	snprintf(D.sock, sizeof(D.sock), "%s/sv2shmd.sock", D.dir);
	daemon_start(&D);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	daemon_stop(&D, SIGTERM);
	ipc_kill_children();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", D.dir);
	if (system(cmd) != 0) {
		/* a leftover temp dir is no failure */
	}
	alarm(0);
	return 0;
}

static struct sv2shm_client *client(void)
{
	struct sv2shm_client_options o = {.socket_path = D.sock, .timeout_ms = 3000};
	struct sv2shm_client *c = NULL;
	int r = sv2shm_client_connect(&o, &c);
	if (r != 0)
		fail_msg("sv2shm_client_connect: %s", sv2shm_strerror(r));
	return c;
}

/* --- checksummed slices ---------------------------------------------------------- */

static uint64_t fnv64(const uint8_t *p, size_t n)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * UINT64_C(0x100000001b3);
	return h;
}

/* A slice: u64 sequence, u64 checksum of what follows, pattern bytes. */
static int make_slice(struct sv2shm_producer *p, uint64_t seq, size_t len, struct sv2shm_slice *s)
{
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	uint8_t *w = sv2shm_buffer_get_writable(b, len);
	if (!w)
		return sv2shm_buffer_last_error(b);
	memcpy(w, &seq, 8);
	pat_fill(w + 16, pat_key(SEED, seq), 0, len - 16);
	uint64_t h = fnv64(w + 16, len - 16);
	memcpy(w + 8, &h, 8);
	return sv2shm_buffer_get_data_owned(b, s);
}

static bool slice_ok(const struct sv2shm_slice *s, uint64_t *seq)
{
	if (s->len < 16)
		return false;
	uint64_t h;
	memcpy(seq, s->data, 8);
	memcpy(&h, s->data + 8, 8);
	return h == fnv64(s->data + 16, s->len - 16);
}

/* --- consumer processes ------------------------------------------------------------ */

struct sub_arg {
	const char *pool;
	uint64_t expect;  /* slices to receive, then exit 0 */
	int hold;         /* keep every slice (never release) */
	int report;       /* fd: u64 received + u64 bad at the end, and u64 1 once subscribed */
};

static int subscriber(void *argp)
{
	const struct sub_arg *a = argp;
	struct sv2shm_client *c = client();
	struct sv2shm_consumer *k = NULL;
	int r = sv2shm_client_subscribe(c, a->pool, NULL, 8000, &k);
	if (r != 0) {
		ipc_send_u64(a->report, (uint64_t)(int64_t)r);
		_exit(3);
	}
	ipc_send_u64(a->report, 1);
	uint64_t got = 0, bad = 0, next = 0;
	/* Held slices stay here (never released) until we are killed. */
	static struct sv2shm_slice held[64];
	while (got < a->expect) {
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(k, &s, 20000);
		if (r != 1)
			break;
		uint64_t seq = UINT64_MAX;
		if (!slice_ok(&s, &seq) || seq != next)
			bad++;
		next = seq + 1;
		got++;
		if (a->hold && got <= 64)
			held[got - 1] = s;
		else
			sv2shm_slice_release(&s);
	}
	ipc_send_u64(a->report, got);
	ipc_send_u64(a->report, bad);
	if (a->hold) {
		ipc_send_u64(a->report, held[0].len); /* (keeps the table alive) */
		pause(); /* until killed */
	}
	_exit(got == a->expect && bad == 0 ? 0 : 1);
}

static pid_t spawn_subscriber(const char *pool, uint64_t expect, int hold, int *report)
{
	int cv[2];
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	struct sub_arg a = {.pool = pool, .expect = expect, .hold = hold, .report = cv[1]};
	pid_t pid = ipc_spawn(subscriber, &a, &cv[1], 1, 120);
	assert_true(pid > 0);
	close(cv[1]);
	*report = cv[0];
	return pid;
}

/* Run the producer's event loop until it has `n` consumers (the broker's
 * introductions arrive on its fd) or a subscriber reports an error. */
static void serve_until(struct sv2shm_producer *p, struct sv2shm_client *c, int n, const int *reports, int nrep)
{
	uint64_t deadline = ipc_now_ns() + UINT64_C(30000000000);
	int subscribed = 0;
	while (sv2shm_producer_consumers(p, NULL, 0) < n || subscribed < nrep) {
		struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
		poll(&pfd, 1, 20);
		sv2shm_producer_process(p);
		sv2shm_client_process(c);
		for (int i = 0; i < nrep; i++) {
			uint64_t v;
			if (reports[i] >= 0 && ipc_recv_u64(reports[i], &v, 0) == 0) {
				if (v != 1)
					fail_msg("subscriber %d: %s", i, sv2shm_strerror((int)(int64_t)v));
				subscribed++;
			}
		}
		if (ipc_now_ns() > deadline)
			fail_msg("only %d of %d consumers after 30 s", sv2shm_producer_consumers(p, NULL, 0), n);
	}
}

static struct sv2shm_producer *register_pool(struct sv2shm_client *c, const char *name, int policy, unsigned slots,
					     uint64_t cap, unsigned max_held)
{
	struct sv2shm_register_options o;
	memset(&o, 0, sizeof(o));
	o.producer.pool.capacity = cap;
	o.producer.pool.slots = slots;
	o.producer.pool.policy = policy;
	o.producer.pool.wait_timeout_ms = 10000;
	o.producer.max_held = max_held;
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_client_register(c, name, &o, &p);
	if (r != 0)
		fail_msg("register %s: %s", name, sv2shm_strerror(r));
	return p;
}

/* Publish `count` slices to every consumer (WAIT policy: room comes). */
static void publish_n(struct sv2shm_producer *p, uint64_t first, uint64_t count, size_t len)
{
	for (uint64_t i = 0; i < count; i++) {
		struct sv2shm_slice s;
		int r = make_slice(p, first + i, len, &s);
		if (r != 0)
			fail_msg("slice %" PRIu64 ": %s", first + i, sv2shm_strerror(r));
		r = sv2shm_producer_publish_all(p, &s, 0);
		if (r != 0)
			fail_msg("publish %" PRIu64 ": %d (%s)", first + i, r, r < 0 ? sv2shm_strerror(r) : "missed");
		sv2shm_producer_process(p);
	}
}

/* --- 1. publish / subscribe ------------------------------------------------------ */

static void run_pubsub(int n)
{
	struct sv2shm_client *c = client();
	char name[32];
	snprintf(name, sizeof(name), "pubsub-%d", n);
	struct sv2shm_producer *p = register_pool(c, name, SV2SHM_POOL_WAIT, 16, 256 * 1024, 16);
	pid_t pids[31];
	int reports[31];
	for (int i = 0; i < n; i++)
		pids[i] = spawn_subscriber(name, 300, 0, &reports[i]);
	serve_until(p, c, n, reports, n);
	if (n == 31) { /* while the 31 are there */
		/* The 32nd: refused clearly, not a hang. */
		int rep;
		pid_t x = spawn_subscriber(name, 1, 0, &rep);
		uint64_t v = 0;
		uint64_t deadline = ipc_now_ns() + UINT64_C(20000000000);
		while (ipc_recv_u64(rep, &v, 0) != 0) {
			struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
			poll(&pfd, 1, 20);
			sv2shm_producer_process(p);
			if (ipc_now_ns() > deadline)
				fail_msg("the 32nd subscriber got no answer");
		}
		printf("  the 32nd subscriber: %s\n", sv2shm_strerror((int)(int64_t)v));
		assert_int_equal((int)(int64_t)v, -EMFILE);
		int st;
		ipc_wait_child(x, 10000, &st);
		close(rep);
	}
	publish_n(p, 0, 300, 1000);
	for (int i = 0; i < n; i++) {
		uint64_t got = 0, bad = 0;
		parent_wait_u64(reports[i], &got, 30000);
		parent_wait_u64(reports[i], &bad, 1000);
		if (got != 300 || bad != 0)
			fail_msg("consumer %d of %d: %" PRIu64 " received, %" PRIu64 " bad", i, n, got, bad);
		assert_child_ok(pids[i], 10000);
		close(reports[i]);
	}
	struct sv2shm_producer_event ev;
	while (sv2shm_producer_process(p) > 0 || sv2shm_producer_next_event(p, &ev) == 1) {
	}
	assert_int_equal(sv2shm_producer_destroy(p), 0);
	assert_int_equal(sv2shm_client_close(c), 0);
}

static void test_pubsub_1_4_31(void **state)
{
	(void)state;
	run_pubsub(1);
	run_pubsub(4);
	run_pubsub(31);
}

/* --- 2. reclaim after a consumer's death ---------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* `waiting`: the producer is blocked in get_writable (WAIT) when the
 * consumer dies; else it is busy in its own code and only watches its stats
 * (no sv2shm_producer_process(), no get_writable): the broker's release for
 * the dead consumer frees the slots. */
static void run_reclaim(bool waiting)
{
	struct sv2shm_client *c = client();
	const char *name = waiting ? "reclaim-wait" : "reclaim-busy";
	struct sv2shm_producer *p = register_pool(c, name, SV2SHM_POOL_WAIT, 4, 64 * 1024, 4);
	struct sv2shm_pool *pool = sv2shm_producer_pool(p);
	enum { ROUNDS = 7 };
	double lat[ROUNDS];
	int hrep;
	pid_t honest = spawn_subscriber(name, ROUNDS * 4, 0, &hrep);
	serve_until(p, c, 1, &hrep, 1);
	uint64_t seq = 0;
	for (int round = 0; round < ROUNDS; round++) {
		/* A consumer that keeps everything: after 4 slices every slot is
		 * its (and the honest one's, who releases). */
		int rep;
		pid_t hog = spawn_subscriber(name, 4, 1, &rep);
		serve_until(p, c, 2, &rep, 1);
		publish_n(p, seq, 4, 2000);
		seq += 4;
		uint64_t got, bad;
		parent_wait_u64(rep, &got, 10000);
		parent_wait_u64(rep, &bad, 1000);
		assert_int_equal(got, 4);
		/* Wait until the honest one has released its copies. */
		struct sv2shm_pool_stats st;
		for (int i = 0; i < 2000; i++) {
			sv2shm_pool_stats(pool, &st);
			if (st.live == 4)
				break;
			ipc_sleep_us(500);
		}
		uint64_t t_kill = ipc_now_ns();
		kill(hog, SIGKILL);
		uint64_t t_free;
		if (waiting) {
			struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
			uint8_t *w = sv2shm_buffer_get_writable(b, 100);
			t_free = ipc_now_ns();
			assert_non_null(w);
			struct sv2shm_slice z;
			assert_int_equal(sv2shm_buffer_get_data_owned(b, &z), 0);
			assert_int_equal(sv2shm_slice_release(&z), 0);
		} else {
			for (;;) {
				sv2shm_pool_stats(pool, &st);
				if (st.live == 0)
					break;
				if (ipc_now_ns() - t_kill > UINT64_C(5000000000))
					fail_msg("round %d: the dead consumer's slots are not free after 5 s", round);
				__asm__ __volatile__("" ::: "memory");
			}
			t_free = ipc_now_ns();
		}
		lat[round] = (double)(t_free - t_kill) / 1e6;
		int stt;
		ipc_wait_child(hog, 10000, &stt);
		close(rep);
		/* Its removal is reported (by process(), or by the WAIT). */
		uint64_t deadline = ipc_now_ns() + UINT64_C(5000000000);
		struct sv2shm_producer_event ev;
		while (sv2shm_producer_next_event(p, &ev) != 1) {
			sv2shm_producer_process(p);
			ipc_sleep_us(200);
			if (ipc_now_ns() > deadline)
				fail_msg("no removal event for the dead consumer");
		}
		assert_int_equal(ev.reason, SV2SHM_EVENT_HANGUP);
	}
	uint64_t got, bad;
	parent_wait_u64(hrep, &got, 10000);
	parent_wait_u64(hrep, &bad, 1000);
	assert_int_equal(got, ROUNDS * 4);
	assert_int_equal(bad, 0);
	assert_child_ok(honest, 10000);
	close(hrep);
	qsort(lat, ROUNDS, sizeof(lat[0]), cmp_double);
	printf("  SIGKILL -> slots free (%s): median %.3f ms, max %.3f ms\n",
	       waiting ? "producer blocked in WAIT" : "producer busy, not processing", lat[ROUNDS / 2],
	       lat[ROUNDS - 1]);
	assert_true(lat[ROUNDS / 2] < 10.0);
	while (sv2shm_producer_process(p) > 0) {
	}
	assert_int_equal(sv2shm_producer_destroy(p), 0);
	assert_int_equal(sv2shm_client_close(c), 0);
}

static void test_reclaim_producer_waiting(void **state)
{
	(void)state;
	run_reclaim(true);
}

static void test_reclaim_producer_busy(void **state)
{
	(void)state;
	run_reclaim(false);
}

/* --- 3. the producer dies ------------------------------------------------------------- */

struct prod_arg {
	const char *pool;
	uint64_t first, count;
	int ctl;
};

/* A producer process: register, wait for one consumer, publish, then wait
 * to be killed. */
static int producer_proc(void *argp)
{
	const struct prod_arg *a = argp;
	struct sv2shm_client *c = client();
	struct sv2shm_producer *p = register_pool(c, a->pool, SV2SHM_POOL_WAIT, 8, 64 * 1024, 8);
	ipc_send_u64(a->ctl, 1);
	while (sv2shm_producer_consumers(p, NULL, 0) < 1) {
		struct pollfd pfd = {.fd = sv2shm_producer_fd(p), .events = POLLIN};
		poll(&pfd, 1, 50);
		sv2shm_producer_process(p);
	}
	publish_n(p, a->first, a->count, 3000);
	ipc_send_u64(a->ctl, 2);
	for (;;)
		pause();
	return 0;
}

static void test_producer_killed(void **state)
{
	(void)state;
	int cv[2];
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	struct prod_arg pa = {.pool = "gone", .first = 0, .count = 3, .ctl = cv[1]};
	pid_t prod = ipc_spawn(producer_proc, &pa, &cv[1], 1, 60);
	uint64_t v;
	parent_wait_u64(cv[0], &v, 10000);
	struct sv2shm_client *c = client();
	struct sv2shm_consumer *k = NULL;
	assert_int_equal(sv2shm_client_subscribe(c, "gone", NULL, 8000, &k), 0);
	parent_wait_u64(cv[0], &v, 10000);
	struct sv2shm_slice s[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(sv2shm_consumer_recv(k, &s[i], 5000), 1);
	kill(prod, SIGKILL);
	int st;
	ipc_wait_child(prod, 10000, &st);
	close(cv[0]);
	/* Our slices stay readable, intact; then we are told. */
	for (int i = 0; i < 3; i++) {
		uint64_t seq;
		assert_true(slice_ok(&s[i], &seq));
		assert_int_equal(seq, (uint64_t)i);
	}
	struct sv2shm_slice x;
	assert_int_equal(sv2shm_consumer_recv(k, &x, 5000), -EPIPE);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sv2shm_slice_release(&s[i]), 0);
	assert_int_equal(sv2shm_consumer_free(k), 0);
	/* The name is free again; a new producer takes it and we subscribe again. */
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	pa.first = 100;
	pa.ctl = cv[1];
	uint64_t deadline = ipc_now_ns() + UINT64_C(5000000000);
	prod = ipc_spawn(producer_proc, &pa, &cv[1], 1, 60);
	parent_wait_u64(cv[0], &v, 10000);
	int r;
	while ((r = sv2shm_client_subscribe(c, "gone", NULL, 8000, &k)) != 0 && ipc_now_ns() < deadline)
		ipc_sleep_ms(50);
	assert_int_equal(r, 0);
	parent_wait_u64(cv[0], &v, 10000);
	for (int i = 0; i < 3; i++) {
		uint64_t seq;
		assert_int_equal(sv2shm_consumer_recv(k, &x, 5000), 1);
		assert_true(slice_ok(&x, &seq));
		assert_int_equal(seq, 100u + (uint64_t)i);
		assert_int_equal(sv2shm_slice_release(&x), 0);
	}
	kill(prod, SIGKILL);
	ipc_wait_child(prod, 10000, &st);
	close(cv[0]);
	assert_int_equal(sv2shm_consumer_free(k), 0);
	assert_int_equal(sv2shm_client_close(c), 0);
}

/* --- 4. bad clients ------------------------------------------------------------------ */

static int raw_connect(void)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", D.sock);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Send a message, read the answer: its RESULT code, or -EPIPE (dropped). */
static int raw_request(int fd, const void *msg, size_t len)
{
	if (send(fd, msg, len, MSG_NOSIGNAL) < 0)
		return -EPIPE;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, 3000) != 1)
		return -ETIMEDOUT;
	uint8_t buf[BMSG_MAX + 1];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	if (n <= 0)
		return -EPIPE;
	const struct bmsg_result *r = (const void *)buf;
	if ((size_t)n != sizeof(*r) || r->hdr.opcode != BOP_RESULT)
		return -EILSEQ; /* not a RESULT */
	return r->result;
}

static void status_still_served(void)
{
	struct sv2shm_client *c = client();
	struct sv2shm_status *st = NULL;
	assert_int_equal(sv2shm_client_status(c, &st), 0);
	assert_true(st->version[0] != '\0');
	sv2shm_status_free(st);
	assert_int_equal(sv2shm_client_close(c), 0);
}

static void test_bad_clients(void **state)
{
	(void)state;
	int fd = raw_connect();
	assert_true(fd >= 0);
	uint8_t junk[BMSG_MAX + 200];
	memset(junk, 0x5a, sizeof(junk));
	struct bmsg_status ok;
	memset(&ok, 0, sizeof(ok));
	bmsg_init(&ok.hdr, BOP_STATUS, 1);
	struct bmsg_subscribe sub;
	memset(&sub, 0, sizeof(sub));
	bmsg_init(&sub.hdr, BOP_SUBSCRIBE, 2);
	memcpy(sub.name, "x", 1);
	struct {
		const char *what;
		const void *msg;
		size_t len;
		struct bmsg_hdr hdr;
		bool edit;
	} bad[] = {
		{"garbage", junk, 64, {0}, false},
		{"truncated (a header only)", &sub, sizeof(struct bmsg_hdr), {0}, false},
		{"oversized", junk, sizeof(junk), {0}, false},
		{"wrong version", &sub, sizeof(sub), {BMSG_MAGIC, BMSG_VERSION + 1, BOP_SUBSCRIBE, sizeof(sub), 3}, true},
		{"wrong magic", &sub, sizeof(sub), {BMSG_MAGIC ^ 1, BMSG_VERSION, BOP_SUBSCRIBE, sizeof(sub), 4}, true},
		{"unknown opcode", &sub, sizeof(sub), {BMSG_MAGIC, BMSG_VERSION, 999, sizeof(sub), 5}, true},
		{"length that lies", &sub, sizeof(sub), {BMSG_MAGIC, BMSG_VERSION, BOP_SUBSCRIBE, 999, 6}, true},
	};
	int nbad = (int)(sizeof(bad) / sizeof(bad[0]));
	for (int i = 0; i < nbad; i++) {
		uint8_t m[BMSG_MAX + 200];
		memcpy(m, bad[i].msg, bad[i].len);
		if (bad[i].edit)
			memcpy(m, &bad[i].hdr, sizeof(bad[i].hdr));
		int r = raw_request(fd, m, bad[i].len);
		printf("  %-26s -> %d (%s)\n", bad[i].what, r, sv2shm_strerror(r));
		assert_true(r < 0 && r != -EPIPE && r != -ETIMEDOUT && r != -EILSEQ);
	}
	/* The eighth bad message ends the connection. */
	int r = 0;
	for (int i = nbad; i < 10 && r != -EPIPE; i++)
		r = raw_request(fd, junk, 64);
	assert_int_equal(r, -EPIPE);
	close(fd);
	status_still_served();

	/* Another uid: refused at the socket (mode 0600), and, with the socket
	 * opened to it, refused at SUBSCRIBE; the daemon goes on. */
	if (getuid() != 0) {
		printf("  (not root: the other-uid case is skipped)\n");
		return;
	}
	struct passwd *nobody = getpwnam("nobody");
	if (!nobody) {
		printf("  (no user nobody: the other-uid case is skipped)\n");
		return;
	}
	struct sv2shm_client *c = client();
	struct sv2shm_producer *p = register_pool(c, "mine", SV2SHM_POOL_FAIL, 4, 4096, 4);
	for (int pass = 0; pass < 2; pass++) {
		int cv[2];
		assert_int_equal(ipc_seqpacket_pair(cv), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(cv[0]);
			if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
				_exit(2);
			struct sv2shm_client_options o = {.socket_path = D.sock, .timeout_ms = 3000};
			struct sv2shm_client *x = NULL;
			int e = sv2shm_client_connect(&o, &x);
			if (e == 0) {
				struct sv2shm_consumer *k = NULL;
				e = sv2shm_client_subscribe(x, "mine", NULL, 3000, &k);
			}
			ipc_send_u64(cv[1], (uint64_t)(int64_t)e);
			_exit(0);
		}
		close(cv[1]);
		uint64_t v = 0;
		parent_wait_u64(cv[0], &v, 10000);
		int st;
		ipc_wait_child(pid, 10000, &st);
		close(cv[0]);
		printf("  uid nobody, %s: %s\n", pass ? "socket opened to it, SUBSCRIBE" : "connect",
		       sv2shm_strerror((int)(int64_t)v));
		assert_int_equal((int)(int64_t)v, -EACCES);
		/* Open the socket (and its directory) to everyone for the second pass. */
		chmod(D.dir, 0755);
		chmod(D.sock, 0666);
	}
	status_still_served();
	assert_int_equal(sv2shm_producer_destroy(p), 0);
	assert_int_equal(sv2shm_client_close(c), 0);
}

/* --- 5. the daemon dies and comes back ----------------------------------------------- */

static void test_daemon_restart(void **state)
{
	(void)state;
	struct sv2shm_client *c = client();
	struct sv2shm_producer *p = register_pool(c, "survivor", SV2SHM_POOL_WAIT, 8, 128 * 1024, 8);
	int rep;
	pid_t sub = spawn_subscriber("survivor", 600, 0, &rep);
	serve_until(p, c, 1, &rep, 1);
	publish_n(p, 0, 200, 1500);
	daemon_stop(&D, SIGKILL);
	/* No broker: the direct channel carries on. */
	publish_n(p, 200, 200, 1500);
	daemon_start(&D);
	/* The clients find it again by themselves (backoff up to 5 s). */
	struct sv2shm_client *watcher = NULL;
	uint64_t deadline = ipc_now_ns() + UINT64_C(15000000000);
	bool seen = false;
	while (!seen) {
		publish_n(p, 400, 0, 1500);
		sv2shm_client_process(c);
		sv2shm_producer_process(p);
		struct sv2shm_status *st = NULL;
		if (!watcher) {
			struct sv2shm_client_options o = {.socket_path = D.sock, .timeout_ms = 3000};
			if (sv2shm_client_connect(&o, &watcher) != 0)
				watcher = NULL;
		}
		int sr = watcher ? sv2shm_client_status(watcher, &st) : -ENOTCONN;
		if (sr == 0) {
			for (unsigned i = 0; i < st->npools; i++)
				if (!strcmp(st->pools[i].name, "survivor") && st->pools[i].nconsumers == 1)
					seen = true;
			if (getenv("SV2SHM_TEST_DAEMON_LOG"))
				fprintf(stderr, "status: %u pools, first %s with %u consumers\n", st->npools,
					st->npools ? st->pools[0].name : "-", st->npools ? st->pools[0].nconsumers : 0);
			sv2shm_status_free(st);
		} else {
			/* Connected to the old daemon's socket while it was being torn
			 * down: a new connection finds the new one. */
			sv2shm_client_close(watcher);
			watcher = NULL;
		}
		if (ipc_now_ns() > deadline)
			fail_msg("after the restart, the pool and its consumer are not registered again");
		ipc_sleep_ms(50);
	}
	publish_n(p, 400, 200, 1500);
	uint64_t got, bad;
	parent_wait_u64(rep, &got, 30000);
	parent_wait_u64(rep, &bad, 1000);
	assert_int_equal(got, 600);
	assert_int_equal(bad, 0);
	assert_child_ok(sub, 10000);
	close(rep);
	while (sv2shm_producer_process(p) > 0) {
	}
	assert_int_equal(sv2shm_client_close(watcher), 0);
	assert_int_equal(sv2shm_producer_destroy(p), 0);
	assert_int_equal(sv2shm_client_close(c), 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SV2SHM_IPC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SV2SHM_IPC_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pubsub_1_4_31, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_producer_waiting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_producer_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_producer_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_restart, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
