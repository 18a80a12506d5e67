/* sv2shm-bench ipc: the iceoryx peer (see ipc_iox.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "ipc_iox.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if HAVE_ICEORYX
#include <iceoryx_binding_c/chunk.h>
#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/notification_info.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>
#endif

static int iox_errf(char *err, size_t n, const char *fmt, ...) BENCH_PRINTF(3, 4);
static int iox_errf(char *err, size_t n, const char *fmt, ...)
{
	if (!err || !n)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

#if !HAVE_ICEORYX

bool iox_available(void)
{
	return false;
}

int iox_roudi_start(const size_t *sizes, size_t n, unsigned count, char *err, size_t errlen)
{
	(void)sizes;
	(void)n;
	(void)count;
	return iox_errf(err, errlen, "built without iceoryx (meson did not find iceoryx_binding_c: install "
				     "libiceoryx-binding-c-dev and iceoryx, then reconfigure)");
}

int iox_roudi_stop(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 0;
}

int iox_bench_produce(const struct iox_side *s)
{
	return iox_errf(s->err, s->errlen, "built without iceoryx");
}

void iox_cleanup_child(int pid, char role)
{
	(void)pid;
	(void)role;
}

int iox_bench_consume(const struct iox_side *s)
{
	return iox_errf(s->err, s->errlen, "built without iceoryx");
}

#else /* HAVE_ICEORYX */

#define IOX_SERVICE "sv2shm-bench"
#define ROUDI_READY "RouDi is ready for clients"
#define ROUDI_START_TIMEOUT_MS 10000
/* Room for the chunk header in front of the payload (iceoryx 2.x: 40 bytes,
 * plus alignment). */
#define CHUNK_OVERHEAD 64u

static pid_t g_roudi = -1;
static char g_dir[64];
static char g_cfg[96];
static char g_log[96];

bool iox_available(void)
{
	return true;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
	nanosleep(&ts, NULL);
}

/* The last `max` bytes of RouDi's log, one line. */
static void log_tail(char *out, size_t max)
{
	out[0] = '\0';
	FILE *f = fopen(g_log, "r");
	if (!f)
		return;
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *start = n + 1 > max ? buf + n + 1 - max : buf;
	size_t o = 0;
	for (const char *p = start; *p && o + 1 < max; p++) {
		if (*p == '\033') { /* drop colour escapes */
			while (*p && *p != 'm')
				p++;
			if (!*p)
				break;
			continue;
		}
		out[o++] = *p == '\n' ? '|' : *p;
	}
	out[o] = '\0';
}

static bool log_has(const char *needle)
{
	FILE *f = fopen(g_log, "r");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

int iox_roudi_start(const size_t *sizes, size_t n, unsigned count, char *err, size_t errlen)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/sv2shm-bench-iox-XXXXXX");
	if (!mkdtemp(g_dir))
		return iox_errf(err, errlen, "mkdtemp: %s", strerror(errno));
	snprintf(g_cfg, sizeof(g_cfg), "%s/roudi.toml", g_dir);
	snprintf(g_log, sizeof(g_log), "%s/roudi.log", g_dir);
	FILE *f = fopen(g_cfg, "w");
	if (!f)
		return iox_errf(err, errlen, "%s: %s", g_cfg, strerror(errno));
	fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n");
	fprintf(f, "[[segment.mempool]]\nsize = %u\ncount = %u\n\n", 128u, count); /* acks, 64 B */
	for (size_t i = 0; i < n; i++) {
		size_t sz = (sizes[i] + CHUNK_OVERHEAD + 7u) & ~(size_t)7u;
		if (sz <= 128u)
			continue;
		fprintf(f, "[[segment.mempool]]\nsize = %zu\ncount = %u\n\n", sz, count);
	}
	if (fclose(f) != 0)
		return iox_errf(err, errlen, "%s: %s", g_cfg, strerror(errno));

	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return iox_errf(err, errlen, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (nul >= 0)
			dup2(nul, 0);
		/* RouDi's own working directory: it keeps nothing there. */
		if (chdir(g_dir) != 0)
			_exit(127);
		execlp("iox-roudi", "iox-roudi", "-c", g_cfg, "-l", "info", (char *)NULL);
		fprintf(stderr, "exec iox-roudi: %s\n", strerror(errno));
		_exit(127);
	}
	g_roudi = pid;
	uint64_t deadline = now_ns() + (uint64_t)ROUDI_START_TIMEOUT_MS * 1000000u;
	for (;;) {
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			g_roudi = -1;
			char tail[300];
			log_tail(tail, sizeof(tail));
			iox_roudi_stop(NULL, 0);
			return iox_errf(err, errlen, "iox-roudi exited (status 0x%x) before it was ready: %s", status, tail);
		}
		if (log_has(ROUDI_READY))
			return 0;
		if (now_ns() > deadline) {
			char tail[300];
			log_tail(tail, sizeof(tail));
			iox_roudi_stop(NULL, 0);
			return iox_errf(err, errlen, "iox-roudi not ready after %d ms: %s", ROUDI_START_TIMEOUT_MS, tail);
		}
		sleep_ms(10);
	}
}

