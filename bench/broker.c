/*
 * sv2shm-bench broker: pools opened through the broker (sv2shmd).
 *
 * A private sv2shmd is started for the run (--foreground --socket in a
 * mkdtemp() directory; the binary is $SV2SHMD, else ../daemon/sv2shmd next
 * to this executable's directory) and stopped at the end.
 *
 * Data (rows broker-fanout, broker-roundrobin; baselines direct-fanout,
 * direct-roundrobin). One producer (this process, pinned to one CPU) and
 * 1, 4 or 16 consumer processes (forked, all pinned to the other CPU). Per
 * size (64 B, 1 KiB, 16 KiB, 64 KiB) the producer owns two pools:
 *   stream  64 slots, room for 2 x 64 messages (as ipc-stream);
 *   rt      1 slot (as ipc-roundtrip).
 * "broker": the producer registers every pool with sv2shm_client_register()
 * and each consumer subscribes to every pool with sv2shm_client_subscribe()
 * (its own broker connection); the introductions are done before any data
 * flows. "direct" (the baseline, in the same run, interleaved round by
 * round): the same producers made with sv2shm_producer_new() and the same
 * consumers attached with sv2shm_producer_add_consumer() on a socketpair.
 * Everything after the introduction is the same code.
 *
 * Every message carries its index in its first 8 bytes, the rest is one byte
 * value derived from the index; a consumer reads every byte (sums them and
 * checks the sum), records its receipt time and releases the slice. Both
 * sides block (consumer spin_us and producer wait_spin_us SV2SHM_SPIN_NONE,
 * ipc's sv2shm-blocking): 16 consumers share one CPU.
 *
 *   fan-out      sv2shm_producer_publish_all(): every consumer gets every
 *                message. msgs_per_s = messages that reached EVERY consumer
 *                per second (from the consumers' receipt times: the last
 *                consumer's receipt of each message), as ipc-fanout.
 *   round-robin  sv2shm_producer_publish_next(): each message to one
 *                consumer, the next in turn. msgs_per_s = slices delivered
 *                per second (receipt times).
 *   round trip   the rt pool (1 slot, policy WAIT): the time between two
 *                consecutive returns of sv2shm_buffer_get_writable() in the
 *                producer = write the message, publish it, the consumer(s)
 *                wake, read every byte and release, the slot is free (for
 *                fan-out: when the LAST consumer released it). The same
 *                definition as ipc-roundtrip. Median (and p99) of the gaps.
 *   broker_cpu_ms  the broker's utime + stime (/proc/<pid>/stat) read before
 *                and after every data phase, summed over the row's phases and
 *                rounds (the broker is out of the data path: ~0). Also the
 *                exact run time from /proc/<pid>/schedstat (broker_sched_us):
 *                ticks of 10 ms hide short runs. The first phase starts once
 *                the broker's run time has stopped growing after the
 *                introductions; consumers exit only after the last sample.
 *
 * Phases are timed (STREAM_MS / RT_MS after a warm-up), and the contenders
 * run in interleaved rounds, alternating which goes first: the VM's slow
 * phases and the blocking stream's two regimes (a consumer always behind
 * needs no wake-ups; one that keeps up needs one per message) hit both alike.
 * msgs_per_s is the median of the rounds, the round trip the median of the
 * pooled gaps; the ratios also come paired (the median of the per-round
 * ratios).
 *
 * Reclaim (rows reclaim): a pool of 4 slots registered with the broker; a
 * victim consumer process subscribes, receives 4 slices and holds them all
 * (the pool is full), and is SIGKILLed. The time from just before kill() to
 * the slots being free:
 *   waiting  the producer is blocked in sv2shm_buffer_get_writable()
 *            (policy WAIT) when a helper thread sends the kill: until
 *            get_writable() returns (the producer's own hang-up handling or
 *            the broker's release records, whichever wakes it first);
 *   busy     the producer sends the kill itself and then spins in its own
 *            loop without calling sv2shm_producer_process(), polling
 *            sv2shm_pool_stats(sv2shm_producer_pool(p)).live until the dead
 *            consumer's slots are gone: only the broker (which watches each
 *            consumer's pidfd and writes the dead consumer's release records)
 *            can free them.
 * A pidfd of the victim splits the time: kill() to the process gone (the
 * kernel's part), and the rest.
 *
 * Robustness: every child has PR_SET_PDEATHSIG(SIGKILL), closes every fd it
 * does not need and has its own alarm(); the daemon gets PR_SET_PDEATHSIG
 * (SIGTERM); every wait here is bounded; a hard alarm() ends a hung run with
 * a message naming where the producer was.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/client.h>
#include <sv2shm/ipc.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int bench_broker_main(int argc, char **argv);

/* ------------------------------------------------------------------------- */
/* Parameters                                                                 */
/* ------------------------------------------------------------------------- */

#define MAXC 16u                 /* most consumer processes in a run */
#define STREAM_SLOTS 64u         /* stream pool: slots (messages in flight at most) */
#define WAIT_TIMEOUT_MS 5000     /* every single wait (recv, WAIT, acks) */
#define WAIT_TIMEOUT_NS ((uint64_t)WAIT_TIMEOUT_MS * 1000000u)
#define INTRO_TIMEOUT_MS 20000   /* all introductions of one run */
#define ROUNDS 5u                /* interleaved rounds (default run) */
#define QUICK_ROUNDS 3u
#define MAX_ROUNDS 15u
/* A data phase measures for this long (after its warm-up), at least MIN
 * messages, at most CAP. */
#define STREAM_MS 100u
#define RT_MS 60u
#define QUICK_STREAM_MS 40u
#define QUICK_RT_MS 25u
#define STREAM_WARM 256u
#define STREAM_MIN 1000u
#define STREAM_CAP 100000000u
#define RT_WARM 20u
#define RT_MIN 200u
#define RT_CAP 200000u
#define END_INDEX UINT64_MAX     /* the message that ends a phase */
#define HARD_TIMEOUT_S 600u      /* the whole mode */
#define ERR_LEN 384

/* Reclaim */
#define RC_SLOTS 4u
#define RC_SIZE 1024u
#define RC_KILLS 200u            /* per row (at least 50) */
#define RC_QUICK_KILLS 50u
#define RC_LIMIT_US 10000.0      /* the p99 target */
#define RC_DELAY_MIN_US 300u     /* waiting: the kill comes this long after the producer blocks, */
#define RC_DELAY_MAX_US 1500u    /* randomly, so it is asleep in the WAIT */

enum mode { MODE_FANOUT, MODE_RR, NMODES };
static const char *const mode_bench[2][NMODES] = {
	{"broker-fanout", "broker-roundrobin"},
	{"direct-fanout", "direct-roundrobin"},
};
static const char *const mode_text[NMODES] = {"fan-out", "round-robin"};

enum contender { C_BROKER, C_DIRECT, NCONT };
static const char *const cont_name[NCONT] = {"broker", "direct"};

static const unsigned ncons_list[] = {1, 4, 16};
#define NNS (sizeof(ncons_list) / sizeof(ncons_list[0]))
static const size_t sizes[] = {64, 1024, 16384, 65536};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* Phases of a run: per size, fan-out stream, fan-out rt, rr stream, rr rt. */
#define NPHASES (NSIZES * NMODES * 2u)
enum kind { K_STREAM, K_RT };

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

static int errf(char *err, const char *fmt, ...) BENCH_PRINTF(2, 3);
static int errf(char *err, const char *fmt, ...)
{
	if (err[0])
		return -1; /* keep the first */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, ERR_LEN, fmt, ap);
	va_end(ap);
	return -1;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static int pin_self(int cpu)
{
	if (cpu < 0)
		return 0;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

/* Close every fd >= 3 but keep[0..n). */
static void close_all_but(int *keep, unsigned n)
{
	for (unsigned i = 1; i < n; i++) /* insertion sort: n is small */
		for (unsigned j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	unsigned from = 3;
	for (unsigned i = 0; i < n; i++) {
		if (keep[i] < (int)from)
			continue;
		if (keep[i] > (int)from)
			close_range(from, (unsigned)keep[i] - 1u, 0);
		from = (unsigned)keep[i] + 1u;
	}
	close_range(from, ~0u, 0);
}

/* What a forked child does first: die with us, its own alarm, its CPU. */
static void child_start(pid_t parent, int cpu, unsigned alarm_s)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	alarm(alarm_s);
	if (pin_self(cpu) < 0)
		_exit(1);
}

#define describe_status bench_describe_status

/* Wait for pid up to timeout_ms (then SIGKILL it and wait). Returns 0 with
 * *status, or -1 when it had to be killed. */
static int wait_child(pid_t pid, int timeout_ms, int *status)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR) {
			*status = 0;
			return 0; /* not ours any more (reaped elsewhere) */
		}
		if (bench_now_ns() > deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
			}
			return -1;
		}
		sleep_us(200);
	}
}

/* ------------------------------------------------------------------------- */
/* The broker's CPU time                                                      */
/* ------------------------------------------------------------------------- */

struct cpu_sample {
	bool ok;
	uint64_t ticks;    /* utime + stime, clock ticks */
	uint64_t sched_ns; /* schedstat: time on a CPU (0 when not available) */
	bool sched_ok;
};

static void proc_cpu(pid_t pid, struct cpu_sample *s)
{
	memset(s, 0, sizeof(*s));
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			/* comm may hold spaces and parentheses: fields count from the last ')' */
			char *p = strrchr(buf, ')');
			unsigned long long ut = 0, st = 0;
			/* after ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt(13) utime(14) stime(15) */
			if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
				s->ticks = ut + st;
				s->ok = true;
			}
		}
	}
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		unsigned long long run = 0;
		if (n > 0) {
			buf[n] = '\0';
			if (sscanf(buf, "%llu", &run) == 1) {
				s->sched_ns = run;
				s->sched_ok = true;
			}
		}
	}
}

static double ticks_ms(uint64_t ticks)
{
	long hz = sysconf(_SC_CLK_TCK);
	return hz > 0 ? (double)ticks * 1000.0 / (double)hz : NAN;
}

/* ------------------------------------------------------------------------- */
/* The daemon                                                                 */
/* ------------------------------------------------------------------------- */

struct daemon {
	char bin[PATH_MAX];
	char dir[64];
	char sock[108];
	char log[128];
	pid_t pid;
	char event_loop[64];
	char version[16];
};

/* $SV2SHMD, else ../daemon/sv2shmd relative to this executable's directory. */
static int find_daemon(struct daemon *d, char *err)
{
	const char *env = getenv("SV2SHMD");
	if (env && env[0]) {
		snprintf(d->bin, sizeof(d->bin), "%s", env);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return errf(err, "readlink(/proc/self/exe): %s; set SV2SHMD", strerror(errno));
		self[n] = '\0';
		char *dir = dirname(self);
		int k = snprintf(d->bin, sizeof(d->bin), "%s/../daemon/sv2shmd", dir);
		if (k < 0 || (size_t)k >= sizeof(d->bin))
			return errf(err, "the daemon's path is too long; set SV2SHMD");
	}
	if (access(d->bin, X_OK) != 0)
		return errf(err, "no sv2shmd to run at %s (%s): build the daemon, or set SV2SHMD", d->bin, strerror(errno));
	char real[PATH_MAX];
	if (realpath(d->bin, real))
		snprintf(d->bin, sizeof(d->bin), "%s", real);
	return 0;
}

/* The last lines of the daemon's log, for a failure note. */
static void log_tail(const struct daemon *d, char *out, size_t n)
{
	out[0] = '\0';
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > 300 ? end - 300 : 0;
	char buf[301];
	ssize_t k = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (k <= 0)
		return;
	buf[k] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = '|';
	snprintf(out, n, "%s", buf);
}

/*
 * Start sv2shmd and connect to it. Returns 0 with *client, or -1 with err.
 * `all` is the CPU set the daemon may use (the bench pins itself later).
 */
