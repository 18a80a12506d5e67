/*
 * sv2shm demo [--json] [--seconds N]
 *
 * The whole job in one command: a private broker (sv2shmd in a temporary
 * directory), one producer and three consumer processes passing synthetic
 * checksummed Sv2 frames for N seconds; halfway, one consumer is SIGKILLed
 * while it holds slots and a new one subscribes. The pool is shown every
 * 500 ms as `sv2shm status` draws it. At the end: frames sent, received,
 * verified, holds reclaimed, lost.
 *
 * "Lost" (also in sv2shm(1)): a frame the producer delivered to a consumer
 * (publish said that consumer got it) that this consumer, if it was not the
 * killed one, did not receive. It must be 0. Frames delivered to the killed
 * consumer that it had not read when it died are "dropped with the killed
 * consumer", counted apart.
 *
 * How it is counted: the producer and the consumers are forked children that
 * run produce_run() and consume_run() with their reports in one shared
 * anonymous mapping, so the counts of the killed consumer survive it. The
 * producer counts, per consumer id, the frames publish said it delivered; a
 * consumer counts every frame before it releases it. A consumer's report is
 * matched to the producer's id by the holder bit (id % 32; a bit is reused
 * only by a consumer that subscribed later, and ids grow).
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD "demo"
#define POOL_NAME "demo"

/* The stream: 2000 frames/s of 64 .. 16384 payload bytes through 8 slots of
 * a 256 KiB pool; policy wait and max_held = slots, so nothing is skipped:
 * a slow consumer slows the producer down instead. */
#define DEMO_SLOTS 8
#define DEMO_CAPACITY (256u << 10)
#define DEMO_RATE 2000.0
#define DEMO_MIN_PAYLOAD 64
#define DEMO_MAX_PAYLOAD 16384
#define DEMO_CONSUMERS 3
#define DEMO_TICK_MS 500

/* Consumers 1..3 hold each frame 0, 1 and 3 ms; #3 (it holds the most) is
 * killed, #4 replaces it. */
static const uint64_t hold_ms[] = {0, 1, 3, 1};
#define KILLED 2
#define REPLACEMENT 3
#define NCONS 4

struct shared {
	struct produce_report prod;
	struct consume_report cons[NCONS];
};

struct proc {
	const char *role;
	pid_t pid;     /* 0: not started */
	bool reaped;
	int status;
};

struct demo {
	FILE *out;            /* the running display: stdout, stderr with --json */
	unsigned seconds;
	char dir[PATH_MAX];   /* the temporary directory ("" if none) */
	char sock[PATH_MAX];
	char daemon[PATH_MAX];
	struct shared *shm;
	struct sv2shm_client *client; /* ours, for status */
	struct proc broker, producer, cons[NCONS];
	uint64_t reclaimed_seen;
	uint64_t t0_ns;
	bool killed;
	int killed_held;      /* frames the killed consumer had received and held when it died */
	char failures[1024];  /* what misbehaved, for the verdict */
};

static void failure(struct demo *D, const char *fmt, ...) CLI_PRINTF(2, 3);

