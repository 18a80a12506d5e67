/*
 * Helpers shared by the multi-process tests (tests/test_ipc_*.c): forking
 * children that cannot hang or outlive the test, waiting for them with a
 * timeout, a small control channel between parent and child, the byte
 * pattern every slice carries, and descriptor/setup helpers.
 *
 * Children report failures through their exit status (CHECK* print the
 * reason on stderr and _exit(1)); the parent asserts on the waitpid status.
 * Every child has PR_SET_PDEATHSIG(SIGKILL) and an alarm(), every wait a
 * timeout. Every function is static inline so that a test program that does
 * not use one gets no warning.
 *
 * SV2SHM_IPC_TEST_FILTER=<glob> runs only the matching tests of a program.
 */
#ifndef SV2SHM_TEST_IPC_COMMON_H
#define SV2SHM_TEST_IPC_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sv2shm/ipc.h>
#include <sv2shm/sv2shm.h>

/* Private layouts: the tests forge and inspect what peers exchange. */
#include "layout.h"
#include "wire.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#if defined(__SANITIZE_ADDRESS__)
#define IPC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IPC_ASAN 1
#endif
#endif
#ifndef IPC_ASAN
#define IPC_ASAN 0
#endif

/* Seconds a child may live at most (its alarm). */
#ifndef IPC_CHILD_ALARM_S
#define IPC_CHILD_ALARM_S 120
#endif

/* --- time ----------------------------------------------------------------- */

static inline uint64_t ipc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static inline void ipc_sleep_us(uint64_t us)
{
	struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static inline void ipc_sleep_ms(uint64_t ms)
{
	ipc_sleep_us(ms * 1000u);
}

/* Busy-wait (a consumer "processing" a slice for a few microseconds: a
 * nanosleep would cost more than the delay itself). */
static inline void ipc_spin_us(uint64_t us)
{
	if (!us)
		return;
	uint64_t until = ipc_now_ns() + us * 1000u;
	while (ipc_now_ns() < until) {
	}
}

static inline unsigned long ipc_env_ulong(const char *name, unsigned long def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end = NULL;
	unsigned long x = strtoul(v, &end, 0);
	return (end && *end == '\0' && x) ? x : def;
}

/* True when SV2SHM_NO_IO_URING asks the library for plain syscalls. */
static inline bool ipc_no_uring_env(void)
{
	const char *e = getenv("SV2SHM_NO_IO_URING");
	return e && *e && strcmp(e, "0") != 0;
}

/* True when this machine allows io_uring at all (kernel.io_uring_disabled). */
static inline bool ipc_uring_allowed(void)
{
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
	if (!f)
		return true;
	int v = 0;
	if (fscanf(f, "%d", &v) != 1)
		v = 0;
	fclose(f);
	return v == 0;
}

/* --- PRNG and the slice pattern --------------------------------------------- */

static inline uint64_t ipc_mix64(uint64_t z)
{
	z += UINT64_C(0x9e3779b97f4a7c15);
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static inline uint64_t ipc_rand(uint64_t *s)
{
	*s += UINT64_C(0x9e3779b97f4a7c15);
	return ipc_mix64(*s);
}

/* The key of slice `seq` of a stream seeded with `seed`. */
static inline uint64_t pat_key(uint64_t seed, uint64_t seq)
{
	return ipc_mix64(seed ^ ipc_mix64(seq * 2u + 1u));
}

/* Word j (bytes 8j..8j+7, little-endian) of the pattern with key `key`. */
static inline uint64_t pat_word(uint64_t key, uint64_t j)
{
	uint64_t x = key + j * UINT64_C(0x9e3779b97f4a7c15);
	x ^= x >> 32;
	x *= UINT64_C(0xd6e8feb86659fd93);
	x ^= x >> 29;
	return x;
}

static inline uint8_t pat_byte(uint64_t key, size_t i)
{
	return (uint8_t)(pat_word(key, i / 8u) >> (8u * (i % 8u)));
}

/* Write bytes [from, to) of the pattern to dst (dst holds byte `from`). */
static inline void pat_fill(uint8_t *dst, uint64_t key, size_t from, size_t to)
{
	size_t i = from;
	while (i < to && (i % 8u))
		*dst++ = pat_byte(key, i++);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; i + 8u <= to; i += 8u, dst += 8) {
		uint64_t w = pat_word(key, i / 8u);
		memcpy(dst, &w, 8);
	}
#endif
	while (i < to)
		*dst++ = pat_byte(key, i++);
}

/* Index of the first byte of p[0..len) that differs from the pattern, or len. */
static inline size_t pat_check(const uint8_t *p, uint64_t key, size_t len)
{
	size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; i + 8u <= len; i += 8u) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w != pat_word(key, i / 8u))
			break;
	}