static int daemon_start(struct daemon *d, const cpu_set_t *all, struct sv2shm_client **client, char *err)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/sv2shm-bench-broker-XXXXXX");
	if (!mkdtemp(d->dir))
		return errf(err, "mkdtemp(%s): %s", d->dir, strerror(errno));
	snprintf(d->sock, sizeof(d->sock), "%s/sv2shmd.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/sv2shmd.log", d->dir);
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return errf(err, "fork (daemon): %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(126);
		sched_setaffinity(0, sizeof(*all), all);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(SIGALRM, &sa, NULL);
		sigaction(SIGPIPE, &sa, NULL);
		int in = open("/dev/null", O_RDONLY);
		int lg = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		if (in < 0 || lg < 0)
			_exit(126);
		dup2(in, 0);
		dup2(lg, 1);
		dup2(lg, 2);
		close_range(3, ~0u, 0);
		execl(d->bin, d->bin, "--foreground", "--socket", d->sock, "--log-level", "info", (char *)NULL);
		dprintf(2, "sv2shm-bench broker: exec %s: %s\n", d->bin, strerror(errno));
		_exit(127);
	}
	d->pid = pid;
	uint64_t deadline = bench_now_ns() + 5000000000u;
	for (;;) {
		struct sv2shm_client_options o = {.socket_path = d->sock, .timeout_ms = WAIT_TIMEOUT_MS};
		int r = sv2shm_client_connect(&o, client);
		if (r == 0)
			break;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			d->pid = -1;
			char why[64], tail[320];
			describe_status(st, why, sizeof(why));
			log_tail(d, tail, sizeof(tail));
			return errf(err, "sv2shmd (%s) ended at start (%s); its log: %s", d->bin, why, tail);
		}
		if (bench_now_ns() > deadline) {
			char tail[320];
			log_tail(d, tail, sizeof(tail));
			return errf(err, "sv2shmd did not answer on %s within 5 s (last: %s); its log: %s", d->sock,
				    sv2shm_strerror(r), tail);
		}
		sleep_us(5000);
	}
	struct sv2shm_status *st = NULL;
	if (sv2shm_client_status(*client, &st) == 0) {
		snprintf(d->event_loop, sizeof(d->event_loop), "%s", st->event_loop);
		snprintf(d->version, sizeof(d->version), "%s", st->version);
		sv2shm_status_free(st);
	}
	return 0;
}

/* SIGTERM, wait for a clean exit; remove the directory. Returns 0, or -1
 * with err when the daemon did not exit cleanly. */
static int daemon_stop(struct daemon *d, char *err)
{
	int rc = 0;
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		int st = 0;
		if (wait_child(d->pid, 5000, &st) < 0) {
			rc = errf(err, "sv2shmd did not exit within 5 s of SIGTERM: killed");
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			char why[64], tail[320];
			describe_status(st, why, sizeof(why));
			log_tail(d, tail, sizeof(tail));
			rc = errf(err, "sv2shmd ended with %s on SIGTERM (want exit 0); its log: %s", why, tail);
		}
		d->pid = -1;
	}
	if (d->dir[0]) {
		char p[160];
		snprintf(p, sizeof(p), "%s.lock", d->sock);
		unlink(p);
		unlink(d->sock);
		unlink(d->log);
		rmdir(d->dir);
	}
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Data runs: what producer and consumers share                               */
/* ------------------------------------------------------------------------- */

struct phase {
	uint32_t size;
	uint32_t sidx;
	uint8_t kind; /* enum kind */
	uint8_t mode; /* enum mode */
	uint64_t warm; /* messages before the measured ones */
};

/* What a consumer records per phase (it writes, the producer reads after
 * the phase's ack). */
struct cres {
	_Atomic uint32_t ready; /* 1: attached to every pool */
	_Atomic uint32_t ack;   /* phases finished */
	uint64_t got;           /* messages received in the last phase */
	uint64_t meas;          /* of them, index >= warm */
	uint64_t first_t;       /* receipt time of the first with index >= warm */
	uint64_t last_t;        /* receipt time of the last */
	uint64_t bad;
	uint64_t sub_ns;        /* connect + every subscription (broker), or every consumer_new (direct) */
	int rc;
	char err[ERR_LEN];
	char bad_detail[160];
};

struct dshared {
	unsigned n;
	int contender;
	_Atomic uint32_t may_exit; /* the producer took its last CPU sample: free and exit */
	char sock[108];
	char names[NSIZES][2][SV2SHM_NAME_MAX + 1]; /* [size][kind] */
	struct phase ph[NPHASES];
	struct cres c[MAXC];
};

static void build_phases(struct phase *ph)
{
	unsigned k = 0;
	for (unsigned s = 0; s < NSIZES; s++)
		for (unsigned m = 0; m < NMODES; m++)
			for (unsigned kind = 0; kind < 2; kind++) {
				struct phase *p = &ph[k++];
				p->size = (uint32_t)sizes[s];
				p->sidx = s;
				p->kind = (uint8_t)kind;
				p->mode = (uint8_t)m;
				p->warm = kind == K_STREAM ? STREAM_WARM : RT_WARM;
			}
}

/* ------------------------------------------------------------------------- */
/* The consumer process of a data run                                         */
/* ------------------------------------------------------------------------- */

static void data_consumer(struct dshared *sh, unsigned k, int *socks /* [NSIZES * 2], direct */)
{
	struct cres *me = &sh->c[k];
	struct sv2shm_consumer *cons[NSIZES][2];
	memset(cons, 0, sizeof(cons));
	struct sv2shm_client *cl = NULL;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = SV2SHM_SPIN_NONE;
	uint64_t t0 = bench_now_ns();
	int r = 0;
	if (sh->contender == C_BROKER) {
		struct sv2shm_client_options o = {.socket_path = sh->sock, .timeout_ms = WAIT_TIMEOUT_MS};
		r = sv2shm_client_connect(&o, &cl);
		if (r < 0) {
			errf(me->err, "consumer %u: sv2shm_client_connect(%s) returned %d (%s)", k, sh->sock, r,
			     sv2shm_strerror(r));
			goto fail;
		}
		for (unsigned s = 0; s < NSIZES; s++)
			for (unsigned kind = 0; kind < 2; kind++) {
				r = sv2shm_client_subscribe(cl, sh->names[s][kind], &co, INTRO_TIMEOUT_MS, &cons[s][kind]);
				if (r < 0) {
					errf(me->err, "consumer %u: sv2shm_client_subscribe(%s) returned %d (%s)", k,
					     sh->names[s][kind], r, sv2shm_strerror(r));
					goto fail;
				}
			}
	} else {
		for (unsigned s = 0; s < NSIZES; s++)
			for (unsigned kind = 0; kind < 2; kind++) {
				r = sv2shm_consumer_new(socks[s * 2 + kind], &co, &cons[s][kind]);
				if (r < 0) {
					errf(me->err, "consumer %u: sv2shm_consumer_new(%s pool of %zu B) returned %d (%s)", k,
					     kind == K_RT ? "rt" : "stream", sizes[s], r, sv2shm_strerror(r));
					goto fail;
				}
			}
	}
	me->sub_ns = bench_now_ns() - t0;
	atomic_store_explicit(&me->ready, 1, memory_order_release);

	for (unsigned p = 0; p < NPHASES; p++) {
		const struct phase *ph = &sh->ph[p];
		struct sv2shm_consumer *c = cons[ph->sidx][ph->kind];
		uint64_t got = 0, meas = 0, first = 0, last = 0, prev = UINT64_MAX;
		for (;;) {
			struct sv2shm_slice s;
			r = sv2shm_consumer_recv(c, &s, WAIT_TIMEOUT_MS);
			if (r != 1) {
				errf(me->err, "consumer %u: phase %u (%s %s %u B): after %llu messages sv2shm_consumer_recv"
					      "(timeout %d ms) returned %d (%s)",
				     k, p, mode_text[ph->mode], ph->kind == K_RT ? "round trip" : "stream", ph->size,
				     (unsigned long long)got, WAIT_TIMEOUT_MS, r, r == 0 ? "timeout" : sv2shm_strerror(r));
				goto fail;
			}
			uint64_t idx = END_INDEX;
			if (s.len >= 8)
				memcpy(&idx, s.data, 8);
			if (idx == END_INDEX) {
				sv2shm_slice_release(&s);
				break;
			}
			uint64_t now = bench_now_ns();
			uint64_t sum = bench_sum_bytes(s.data + 8, s.len - 8);
			uint64_t want = (uint64_t)(ph->size - 8u) * bench_msg_byte(idx);
			/* In order: every index (fan-out), increasing ones (round-robin). */
			bool order = ph->mode == MODE_FANOUT ? idx == prev + 1u : prev == UINT64_MAX || idx > prev;
			if (s.len != ph->size || sum != want || !order) {
				if (!me->bad)
					snprintf(me->bad_detail, sizeof(me->bad_detail),
						 "phase %u: message %llu after %llu: %zu bytes (want %u), byte sum %llu (want %llu)",
						 p, (unsigned long long)idx, (unsigned long long)prev, s.len, ph->size,
						 (unsigned long long)sum, (unsigned long long)want);
				me->bad++;
			}
			prev = idx;
			got++;
			if (idx >= ph->warm) {
				if (!meas)
					first = now;
				last = now;
				meas++;
			}
			r = sv2shm_slice_release(&s);
			if (r < 0) {
				errf(me->err, "consumer %u: phase %u: sv2shm_slice_release() returned %d (%s)", k, p, r,
				     sv2shm_strerror(r));
				goto fail;
			}
		}
		me->got = got;
		me->meas = meas;
		me->first_t = first;
		me->last_t = last;
		atomic_store_explicit(&me->ack, p + 1u, memory_order_release);
	}
	/* Stay until the producer has read the broker's CPU time after the last
	 * phase: our exit is work for the broker (pidfd, connection). */
	uint64_t deadline = bench_now_ns() + 4 * WAIT_TIMEOUT_NS;
	while (!atomic_load_explicit(&sh->may_exit, memory_order_acquire) && bench_now_ns() < deadline)
		sleep_us(200);
	for (unsigned s = 0; s < NSIZES; s++)
		for (unsigned kind = 0; kind < 2; kind++) {
			sv2shm_consumer_flush(cons[s][kind]);
			r = sv2shm_consumer_free(cons[s][kind]);
			cons[s][kind] = NULL;
			if (r < 0) {
				errf(me->err, "consumer %u: sv2shm_consumer_free() returned %d (%s)", k, r, sv2shm_strerror(r));
				goto fail;
			}
		}
	if (cl) {
		r = sv2shm_client_close(cl);
		if (r < 0) {
			errf(me->err, "consumer %u: sv2shm_client_close() returned %d (%s)", k, r, sv2shm_strerror(r));
			goto fail;
		}
	}
	me->rc = 0;
	_exit(0);
fail:
	me->rc = -1;
	_exit(1);
}

/* ------------------------------------------------------------------------- */
/* Results of the data runs                                                   */
/* ------------------------------------------------------------------------- */

struct cell {
	uint64_t *gaps; /* round-trip samples, pooled over rounds */
	size_t ngaps, capgaps;
	double mps[MAX_ROUNDS];   /* per round (NAN: no run) */
	double rtmed[MAX_ROUNDS]; /* per round: median round trip (NAN: no run) */
	unsigned nmps;
	uint64_t msgs;       /* stream messages measured, all rounds */
	uint64_t cpu_ticks;  /* the broker's, during this cell's data phases */
	uint64_t sched_ns;
	bool sched_ok;
	uint64_t data_ns;    /* wall time of those phases */
	bool failed;
};