static void failure(struct demo *D, const char *fmt, ...)
{
	size_t len = strlen(D->failures);
	if (len + 4 >= sizeof(D->failures))
		return;
	if (len)
		len += (size_t)snprintf(D->failures + len, sizeof(D->failures) - len, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(D->failures + len, sizeof(D->failures) - len, fmt, ap);
	va_end(ap);
}

static double elapsed(const struct demo *D)
{
	return D->t0_ns ? (double)(cli_now_ns() - D->t0_ns) / 1e9 : 0.0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* --- finding sv2shmd ---------------------------------------------------------- */

static bool executable_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

/* $SV2SHMD, else ../daemon/sv2shmd from our own directory (the build tree),
 * else sv2shmd next to us, else the PATH. */
static int find_daemon(struct demo *D)
{
	const char *env = getenv("SV2SHMD");
	if (env && *env) {
		if (!executable_file(env)) {
			cli_note(CMD, "SV2SHMD=%s is not an executable file", env);
			return -1;
		}
		snprintf(D->daemon, sizeof(D->daemon), "%s", env);
		return 0;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			const char *rel[] = {"../daemon/sv2shmd", "sv2shmd"};
			for (size_t i = 0; i < 2; i++) {
				if ((size_t)snprintf(D->daemon, sizeof(D->daemon), "%s/%s", self, rel[i]) < sizeof(D->daemon) &&
				    executable_file(D->daemon))
					return 0;
			}
		}
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");
		if (len > 0 && (size_t)snprintf(D->daemon, sizeof(D->daemon), "%.*s/sv2shmd", (int)len, path) <
				       sizeof(D->daemon) &&
		    executable_file(D->daemon))
			return 0;
		path += len;
		if (*path == ':')
			path++;
	}
	D->daemon[0] = 0;
	cli_note(CMD, "cannot find sv2shmd: set SV2SHMD=/path/to/sv2shmd, or put it next to sv2shm, in "
		      "../daemon/ from it, or in the PATH");
	return -1;
}

/* --- processes ---------------------------------------------------------------- */

/* In a forked child: die with the demo, drop the demo's broker connection. */
static void child_setup(struct demo *D, pid_t parent, int deathsig)
{
	prctl(PR_SET_PDEATHSIG, deathsig);
	if (getppid() != parent)
		_exit(1);
	if (D->client) {
		int fd = sv2shm_client_fd(D->client);
		if (fd >= 0)
			close(fd);
	}
}

static void reap(struct demo *D)
{
	struct proc *all[2 + NCONS] = {&D->broker, &D->producer};
	for (int i = 0; i < NCONS; i++)
		all[2 + i] = &D->cons[i];
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
			if (all[i]->pid == pid) {
				all[i]->reaped = true;
				all[i]->status = status;
			}
		}
	}
}

static bool running(const struct proc *p)
{
	return p->pid > 0 && !p->reaped;
}

/* Wait up to ms for p to exit. Returns true if it did. */
static bool wait_exit(struct demo *D, struct proc *p, unsigned ms)
{
	for (unsigned waited = 0; running(p) && waited < ms; waited += 20) {
		reap(D);
		if (running(p))
			sleep_ms(20);
	}
	reap(D);
	return !running(p);
}

/* Wait up to ms for p to exit; then SIGKILL it. Returns true if it exited by itself. */
static bool wait_proc(struct demo *D, struct proc *p, unsigned ms)
{
	if (wait_exit(D, p, ms))
		return true;
	kill(p->pid, SIGKILL);
	int status;
	if (waitpid(p->pid, &status, 0) == p->pid) {
		p->reaped = true;
		p->status = status;
	}
	return false;
}

static void describe_exit(char *buf, size_t size, int status)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by %s", strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "status %#x", (unsigned)status);
}

static int start_broker(struct demo *D)
{
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return cli_fail(CMD, -errno, "fork"), -1;
	if (pid == 0) {
		child_setup(D, parent, SIGTERM);
		setpgid(0, 0); /* Ctrl-C is the demo's to handle: it stops the broker itself */
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execl(D->daemon, "sv2shmd", "--foreground", "--socket", D->sock, "--log-level", "warn", (char *)NULL);
		fprintf(stderr, "sv2shm demo: cannot run %s: %s\n", D->daemon, strerror(errno));
		_exit(127);
	}
	D->broker.pid = pid;
	/* Up when it takes a connection. A status that takes longer than 1 s must
	 * not hold the schedule up (the kill, the next drawing). */
	struct sv2shm_client_options o = {.socket_path = D->sock, .timeout_ms = 1000};
	int r = -ENOENT;
	for (unsigned waited = 0; waited < 5000 && !cli_stop; waited += 20) {
		r = sv2shm_client_connect(&o, &D->client);
		if (r == 0)
			return 0;
		reap(D);
		if (!running(&D->broker)) {
			char how[64];
			describe_exit(how, sizeof(how), D->broker.status);
			cli_note(CMD, "the broker %s stopped at start (%s)", D->daemon, how);
			return -1;
		}
		sleep_ms(20);
	}
	cli_fail(CMD, r, "the broker did not answer on %s within 5 s", D->sock);
	return -1;
}