#endif
	for (; i < len; i++)
		if (p[i] != pat_byte(key, i))
			return i;
	return len;
}

/* --- children --------------------------------------------------------------- */

#define IPC_MAX_CHILDREN 16
static pid_t ipc_children[IPC_MAX_CHILDREN];

__attribute__((format(printf, 3, 4), noreturn)) static inline void ipc_child_fail(const char *file, int line,
										    const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[child %d] %s:%d: check failed: %s\n", (int)getpid(), file, line, msg);
	fflush(stderr);
	_exit(1);
}

/* Checks inside a child: print and exit(1) on failure. */
#define CHECK(c)                                                                                                    \
	do {                                                                                                        \
		if (!(c))                                                                                           \
			ipc_child_fail(__FILE__, __LINE__, "%s", #c);                                               \
	} while (0)

#define CHECK_EQ(a, b)                                                                                              \
	do {                                                                                                        \
		long long ck_a_ = (long long)(a), ck_b_ = (long long)(b);                                           \
		if (ck_a_ != ck_b_)                                                                                 \
			ipc_child_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, ck_a_, ck_b_);         \
	} while (0)

/* A child fails with a formatted message. */
#define CHILD_FAIL(...) ipc_child_fail(__FILE__, __LINE__, __VA_ARGS__)

static inline int ipc_cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* List the open fds of this process (without the directory's own fd).
 * Returns the count (at most cap are stored when fds != NULL), or -errno. */
static inline int ipc_list_fds(int *fds, int cap)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -errno;
	int self = dirfd(d), n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = atoi(e->d_name);
		if (fd == self)
			continue;
		if (fds && n < cap)
			fds[n] = fd;
		n++;
	}
	closedir(d);
	if (fds)
		qsort(fds, (size_t)(n < cap ? n : cap), sizeof(int), ipc_cmp_int);
	return n;
}

static inline int ipc_count_fds(void)
{
	return ipc_list_fds(NULL, 0);
}

/* Close every fd >= 3 except the ones listed: a child keeps only what it
 * needs (not the producer's memfds, rings or other consumers' sockets). */
static inline void ipc_close_fds_except(const int *keep, unsigned nkeep)
{
	int fds[1024];
	int n = ipc_list_fds(fds, 1024);
	if (n > 1024)
		n = 1024;
	for (int i = 0; i < n; i++) {
		if (fds[i] < 3)
			continue;
		bool k = false;
		for (unsigned j = 0; j < nkeep; j++)
			if (keep[j] == fds[i])
				k = true;
		if (!k)
			close(fds[i]);
	}
}

static inline void ipc_track_child(pid_t pid)
{
	for (int i = 0; i < IPC_MAX_CHILDREN; i++)
		if (ipc_children[i] == 0) {
			ipc_children[i] = pid;
			return;
		}
}

static inline void ipc_untrack_child(pid_t pid)
{
	for (int i = 0; i < IPC_MAX_CHILDREN; i++)
		if (ipc_children[i] == pid)
			ipc_children[i] = 0;
}