struct data_results {
	struct cell cell[NCONT][NMODES][NNS][NSIZES];
	uint64_t intro_ns[NNS];       /* broker runs: fork to every consumer attached (sum over rounds) */
	uint64_t direct_intro_ns[NNS];
	unsigned intro_runs[NNS], direct_intro_runs[NNS];
	uint64_t *sub_samples;        /* per consumer: its connect + 8 subscriptions */
	size_t nsub, capsub;
	uint64_t *direct_sub_samples; /* per consumer: 8 x sv2shm_consumer_new() */
	size_t ndsub, capdsub;
	uint64_t intro_cpu_ticks;     /* the broker's CPU during introductions */
	uint64_t intro_sched_ns;
	uint64_t introductions;
	unsigned runs, failed_runs;
	uint64_t data_cpu_ticks, data_sched_ns, data_ns; /* all broker runs' data phases */
	uint64_t direct_data_cpu_ticks, direct_data_sched_ns; /* the idle broker during direct runs */
	bool sched_ok;
};

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		uint64_t *nv = realloc(*v, nc * sizeof(uint64_t));
		if (!nv)
			return -1;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = x;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* The producer side of a data run                                            */
/* ------------------------------------------------------------------------- */

struct drun {
	struct dshared *sh;
	unsigned n;
	unsigned ni;
	int contender;
	unsigned round;
	uint64_t stream_ns, rt_ns; /* how long a phase measures */
	struct sv2shm_client *client; /* broker runs */
	struct sv2shm_producer *prod[NSIZES][2];
	pid_t pid[MAXC];
	bool reaped[MAXC];
	unsigned started;
	int socks[MAXC][NSIZES * 2][2]; /* direct: [consumer][size*2+kind][0 producer, 1 consumer] */
	uint64_t total;                 /* messages of the phase just run (the end marker not counted) */
	uint64_t *tacq;                 /* round trip: get_writable() returns, RT_CAP + 1 */
	pid_t broker_pid;
	const char *sock; /* the broker's socket */
	char err[ERR_LEN];
};

static void producer_options(struct sv2shm_producer_options *o, size_t size, int kind)
{
	memset(o, 0, sizeof(*o));
	if (kind == K_RT) {
		o->pool.slots = 1; /* the next get_writable() waits for the release */
		o->pool.capacity = (size + 4095) & ~(uint64_t)4095;
	} else {
		o->pool.slots = STREAM_SLOTS;
		o->pool.capacity = 2 * (uint64_t)STREAM_SLOTS * size;
	}
	o->pool.policy = SV2SHM_POOL_WAIT;
	o->pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	o->pool.wait_spin_us = SV2SHM_SPIN_NONE;
	/* Back-pressure as in ipc.c: no consumer limit below the pool itself,
	 * a full ring makes publish refuse (-EAGAIN) and the producer retries. */
	o->max_held = o->pool.slots;
	o->on_limit = SV2SHM_LIMIT_REFUSE;
}

/* Is every child alive (or done with every phase)? Reaps those that ended;
 * an end before the last phase's ack is a failure. */
static bool children_alive(struct drun *R)
{
	bool ok = true;
	for (unsigned k = 0; k < R->started; k++) {
		if (R->reaped[k])
			continue;
		int st;
		if (waitpid(R->pid[k], &st, WNOHANG) != R->pid[k])
			continue;
		R->reaped[k] = true;
		const struct cres *c = &R->sh->c[k];
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && c->rc == 0 &&
		    atomic_load_explicit(&c->ack, memory_order_acquire) == NPHASES)
			continue; /* finished */
		char why[64];
		describe_status(st, why, sizeof(why));
		errf(R->err, "consumer %u (pid %d) ended early (%s): %s", k, (int)R->pid[k], why,
		     c->err[0] ? c->err : "no error recorded");
		ok = false;
	}
	return ok;
}

/* Publish with back-pressure: retry while the consumers' rings are full. */
static int publish_one(struct drun *R, struct sv2shm_producer *p, struct sv2shm_slice *s, int mode, uint64_t i)
{
	uint64_t deadline = 0;
	for (;;) {
		int r = mode == MODE_FANOUT ? sv2shm_producer_publish_all(p, s, 0) : sv2shm_producer_publish_next(p, s, 0);
		if (r == -EAGAIN) {
			uint64_t now = bench_now_ns();
			if (!deadline)
				deadline = now + WAIT_TIMEOUT_NS;
			else if (now > deadline)
				return errf(R->err, "message %llu: publish refused (-EAGAIN: every ring full) for %d ms",
					    (unsigned long long)i, WAIT_TIMEOUT_MS);
			bench_cpu_relax();
			continue;
		}
		if (r < 0 || (mode == MODE_FANOUT && r > 0)) {
			if (s->_kind != SV2SHM_SLICE_NONE)
				sv2shm_slice_release(s);
			struct sv2shm_producer_event ev;
			char evs[96] = "no removal event";
			if (sv2shm_producer_next_event(p, &ev) == 1)
				snprintf(evs, sizeof(evs), "consumer id %d removed, reason %d, held %u", ev.id, ev.reason,
					 (unsigned)ev.held);
			return errf(R->err, "message %llu: %s returned %d (%s); %s", (unsigned long long)i,
				    mode == MODE_FANOUT ? "sv2shm_producer_publish_all()" : "sv2shm_producer_publish_next()",
				    r, r < 0 ? sv2shm_strerror(r) : "consumers that did not get it", evs);
		}
		return 0;
	}
}

/* Write message i (or the end marker) of `size` bytes and take it. Returns
 * 0, or -1. *t_acq: when get_writable() returned. */
static int write_msg(struct drun *R, struct sv2shm_producer *p, uint64_t i, size_t size, struct sv2shm_slice *s,
		     uint64_t *t_acq)
{
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	bench_where = "sv2shm_buffer_get_writable (policy WAIT)";
	uint8_t *w = sv2shm_buffer_get_writable(b, size);
	bench_where = "data phase";
	if (!w) {
		int e = sv2shm_buffer_last_error(b);
		return errf(R->err, "message %llu: sv2shm_buffer_get_writable(%zu) returned NULL (%d, %s)",
			    (unsigned long long)i, size, e, sv2shm_strerror(e));
	}
	if (t_acq)
		*t_acq = bench_now_ns();
	memcpy(w, &i, 8);
	if (size > 8)
		memset(w + 8, bench_msg_byte(i), size - 8);
	int r = sv2shm_buffer_get_data_owned(b, s);
	if (r < 0 || s->len != size)
		return errf(R->err, "message %llu: sv2shm_buffer_get_data_owned() returned %d with %zu bytes (wrote %zu)",
			    (unsigned long long)i, r, s->len, size);
	return 0;
}

/*
 * One phase: publish messages for the phase's time (after `warm` of them),
 * then the end marker, then wait for every consumer's ack. R->total = the
 * messages sent.
 */
static int run_phase(struct drun *R, unsigned pi)
{
	struct dshared *sh = R->sh;
	const struct phase *ph = &sh->ph[pi];
	struct sv2shm_producer *p = R->prod[ph->sidx][ph->kind];
	const bool rt = ph->kind == K_RT;
	const uint64_t span = rt ? R->rt_ns : R->stream_ns, cap = rt ? RT_CAP : STREAM_CAP;
	const uint64_t min_meas = rt ? RT_MIN : STREAM_MIN;
	uint64_t t_meas = 0, i = 0;
	for (;; i++) {
		if (i == ph->warm)
			t_meas = bench_now_ns();
		if (i >= cap || (i >= ph->warm + min_meas && (i % 16u) == 0 && bench_now_ns() - t_meas >= span))
			break;
		struct sv2shm_slice s;
		if (write_msg(R, p, i, ph->size, &s, rt ? &R->tacq[i] : NULL) < 0)
			return -1;
		bench_where = "publish";
		if (publish_one(R, p, &s, ph->mode, i) < 0)
			return -1;
		bench_where = "data phase";
	}
	R->total = i;
	struct sv2shm_slice s;
	if (write_msg(R, p, END_INDEX, 8, &s, rt ? &R->tacq[i] : NULL) < 0)
		return -1;
	if (publish_one(R, p, &s, MODE_FANOUT, i) < 0)
		return -1;
	/* Every consumer acknowledges the end of the phase. */
	bench_where = "waiting for the consumers' acks";
	uint64_t deadline = bench_now_ns() + 2 * WAIT_TIMEOUT_NS;
	for (;;) {
		unsigned done = 0;
		for (unsigned k = 0; k < R->n; k++)
			done += atomic_load_explicit(&sh->c[k].ack, memory_order_acquire) >= pi + 1u;
		if (done == R->n)
			break;
		if (!children_alive(R))
			return -1;
		if (bench_now_ns() > deadline)
			return errf(R->err, "phase %u: %u of %u consumers acknowledged its end within %d ms", pi, done, R->n,
				    2 * WAIT_TIMEOUT_MS);
		sleep_us(50);
	}
	bench_where = "data phase";
	return 0;
}

/* The phase's results into its cell. */
static int account_phase(struct drun *R, unsigned pi, struct cell *cl)
{
	struct dshared *sh = R->sh;
	const struct phase *ph = &sh->ph[pi];
	uint64_t total = R->total, warm = ph->warm;
	uint64_t got = 0, meas = 0, first_max = 0, first_min = UINT64_MAX, last_max = 0;
	for (unsigned k = 0; k < R->n; k++) {
		const struct cres *c = &sh->c[k];
		if (c->bad)
			return errf(R->err, "consumer %u: %llu messages wrong or out of order: %s", k,
				    (unsigned long long)c->bad, c->bad_detail);
		got += c->got;
		meas += c->meas;
		if (ph->mode == MODE_FANOUT && c->got != total)
			return errf(R->err, "phase %u (fan-out, %u B): consumer %u received %llu of %llu messages", pi,
				    ph->size, k, (unsigned long long)c->got, (unsigned long long)total);
		if (c->meas) {
			if (c->first_t > first_max)
				first_max = c->first_t;
			if (c->first_t < first_min)
				first_min = c->first_t;
			if (c->last_t > last_max)
				last_max = c->last_t;
		}
	}
	if (ph->mode == MODE_RR && got != total)
		return errf(R->err, "phase %u (round-robin, %u B): the consumers received %llu messages in all, %llu sent",
			    pi, ph->size, (unsigned long long)got, (unsigned long long)total);
	if (ph->kind == K_RT) {
		size_t from = cl->ngaps;
		for (uint64_t i = warm; i < total; i++) {
			uint64_t a = R->tacq[i], b = R->tacq[i + 1];
			if (push_u64(&cl->gaps, &cl->ngaps, &cl->capgaps, b >= a ? b - a : 0) < 0)
				return errf(R->err, "out of memory");
		}
		/* This round's median, for the paired ratio (on a copy: the pooled
		 * samples are sorted at the end). */
		size_t n = cl->ngaps - from;
		uint64_t *tmp = malloc(n * sizeof(uint64_t));
		if (!tmp)
			return errf(R->err, "out of memory");
		memcpy(tmp, cl->gaps + from, n * sizeof(uint64_t));
		struct bench_stats st;
		bench_stats_compute(tmp, n, &st);
		free(tmp);
		cl->rtmed[R->round] = st.median_ns;
		return 0;
	}
	/*
	 * Stream. Fan-out: message i is delivered when its last consumer has
	 * it; every consumer receives in order, so the first measured message
	 * (index warm) was delivered at the latest first_t, the last one at the
	 * latest last_t: (total - 1 - warm) deliveries in between, as ipc-fanout.
	 * Round-robin: the measured slices, from the first receipt of any to the
	 * last receipt of any.
	 */
	double mps;
	if (ph->mode == MODE_FANOUT)
		mps = last_max > first_max ? (double)(total - 1 - warm) * 1e9 / (double)(last_max - first_max) : NAN;
	else
		mps = last_max > first_min && meas > 1 ? (double)(meas - 1) * 1e9 / (double)(last_max - first_min) : NAN;
	cl->mps[R->round] = mps;
	cl->nmps++;
	cl->msgs += total - warm;
	return 0;
}

static void drun_teardown(struct drun *R)
{
	for (unsigned s = 0; s < NSIZES; s++)
		for (unsigned kind = 0; kind < 2; kind++) {
			if (R->prod[s][kind]) {
				int r = sv2shm_producer_destroy(R->prod[s][kind]);
				if (r < 0)
					errf(R->err, "sv2shm_producer_destroy() returned %d (%s)", r, sv2shm_strerror(r));
				R->prod[s][kind] = NULL;
			}
		}
	for (unsigned k = 0; k < MAXC; k++)
		for (unsigned j = 0; j < NSIZES * 2; j++)
			for (int e = 0; e < 2; e++)
				if (R->socks[k][j][e] >= 0) {
					close(R->socks[k][j][e]);
					R->socks[k][j][e] = -1;
				}
}