int iox_roudi_stop(char *err, size_t errlen)
{
	int rc = 0;
	if (g_roudi > 0) {
		kill(g_roudi, SIGINT);
		uint64_t deadline = now_ns() + 5000000000u;
		for (;;) {
			int status;
			pid_t w = waitpid(g_roudi, &status, WNOHANG);
			if (w == g_roudi) {
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
					char tail[300];
					log_tail(tail, sizeof(tail));
					rc = iox_errf(err, errlen, "iox-roudi ended with status 0x%x: %s", status, tail);
				}
				break;
			}
			if (w < 0 && errno != EINTR)
				break;
			if (now_ns() > deadline) {
				kill(g_roudi, SIGKILL);
				waitpid(g_roudi, &status, 0);
				rc = iox_errf(err, errlen, "iox-roudi did not stop within 5 s of SIGINT: killed");
				break;
			}
			sleep_ms(10);
		}
		g_roudi = -1;
	}
	if (g_dir[0]) {
		unlink(g_cfg);
		unlink(g_log);
		rmdir(g_dir);
		g_dir[0] = '\0';
	}
	return rc;
}

/* ------------------------------------------------------------------------- */
/* The two sides                                                              */
/* ------------------------------------------------------------------------- */

static bool timed_out(const struct iox_side *s, uint64_t deadline)
{
	return (s->alarm && *s->alarm) || now_ns() > deadline;
}

/*
 * Take the next chunk: poll for spin_us, then sleep on the wait set (which
 * has the subscriber's DATA_RECEIVED event attached). Returns 0, or -1 with
 * s->err set.
 */
static int take(const struct iox_side *s, iox_sub_t sub, iox_ws_t ws, const void **chunk, const char *what)
{
	uint64_t start = now_ns(), spin_end = start + (uint64_t)s->spin_us * 1000u;
	uint64_t deadline = start + s->wait_timeout_ns;
	for (unsigned n = 0;; n++) {
		enum iox_ChunkReceiveResult r = iox_sub_take_chunk(sub, chunk);
		if (r == ChunkReceiveResult_SUCCESS)
			return 0;
		if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
			return iox_errf(s->err, s->errlen, "%s: iox_sub_take_chunk() returned %d", what, (int)r);
		if ((n & 63u) == 0 && timed_out(s, deadline))
			return iox_errf(s->err, s->errlen, "%s: nothing after %llu ms", what,
					(unsigned long long)(s->wait_timeout_ns / 1000000u));
		if (now_ns() < spin_end) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
			continue;
		}
		iox_notification_info_t events[4];
		uint64_t missed = 0;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000000};
		(void)iox_ws_timed_wait(ws, ts, events, 4, &missed);
	}
}