/* Kill and reap every child still tracked (after a failed assertion). */
static inline void ipc_kill_children(void)
{
	for (int i = 0; i < IPC_MAX_CHILDREN; i++)
		if (ipc_children[i] > 0) {
			kill(ipc_children[i], SIGKILL);
			while (waitpid(ipc_children[i], NULL, 0) < 0 && errno == EINTR) {
			}
			ipc_children[i] = 0;
		}
}

typedef int (*ipc_child_fn)(void *arg);

/*
 * Fork a child that runs fn(arg) and exits with its return value (through
 * exit(), so LeakSanitizer checks the child too). The child dies with its
 * parent, has an alarm of alarm_s seconds, and keeps only the fds in keep[]
 * (and stdio). Returns the pid, or -errno.
 */
static inline pid_t ipc_spawn(ipc_child_fn fn, void *arg, const int *keep, unsigned nkeep, unsigned alarm_s)
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(97);
		alarm(alarm_s ? alarm_s : IPC_CHILD_ALARM_S);
		signal(SIGPIPE, SIG_IGN);
		ipc_close_fds_except(keep, nkeep);
		int rc = fn(arg);
		fflush(NULL);
		exit(rc);
	}
	ipc_track_child(pid);
	return pid;
}

/* Wait for child pid at most timeout_ms; on timeout it is SIGKILLed and
 * -ETIMEDOUT returned (the status is still filled in). */
static inline int ipc_wait_child(pid_t pid, int timeout_ms, int *status)
{
	uint64_t deadline = ipc_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid) {
			ipc_untrack_child(pid);
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (ipc_now_ns() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
			}
			ipc_untrack_child(pid);
			return -ETIMEDOUT;
		}
		ipc_sleep_us(500);
	}
}

static inline const char *ipc_status_str(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, n, "status 0x%x", st);
	return buf;
}

/* Parent: the child must exit with status 0 within timeout_ms. */
#define assert_child_ok(pid, timeout_ms)                                                                            \
	do {                                                                                                        \
		int ac_st_ = 0;                                                                                     \
		char ac_buf_[96];                                                                                   \
		int ac_r_ = ipc_wait_child((pid), (timeout_ms), &ac_st_);                                           \
		if (ac_r_ == -ETIMEDOUT)                                                                            \
			fail_msg("child %d did not finish within %d ms (killed)", (int)(pid), (int)(timeout_ms));   \
		if (ac_r_ < 0)                                                                                      \
			fail_msg("waitpid(%d): %s", (int)(pid), strerror(-ac_r_));                                  \
		if (!WIFEXITED(ac_st_) || WEXITSTATUS(ac_st_) != 0)                                                 \
			fail_msg("child %d %s", (int)(pid), ipc_status_str(ac_st_, ac_buf_, sizeof(ac_buf_)));      \
	} while (0)

/* --- objects a failed test leaves behind -------------------------------------------- */
/*
 * A failed assertion leaves the test's producer and consumers behind. They
 * stay listed here, so that LeakSanitizer (at the end of this process, and in
 * every child forked later, which inherits the heap) does not report them: the
 * failure is already reported. Whatever the library itself loses stays
 * unreachable and is reported.
 */
#define IPC_MAX_HELD 64
static void *ipc_held[IPC_MAX_HELD];

static inline void ipc_hold(void *p)
{
	for (int i = 0; i < IPC_MAX_HELD; i++)
		if (!ipc_held[i]) {
			ipc_held[i] = p;
			return;
		}
}

static inline void ipc_unhold(void *p)
{
	for (int i = 0; i < IPC_MAX_HELD; i++)
		if (ipc_held[i] == p) {
			ipc_held[i] = NULL;
			return;
		}
}

#define destroy_producer(p)                                                                                         \
	do {                                                                                                        \
		assert_int_equal(sv2shm_producer_destroy(p), 0);                                                    \
		ipc_unhold(p);                                                                                      \
	} while (0)