/*
 * One run: n consumers, one contender, every size and mode. Returns 0, or
 * -1 (a note says why). Results go into D.
 */
static int data_run(struct drun *R, struct data_results *D, struct bench_report *rep, int cpu_c, unsigned run_no)
{
	struct dshared *sh = R->sh;
	unsigned n = R->n;
	memset(sh, 0, sizeof(*sh));
	sh->n = n;
	sh->contender = R->contender;
	snprintf(sh->sock, sizeof(sh->sock), "%s", R->sock);
	build_phases(sh->ph);
	R->err[0] = '\0';
	R->started = 0;
	memset(R->reaped, 0, sizeof(R->reaped));
	memset(R->prod, 0, sizeof(R->prod));
	for (unsigned k = 0; k < MAXC; k++)
		for (unsigned j = 0; j < NSIZES * 2; j++)
			R->socks[k][j][0] = R->socks[k][j][1] = -1;

	/* The producers. */
	bench_where = "creating the producers";
	for (unsigned s = 0; s < NSIZES; s++)
		for (unsigned kind = 0; kind < 2; kind++) {
			snprintf(sh->names[s][kind], sizeof(sh->names[s][kind]), "bench-%d-%u-%zu-%s", (int)getpid(), run_no,
				 sizes[s], kind == K_RT ? "rt" : "stream");
			int r;
			if (R->contender == C_BROKER) {
				struct sv2shm_register_options ro;
				memset(&ro, 0, sizeof(ro));
				producer_options(&ro.producer, sizes[s], (int)kind);
				r = sv2shm_client_register(R->client, sh->names[s][kind], &ro, &R->prod[s][kind]);
				if (r < 0)
					errf(R->err, "sv2shm_client_register(%s) returned %d (%s)", sh->names[s][kind], r,
					     sv2shm_strerror(r));
			} else {
				struct sv2shm_producer_options o;
				producer_options(&o, sizes[s], (int)kind);
				r = sv2shm_producer_new(&o, &R->prod[s][kind]);
				if (r < 0)
					errf(R->err, "sv2shm_producer_new() returned %d (%s)", r, sv2shm_strerror(r));
			}
			if (r < 0) {
				R->prod[s][kind] = NULL;
				goto fail;
			}
		}
	if (R->contender == C_DIRECT) {
		for (unsigned k = 0; k < n; k++)
			for (unsigned j = 0; j < NSIZES * 2; j++)
				if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, R->socks[k][j]) != 0) {
					errf(R->err, "socketpair: %s", strerror(errno));
					goto fail;
				}
	}

	/* The consumers. */
	struct cpu_sample c0, c1;
	proc_cpu(R->broker_pid, &c0);
	uint64_t t_fork = bench_now_ns();
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	bench_where = "fork";
	for (unsigned k = 0; k < n; k++) {
		pid_t pid = fork();
		if (pid < 0) {
			errf(R->err, "fork: %s", strerror(errno));
			goto fail;
		}
		if (pid == 0) {
			child_start(parent, cpu_c, 120);
			int keep[NSIZES * 2], sk[NSIZES * 2];
			unsigned nk = 0;
			if (R->contender == C_DIRECT)
				for (unsigned j = 0; j < NSIZES * 2; j++)
					keep[nk++] = sk[j] = R->socks[k][j][1];
			close_all_but(keep, nk);
			data_consumer(sh, k, sk);
		}
		R->pid[k] = pid;
		R->started++;
	}
	if (R->contender == C_DIRECT) {
		bench_where = "sv2shm_producer_add_consumer";
		for (unsigned k = 0; k < n; k++)
			for (unsigned j = 0; j < NSIZES * 2; j++) {
				close(R->socks[k][j][1]);
				R->socks[k][j][1] = -1;
				int sock = R->socks[k][j][0];
				R->socks[k][j][0] = -1; /* the producer owns it now */
				int id = sv2shm_producer_add_consumer(R->prod[j / 2][j % 2], sock);
				if (id < 0) {
					errf(R->err, "sv2shm_producer_add_consumer() returned %d (%s)", id, sv2shm_strerror(id));
					goto fail;
				}
			}
	}
	/* Introductions: the producer answers the broker while it waits. */
	bench_where = "introductions (sv2shm_producer_process)";
	uint64_t deadline = bench_now_ns() + (uint64_t)INTRO_TIMEOUT_MS * 1000000u;
	for (;;) {
		bool all = true;
		for (unsigned s = 0; s < NSIZES && all; s++)
			for (unsigned kind = 0; kind < 2 && all; kind++)
				all = sv2shm_producer_consumers(R->prod[s][kind], NULL, 0) == (int)n;
		for (unsigned k = 0; k < n && all; k++)
			all = atomic_load_explicit(&sh->c[k].ready, memory_order_acquire) == 1;
		if (all)
			break;
		if (!children_alive(R))
			goto fail;
		if (bench_now_ns() > deadline) {
			errf(R->err, "the consumers were not all attached within %d ms", INTRO_TIMEOUT_MS);
			goto fail;
		}
		if (R->contender == C_BROKER) {
			struct pollfd pf = {.fd = sv2shm_producer_fd(R->prod[0][0]), .events = POLLIN};
			poll(&pf, 1, 2);
			for (unsigned s = 0; s < NSIZES; s++)
				for (unsigned kind = 0; kind < 2; kind++) {
					int r = sv2shm_producer_process(R->prod[s][kind]);
					if (r != 0) {
						errf(R->err, "sv2shm_producer_process() returned %d during the introductions", r);
						goto fail;
					}
				}
		} else {
			sleep_us(100);
		}
	}
	uint64_t t_intro = bench_now_ns() - t_fork;
	/* The broker finishes its part (the last replies, its log) before data
	 * flows: wait until its run time stops growing (at most 100 ms). */
	proc_cpu(R->broker_pid, &c1);
	for (int i = 0; i < 50 && R->contender == C_BROKER; i++) {
		sleep_us(2000);
		struct cpu_sample c2;
		proc_cpu(R->broker_pid, &c2);
		bool same = c2.sched_ok ? c2.sched_ns == c1.sched_ns : c2.ticks == c1.ticks;
		c1 = c2;
		if (same)
			break;
	}
	if (R->contender == C_BROKER) {
		D->intro_ns[R->ni] += t_intro;
		D->intro_runs[R->ni]++;
		D->introductions += (uint64_t)n * NSIZES * 2;
		if (c0.ok && c1.ok)
			D->intro_cpu_ticks += c1.ticks - c0.ticks;
		if (c0.sched_ok && c1.sched_ok)
			D->intro_sched_ns += c1.sched_ns - c0.sched_ns;
	} else {
		D->direct_intro_ns[R->ni] += t_intro;
		D->direct_intro_runs[R->ni]++;
	}
	for (unsigned k = 0; k < n; k++) {
		if (R->contender == C_BROKER)
			push_u64(&D->sub_samples, &D->nsub, &D->capsub, sh->c[k].sub_ns);
		else
			push_u64(&D->direct_sub_samples, &D->ndsub, &D->capdsub, sh->c[k].sub_ns);
	}

	/* The data. */
	for (unsigned p = 0; p < NPHASES; p++) {
		const struct phase *ph = &sh->ph[p];
		struct cell *cl = &D->cell[R->contender][ph->mode][R->ni][ph->sidx];
		proc_cpu(R->broker_pid, &c0);
		uint64_t w0 = bench_now_ns();
		if (run_phase(R, p) < 0) {
			cl->failed = true;
			goto fail;
		}
		uint64_t w1 = bench_now_ns();
		proc_cpu(R->broker_pid, &c1);
		if (account_phase(R, p, cl) < 0) {
			cl->failed = true;
			goto fail;
		}
		cl->data_ns += w1 - w0;
		if (c0.ok && c1.ok) {
			cl->cpu_ticks += c1.ticks - c0.ticks;
			if (R->contender == C_BROKER)
				D->data_cpu_ticks += c1.ticks - c0.ticks;
			else
				D->direct_data_cpu_ticks += c1.ticks - c0.ticks;
		}
		if (c0.sched_ok && c1.sched_ok) {
			cl->sched_ns += c1.sched_ns - c0.sched_ns;
			cl->sched_ok = true;
			if (R->contender == C_BROKER)
				D->data_sched_ns += c1.sched_ns - c0.sched_ns;
			else
				D->direct_data_sched_ns += c1.sched_ns - c0.sched_ns;
			D->sched_ok = true;
		}
		if (R->contender == C_BROKER)
			D->data_ns += w1 - w0;
	}

	/* The end: the consumers free their consumers and exit. */
	atomic_store_explicit(&sh->may_exit, 1, memory_order_release);
	bench_where = "reaping the consumers";
	for (unsigned k = 0; k < R->started; k++) {
		if (R->reaped[k])
			continue;
		int st = 0;
		if (wait_child(R->pid[k], 2 * WAIT_TIMEOUT_MS, &st) < 0) {
			errf(R->err, "consumer %u did not exit within %d ms of the last phase: killed", k, 2 * WAIT_TIMEOUT_MS);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			char why[64];
			describe_status(st, why, sizeof(why));
			errf(R->err, "consumer %u ended with %s: %s", k, why, sh->c[k].err[0] ? sh->c[k].err : "no error");
		}
		R->reaped[k] = true;
	}
	bench_where = "sv2shm_producer_destroy";
	drun_teardown(R);
	bench_where = "between runs";
	if (R->err[0]) {
		bench_report_note(rep, "%s run (%u consumers): FAILED: %s", cont_name[R->contender], n, R->err);
		return -1;
	}
	return 0;
fail:
	for (unsigned k = 0; k < R->started; k++) {
		if (R->reaped[k])
			continue;
		kill(R->pid[k], SIGKILL);
		int st;
		while (waitpid(R->pid[k], &st, 0) < 0 && errno == EINTR) {
		}
		R->reaped[k] = true;
	}
	drun_teardown(R);
	bench_report_note(rep, "%s run (%u consumers): FAILED: %s", cont_name[R->contender], n,
			  R->err[0] ? R->err : "unknown error");
	bench_where = "between runs";
	return -1;
}

/* ------------------------------------------------------------------------- */
/* Reclaim: kill a consumer that holds every slot                             */
/* ------------------------------------------------------------------------- */

enum { RC_WAITING, RC_BUSY, NRC };
static const char *const rc_name[NRC] = {"waiting", "busy"};

struct rshared {
	_Atomic uint32_t holding; /* slices the victim holds (RC_SLOTS: ready to die) */
	uint64_t sub_ns;
	char sock[108];
	char name[SV2SHM_NAME_MAX + 1];
	char err[ERR_LEN];
};