static int start_producer(struct demo *D)
{
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return cli_fail(CMD, -errno, "fork"), -1;
	if (pid == 0) {
		child_setup(D, parent, SIGKILL);
		signal(SIGINT, SIG_IGN); /* Ctrl-C is the demo's: it stops us in order (SIGTERM) */
		struct produce_opts o = {
			.socket = D->sock,
			.pool = POOL_NAME,
			.source = SOURCE_SYNTHETIC,
			.synth_min = DEMO_MIN_PAYLOAD,
			.synth_max = DEMO_MAX_PAYLOAD,
			.duration_ms = (uint64_t)D->seconds * 1000u,
			.rate = DEMO_RATE,
			.consumers = DEMO_CONSUMERS,
			.quiet = true,
			.no_summary = true,
			.report = &D->shm->prod,
		};
		o.reg.producer.pool.capacity = DEMO_CAPACITY;
		o.reg.producer.pool.slots = DEMO_SLOTS;
		o.reg.producer.pool.policy = SV2SHM_POOL_WAIT;
		o.reg.producer.max_held = DEMO_SLOTS; /* no limit: nothing is skipped */
		_exit(produce_run(&o));
	}
	D->producer.pid = pid;
	return 0;
}

static int start_consumer(struct demo *D, int i)
{
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return cli_fail(CMD, -errno, "fork"), -1;
	if (pid == 0) {
		child_setup(D, parent, SIGKILL);
		signal(SIGINT, SIG_IGN);
		struct consume_opts o = {
			.socket = D->sock,
			.pool = POOL_NAME,
			.checksum = true,
			.hold_ms = hold_ms[i],
			.quiet = true,
			.no_summary = true,
			.timeout_ms = 15000, /* a stalled producer must not keep the demo forever */
			.subscribe_timeout_ms = 5000,
			.report = &D->shm->cons[i],
		};
		_exit(consume_run(&o));
	}
	D->cons[i].pid = pid;
	return 0;
}

/* --- the display ---------------------------------------------------------------- */

static void show(struct demo *D, const char *why)
{
	fprintf(D->out, "\n--- t=%.1f s%s%s ---\n", elapsed(D), why ? "  " : "", why ? why : "");
	struct sv2shm_status *st;
	int r = sv2shm_client_status(D->client, &st);
	if (r < 0) {
		fprintf(D->out, "(no status from the broker: %s)\n", sv2shm_strerror(r));
	} else {
		print_status_text(D->out, st);
		for (unsigned i = 0; i < st->npools; i++)
			if (!strncmp(st->pools[i].name, POOL_NAME, sizeof(st->pools[i].name)) &&
			    st->pools[i].counters.reclaimed > D->reclaimed_seen)
				D->reclaimed_seen = st->pools[i].counters.reclaimed;
		sv2shm_status_free(st);
	}
	fprintf(D->out, "producer: sent %" PRIu64 "   consumers:", atomic_load(&D->shm->prod.sent));
	for (int i = 0; i < NCONS; i++) {
		const struct consume_report *c = &D->shm->cons[i];
		if (!D->cons[i].pid)
			continue;
		fprintf(D->out, "  #%d %" PRIu64 " recv%s", i + 1, atomic_load(&c->received),
			i == KILLED && D->killed ? " (killed)" : "");
	}
	fprintf(D->out, "\n");
	fflush(D->out);
}

/* --- the count -------------------------------------------------------------------- */

struct tally {
	uint64_t sent, received, verified, corrupt, reclaimed, lost, dropped;
};