#define free_consumer(c)                                                                                            \
	do {                                                                                                        \
		assert_int_equal(sv2shm_consumer_free(c), 0);                                                       \
		ipc_unhold(c);                                                                                      \
	} while (0)

/* --- control channel: u64 messages on a SOCK_SEQPACKET pair ---------------- */

static inline int ipc_send_u64(int fd, uint64_t v)
{
	ssize_t n;
	do
		n = send(fd, &v, sizeof(v), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(v) ? 0 : (n < 0 ? -errno : -EPROTO);
}

/* 0 (value in *v), -ETIMEDOUT, -EPIPE (peer gone), or -errno. */
static inline int ipc_recv_u64(int fd, uint64_t *v, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int pr;
	do
		pr = poll(&pfd, 1, timeout_ms);
	while (pr < 0 && errno == EINTR);
	if (pr < 0)
		return -errno;
	if (pr == 0)
		return -ETIMEDOUT;
	ssize_t n;
	do
		n = recv(fd, v, sizeof(*v), 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -EPIPE;
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*v) ? 0 : -EPROTO;
}

/* Send/receive a block of bytes in one message. */
static inline int ipc_send_blob(int fd, const void *p, size_t n)
{
	ssize_t k;
	do
		k = send(fd, p, n, MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	return k == (ssize_t)n ? 0 : (k < 0 ? -errno : -EPROTO);
}

static inline int ipc_recv_blob(int fd, void *p, size_t n, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int pr;
	do
		pr = poll(&pfd, 1, timeout_ms);
	while (pr < 0 && errno == EINTR);
	if (pr < 0)
		return -errno;
	if (pr == 0)
		return -ETIMEDOUT;
	ssize_t k;
	do
		k = recv(fd, p, n, 0);
	while (k < 0 && errno == EINTR);
	if (k == 0)
		return -EPIPE;
	if (k < 0)
		return -errno;
	return k == (ssize_t)n ? 0 : -EPROTO;
}

/* Child side: wait for the parent's next command (fails the child on error). */
static inline uint64_t child_wait_cmd(int fd, int timeout_ms)
{
	uint64_t v = 0;
	int r = ipc_recv_u64(fd, &v, timeout_ms);
	if (r < 0)
		CHILD_FAIL("waiting for the parent's command: %s", strerror(-r));
	return v;
}

/* Parent side: wait for a child's report (fails the test on error). */
#define parent_wait_u64(fd, vp, timeout_ms)                                                                         \
	do {                                                                                                        \
		int pw_r_ = ipc_recv_u64((fd), (vp), (timeout_ms));                                                 \
		if (pw_r_ < 0)                                                                                      \
			fail_msg("waiting for a child's report on fd %d: %s", (fd), strerror(-pw_r_));              \
	} while (0)

/* --- sockets --------------------------------------------------------------- */

static inline int ipc_seqpacket_pair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0 ? 0 : -errno;
}

/* Send one message with fds (SCM_RIGHTS); nfds may be 0. Returns 0 or -errno. */
static inline int ipc_send_fds(int sock, const void *msg, size_t len, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	if (nfds > 16)
		return -EINVAL;
	struct iovec iov = {.iov_base = (void *)(uintptr_t)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EPROTO);
}

/* Receive one message (up to cap bytes) and its fds (up to 16).
 * Returns the message length, with *nfds set, or -errno. */
static inline ssize_t ipc_recv_fds(int sock, void *msg, size_t cap, int *fds, unsigned *nfds, int timeout_ms)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	int pr;
	do
		pr = poll(&pfd, 1, timeout_ms);
	while (pr < 0 && errno == EINTR);
	if (pr <= 0)
		return pr == 0 ? -ETIMEDOUT : -errno;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = msg, .iov_len = cap};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	unsigned k = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < m && k < 16; i++, k++)
			memcpy(&fds[k], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	*nfds = k;
	return n;
}