/* Wait until `ok()` holds (connections are made by RouDi's discovery loop). */
static int wait_until(const struct iox_side *s, bool (*ok)(void *), void *arg, const char *what)
{
	uint64_t deadline = now_ns() + 10000000000u;
	while (!ok(arg)) {
		if (timed_out(s, deadline))
			return iox_errf(s->err, s->errlen, "%s: not connected after 10 s", what);
		sleep_ms(1);
	}
	return 0;
}

static bool pub_connected(void *arg)
{
	return iox_pub_has_subscribers((iox_pub_t)arg);
}

static bool sub_connected(void *arg)
{
	return iox_sub_get_subscription_state((iox_sub_t)arg) == SubscribeState_SUBSCRIBED;
}

struct both {
	iox_pub_t pub;
	iox_sub_t sub;
};

static bool both_connected(void *arg)
{
	struct both *b = arg;
	return pub_connected(b->pub) && sub_connected(b->sub);
}

static void runtime_init(const char *role)
{
	iox_set_loglevel(Iceoryx_LogLevel_Warn); /* its Debug lines would mix into our progress output */
	char name[64];
	snprintf(name, sizeof(name), "sv2shm-bench-%s-%d", role, (int)getpid());
	iox_runtime_init(name);
}

void iox_cleanup_child(int pid, char role)
{
	/* iceoryx 2.x: the runtime's socket and its lock file, /tmp/<name>[.lock] */
	char path[96];
	snprintf(path, sizeof(path), "/tmp/sv2shm-bench-%c-%d", role, pid);
	unlink(path);
	snprintf(path, sizeof(path), "/tmp/sv2shm-bench-%c-%d.lock", role, pid);
	unlink(path);
}

static void pub_opts(iox_pub_options_t *po)
{
	iox_pub_options_init(po);
	po->historyCapacity = 0;
	po->offerOnCreate = true;
	/* Never drop: a full subscriber queue blocks the publisher. */
	po->subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
}

static void sub_opts(iox_sub_options_t *so, uint64_t queue)
{
	iox_sub_options_init(so);
	so->queueCapacity = queue;
	so->historyRequest = 0;
	so->subscribeOnCreate = true;
	so->queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
}

/* Loan a chunk, retrying while the mempool is momentarily exhausted. */
static int loan(const struct iox_side *s, iox_pub_t pub, void **chunk, uint32_t size, const char *what)
{
	uint64_t deadline = now_ns() + s->wait_timeout_ns;
	for (;;) {
		enum iox_AllocationResult r = iox_pub_loan_chunk(pub, chunk, size);
		if (r == AllocationResult_SUCCESS)
			return 0;
		if (r != AllocationResult_RUNNING_OUT_OF_CHUNKS || timed_out(s, deadline))
			return iox_errf(s->err, s->errlen, "%s: iox_pub_loan_chunk(%u) returned %d", what, size, (int)r);
	}
}