/* The producer's record for consumer i (see the comment at the top), or NULL. */
static const struct produce_track *track_for(const struct demo *D, int i)
{
	int holder = atomic_load(&D->shm->cons[i].holder);
	if (!atomic_load(&D->shm->cons[i].subscribed) || holder <= 0)
		return NULL;
	/* The rank of consumer i among the consumers with this holder bit (in the
	 * order they were started) picks the rank among the producer's ids. */
	int rank = 0;
	for (int k = 0; k < i; k++)
		if (atomic_load(&D->shm->cons[k].subscribed) && atomic_load(&D->shm->cons[k].holder) == holder)
			rank++;
	const struct produce_track *by_id[PRODUCE_TRACK_MAX];
	int n = 0;
	for (int k = 0; k < PRODUCE_TRACK_MAX; k++) {
		const struct produce_track *t = &D->shm->prod.track[k];
		int id = atomic_load(&t->id);
		if (id > 0 && id % 32 == holder)
			by_id[n++] = t;
	}
	for (int a = 1; a < n; a++) /* by id, ascending (a handful) */
		for (int b = a; b > 0 && atomic_load(&by_id[b]->id) < atomic_load(&by_id[b - 1]->id); b--) {
			const struct produce_track *x = by_id[b];
			by_id[b] = by_id[b - 1];
			by_id[b - 1] = x;
		}
	return rank < n ? by_id[rank] : NULL;
}

static void count(struct demo *D, struct tally *T)
{
	memset(T, 0, sizeof(*T));
	T->sent = atomic_load(&D->shm->prod.sent);
	T->reclaimed = atomic_load(&D->shm->prod.reclaimed);
	if (D->reclaimed_seen > T->reclaimed)
		T->reclaimed = D->reclaimed_seen;
	fprintf(D->out, "\nper consumer (delivered: publish said it got them; received: counted before release):\n");
	for (int i = 0; i < NCONS; i++) {
		const struct consume_report *c = &D->shm->cons[i];
		if (!D->cons[i].pid)
			continue;
		uint64_t rcv = atomic_load(&c->received);
		T->received += rcv;
		T->verified += atomic_load(&c->verified);
		T->corrupt += atomic_load(&c->corrupt);
		const struct produce_track *t = track_for(D, i);
		uint64_t dlv = t ? atomic_load(&t->delivered) : 0;
		uint64_t missing = dlv > rcv ? dlv - rcv : 0;
		bool killed = i == KILLED && D->killed;
		fprintf(D->out, "  #%d pid %d holder %d id %d  hold %" PRIu64 " ms  delivered %" PRIu64 "  received %" PRIu64
				"  verified %" PRIu64 "  corrupt %" PRIu64 "  %s %" PRIu64 "\n",
			i + 1, atomic_load(&c->pid), atomic_load(&c->holder), t ? atomic_load(&t->id) : 0, hold_ms[i], dlv,
			rcv, atomic_load(&c->verified), atomic_load(&c->corrupt),
			killed ? "dropped with it" : "lost", missing);
		if (killed)
			T->dropped += missing;
		else
			T->lost += missing;
		if (rcv > dlv)
			failure(D, "consumer #%d received %" PRIu64 " frames but was delivered %" PRIu64, i + 1, rcv, dlv);
		if (!killed && rcv && t && atomic_load(&c->gaps))
			failure(D, "consumer #%d saw %" PRIu64 " gaps in the sequence", i + 1, atomic_load(&c->gaps));
		if (!killed && rcv && t &&
		    (atomic_load(&c->first_seq) != atomic_load(&t->first_seq) ||
		     atomic_load(&c->last_seq) != atomic_load(&t->last_seq)))
			failure(D, "consumer #%d received sequences %" PRIu64 "..%" PRIu64 ", was delivered %" PRIu64
				   "..%" PRIu64,
				i + 1, atomic_load(&c->first_seq), atomic_load(&c->last_seq), atomic_load(&t->first_seq),
				atomic_load(&t->last_seq));
		if (atomic_load(&c->skipped_errors))
			failure(D, "consumer #%d had %" PRIu64 " skipped receive errors", i + 1,
				atomic_load(&c->skipped_errors));
	}
	if (atomic_load(&D->shm->prod.skipped))
		failure(D, "the producer skipped %" PRIu64 " deliveries (none expected: policy wait, max_held = slots)",
			atomic_load(&D->shm->prod.skipped));
}

/* --- the run ------------------------------------------------------------------------ */

static void check_exit(struct demo *D, struct proc *p, const char *name, bool expect_kill)
{
	char how[64];
	if (!p->pid)
		return;
	if (!p->reaped) {
		failure(D, "%s did not exit", name);
		return;
	}
	describe_exit(how, sizeof(how), p->status);
	if (expect_kill) {
		if (!WIFSIGNALED(p->status) || WTERMSIG(p->status) != SIGKILL)
			failure(D, "%s: %s, expected SIGKILL", name, how);
	} else if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0) {
		failure(D, "%s: %s", name, how);
	}
}