/* --- producers ----------------------------------------------------------------- */

/* Write one slice of `len` pattern bytes (key) and take it out. Returns 0 or
 * the buffer's error. */
static inline int ipc_make_slice(struct sv2shm_producer *p, uint64_t key, size_t len, struct sv2shm_slice *out)
{
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	uint8_t *w = sv2shm_buffer_get_writable(b, len);
	if (!w)
		return sv2shm_buffer_last_error(b);
	pat_fill(w, key, 0, len);
	return sv2shm_buffer_get_data_owned(b, out);
}

/* A slice in slot `slot`, for tests that need a slot reused. A shared pool
 * hands out the lowest slot it has not used since it last tidied, so a freed
 * slot comes back only once the others are taken: slices that land elsewhere
 * are held until one lands in `slot`, then let go. Returns 0, the buffer's
 * error, or -ENOENT when every free slot was taken and none was `slot`. */
static inline int ipc_make_slice_in(struct sv2shm_producer *p, uint64_t key, size_t len, unsigned slot,
				    struct sv2shm_slice *out)
{
	struct sv2shm_slice other[64];
	unsigned n = 0;
	int r;
	while ((r = ipc_make_slice(p, key, len, out)) == 0 && out->_slot != slot && n < 64)
		other[n++] = *out;
	if (r == 0 && out->_slot != slot) {
		sv2shm_slice_release(out);
		r = -ENOENT;
	}
	if (r == -EAGAIN && n)
		r = -ENOENT; /* FAIL: full, and `slot` was not among the free ones */
	for (unsigned i = 0; i < n; i++)
		sv2shm_slice_release(&other[i]);
	return r;
}

static inline struct sv2shm_pool_stats ipc_stats(struct sv2shm_producer *p)
{
	struct sv2shm_pool_stats st;
	memset(&st, 0, sizeof(st));
	sv2shm_pool_stats(sv2shm_producer_pool(p), &st);
	return st;
}

static inline uint64_t ipc_mask(struct sv2shm_producer *p)
{
	return ipc_stats(p).mask;
}

/* Does a consumer's notify name fit what was asked and the environment? (A
 * FUTEX_WAKE where the producer's io_uring has futex ops and sockets were
 * not asked for, else a datagram; through io_uring where it works.) */
static inline bool ipc_notify_name_ok(const char *name, int notify)
{
	if (!name)
		return false;
	if (notify == SV2SHM_NOTIFY_SOCKET || ipc_no_uring_env()) {
		if (!strstr(name, "socket-send"))
			return false;
	} else if (!strstr(name, "futex-wake") && !strstr(name, "socket-send")) {
		return false;
	}
	if (ipc_no_uring_env())
		return strncmp(name, "syscall", 7) == 0;
	if (ipc_uring_allowed())
		return strncmp(name, "io_uring", 8) == 0;
	return true;
}

/* --- a consumer process that obeys commands ------------------------------------- */
/*
 * Commands are u64: op | idx << 8 | arg << 16; every command gets one u64
 * reply (a signed result). The child keeps up to 16 slices in a table.
 *   OP_RECV idx seq         recv (5 s) into tab[idx]; check the bytes are
 *                           pattern `seq`: reply 1, -EIO (bytes), or recv's
 *                           result (0 on timeout, or an error)
 *   OP_RECV_LONG idx seq    the same with a 30 s timeout
 *   OP_COPY idx dst         tab[dst] = tab[idx] (a copy of the struct)
 *   OP_RELEASE idx          reply sv2shm_slice_release(&tab[idx])
 *   OP_CHECK idx            reply 0 if tab[idx] still has its bytes, else -EIO
 *   OP_RELEASE_AT idx ms    sleep ms, then release tab[idx] (must be 0):
 *                           reply the CLOCK_MONOTONIC time (ns) just before it
 *   OP_RELEASE_ALL          release every slice held (each must be 0); reply
 *                           how many
 *   OP_RECV_RELEASE n seq   n times: recv (30 s), check (pattern seq, seq+1,
 *                           ...), release; reply n
 *   OP_DIE_MID_RELEASE idx  check the control block cannot be mapped
 *                           writable, then SIGKILL ourselves holding
 *                           tab[idx]: a release is one store now, so this is
 *                           the closest to a consumer crashing inside one
 *   OP_FREE                 reply sv2shm_consumer_free()
 *   OP_ABANDON              reply 0 and _exit(0) at once (no cleanup)
 *   OP_EXIT                 sv2shm_consumer_free() must be 0; reply 0; exit
 */