int iox_bench_produce(const struct iox_side *s)
{
	runtime_init("p");
	int rc = -1;
	iox_pub_options_t po;
	pub_opts(&po);
	iox_pub_storage_t ps;
	iox_pub_t pub = iox_pub_init(&ps, IOX_SERVICE, s->instance, "data", &po);
	iox_sub_storage_t ss;
	iox_ws_storage_t wss;
	iox_sub_t ack = NULL;
	iox_ws_t ws = NULL;
	if (!pub) {
		iox_errf(s->err, s->errlen, "producer: iox_pub_init() failed");
		goto out;
	}
	if (s->rt) {
		iox_sub_options_t so;
		sub_opts(&so, 4);
		ack = iox_sub_init(&ss, IOX_SERVICE, s->instance, "ack", &so);
		ws = iox_ws_init(&wss);
		if (!ack || !ws || iox_ws_attach_subscriber_event(ws, ack, SubscriberEvent_DATA_RECEIVED, 0, NULL) !=
					   WaitSetResult_SUCCESS) {
			iox_errf(s->err, s->errlen, "producer: ack subscriber or wait set failed");
			goto out;
		}
		struct both b = {pub, ack};
		if (wait_until(s, both_connected, &b, "producer") < 0)
			goto out;
	} else if (wait_until(s, pub_connected, pub, "producer") < 0) {
		goto out;
	}
	for (uint64_t i = 0; i < s->total; i++) {
		if (s->rt && i > 0) {
			const void *a;
			if (take(s, ack, ws, &a, "producer: waiting for the ack") < 0)
				goto out;
			iox_sub_release_chunk(ack, a);
		}
		if (s->rt)
			s->t_acq[i] = now_ns();
		void *chunk;
		if (loan(s, pub, &chunk, (uint32_t)s->size, "producer") < 0)
			goto out;
		s->fill(chunk, s->size, i);
		iox_pub_publish_chunk(pub, chunk);
	}
	if (s->rt) {
		const void *a;
		if (take(s, ack, ws, &a, "producer: waiting for the last ack") < 0)
			goto out;
		iox_sub_release_chunk(ack, a);
	}
	rc = 0;
out:
	if (ws) {
		if (ack)
			iox_ws_detach_subscriber_event(ws, ack, SubscriberEvent_DATA_RECEIVED);
		iox_ws_deinit(ws);
	}
	if (ack)
		iox_sub_deinit(ack);
	if (pub)
		iox_pub_deinit(pub);
	iox_runtime_shutdown();
	return rc;
}

int iox_bench_consume(const struct iox_side *s)
{
	runtime_init("c");
	int rc = -1;
	iox_sub_options_t so;
	sub_opts(&so, s->rt ? 4 : s->in_flight);
	iox_sub_storage_t ss;
	iox_ws_storage_t wss;
	iox_pub_storage_t ps;
	iox_sub_t sub = iox_sub_init(&ss, IOX_SERVICE, s->instance, "data", &so);
	iox_ws_t ws = iox_ws_init(&wss);
	iox_pub_t ack = NULL;
	if (!sub || !ws || iox_ws_attach_subscriber_event(ws, sub, SubscriberEvent_DATA_RECEIVED, 0, NULL) !=
				   WaitSetResult_SUCCESS) {
		iox_errf(s->err, s->errlen, "consumer: subscriber or wait set failed");
		goto out;
	}
	if (s->rt) {
		iox_pub_options_t po;
		pub_opts(&po);
		ack = iox_pub_init(&ps, IOX_SERVICE, s->instance, "ack", &po);
		if (!ack) {
			iox_errf(s->err, s->errlen, "consumer: ack publisher failed");
			goto out;
		}
		struct both b = {ack, sub};
		if (wait_until(s, both_connected, &b, "consumer") < 0)
			goto out;
	} else if (wait_until(s, sub_connected, sub, "consumer") < 0) {
		goto out;
	}
	for (uint64_t i = 0; i < s->total; i++) {
		const void *chunk;
		if (take(s, sub, ws, &chunk, "consumer: waiting for a message") < 0)
			goto out;
		if (!s->rt)
			s->t_recv[i] = now_ns();
		s->check(s->ctx, chunk, s->size, s->size, i);
		(*s->received)++;
		iox_sub_release_chunk(sub, chunk);
		if (s->rt) {
			void *a;
			if (loan(s, ack, &a, 1, "consumer: ack") < 0)
				goto out;
			*(uint8_t *)a = 1;
			iox_pub_publish_chunk(ack, a);
		}
	}
	rc = 0;
out:
	if (ws) {
		if (sub)
			iox_ws_detach_subscriber_event(ws, sub, SubscriberEvent_DATA_RECEIVED);
		iox_ws_deinit(ws);
	}
	if (ack)
		iox_pub_deinit(ack);
	if (sub)
		iox_sub_deinit(sub);
	iox_runtime_shutdown();
	return rc;
}

#endif /* HAVE_ICEORYX */