/* The victim: subscribe, take RC_SLOTS slices, hold them, wait to be killed. */
static void victim_main(struct rshared *sh)
{
	uint64_t t0 = bench_now_ns();
	struct sv2shm_client *cl = NULL;
	struct sv2shm_client_options o = {.socket_path = sh->sock, .timeout_ms = WAIT_TIMEOUT_MS};
	int r = sv2shm_client_connect(&o, &cl);
	if (r < 0) {
		errf(sh->err, "victim: sv2shm_client_connect() returned %d (%s)", r, sv2shm_strerror(r));
		_exit(1);
	}
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = SV2SHM_SPIN_NONE;
	struct sv2shm_consumer *c = NULL;
	r = sv2shm_client_subscribe(cl, sh->name, &co, INTRO_TIMEOUT_MS, &c);
	if (r < 0) {
		errf(sh->err, "victim: sv2shm_client_subscribe(%s) returned %d (%s)", sh->name, r, sv2shm_strerror(r));
		_exit(1);
	}
	sh->sub_ns = bench_now_ns() - t0;
	struct sv2shm_slice held[RC_SLOTS];
	for (unsigned i = 0; i < RC_SLOTS; i++) {
		r = sv2shm_consumer_recv(c, &held[i], WAIT_TIMEOUT_MS);
		if (r != 1) {
			errf(sh->err, "victim: slice %u: sv2shm_consumer_recv() returned %d (%s)", i, r,
			     r == 0 ? "timeout" : sv2shm_strerror(r));
			_exit(1);
		}
		if (held[i].len != RC_SIZE || bench_sum_bytes(held[i].data, held[i].len) != (uint64_t)RC_SIZE * bench_msg_byte(i)) {
			errf(sh->err, "victim: slice %u: %zu bytes or wrong bytes", i, held[i].len);
			_exit(1);
		}
	}
	atomic_store_explicit(&sh->holding, RC_SLOTS, memory_order_release);
	/* Asleep in recv, holding everything, until the SIGKILL. */
	for (;;) {
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(c, &s, 1000);
		if (r == 1) {
			errf(sh->err, "victim: got a slice it should not have (%zu bytes)", s.len);
			_exit(1);
		}
		if (r < 0) {
			errf(sh->err, "victim: sv2shm_consumer_recv() while waiting to be killed returned %d (%s)", r,
			     sv2shm_strerror(r));
			_exit(1);
		}
	}
}

/* The helper thread that kills the victim while the producer waits. */
struct killer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state; /* 0 idle, 1 go, 2 done, -1 quit */
	pid_t pid;
	int pidfd;
	unsigned delay_us;
	uint64_t t_kill, t_dead;
	int kill_err;
};

static void *killer_main(void *arg)
{
	struct killer *k = arg;
	for (;;) {
		pthread_mutex_lock(&k->mu);
		while (k->state != 1 && k->state != -1)
			pthread_cond_wait(&k->cv, &k->mu);
		int st = k->state;
		pid_t pid = k->pid;
		int pidfd = k->pidfd;
		unsigned delay = k->delay_us;
		pthread_mutex_unlock(&k->mu);
		if (st == -1)
			break;
		sleep_us(delay);
		uint64_t tk = bench_now_ns();
		int e = kill(pid, SIGKILL) == 0 ? 0 : errno;
		uint64_t td = 0;
		if (pidfd >= 0 && !e) {
			struct pollfd pf = {.fd = pidfd, .events = POLLIN};
			if (poll(&pf, 1, WAIT_TIMEOUT_MS) == 1)
				td = bench_now_ns();
		}
		pthread_mutex_lock(&k->mu);
		k->t_kill = tk;
		k->t_dead = td;
		k->kill_err = e;
		k->state = 2;
		pthread_cond_broadcast(&k->cv);
		pthread_mutex_unlock(&k->mu);
	}
	return NULL;
}

struct rc_results {
	uint64_t *total;  /* kill() to the slots free */
	uint64_t *death;  /* kill() to the pidfd readable */
	uint64_t *after;  /* pidfd readable to the slots free */
	size_t n, ndeath;
	unsigned by_hangup; /* waiting: the producer had already taken the hang-up when get_writable returned */
	uint64_t *sub;      /* the victims' subscriptions */
	size_t nsub;
	uint64_t cpu_ticks, sched_ns;
	bool sched_ok;
	bool failed;
	double seconds;
};

struct rctx {
	struct sv2shm_producer *p;
	struct rshared *sh;
	struct killer *killer;
	int cpu_c;
	uint64_t rng;
	char err[ERR_LEN];
};

/* Take removal events until id's comes (processing hang-ups), up to 5 s. */
static int await_removal(struct rctx *X, int id)
{
	uint64_t deadline = bench_now_ns() + WAIT_TIMEOUT_NS;
	for (;;) {
		struct sv2shm_producer_event ev;
		while (sv2shm_producer_next_event(X->p, &ev) == 1) {
			if (ev.id != id)
				return errf(X->err, "removal event for id %d, not the victim's (%d)", ev.id, id);
			if (ev.reason != SV2SHM_EVENT_HANGUP)
				return errf(X->err, "victim id %d removed with reason %d, not HANGUP", id, ev.reason);
			return 0;
		}
		if (bench_now_ns() > deadline)
			return errf(X->err, "the killed victim (id %d) was not removed within %d ms of "
					    "sv2shm_producer_process()",
				    id, WAIT_TIMEOUT_MS);
		struct pollfd pf = {.fd = sv2shm_producer_fd(X->p), .events = POLLIN};
		poll(&pf, 1, 2);
		bench_where = "sv2shm_producer_process (reclaim)";
		int r = sv2shm_producer_process(X->p);
		bench_where = "reclaim";
		if (r < 0)
			return errf(X->err, "sv2shm_producer_process() returned %d (%s)", r, sv2shm_strerror(r));
	}
}

/* One kill. Returns 0 with the sample in res, or -1 with X->err. */
static int reclaim_one(struct rctx *X, int how, struct rc_results *res)
{
	struct rshared *sh = X->sh;
	atomic_store_explicit(&sh->holding, 0, memory_order_relaxed);
	sh->err[0] = '\0';
	sh->sub_ns = 0;
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	bench_where = "fork (victim)";
	pid_t pid = fork();
	if (pid < 0)
		return errf(X->err, "fork: %s", strerror(errno));
	if (pid == 0) {
		child_start(parent, X->cpu_c, 60);
		close_all_but(NULL, 0);
		victim_main(sh);
	}
	int rc = -1, id = -1, pidfd = -1, st = 0;
	bool killed = false;
	/* Its introduction. */
	bench_where = "introduction (reclaim)";
	uint64_t deadline = bench_now_ns() + (uint64_t)INTRO_TIMEOUT_MS * 1000000u;
	for (;;) {
		if (sv2shm_producer_consumers(X->p, &id, 1) == 1)
			break;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char why[64];
			describe_status(st, why, sizeof(why));
			errf(X->err, "the victim ended before its introduction (%s): %s", why, sh->err[0] ? sh->err : "no error");
			pid = -1;
			goto out;
		}
		if (bench_now_ns() > deadline) {
			errf(X->err, "the victim was not introduced within %d ms", INTRO_TIMEOUT_MS);
			goto out;
		}
		struct pollfd pf = {.fd = sv2shm_producer_fd(X->p), .events = POLLIN};
		poll(&pf, 1, 2);
		int r = sv2shm_producer_process(X->p);
		if (r != 0) {
			errf(X->err, "sv2shm_producer_process() returned %d during an introduction", r);
			goto out;
		}
	}
	/* Fill the pool: every slot to the victim. */
	bench_where = "filling the pool (reclaim)";
	struct sv2shm_buffer *b = sv2shm_producer_buffer(X->p);
	for (unsigned i = 0; i < RC_SLOTS; i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, RC_SIZE);
		if (!w) {
			int e = sv2shm_buffer_last_error(b);
			errf(X->err, "slice %u for the victim: get_writable() returned NULL (%s)", i, sv2shm_strerror(e));
			goto out;
		}
		memset(w, bench_msg_byte(i), RC_SIZE);
		struct sv2shm_slice s;
		int r = sv2shm_buffer_get_data_owned(b, &s);
		if (r == 0)
			r = sv2shm_producer_publish(X->p, &s, &id, 1, 0);
		if (r != 0) {
			if (s._kind != SV2SHM_SLICE_NONE)
				sv2shm_slice_release(&s);
			errf(X->err, "slice %u for the victim: publish returned %d (%s)", i, r,
			     r < 0 ? sv2shm_strerror(r) : "not delivered");
			goto out;
		}
	}
	deadline = bench_now_ns() + WAIT_TIMEOUT_NS;
	while (atomic_load_explicit(&sh->holding, memory_order_acquire) != RC_SLOTS) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char why[64];
			describe_status(st, why, sizeof(why));
			errf(X->err, "the victim ended before holding its slices (%s): %s", why,
			     sh->err[0] ? sh->err : "no error");
			pid = -1;
			goto out;
		}
		if (bench_now_ns() > deadline) {
			errf(X->err, "the victim did not take its %u slices within %d ms", RC_SLOTS, WAIT_TIMEOUT_MS);
			goto out;
		}
		sleep_us(50);
	}
	res->sub[res->nsub++] = sh->sub_ns;
	struct sv2shm_pool_stats ps;
	sv2shm_pool_stats(sv2shm_producer_pool(X->p), &ps);
	if (ps.live != RC_SLOTS) {
		errf(X->err, "before the kill the pool has %llu live slots, want %u", (unsigned long long)ps.live, RC_SLOTS);
		goto out;
	}
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	uint64_t t_kill = 0, t_dead = 0, t_free = 0;
	if (how == RC_WAITING) {
		pthread_mutex_lock(&X->killer->mu);
		X->killer->pid = pid;
		X->killer->pidfd = pidfd;
		X->killer->delay_us = RC_DELAY_MIN_US + (unsigned)(splitmix64(&X->rng) % (RC_DELAY_MAX_US - RC_DELAY_MIN_US + 1));
		X->killer->state = 1;
		pthread_cond_broadcast(&X->killer->cv);
		pthread_mutex_unlock(&X->killer->mu);
		killed = true;
		bench_where = "sv2shm_buffer_get_writable (policy WAIT, reclaim)";
		uint8_t *w = sv2shm_buffer_get_writable(b, RC_SIZE);
		t_free = bench_now_ns();
		bench_where = "reclaim";
		/* The kill's times. */
		pthread_mutex_lock(&X->killer->mu);
		while (X->killer->state != 2)
			pthread_cond_wait(&X->killer->cv, &X->killer->mu);
		X->killer->state = 0;
		t_kill = X->killer->t_kill;
		t_dead = X->killer->t_dead;
		int ke = X->killer->kill_err;
		pthread_mutex_unlock(&X->killer->mu);
		if (ke) {
			errf(X->err, "kill(victim): %s", strerror(ke));
			goto out;
		}
		if (!w) {
			int e = sv2shm_buffer_last_error(b);
			errf(X->err, "get_writable() in WAIT returned NULL (%d, %s) after the victim was killed", e,
			     sv2shm_strerror(e));
			goto out;
		}
		/* Was the hang-up taken inside the wait? (its event is queued then) */
		struct sv2shm_producer_event ev;
		bool hung = false;
		while (sv2shm_producer_next_event(X->p, &ev) == 1) {
			if (ev.id != id) {
				errf(X->err, "removal event for id %d, not the victim's (%d)", ev.id, id);
				goto out;
			}
			if (ev.reason != SV2SHM_EVENT_HANGUP) {
				errf(X->err, "victim id %d removed with reason %d, not HANGUP", id, ev.reason);
				goto out;
			}
			hung = true;
		}
		res->by_hangup += hung;
		struct sv2shm_slice s;
		if (sv2shm_buffer_get_data_owned(b, &s) == 0)
			sv2shm_slice_release(&s);
		if (!hung && await_removal(X, id) < 0)
			goto out;
	} else {
		bench_where = "busy loop (reclaim)";
		t_kill = bench_now_ns();
		if (kill(pid, SIGKILL) != 0) {
			errf(X->err, "kill(victim): %s", strerror(errno));
			goto out;
		}
		killed = true;
		uint64_t end = t_kill + WAIT_TIMEOUT_NS;
		struct pollfd pf = {.fd = pidfd, .events = POLLIN};
		for (;;) {
			sv2shm_pool_stats(sv2shm_producer_pool(X->p), &ps);
			uint64_t now = bench_now_ns();
			if (ps.live == 0) {
				t_free = now;
				break;
			}
			if (!t_dead && pidfd >= 0 && poll(&pf, 1, 0) == 1)
				t_dead = bench_now_ns();
			if (now > end) {
				char map[SV2SHM_MAX_SLOTS + 1] = "";
				sv2shm_pool_slot_map(sv2shm_producer_pool(X->p), map, sizeof(map));
				errf(X->err, "busy producer: %llu slots still live %d ms after the kill (slot map %s, victim %s): "
					     "the broker did not release the dead consumer's slots",
				     (unsigned long long)ps.live, WAIT_TIMEOUT_MS, map, t_dead ? "dead" : "not dead yet");
				goto out;
			}
			for (int j = 0; j < 32; j++) /* the producer's own work */
				bench_cpu_relax();
		}
		bench_where = "reclaim";
		if (!t_dead && pidfd >= 0 && poll(&pf, 1, WAIT_TIMEOUT_MS) == 1)
			t_dead = bench_now_ns(); /* freed before we saw it die: count it anyway */
		if (await_removal(X, id) < 0)
			goto out;
	}
	res->total[res->n++] = t_free - t_kill;
	if (t_dead) {
		res->death[res->ndeath] = t_dead - t_kill;
		res->after[res->ndeath] = t_free > t_dead ? t_free - t_dead : 0;
		res->ndeath++;
	}
	rc = 0;