enum {
	OP_RECV = 1,
	OP_RECV_LONG,
	OP_COPY,
	OP_RELEASE,
	OP_CHECK,
	OP_RELEASE_AT,
	OP_RELEASE_ALL,
	OP_RECV_RELEASE,
	OP_DIE_MID_RELEASE,
	OP_FREE,
	OP_ABANDON,
	OP_EXIT,
};
#define CMD(op, a, arg) ((uint64_t)(op) | ((uint64_t)(a) << 8) | ((uint64_t)(arg) << 16))

struct cmd_child {
	int sock;
	int ctl;
	uint64_t seed;
	struct sv2shm_consumer_options opts;
};

static inline int cmd_consumer(void *argp)
{
	const struct cmd_child *a = argp;
	struct sv2shm_consumer *c = NULL;
	int r = sv2shm_consumer_new(a->sock, &a->opts, &c);
	if (r != 0)
		CHILD_FAIL("sv2shm_consumer_new: %d (%s)", r, sv2shm_strerror(r));
	struct sv2shm_slice tab[16];
	uint64_t tabseq[16];
	memset(tab, 0, sizeof(tab));
	memset(tabseq, 0, sizeof(tabseq));
	for (;;) {
		uint64_t cmdv = child_wait_cmd(a->ctl, 60000);
		unsigned op = (unsigned)(cmdv & 0xff), idx = (unsigned)((cmdv >> 8) & 0xff);
		uint64_t arg = cmdv >> 16;
		int64_t res = 0;
		CHECK(idx < 16);
		switch (op) {
		case OP_RECV:
		case OP_RECV_LONG:
			res = sv2shm_consumer_recv(c, &tab[idx], op == OP_RECV ? 5000 : 30000);
			if (res == 1) {
				tabseq[idx] = arg;
				if (pat_check(tab[idx].data, pat_key(a->seed, arg), tab[idx].len) != tab[idx].len)
					res = -EIO;
			}
			break;
		case OP_COPY:
			CHECK(arg < 16);
			tab[arg] = tab[idx];
			tabseq[arg] = tabseq[idx];
			break;
		case OP_RELEASE:
			res = sv2shm_slice_release(&tab[idx]);
			if (res == 0)
				CHECK_EQ(sv2shm_slice_kind(&tab[idx]), SV2SHM_SLICE_NONE);
			break;
		case OP_CHECK:
			res = pat_check(tab[idx].data, pat_key(a->seed, tabseq[idx]), tab[idx].len) == tab[idx].len ? 0
															 : -EIO;
			break;
		case OP_RELEASE_AT: {
			ipc_sleep_ms(arg);
			uint64_t t = ipc_now_ns();
			CHECK_EQ(sv2shm_slice_release(&tab[idx]), 0);
			res = (int64_t)t;
			break;
		}
		case OP_RELEASE_ALL:
			for (int i = 0; i < 16; i++)
				if (sv2shm_slice_kind(&tab[i]) != SV2SHM_SLICE_NONE) {
					CHECK_EQ(sv2shm_slice_release(&tab[i]), 0);
					res++;
				}
			break;
		case OP_RECV_RELEASE:
			for (unsigned i = 0; i < idx; i++) {
				struct sv2shm_slice s;
				int rr = sv2shm_consumer_recv(c, &s, 30000);
				if (rr != 1)
					CHILD_FAIL("OP_RECV_RELEASE %u/%u: recv returned %d", i, idx, rr);
				CHECK_EQ(pat_check(s.data, pat_key(a->seed, arg + i), s.len), s.len);
				CHECK_EQ(sv2shm_slice_release(&s), 0);
				res++;
			}
			break;
		case OP_DIE_MID_RELEASE: {
			/* A release is one store into our own ring now; the closest
			 * thing to dying halfway is dying with the slice open and the
			 * control block in hand: it cannot even be mapped writable. */
			struct sv2shm_region *rg = sv2shm_consumer_region(c);
			void *w = mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED,
				       sv2shm_region_fd(rg, 0), 0);
			CHECK(w == MAP_FAILED);
			(void)idx;
			raise(SIGKILL);
			CHILD_FAIL("still alive after SIGKILL");
		}
		case OP_FREE:
			res = sv2shm_consumer_free(c);
			if (res == 0)
				c = NULL;
			break;
		case OP_ABANDON:
			CHECK_EQ(ipc_send_u64(a->ctl, 0), 0);
			_exit(0);
		case OP_EXIT:
			if (c)
				CHECK_EQ(sv2shm_consumer_free(c), 0);
			CHECK_EQ(ipc_send_u64(a->ctl, 0), 0);
			return 0;
		default:
			CHILD_FAIL("unknown command %u", op);
		}
		CHECK_EQ(ipc_send_u64(a->ctl, (uint64_t)res), 0);
	}
}