static void remove_dir(struct demo *D)
{
	if (!D->dir[0])
		return;
	DIR *d = opendir(D->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	if (rmdir(D->dir) < 0)
		cli_note(CMD, "cannot remove %s: %s", D->dir, strerror(errno));
	D->dir[0] = 0;
}

/* Stop whatever still runs, in the order that keeps the count true: the
 * producer first (SIGTERM: it stops publishing, lets the consumers read and
 * release what they have, destroys its pool), then the consumers (they end by
 * themselves once the pool is gone; SIGTERM after 3 s), the broker last;
 * remove the directory. */
static void cleanup(struct demo *D)
{
	reap(D);
	if (running(&D->producer)) {
		kill(D->producer.pid, SIGTERM);
		if (!wait_proc(D, &D->producer, 10000))
			failure(D, "the producer did not stop on SIGTERM (killed)");
	}
	for (int i = 0; i < NCONS; i++)
		if (running(&D->cons[i]) && !wait_exit(D, &D->cons[i], 3000)) {
			kill(D->cons[i].pid, SIGTERM);
			if (!wait_proc(D, &D->cons[i], 3000))
				failure(D, "consumer #%d did not stop on SIGTERM (killed)", i + 1);
		}
	if (D->client) {
		sv2shm_client_close(D->client);
		D->client = NULL;
	}
	if (running(&D->broker)) {
		kill(D->broker.pid, SIGTERM);
		if (!wait_proc(D, &D->broker, 5000))
			failure(D, "the broker did not stop on SIGTERM");
		else if (!(WIFEXITED(D->broker.status) && WEXITSTATUS(D->broker.status) == 0) &&
			 !(WIFSIGNALED(D->broker.status) && WTERMSIG(D->broker.status) == SIGTERM)) {
			char how[64];
			describe_exit(how, sizeof(how), D->broker.status);
			failure(D, "the broker, stopped with SIGTERM: %s", how);
		}
	}
	remove_dir(D);
}

static int run(struct demo *D)
{
	if (start_broker(D) < 0)
		return -1;
	fprintf(D->out, "broker: %s on %s (pid %d)\n", D->daemon, D->sock, (int)D->broker.pid);
	if (start_producer(D) < 0)
		return -1;
	for (unsigned waited = 0; !atomic_load(&D->shm->prod.registered); waited += 10) {
		reap(D);
		if (cli_stop || !running(&D->producer) || waited > 5000) {
			failure(D, "the producer did not register its pool");
			return -1;
		}
		sleep_ms(10);
	}
	fprintf(D->out,
		"producer (pid %d): pool %s, %u bytes, %u slots, policy wait, max_held %u; %.0f synthetic frames/s of "
		"%u..%u payload bytes for %u s\n",
		(int)D->producer.pid, POOL_NAME, DEMO_CAPACITY, DEMO_SLOTS, DEMO_SLOTS, DEMO_RATE, DEMO_MIN_PAYLOAD,
		DEMO_MAX_PAYLOAD, D->seconds);
	for (int i = 0; i < DEMO_CONSUMERS; i++) {
		if (start_consumer(D, i) < 0)
			return -1;
		fprintf(D->out, "consumer #%d (pid %d): --checksum --hold-ms %" PRIu64 "\n", i + 1, (int)D->cons[i].pid,
			hold_ms[i]);
	}
	for (unsigned waited = 0; !atomic_load(&D->shm->prod.started); waited += 10) {
		reap(D);
		if (cli_stop || !running(&D->producer) || waited > 10000) {
			failure(D, "the consumers did not all subscribe");
			return -1;
		}
		sleep_ms(10);
	}
	D->t0_ns = cli_now_ns();
	fprintf(D->out, "%d consumers subscribed: frames flow\n", DEMO_CONSUMERS);

	uint64_t next_show = D->t0_ns;
	uint64_t kill_at = D->t0_ns + (uint64_t)D->seconds * 500000000u;
	uint64_t give_up = D->t0_ns + ((uint64_t)D->seconds + 30) * 1000000000u;
	while (!cli_stop) {
		reap(D);
		if (!running(&D->broker)) {
			failure(D, "the broker died");
			return -1;
		}
		if (!running(&D->producer))
			break;
		uint64_t now = cli_now_ns();
		if (!D->killed && now >= kill_at) {
			struct consume_report *c = &D->shm->cons[KILLED];
			kill(D->cons[KILLED].pid, SIGKILL);
			D->killed = true;
			wait_proc(D, &D->cons[KILLED], 2000);
			D->killed_held = atomic_load(&c->held_now); /* final: it is dead */
			fprintf(D->out, "\n*** t=%.1f s: SIGKILLed consumer #%d (pid %d); it held %d frames it had received\n",
				elapsed(D), KILLED + 1, (int)D->cons[KILLED].pid, D->killed_held);
			show(D, "just after the kill");
			if (start_consumer(D, REPLACEMENT) < 0)
				return -1;
			fprintf(D->out, "*** consumer #%d (pid %d) subscribes: --checksum --hold-ms %" PRIu64 "\n",
				REPLACEMENT + 1, (int)D->cons[REPLACEMENT].pid, hold_ms[REPLACEMENT]);
		}
		if (now >= next_show) {
			show(D, NULL);
			next_show += (uint64_t)DEMO_TICK_MS * 1000000u;
		}
		if (now > give_up) {
			failure(D, "the producer did not finish in time");
			return -1;
		}
		sleep_ms(20);
	}
	if (cli_stop)
		return -1;
	/* The producer has drained and destroyed its pool: the consumers see it gone. */
	for (int i = 0; i < NCONS; i++)
		if (running(&D->cons[i]) && !wait_proc(D, &D->cons[i], 20000))
			failure(D, "consumer #%d did not end after its producer (killed)", i + 1);
	show(D, "the end: the producer is gone");
	return 0;
}

static void demo_usage(FILE *f)
{
	fprintf(f,
		"usage: sv2shm demo [--json] [--seconds N]\n\n"
		"Start a private broker, one producer and three consumer processes; stream synthetic\n"
		"checksummed frames for N seconds; SIGKILL one consumer halfway and start a new one;\n"
		"show the pool every 500 ms; then count: sent, received, verified, reclaimed, lost.\n"
		"Lost: a frame the producer delivered to a consumer (publish said it got it) that this\n"
		"consumer, if it was not the killed one, did not receive. It must be 0.\n\n"
		"  --seconds N     stream for N seconds, 2 .. 3600 (default 6)\n"
		"  --json          end with one JSON line on stdout (the display goes to stderr):\n"
		"                  {\"sent\", \"received\", \"verified\", \"reclaimed\", \"lost\"}\n"
		"  --socket PATH   the private broker's socket (default: in a new temporary directory)\n"
		"  --help          this text\n"
		"Finds sv2shmd as $SV2SHMD, ../daemon/sv2shmd or sv2shmd next to sv2shm, or in the PATH.\n"
		"Exit status 0 only if nothing was lost or corrupt and every process behaved.\n");
}

int cmd_demo(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_JSON, O_SECONDS };
	static const struct option opts[] = {
		{"socket", required_argument, NULL, O_SOCKET},
		{"json", no_argument, NULL, O_JSON},
		{"seconds", required_argument, NULL, O_SECONDS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct demo D;
	memset(&D, 0, sizeof(D));
	D.broker.role = "broker";
	bool json = false;
	const char *socket = NULL;
	uint64_t secs = 6;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			socket = optarg;
			break;
		case O_JSON:
			json = true;
			break;
		case O_SECONDS:
			if (cli_parse_u64(optarg, 2, 3600, false, &secs) < 0)
				return cli_usage_error(CMD, "--seconds takes 2 .. 3600, not '%s'", optarg);
			break;
		case 'h':
			demo_usage(stdout);
			return 0;
		default:
			return cli_getopt_error(CMD, c, argv, optind);
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	if (socket && strlen(socket) >= sizeof(D.sock))
		return cli_usage_error(CMD, "--socket: path too long");
	if (socket && access(socket, F_OK) == 0)
		return cli_usage_error(CMD, "--socket %s exists: the demo starts its own broker there", socket);
	D.out = json ? stderr : stdout;
	D.seconds = (unsigned)secs;
	if (find_daemon(&D) < 0)
		return 1;
	cli_catch_signals();

	D.shm = mmap(NULL, sizeof(*D.shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (D.shm == MAP_FAILED)
		return cli_fail(CMD, -errno, "shared memory for the counts");
	if (socket) {
		snprintf(D.sock, sizeof(D.sock), "%s", socket);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(D.dir, sizeof(D.dir), "%s/sv2shm-demo.XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(D.dir)) {
			int e = -errno;
			munmap(D.shm, sizeof(*D.shm));
			return cli_fail(CMD, e, "cannot create a temporary directory in %s", tmp && *tmp ? tmp : "/tmp");
		}
		if ((size_t)snprintf(D.sock, sizeof(D.sock), "%s/sv2shmd.sock", D.dir) >= sizeof(D.sock)) {
			rmdir(D.dir);
			munmap(D.shm, sizeof(*D.shm));
			return cli_fail(CMD, -ENAMETOOLONG, "the temporary directory %s", D.dir);
		}
	}

	int r = run(&D);
	bool interrupted = cli_stop;
	cleanup(&D);
	if (socket)
		unlink(socket); /* ours: it did not exist before */

	check_exit(&D, &D.producer, "the producer", false);
	for (int i = 0; i < NCONS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "consumer #%d", i + 1);
		check_exit(&D, &D.cons[i], name, i == KILLED && D.killed);
	}
	if (!D.killed && r == 0)
		failure(&D, "no consumer was killed (the stream ended before halfway)");

	struct tally T;
	count(&D, &T);
	fprintf(D.out,
		"\nsummary\n"
		"  sent       %10" PRIu64 "  frames published (publish said at least one consumer got each)\n"
		"  received   %10" PRIu64 "  frames received, summed over the %d consumers\n"
		"  verified   %10" PRIu64 "  frames whose checksum and sequence order were right\n"
		"  corrupt    %10" PRIu64 "\n"
		"  reclaimed  %10" PRIu64 "  holds reclaimed (pool counter) from consumers removed or killed\n"
		"  dropped    %10" PRIu64 "  delivered to the killed consumer, unread when it died (not lost)\n"
		"  lost       %10" PRIu64 "  delivered to a consumer that was not killed, never received by it\n",
		T.sent, T.received, D.cons[REPLACEMENT].pid ? NCONS : DEMO_CONSUMERS, T.verified, T.corrupt, T.reclaimed,
		T.dropped, T.lost);
	if (D.killed) {
		uint64_t holds = (uint64_t)D.killed_held + T.dropped;
		fprintf(D.out, "  the killed consumer held %" PRIu64 " slots when it died: %d received and kept (--hold-ms), %"
			       PRIu64 " delivered unread\n",
			holds, D.killed_held, T.dropped);
		if (T.reclaimed < holds)
			fprintf(D.out, "  note: the pool's reclaimed counter (%" PRIu64 ") counts fewer holds than that: holds the "
				       "broker released for a dead consumer are not in it\n",
				T.reclaimed);
	}
	if (T.lost)
		failure(&D, "%" PRIu64 " frames lost", T.lost);
	if (T.corrupt)
		failure(&D, "%" PRIu64 " corrupt frames", T.corrupt);
	if (interrupted)
		failure(&D, "interrupted");
	bool ok = r == 0 && !D.failures[0];
	if (ok)
		fprintf(D.out, "demo OK: nothing lost, nothing corrupt, the killed consumer's holds came back, every "
			       "process behaved\n");
	else
		fprintf(D.out, "demo FAILED: %s\n", D.failures[0] ? D.failures : "see above");
	fflush(D.out);
	if (json)
		printf("{\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"verified\": %" PRIu64 ", \"reclaimed\": %" PRIu64
		       ", \"lost\": %" PRIu64 "}\n",
		       T.sent, T.received, T.verified, T.reclaimed, T.lost);
	munmap(D.shm, sizeof(*D.shm));
	return ok ? 0 : 1;
}