out:
	if (pidfd >= 0)
		close(pidfd);
	if (pid > 0) {
		if (!killed)
			kill(pid, SIGKILL);
		if (wait_child(pid, WAIT_TIMEOUT_MS, &st) < 0 && rc == 0)
			rc = errf(X->err, "the killed victim was not reaped within %d ms", WAIT_TIMEOUT_MS);
	}
	if (rc < 0) {
		/* Leave no victim behind on the producer. */
		int ids[MAXC];
		int nids = sv2shm_producer_consumers(X->p, ids, MAXC);
		for (int i = 0; i < nids && i < (int)MAXC; i++)
			sv2shm_producer_remove_consumer(X->p, ids[i]);
		struct sv2shm_producer_event ev;
		while (sv2shm_producer_next_event(X->p, &ev) == 1) {
		}
	}
	bench_where = "reclaim";
	return rc;
}

/* Every kill of both rows, interleaved kill by kill. Returns 0, or -1 (a
 * note says why). */
static int run_reclaim(struct sv2shm_client *cl, const char *sock, pid_t broker_pid, int cpu_c, unsigned kills,
		       struct rc_results res[NRC], struct bench_report *rep, char *prod_notify, size_t pn)
{
	struct rctx X;
	memset(&X, 0, sizeof(X));
	X.cpu_c = cpu_c;
	X.rng = bench_now_ns() ^ ((uint64_t)getpid() << 32);
	for (int h = 0; h < NRC; h++) {
		memset(&res[h], 0, sizeof(res[h]));
		res[h].total = calloc(kills, sizeof(uint64_t));
		res[h].death = calloc(kills, sizeof(uint64_t));
		res[h].after = calloc(kills, sizeof(uint64_t));
		res[h].sub = calloc(kills, sizeof(uint64_t));
		if (!res[h].total || !res[h].death || !res[h].after || !res[h].sub) {
			bench_report_note(rep, "reclaim: out of memory");
			return -1;
		}
	}
	X.sh = mmap(NULL, sizeof(struct rshared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (X.sh == MAP_FAILED) {
		bench_report_note(rep, "reclaim: mmap: %s", strerror(errno));
		return -1;
	}
	memset(X.sh, 0, sizeof(*X.sh));
	snprintf(X.sh->sock, sizeof(X.sh->sock), "%s", sock);
	snprintf(X.sh->name, sizeof(X.sh->name), "bench-%d-reclaim", (int)getpid());
	struct sv2shm_register_options ro;
	memset(&ro, 0, sizeof(ro));
	ro.producer.pool.slots = RC_SLOTS;
	ro.producer.pool.capacity = (uint64_t)RC_SLOTS * 4096u;
	ro.producer.pool.policy = SV2SHM_POOL_WAIT;
	ro.producer.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	ro.producer.max_held = RC_SLOTS; /* the victim may hold every slot */
	ro.producer.on_limit = SV2SHM_LIMIT_SKIP;
	bench_where = "sv2shm_client_register (reclaim)";
	int r = sv2shm_client_register(cl, X.sh->name, &ro, &X.p);
	if (r < 0) {
		bench_report_note(rep, "reclaim: sv2shm_client_register(%s) returned %d (%s)", X.sh->name, r,
				  sv2shm_strerror(r));
		munmap(X.sh, sizeof(*X.sh));
		return -1;
	}
	snprintf(prod_notify, pn, "%s", sv2shm_producer_notify_name(X.p));
	struct killer K;
	memset(&K, 0, sizeof(K));
	pthread_mutex_init(&K.mu, NULL);
	pthread_cond_init(&K.cv, NULL);
	K.pidfd = -1;
	X.killer = &K;
	pthread_t th;
	bool th_ok = pthread_create(&th, NULL, killer_main, &K) == 0;
	int rc = 0;
	if (!th_ok) {
		bench_report_note(rep, "reclaim: pthread_create failed: no waiting row");
		res[RC_WAITING].failed = true;
		rc = -1;
	}
	uint64_t t0 = bench_now_ns();
	for (unsigned i = 0; i < kills; i++) {
		if (i % 10 == 0)
			bench_progress("reclaim: kill %u/%u (waiting and busy)\n", i + 1, kills);
		for (int h = 0; h < NRC; h++) {
			int how = (i & 1) ? NRC - 1 - h : h; /* alternate which goes first */
			if (res[how].failed)
				continue;
			struct cpu_sample c0, c1;
			uint64_t w0 = bench_now_ns();
			proc_cpu(broker_pid, &c0);
			X.err[0] = '\0';
			if (reclaim_one(&X, how, &res[how]) < 0) {
				bench_report_note(rep, "reclaim (producer %s), kill %u: FAILED: %s", rc_name[how], i + 1, X.err);
				res[how].failed = true;
				rc = -1;
				continue;
			}
			proc_cpu(broker_pid, &c1);
			res[how].seconds += (double)(bench_now_ns() - w0) / 1e9;
			if (c0.ok && c1.ok)
				res[how].cpu_ticks += c1.ticks - c0.ticks;
			if (c0.sched_ok && c1.sched_ok) {
				res[how].sched_ns += c1.sched_ns - c0.sched_ns;
				res[how].sched_ok = true;
			}
		}
	}
	bench_progress("reclaim: %u kills per row in %.1f s\n", kills, (double)(bench_now_ns() - t0) / 1e9);
	if (th_ok) {
		pthread_mutex_lock(&K.mu);
		K.state = -1;
		pthread_cond_broadcast(&K.cv);
		pthread_mutex_unlock(&K.mu);
		pthread_join(th, NULL);
	}
	pthread_mutex_destroy(&K.mu);
	pthread_cond_destroy(&K.cv);
	struct sv2shm_pool_stats ps;
	sv2shm_pool_stats(sv2shm_producer_pool(X.p), &ps);
	if (ps.live != 0) {
		bench_report_note(rep, "reclaim: FAILED: %llu slots still live at the end", (unsigned long long)ps.live);
		rc = -1;
	}
	bench_where = "sv2shm_producer_destroy (reclaim)";
	r = sv2shm_producer_destroy(X.p);
	if (r < 0) {
		bench_report_note(rep, "reclaim: sv2shm_producer_destroy() returned %d (%s)", r, sv2shm_strerror(r));
		rc = -1;
	}
	munmap(X.sh, sizeof(*X.sh));
	bench_where = "between runs";
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Report                                                                     */
/* ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median_of(double *v, unsigned n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

struct cell_sum {
	bool ok;
	double mps, rt_med, rt_p99, cpu_ms, sched_ms, data_ms;
	size_t samples;
	unsigned rounds;
};

static void summarise(struct cell *c, struct cell_sum *o)
{
	memset(o, 0, sizeof(*o));
	o->ok = !c->failed && c->nmps > 0 && c->ngaps > 0;
	struct bench_stats st;
	bench_stats_compute(c->gaps, c->ngaps, &st);
	o->rt_med = c->ngaps ? st.median_ns : NAN;
	o->rt_p99 = c->ngaps ? st.p99_ns : NAN;
	o->samples = c->ngaps;
	o->rounds = c->nmps;
	double v[MAX_ROUNDS];
	unsigned n = 0;
	for (unsigned r = 0; r < MAX_ROUNDS; r++)
		if (!isnan(c->mps[r]))
			v[n++] = c->mps[r];
	o->mps = median_of(v, n);
	o->cpu_ms = ticks_ms(c->cpu_ticks);
	o->sched_ms = c->sched_ok ? (double)c->sched_ns / 1e6 : NAN;
	o->data_ms = (double)c->data_ns / 1e6;
}

/* The median over rounds of a[r] / b[r], where both ran. */
static double paired_ratio(const double *a, const double *b)
{
	double v[MAX_ROUNDS];
	unsigned n = 0;
	for (unsigned r = 0; r < MAX_ROUNDS; r++)
		if (!isnan(a[r]) && !isnan(b[r]) && b[r] > 0)
			v[n++] = a[r] / b[r];
	return median_of(v, n);
}

static void report_data(struct bench_report *rep, struct data_results *D)
{
	char szs[32];
	bench_report_text(rep, "%-11s %4s %7s  %13s %13s %-14s  %18s %18s %-14s  %8s %8s", "mode", "cons", "size",
			  "broker msgs/s", "direct msgs/s", "ratio (paired)", "broker RT us (p99)", "direct RT us (p99)",
			  "ratio (paired)", "brk ms", "brk us");
	for (unsigned m = 0; m < NMODES; m++) {
		for (unsigned ni = 0; ni < NNS; ni++)
			for (unsigned si = 0; si < NSIZES; si++) {
				struct cell *cb = &D->cell[C_BROKER][m][ni][si], *cd = &D->cell[C_DIRECT][m][ni][si];
				struct cell_sum b, d;
				summarise(cb, &b);
				summarise(cd, &d);
				bench_fmt_size(sizes[si], szs, sizeof(szs));
				bool both = b.ok && d.ok;
				double mr = both ? b.mps / d.mps : NAN, rr = both ? b.rt_med / d.rt_med : NAN;
				double mrp = both ? paired_ratio(cb->mps, cd->mps) : NAN;
				double rrp = both ? paired_ratio(cb->rtmed, cd->rtmed) : NAN;
				for (int c = 0; c < NCONT; c++) {
					const struct cell_sum *x = c == C_BROKER ? &b : &d;
					if (!x->ok)
						continue;
					struct bench_row *row = bench_report_add_fields_row(rep, mode_bench[c][m]);
					if (!row)
						continue;
					bench_row_field(row, "consumers", ncons_list[ni], true);
					bench_row_field(row, "size", (double)sizes[si], true);
					bench_row_field(row, "msgs_per_s", x->mps, true);
					bench_row_field(row, "round_trip_ns", x->rt_med, true);
					bench_row_field(row, "broker_cpu_ms", x->cpu_ms, false);
					bench_row_field(row, "broker_sched_us", x->sched_ms * 1e3, false);
					bench_row_field(row, "round_trip_p99_ns", x->rt_p99, true);
					bench_row_field(row, "data_ms", x->data_ms, false);
					bench_row_field(row, "rounds", x->rounds, true);
					bench_row_field(row, "rt_samples", (double)x->samples, true);
					if (c == C_BROKER) {
						/* report.c prints fields with one decimal: ratios in percent */
						bench_row_field(row, "direct_msgs_per_s", d.ok ? d.mps : NAN, true);
						bench_row_field(row, "direct_round_trip_ns", d.ok ? d.rt_med : NAN, true);
						bench_row_field(row, "msgs_ratio_pct", 100.0 * mr, false);
						bench_row_field(row, "msgs_ratio_paired_pct", 100.0 * mrp, false);
						bench_row_field(row, "round_trip_ratio_pct", 100.0 * rr, false);
						bench_row_field(row, "round_trip_ratio_paired_pct", 100.0 * rrp, false);
					}
				}
				char bm[32] = "-", dm[32] = "-", mrs[32] = "-", brt[32] = "-", drt[32] = "-", rrs[32] = "-",
				     cpu[32] = "-", sch[32] = "-";
				if (b.ok) {
					snprintf(bm, sizeof(bm), "%.0f", b.mps);
					snprintf(brt, sizeof(brt), "%.2f (%.1f)", b.rt_med / 1e3, b.rt_p99 / 1e3);
					snprintf(cpu, sizeof(cpu), "%.1f", b.cpu_ms);
					if (!isnan(b.sched_ms))
						snprintf(sch, sizeof(sch), "%.0f", b.sched_ms * 1e3);
				}
				if (d.ok) {
					snprintf(dm, sizeof(dm), "%.0f", d.mps);
					snprintf(drt, sizeof(drt), "%.2f (%.1f)", d.rt_med / 1e3, d.rt_p99 / 1e3);
				}
				if (both) {
					snprintf(mrs, sizeof(mrs), "%.2fx (%.2fx)", mr, mrp);
					snprintf(rrs, sizeof(rrs), "%.2fx (%.2fx)", rr, rrp);
				}
				bench_report_text(rep, "%-11s %4u %7s  %13s %13s %-14s  %18s %18s %-14s  %8s %8s", mode_text[m],
						  ncons_list[ni], szs, bm, dm, mrs, brt, drt, rrs, cpu, sch);
			}
		if (m + 1 < NMODES)
			bench_report_text(rep, "%s", "");
	}
}

static void report_reclaim(struct bench_report *rep, struct rc_results res[NRC], unsigned kills)
{
	bench_report_text(rep, "%s", "");
	bench_report_text(rep, "reclaim: kill() of a consumer holding all %u slots to the slots free (us)", RC_SLOTS);
	bench_report_text(rep, "%-9s %6s %9s %9s %9s   %-30s %-22s %9s", "producer", "kills", "p50", "p99", "max",
			  "kill->process gone p50 (p99)", "gone->free p50 (p99)", "broker ms");
	for (int h = 0; h < NRC; h++) {
		struct rc_results *r = &res[h];
		struct bench_stats t, dd, af;
		bench_stats_compute(r->total, r->n, &t);
		bench_stats_compute(r->death, r->ndeath, &dd);
		bench_stats_compute(r->after, r->ndeath, &af);
		bool ok = r->n > 0 && !r->failed;
		struct bench_row *row = bench_report_add_fields_row(rep, "reclaim");
		if (row) {
			bench_row_field(row, "producer", NAN, false); /* a string: filled in by print_report() */
			bench_row_field(row, "samples", (double)r->n, true);
			bench_row_field(row, "p50_us", ok ? t.median_ns / 1e3 : NAN, false);
			bench_row_field(row, "p99_us", ok ? t.p99_ns / 1e3 : NAN, false);
			bench_row_field(row, "max_us", ok ? t.max_ns / 1e3 : NAN, false);
			bench_row_field(row, "death_p50_us", r->ndeath ? dd.median_ns / 1e3 : NAN, false);
			bench_row_field(row, "death_p99_us", r->ndeath ? dd.p99_ns / 1e3 : NAN, false);
			bench_row_field(row, "after_death_p50_us", r->ndeath ? af.median_ns / 1e3 : NAN, false);
			bench_row_field(row, "after_death_p99_us", r->ndeath ? af.p99_ns / 1e3 : NAN, false);
			bench_row_field(row, "slots_held", RC_SLOTS, true);
			bench_row_field(row, "woken_with_hangup_taken", h == RC_WAITING ? (double)r->by_hangup : NAN, true);
			bench_row_field(row, "broker_cpu_ms", ticks_ms(r->cpu_ticks), false);
			bench_row_field(row, "broker_sched_us", r->sched_ok ? (double)r->sched_ns / 1e3 : NAN, false);
		}
		char a[40] = "-", b[40] = "-";
		if (r->ndeath) {
			snprintf(a, sizeof(a), "%.1f (%.1f)", dd.median_ns / 1e3, dd.p99_ns / 1e3);
			snprintf(b, sizeof(b), "%.1f (%.1f)", af.median_ns / 1e3, af.p99_ns / 1e3);
		}
		if (ok)
			bench_report_text(rep, "%-9s %6zu %9.1f %9.1f %9.1f   %-30s %-22s %9.1f", rc_name[h], r->n,
					  t.median_ns / 1e3, t.p99_ns / 1e3, t.max_ns / 1e3, a, b, ticks_ms(r->cpu_ticks));
		else
			bench_report_text(rep, "%-9s %6zu %9s %9s %9s   FAILED", rc_name[h], r->n, "-", "-", "-");
		char name[96];
		snprintf(name, sizeof(name), "reclaim p99 under 10 ms, producer %s", rc_name[h]);
		struct bench_target *tg =
			bench_report_add_target(rep, name, ok ? t.p99_ns / 1e6 : NAN, RC_LIMIT_US / 1000.0, false, "ms");
		if (tg)
			snprintf(tg->note, sizeof(tg->note), "%zu kills (want %u); max %.2f ms", r->n, kills,
				 ok ? t.max_ns / 1e6 : NAN);
	}
}

/*
 * Print the report. The human text is the texts (the tables above), the
 * targets and the notes: the fields rows are left out of it (report.c would
 * print each as a table of its own). JSON: bench_report_print()'s, with the
 * reclaim rows' "producer": null replaced by the row's string (report.c's
 * fields are numbers only), in row order.
 */
static int redirect(int fd, int to)
{
	int saved = dup(fd);
	if (saved < 0 || dup2(to, fd) < 0) {
		if (saved >= 0)
			close(saved);
		return -1;
	}
	return saved;
}

static void restore(int fd, int saved)
{
	if (saved >= 0) {
		dup2(saved, fd);
		close(saved);
	}
}

static int print_report(struct bench_report *rep, bool json, const char *const *producer, size_t nproducer)
{
	size_t nrows = rep->nrows;
	if (!json) {
		rep->nrows = 0;
		int r = bench_report_print(rep, false);
		rep->nrows = nrows;
		return r;
	}
	int mfd = memfd_create("sv2shm-bench-broker-json", MFD_CLOEXEC);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (mfd < 0 || null < 0) {
		if (mfd >= 0)
			close(mfd);
		if (null >= 0)
			close(null);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	/* The human text to stderr (its JSON, rowless, into the memfd: dropped). */
	int s1 = redirect(1, mfd);
	rep->nrows = 0;
	bench_report_print(rep, true);
	rep->nrows = nrows;
	fflush(stdout);
	fflush(stderr);
	/* The JSON with the rows (its human text, with a table per row: dropped). */
	int r = ftruncate(mfd, 0);
	lseek(mfd, 0, SEEK_SET);
	int s2 = redirect(2, null);
	if (r == 0)
		r = bench_report_print(rep, true);
	fflush(stdout);
	fflush(stderr);
	restore(2, s2);
	restore(1, s1);
	close(null);
	off_t len = lseek(mfd, 0, SEEK_END);
	char *buf = len > 0 ? malloc((size_t)len + 1) : NULL;
	if (r < 0 || !buf || pread(mfd, buf, (size_t)len, 0) != len) {
		free(buf);
		close(mfd);
		return -1;
	}
	close(mfd);
	buf[len] = '\0';
	static const char key[] = "\"producer\": null";
	const char *p = buf;
	size_t k = 0;
	for (const char *q; (q = strstr(p, key)) != NULL; p = q + sizeof(key) - 1) {
		fwrite(p, 1, (size_t)(q - p), stdout);
		fprintf(stdout, "\"producer\": \"%s\"", k < nproducer ? producer[k] : "?");
		k++;
	}
	fputs(p, stdout);
	free(buf);
	if (fflush(stdout) != 0 || ferror(stdout))
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Main                                                                       */
/* ------------------------------------------------------------------------- */

struct broker_cfg {
	bool data, reclaim;
	unsigned rounds; /* 0: default */
	unsigned kills;  /* 0: default */
};

static int broker_opt(int argc, char **argv, int i, void *ctx)
{
	struct broker_cfg *c = ctx;
	const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--rounds") == 0) {
		if (bench_parse_uint("broker", a, v, 1, MAX_ROUNDS, &x) < 0)
			return -1;
		c->rounds = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--kills") == 0) {
		if (bench_parse_uint("broker", a, v, 1, 10000, &x) < 0)
			return -1;
		c->kills = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--bench") == 0) {
		if (!v) {
			fprintf(stderr, "sv2shm-bench broker: --bench needs a value\n");
			return -1;
		}
		c->data = c->reclaim = false;
		char buf[64];
		snprintf(buf, sizeof(buf), "%s", v);
		for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (strcmp(t, "data") == 0)
				c->data = true;
			else if (strcmp(t, "reclaim") == 0)
				c->reclaim = true;
			else {
				fprintf(stderr, "sv2shm-bench broker: --bench: unknown name '%s' (data, reclaim)\n", t);
				return -1;
			}
		}
		return 2;
	}
	return 0;
}

static void broker_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench broker [--json] [--quick] [--bench data,reclaim] [--rounds N] [--kills N]\n\n"
		"Pools opened through the broker. Starts a private sv2shmd ($SV2SHMD, else ../daemon/sv2shmd next to\n"
		"this program's directory) on a socket in a temporary directory, and stops it at the end.\n\n"
		"  data     1, 4 and 16 consumer processes subscribed through the broker, sizes 64 B..64 KiB:\n"
		"           fan-out (sv2shm_producer_publish_all) and round-robin (sv2shm_producer_publish_next),\n"
		"           msgs/s (64 in flight) and round trip (1 slot: write, consumer(s) read every byte and\n"
		"           release, producer's get_writable() returns), against the same through the direct\n"
		"           socketpair channel (sv2shm_producer_add_consumer), interleaved; the broker's CPU time\n"
		"           (/proc/PID/stat) while data flows\n"
		"  reclaim  kill() of a consumer holding every slot to the slots free, with the producer blocked in\n"
		"           WAIT and with the producer busy in its own loop (only the broker frees them then)\n\n"
		"  --bench LIST  data, reclaim or both (default both)\n"
		"  --rounds N    interleaved rounds of the data runs (default %u; --quick: %u)\n"
		"  --kills N     kills per reclaim row (default %u; --quick: %u)\n"
		"  --quick       shorter phases (%u / %u ms instead of %u / %u), one round, %u kills (about 10 s)\n"
		"  --json        exactly one JSON object on stdout; the human table goes to stderr\n"
		"Exit status: 0 when every run completed (targets may be missed), 1 when a run failed, 2 usage.\n",
		ROUNDS, QUICK_ROUNDS, RC_KILLS, RC_QUICK_KILLS, QUICK_STREAM_MS, QUICK_RT_MS, STREAM_MS, RT_MS,
		RC_QUICK_KILLS);
}

int bench_broker_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct broker_cfg cfg = {.data = true, .reclaim = true};
	if (bench_parse_opts_ex(argc, argv, &opts, broker_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		broker_usage(stdout);
		return 0;
	}
	unsigned rounds = cfg.rounds ? cfg.rounds : opts.quick ? QUICK_ROUNDS : ROUNDS;
	unsigned kills = cfg.kills ? cfg.kills : opts.quick ? RC_QUICK_KILLS : RC_KILLS;
	const unsigned R_stream_ms = opts.quick ? QUICK_STREAM_MS : STREAM_MS, R_rt_ms = opts.quick ? QUICK_RT_MS : RT_MS;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (bench_hard_alarm("broker", HARD_TIMEOUT_S) < 0)
		return 1;

	struct bench_report rep;
	bench_report_init(&rep, "broker");
	bool failed = false;
	char err[ERR_LEN] = "";

	/* CPUs: the producer on the first, consumers on the second; the
	 * daemon may use all of them. */
	cpu_set_t all;
	int cpu_p = -1, cpu_c = -1;
	if (sched_getaffinity(0, sizeof(all), &all) != 0) {
		CPU_ZERO(&all);
		bench_report_note(&rep, "sched_getaffinity: %s: not pinning", strerror(errno));
	} else {
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &all))
				continue;
			if (cpu_p < 0)
				cpu_p = cpu;
			else if (cpu_c < 0)
				cpu_c = cpu;
		}
		if (cpu_c < 0) {
			bench_report_note(&rep, "only one CPU available: producer and consumers are not pinned");
			cpu_p = -1;
		}
	}

	struct daemon dmn;
	memset(&dmn, 0, sizeof(dmn));
	dmn.pid = -1;
	struct sv2shm_client *client = NULL;
	if (find_daemon(&dmn, err) < 0 || daemon_start(&dmn, &all, &client, err) < 0) {
		fprintf(stderr, "sv2shm-bench broker: %s\n", err);
		daemon_stop(&dmn, err);
		bench_report_free(&rep);
		return 1;
	}
	const pid_t broker_pid = dmn.pid;
	if (pin_self(cpu_p) < 0) {
		bench_report_note(&rep, "pinning the producer to CPU %d failed: not pinning", cpu_p);
		cpu_p = cpu_c = -1;
	}
	bench_report_note(&rep, "sv2shmd %s (%s), pid %d, event loop \"%s\", socket in a private temporary directory; "
				"not pinned. Producer (this process) pinned to CPU %d, every consumer process to CPU %d",
			  dmn.version, dmn.bin, (int)dmn.pid, dmn.event_loop, cpu_p, cpu_c);

	struct bench_load load;
	bench_load_start(&load);
	uint64_t t_start = bench_now_ns();

	/* Data runs. */
	struct data_results *D = calloc(1, sizeof(*D));
	if (!D) {
		fprintf(stderr, "sv2shm-bench broker: out of memory\n");
		return 1;
	}
	for (int c = 0; c < NCONT; c++)
		for (int m = 0; m < NMODES; m++)
			for (unsigned ni = 0; ni < NNS; ni++)
				for (unsigned si = 0; si < NSIZES; si++)
					for (unsigned r = 0; r < MAX_ROUNDS; r++)
						D->cell[c][m][ni][si].mps[r] = D->cell[c][m][ni][si].rtmed[r] = NAN;
	if (cfg.data) {
		struct drun R;
		memset(&R, 0, sizeof(R));
		R.client = client;
		R.broker_pid = dmn.pid;
		R.sock = dmn.sock;
		R.stream_ns = (uint64_t)R_stream_ms * 1000000u;
		R.rt_ns = (uint64_t)R_rt_ms * 1000000u;
		R.sh = mmap(NULL, sizeof(struct dshared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		R.tacq = calloc(RT_CAP + 2, sizeof(uint64_t));
		if (R.sh == MAP_FAILED || !R.tacq) {
			fprintf(stderr, "sv2shm-bench broker: out of memory\n");
			return 1;
		}
		unsigned run_no = 0;
		bool bad[NCONT][NNS];
		memset(bad, 0, sizeof(bad));
		for (unsigned r = 0; r < rounds; r++) {
			for (unsigned ni = 0; ni < NNS; ni++) {
				for (unsigned c0 = 0; c0 < NCONT; c0++) {
					int c = (int)((c0 + r + ni) % NCONT); /* alternate which contender goes first */
					if (bad[c][ni])
						continue;
					R.n = ncons_list[ni];
					R.ni = ni;
					R.round = r;
					R.contender = c;
					uint64_t w0 = bench_now_ns();
					bench_progress("round %u/%u: %2u consumers, %-6s ...", r + 1, rounds, R.n, cont_name[c]);
					int rr = data_run(&R, D, &rep, cpu_c, run_no++);
					D->runs++;
					if (rr < 0) {
						D->failed_runs++;
						bad[c][ni] = true;
						failed = true;
						bench_progress(" FAILED: %s\n", R.err);
					} else {
						bench_progress(" %.2f s\n", (double)(bench_now_ns() - w0) / 1e9);
					}
				}
			}
		}
		munmap(R.sh, sizeof(struct dshared));
		free(R.tacq);
	}

	/* Reclaim. */
	struct rc_results rc[NRC];
	memset(rc, 0, sizeof(rc));
	char rc_notify[64] = "";
	if (cfg.reclaim && run_reclaim(client, dmn.sock, dmn.pid, cpu_c, kills, rc, &rep, rc_notify, sizeof(rc_notify)) < 0)
		failed = true;

	/* The broker's own view at the end, then stop it. */
	struct sv2shm_status *st = NULL;
	if (sv2shm_client_status(client, &st) == 0) {
		bench_report_note(&rep, "broker at the end: up %.1f s, %u clients, %u pools, %llu requests refused",
				  (double)st->uptime_ms / 1e3, st->clients, st->npools, (unsigned long long)st->refused);
		if (st->npools)
			failed = true, bench_report_note(&rep, "FAILED: %u pools still registered at the end", st->npools);
		sv2shm_status_free(st);
	}
	int cr = sv2shm_client_close(client);
	if (cr < 0) {
		bench_report_note(&rep, "sv2shm_client_close() returned %d (%s)", cr, sv2shm_strerror(cr));
		failed = true;
	}
	err[0] = '\0';
	if (daemon_stop(&dmn, err) < 0) {
		bench_report_note(&rep, "FAILED: %s", err);
		failed = true;
	}
	alarm(0);
	bench_progress("total %.1f s\n\n", (double)(bench_now_ns() - t_start) / 1e9);
	bench_load_note(&rep, &load);

	/* Tables, rows, targets, notes. */
	if (cfg.data)
		report_data(&rep, D);
	if (cfg.reclaim)
		report_reclaim(&rep, rc, kills);
	if (cfg.data) {
		double data_ms = ticks_ms(D->data_cpu_ticks);
		struct bench_target *tg = bench_report_add_target(
			&rep, "broker CPU while data flows, all broker runs, at most one clock tick", data_ms,
			ticks_ms(1), false, "ms");
		if (tg)
			snprintf(tg->note, sizeof(tg->note), "over %.1f s of data flow; schedstat: %.3f ms", (double)D->data_ns / 1e9,
				 D->sched_ok ? (double)D->data_sched_ns / 1e6 : NAN);
		bench_report_note(&rep, "broker_cpu_ms = the broker's utime + stime (/proc/%d/stat, %.0f ms clock ticks) read before "
					"and after every data phase (after every introduction is done), summed over the row's "
					"phases (stream and round trip) and rounds; broker_sched_us the same from "
					"/proc/PID/schedstat (ns). The broker is out of the data path: both should be 0. "
					"All broker runs: %.1f ms (schedstat %.3f ms) in %.1f s of data flow; during the direct "
					"runs (broker idle) %.1f ms",
				  (int)broker_pid, ticks_ms(1), data_ms, D->sched_ok ? (double)D->data_sched_ns / 1e6 : NAN,
				  (double)D->data_ns / 1e9, ticks_ms(D->direct_data_cpu_ticks));
		struct bench_stats ss, ds;
		bench_stats_compute(D->sub_samples, D->nsub, &ss);
		bench_stats_compute(D->direct_sub_samples, D->ndsub, &ds);
		char per[240] = "";
		size_t o = 0;
		for (unsigned ni = 0; ni < NNS && o < sizeof(per); ni++)
			if (D->intro_runs[ni] && D->direct_intro_runs[ni])
				o += (size_t)snprintf(per + o, sizeof(per) - o, "%s%u consumers %.1f ms (direct %.1f ms)",
						      o ? ", " : "", ncons_list[ni],
						      (double)D->intro_ns[ni] / D->intro_runs[ni] / 1e6,
						      (double)D->direct_intro_ns[ni] / D->direct_intro_runs[ni] / 1e6);
		if (D->nsub)
			bench_report_note(&rep, "introductions (%u pools per run): fork to every consumer attached to every pool, "
						"mean per run: %s; one consumer's connect + %u subscriptions %.2f ms median "
						"(max %.2f; direct: %u sv2shm_consumer_new() %.2f ms), both with up to 16 "
						"consumers starting at once on one CPU; the broker used %.1f ms CPU (schedstat %.1f "
						"ms) for %llu introductions",
					  (unsigned)(NSIZES * 2u), per, (unsigned)(NSIZES * 2u), ss.median_ns / 1e6,
					  ss.max_ns / 1e6, (unsigned)(NSIZES * 2u), ds.median_ns / 1e6,
					  ticks_ms(D->intro_cpu_ticks), (double)D->intro_sched_ns / 1e6,
					  (unsigned long long)D->introductions);
		bench_report_note(&rep, "data: %u runs (%u failed) in %u interleaved rounds (broker and direct alternate which "
					"goes first); per run one set of consumer processes (all on one CPU) and per size two "
					"pools (stream: %u slots, room for 2 x %u messages; round trip: 1 slot), policy WAIT, "
					"max_held = slots, on_limit REFUSE (publish retried); both sides block (consumer "
					"spin_us and producer wait_spin_us SV2SHM_SPIN_NONE, as ipc's sv2shm-blocking); a "
					"phase measures %u ms (stream) or %u ms (round trip) after %u / %u warm-up messages",
				  D->runs, D->failed_runs, rounds, STREAM_SLOTS, STREAM_SLOTS, R_stream_ms, R_rt_ms, STREAM_WARM, RT_WARM);
		bench_report_note(&rep, "msgs_per_s: fan-out = messages that reached every consumer per second, round-robin = "
					"slices delivered per second (consumers' receipt times; median of the rounds); "
					"round_trip_ns = median gap between consecutive get_writable() returns on the 1-slot "
					"pool (write, publish, every addressed consumer reads every byte and releases), as "
					"ipc-roundtrip, pooled over the rounds; ratio = broker / direct (msgs: > 1 broker faster; "
					"round trip: < 1 broker faster), (paired) = median over rounds of the round's ratio; "
					"*_ratio_pct and *_ratio_paired_pct in the JSON are the same x 100");
	}
	if (cfg.reclaim) {
		struct bench_stats ss;
		size_t nsub = rc[0].nsub + rc[1].nsub;
		uint64_t *subs = calloc(nsub + 1, sizeof(uint64_t));
		if (subs) {
			memcpy(subs, rc[0].sub, rc[0].nsub * sizeof(uint64_t));
			memcpy(subs + rc[0].nsub, rc[1].sub, rc[1].nsub * sizeof(uint64_t));
			bench_stats_compute(subs, nsub, &ss);
			free(subs);
		} else {
			memset(&ss, 0, sizeof(ss));
		}
		bench_report_note(&rep, "reclaim: pool of %u slots registered with the broker (policy WAIT, max_held %u, producer "
					"notify \"%s\"); per kill a fresh victim process subscribes (connect + subscribe: %.2f ms "
					"median), receives %u slices of %u B and holds them all, asleep in recv; waiting and busy "
					"kills interleaved. waiting: a helper thread kills it %u..%u us after the producer "
					"blocked in get_writable(), time to get_writable() returning (%u of %zu returned with "
					"the hang-up already taken by the producer's own wait, the rest woken by the broker's "
					"release records); busy: the producer kills it, then spins on sv2shm_pool_stats().live "
					"without sv2shm_producer_process(): only the broker frees the slots. A victim pidfd "
					"splits kill() to the process gone (kernel) and gone to free",
				  RC_SLOTS, RC_SLOTS, rc_notify, ss.median_ns / 1e6, RC_SLOTS, RC_SIZE, RC_DELAY_MIN_US,
				  RC_DELAY_MAX_US, rc[RC_WAITING].by_hangup, rc[RC_WAITING].n);
	}

	const char *prod_names[NRC] = {rc_name[0], rc_name[1]};
	int pr = print_report(&rep, opts.json, prod_names, cfg.reclaim ? NRC : 0);
	bench_report_free(&rep);
	for (int h = 0; h < NRC; h++) {
		free(rc[h].total);
		free(rc[h].death);
		free(rc[h].after);
		free(rc[h].sub);
	}
	for (int c = 0; c < NCONT; c++)
		for (int m = 0; m < NMODES; m++)
			for (unsigned ni = 0; ni < NNS; ni++)
				for (unsigned si = 0; si < NSIZES; si++)
					free(D->cell[c][m][ni][si].gaps);
	free(D->sub_samples);
	free(D->direct_sub_samples);
	free(D);
	if (pr < 0)
		return 1;
	return failed ? 1 : 0;
}