/* Fork a command consumer; *data_sock is the end for the producer, *ctl_sock
 * the parent's end of the command channel. `arg` must outlive the fork call
 * only (the child has its own copy). */
static inline pid_t spawn_cmd_consumer_opts(int *data_sock, int *ctl_sock, struct cmd_child *arg, uint64_t seed,
					    const struct sv2shm_consumer_options *opts)
{
	int sv[2], cv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	memset(arg, 0, sizeof(*arg));
	arg->sock = sv[1];
	arg->ctl = cv[1];
	arg->seed = seed;
	if (opts)
		arg->opts = *opts;
	int keep[2] = {sv[1], cv[1]};
	pid_t pid = ipc_spawn(cmd_consumer, arg, keep, 2, 120);
	assert_true(pid > 0);
	close(sv[1]);
	close(cv[1]);
	*data_sock = sv[0];
	*ctl_sock = cv[0];
	return pid;
}

static inline pid_t spawn_cmd_consumer(int *data_sock, int *ctl_sock, struct cmd_child *arg, uint64_t seed)
{
	return spawn_cmd_consumer_opts(data_sock, ctl_sock, arg, seed, NULL);
}

/* Send a command, wait for its reply (10 s). */
static inline int64_t cmd(int ctl, uint64_t c)
{
	uint64_t v = 0;
	assert_int_equal(ipc_send_u64(ctl, c), 0);
	parent_wait_u64(ctl, &v, 10000);
	return (int64_t)v;
}

/* --- forging ------------------------------------------------------------------------ */

static inline void encode(const struct sv2shm_desc *d, uint8_t raw[SV2SHM_DESC_SIZE])
{
	assert_int_equal(sv2shm_desc_encode(d, raw), 0);
}

/* A memfd of `size` bytes holding `content` (NULL: zeros, or garbage when
 * garbage_seed != 0), with `seals`. */
static inline int fake_memfd(size_t size, const void *content, uint64_t garbage_seed, unsigned seals)
{
	int fd = memfd_create("sv2shm-test-fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (size && (content || garbage_seed)) {
		uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		assert_true(m != MAP_FAILED);
		if (content) {
			memcpy(m, content, size);
		} else {
			uint64_t g = garbage_seed;
			for (size_t i = 0; i < size; i++)
				m[i] = (uint8_t)ipc_rand(&g);
		}
		munmap(m, size);
	}
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

/*
 * Man in the middle: let a real producer set up consumer 1 on a socket whose
 * other end we hold, take the setup message (and its fds) ourselves, and
 * forward it to an in-process consumer over our own socket. We then hold the
 * ring (read-write) and the control block (read-only: it is write-sealed),
 * and can write into the ring or onto the socket as a producer would.
 */
struct mitm {
	struct sv2shm_msg_setup msg;
	int fds[SETUP_NFDS];
	int fake_sock; /* our end towards the consumer under test */
	int real_peer; /* the end the real producer talks to */
	struct sv2shm_ring *ring;
	size_t ring_size;
	struct sv2shm_ctl *ctl;
};

/* Capture the setup message the producer sends for a new consumer. */
static inline void mitm_capture(struct sv2shm_producer *p, struct mitm *m, int expect_id)
{
	int a[2];
	assert_int_equal(ipc_seqpacket_pair(a), 0);
	assert_int_equal(sv2shm_producer_add_consumer(p, a[0]), expect_id);
	unsigned n = 0;
	ssize_t len = ipc_recv_fds(a[1], &m->msg, sizeof(m->msg), m->fds, &n, 1000);
	assert_int_equal(len, (ssize_t)sizeof(m->msg));
	assert_int_equal(n, SETUP_NFDS);
	m->real_peer = a[1];
	m->fake_sock = -1;
	m->ring_size = ring_bytes(m->msg.ring_entries);
	m->ring = mmap(NULL, m->ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fds[SETUP_FD_RING], 0);
	assert_true(m->ring != MAP_FAILED);
	m->ctl = mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ, MAP_SHARED, m->fds[SETUP_FD_CTL], 0);
	assert_true(m->ctl != MAP_FAILED);
}

static inline struct sv2shm_consumer *mitm_consumer(struct sv2shm_producer *p, struct mitm *m, int expect_id)
{
	mitm_capture(p, m, expect_id);
	int b[2];
	assert_int_equal(ipc_seqpacket_pair(b), 0);
	assert_int_equal(ipc_send_fds(b[0], &m->msg, sizeof(m->msg), m->fds, SETUP_NFDS), 0);
	m->fake_sock = b[0];
	struct sv2shm_consumer *c = NULL;
	assert_int_equal(sv2shm_consumer_new(b[1], NULL, &c), 0);
	ipc_hold(c);
	return c;
}

static inline void mitm_close(struct mitm *m)
{
	munmap(m->ring, m->ring_size);
	munmap(m->ctl, sizeof(struct sv2shm_ctl));
	for (int i = 0; i < SETUP_NFDS; i++)
		close(m->fds[i]);
	if (m->fake_sock >= 0)
		close(m->fake_sock);
	close(m->real_peer);
}

/* Entry i of a ring (wire.h: a descriptor, then its sequence word). */
static inline uint8_t *ring_slot(struct sv2shm_ring *r, uint32_t entries, uint32_t i)
{
	return r->slots + (size_t)(i & (entries - 1u)) * SV2SHM_RING_ENTRY_SIZE;
}

/* Write a descriptor into the ring the way the producer does: the entry,
 * its sequence word, then the head. */
static inline void inject(struct mitm *m, const struct sv2shm_desc *d)
{
	uint32_t head = atomic_load(&m->ring->head);
	uint8_t *e = ring_slot(m->ring, m->msg.ring_entries, head);
	encode(d, e);
	atomic_store((_Atomic uint32_t *)(void *)(e + RING_ENTRY_SEQ), head + 1u);
	atomic_store(&m->ring->head, head + 1u);
}

#endif /* SV2SHM_TEST_IPC_COMMON_H */
