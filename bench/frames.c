/*
 * sv2shm-bench frames: decoding a stream of back-to-back Sv2 frames from a
 * socket, frames per second and read() calls per frame.
 *
 * Per transport (a Unix stream socketpair, a TCP connection on 127.0.0.1)
 * and payload size (40 B, 300 B, 4 KiB, 64 KiB) a forked sender writes N
 * frames back to back in bulk: a 6-byte header from
 * sv2shm_frame_header_encode() (extension_type EXT_TYPE, msg_type = the
 * frame's sequence number mod 256, msg_length = size), then `size` payload
 * bytes: the sequence number (u64 LE) in the first 8, a byte pattern that
 * depends on the position after that. The sender prepares about CHUNK bytes
 * of frames once, stamps the sequence numbers into them and write()s the
 * whole chunk (looping on partial writes), then closes its end.
 *
 * The receiver (this process) decodes every frame until the end of the
 * stream into a buffer pool (POOL_CAPACITY bytes, POOL_SLOTS slots, policy
 * WAIT), checks it (length, header fields, sequence number, the payload's
 * last byte) and releases its slice at once. Contenders:
 *   sv2shm     the library's decoder: sv2shm_frame_decoder_read_fd() until
 *              -ENODATA; read() calls from sv2shm_frame_decoder_stats().
 *   two-reads  the seed codec's way, written here: read() exactly the 6
 *              header bytes, get_writable(6 + length), copy the header in,
 *              read() the payload straight into the writable area (both
 *              looping on short reads), get_data_owned(). Every read() call
 *              is counted.
 * A run is timed from the first byte being readable (poll()) to the end of
 * the stream. Each contender has its own pool, created once and touched
 * whole before the first run; each run has its own socket and sender.
 *
 * Method: per (transport, size) the contenders run in ROUNDS interleaved
 * rounds (sv2shm, two-reads, sv2shm, ...), each with its own N (counts[]:
 * about 0.3 s a run). frames_per_s = N / the median round's time; reads_per_frame = the median over the rounds of read()
 * calls / N (the read() that sees the end of the stream included);
 * median_ns = the median round's time per frame.
 *
 * Robustness: the sender has PR_SET_PDEATHSIG(SIGKILL) and its own alarm();
 * the receiver's socket has SO_RCVTIMEO, so a stalled sender ends the run
 * with an error instead of a hang; a failed run kills its sender.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/sv2shm.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_frames_main(int argc, char **argv);

/* ------------------------------------------------------------------------- */
/* Parameters                                                                 */
/* ------------------------------------------------------------------------- */

#define HDR SV2SHM_FRAME_HEADER_SIZE
#define EXT_TYPE ((uint16_t)(SV2SHM_FRAME_CHANNEL_BIT | 0x0001u))
#define CHUNK (256u << 10)          /* the sender's write() size, about */
#define SOCK_BUF (4 << 20)          /* SO_SNDBUF / SO_RCVBUF asked for (the kernel may cap it) */
#define POOL_CAPACITY (4u << 20)    /* the receivers' pools */
#define POOL_SLOTS 64u
#define WAIT_TIMEOUT_MS 5000        /* pool WAIT, first byte, every read() */
#define SENDER_TIMEOUT_S 120u       /* the sender's own alarm() */
#define ROUNDS 3u
#define QUICK_ROUNDS 1u
#define QUICK_DIV 4u                /* --quick: a quarter of the frames */
#define ERR_LEN 384

enum transport { T_UNIX, T_TCP, NTRANSPORTS };
static const char *const transport_name[NTRANSPORTS] = {"unix", "tcp"};

enum contender { C_SV2SHM, C_TWO_READS, NCONT };
static const char *const cont_name[NCONT] = {"sv2shm", "two-reads"};

static const size_t sizes[] = {40, 300, 4096, 65536};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
/*
 * Frames per run (default run; --quick takes a quarter): about 0.3 s each on
 * a 2-CPU EPYC VM. Per contender, since they are up to ~30x apart at small
 * sizes: one count would make one contender's runs last seconds or the
 * other's milliseconds.
 */
static const uint64_t counts[NCONT][NSIZES] = {
	[C_SV2SHM] = {4000000, 3000000, 300000, 24000},
	[C_TWO_READS] = {300000, 300000, 200000, 24000},
};

/* What the sender reports (a shared anonymous mapping). */
struct sender_shared {
	char err[ERR_LEN];
};

struct frames_ctx {
	int cpu_recv, cpu_send;              /* -1: not pinned */
	struct sv2shm_pool *pool[NCONT];     /* one per contender */
	struct sender_shared *sh;
	int sockbuf[NTRANSPORTS][2];         /* receiver's SO_RCVBUF, sender's SO_SNDBUF (0: not known yet) */
};

struct run_result {
	uint64_t ns;    /* first byte to the end of the stream */
	uint64_t reads; /* read() calls */
};

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */
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

/* Append s to err, cut at ERR_LEN - 1 bytes. */
static void err_append(char *err, const char *s)
{
	size_t len = strlen(err), m = strlen(s);
	if (m > ERR_LEN - 1 - len)
		m = ERR_LEN - 1 - len;
	memcpy(err + len, s, m);
	err[len + m] = '\0';
}

static inline uint8_t msg_type_of(uint64_t seq)
{
	return (uint8_t)seq;
}

/* Payload byte j (j >= 8) of every frame. */
static inline uint8_t pattern(size_t j)
{
	return (uint8_t)(j * 131u + 7u);
}

/* The sequence number's bytes in a payload of `size` bytes: the first 8 (fewer
 * when the payload is shorter). */
static inline size_t seq_bytes(size_t size)
{
	return size < 8 ? size : 8;
}

static void put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/*
 * Check a received frame (header + payload, `flen` bytes) against what the
 * sender wrote as frame `seq`: its length, the header's three fields, the
 * sequence number and the payload's last byte. Returns 0, or -1 with err set.
 */
static int check_frame(const uint8_t *f, size_t flen, size_t size, uint64_t seq, char *err)
{
	if (flen != HDR + size)
		return errf(err, "frame %" PRIu64 ": %zu bytes, want %zu", seq, flen, (size_t)HDR + size);
	unsigned ext = (unsigned)f[0] | (unsigned)f[1] << 8;
	unsigned long len = (unsigned long)f[3] | (unsigned long)f[4] << 8 | (unsigned long)f[5] << 16;
	if (ext != EXT_TYPE || f[2] != msg_type_of(seq) || len != size)
		return errf(err, "frame %" PRIu64 ": header extension_type 0x%04x msg_type %u msg_length %lu, want "
				 "0x%04x %u %zu",
			    seq, ext, f[2], len, (unsigned)EXT_TYPE, msg_type_of(seq), size);
	const uint8_t *p = f + HDR;
	size_t k = seq_bytes(size);
	uint64_t want = k == 8 ? seq : seq & ((UINT64_C(1) << (8 * k)) - 1);
	uint64_t got = get_le(p, k);
	if (got != want)
		return errf(err, "frame %" PRIu64 ": sequence number %" PRIu64 " in the payload (frames lost or "
				 "reordered)",
			    seq, got);
	if (size > 8 && p[size - 1] != pattern(size - 1))
		return errf(err, "frame %" PRIu64 ": payload byte %zu is 0x%02x, want 0x%02x", seq, size - 1,
			    p[size - 1], pattern(size - 1));
	return 0;
}

static int set_int_opt(int fd, int level, int opt, int v, const char *what, char *err)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)) != 0)
		return errf(err, "setsockopt(%s, %d): %s", what, v, strerror(errno));
	return 0;
}

static int get_int_opt(int fd, int level, int opt, const char *what, int *out, char *err)
{
	socklen_t len = sizeof(*out);
	if (getsockopt(fd, level, opt, out, &len) != 0)
		return errf(err, "getsockopt(%s): %s", what, strerror(errno));
	return 0;
}

/* Ask for SOCK_BUF bytes of send and receive buffer (the kernel caps it at
 * net.core.[rw]mem_max; that is fine). */
static int set_bufs(int fd, char *err)
{
	if (set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, SOCK_BUF, "SO_SNDBUF", err) < 0 ||
	    set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, SOCK_BUF, "SO_RCVBUF", err) < 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Sockets                                                                    */
/* ------------------------------------------------------------------------- */

/* A connected stream over 127.0.0.1: fds[0] the accepted end, fds[1] the
 * connecting one. */
static int tcp_pair(int fds[2], char *err)
{
	int l = -1, s = -1, a = -1;
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	socklen_t alen = sizeof(addr);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0) {
		errf(err, "socket(AF_INET, SOCK_STREAM): %s", strerror(errno));
		goto fail;
	}
	/* Set on the listener, the buffers are inherited by the accepted socket
	 * and size the window it announces. */
	if (set_bufs(l, err) < 0)
		goto fail;
	if (bind(l, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		errf(err, "bind(127.0.0.1:0): %s", strerror(errno));
		goto fail;
	}
	if (listen(l, 1) != 0) {
		errf(err, "listen(): %s", strerror(errno));
		goto fail;
	}
	if (getsockname(l, (struct sockaddr *)&addr, &alen) != 0) {
		errf(err, "getsockname(): %s", strerror(errno));
		goto fail;
	}
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		errf(err, "socket(AF_INET, SOCK_STREAM): %s", strerror(errno));
		goto fail;
	}
	if (set_bufs(s, err) < 0)
		goto fail;
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		errf(err, "connect(127.0.0.1:%u): %s", (unsigned)ntohs(addr.sin_port), strerror(errno));
		goto fail;
	}
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0) {
		errf(err, "accept4(): %s", strerror(errno));
		goto fail;
	}
	if (set_int_opt(s, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", err) < 0)
		goto fail;
	close(l);
	fds[0] = a;
	fds[1] = s;
	return 0;
fail:
	if (a >= 0)
		close(a);
	if (s >= 0)
		close(s);
	if (l >= 0)
		close(l);
	return -1;
}

/* fds[0] for the receiver (blocking, SO_RCVTIMEO), fds[1] for the sender. */
static int make_pair(struct frames_ctx *x, enum transport t, int fds[2], char *err)
{
	if (t == T_UNIX) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
			return errf(err, "socketpair(AF_UNIX, SOCK_STREAM): %s", strerror(errno));
		if (set_bufs(fds[0], err) < 0 || set_bufs(fds[1], err) < 0)
			goto fail;
	} else if (tcp_pair(fds, err) < 0) {
		return -1;
	}
	struct timeval tv = {.tv_sec = WAIT_TIMEOUT_MS / 1000, .tv_usec = (WAIT_TIMEOUT_MS % 1000) * 1000};
	if (setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
		errf(err, "setsockopt(SO_RCVTIMEO): %s", strerror(errno));
		goto fail;
	}
	if (!x->sockbuf[t][0] && (get_int_opt(fds[0], SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", &x->sockbuf[t][0], err) < 0 ||
				  get_int_opt(fds[1], SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", &x->sockbuf[t][1], err) < 0))
		goto fail;
	return 0;
fail:
	close(fds[0]);
	close(fds[1]);
	return -1;
}

/* ------------------------------------------------------------------------- */
/* Sender (the child)                                                         */
/* ------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n, char *err)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errf(err, "write(%zu bytes): %s", n, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write n frames of `size` payload bytes to fd in chunks of about CHUNK
 * bytes, close fd and exit: 0, or 1 with sh->err set. */
static void sender_main(const struct frames_ctx *x, int fd, size_t size, uint64_t n, pid_t parent)
	__attribute__((noreturn));
static void sender_main(const struct frames_ctx *x, int fd, size_t size, uint64_t n, pid_t parent)
{
	char *err = x->sh->err;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
		errf(err, "prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
		_exit(1);
	}
	if (getppid() != parent)
		_exit(1); /* the receiver is gone already */
	alarm(SENDER_TIMEOUT_S);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		errf(err, "signal(SIGPIPE): %s", strerror(errno));
		_exit(1);
	}
	if (x->cpu_send >= 0) {
		int r = bench_pin_thread(x->cpu_send, NULL, 0);
		if (r < 0) {
			errf(err, "pinning the sender to CPU %d: %s", x->cpu_send, strerror(-r));
			_exit(1);
		}
	}
	size_t flen = HDR + size;
	size_t k = (CHUNK + flen - 1) / flen; /* frames per write() */
	uint8_t *buf = malloc(k * flen);
	if (!buf) {
		errf(err, "malloc(%zu): out of memory", k * flen);
		_exit(1);
	}
	for (size_t i = 0; i < k; i++) {
		uint8_t *f = buf + i * flen;
		int r = sv2shm_frame_header_encode(f, EXT_TYPE, 0, (uint32_t)size);
		if (r < 0) {
			errf(err, "sv2shm_frame_header_encode(%zu): %s", size, sv2shm_strerror(r));
			_exit(1);
		}
		for (size_t j = seq_bytes(size); j < size; j++)
			f[HDR + j] = pattern(j);
	}
	for (uint64_t seq = 0; seq < n;) {
		uint64_t m = n - seq < k ? n - seq : k;
		for (uint64_t i = 0; i < m; i++) {
			uint8_t *f = buf + i * flen;
			f[2] = msg_type_of(seq + i);
			put_le(f + HDR, seq + i, seq_bytes(size));
		}
		if (write_all(fd, buf, (size_t)m * flen, err) < 0)
			_exit(1);
		seq += m;
	}
	free(buf);
	if (close(fd) != 0) {
		errf(err, "close(): %s", strerror(errno));
		_exit(1);
	}
	_exit(0);
}

/* ------------------------------------------------------------------------- */
/* Receivers                                                                  */
/* ------------------------------------------------------------------------- */

/* Wait until the first byte is readable (not counted as a read). */
static int wait_first_byte(int fd, char *err)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	for (;;) {
		int r = poll(&pfd, 1, WAIT_TIMEOUT_MS);
		if (r > 0)
			return 0;
		if (r == 0)
			return errf(err, "no data from the sender within %d ms", WAIT_TIMEOUT_MS);
		if (errno != EINTR)
			return errf(err, "poll(): %s", strerror(errno));
	}
}

/* The library's decoder. */
static int recv_sv2shm(int fd, struct sv2shm_buffer *buf, size_t size, uint64_t n, struct run_result *res,
		       char *err)
{
	struct sv2shm_frame_decoder *d = NULL;
	int r = sv2shm_frame_decoder_new(buf, 0, &d);
	if (r < 0)
		return errf(err, "sv2shm_frame_decoder_new(): %s", sv2shm_strerror(r));
	int rc = -1;
	uint64_t got = 0;
	if (wait_first_byte(fd, err) < 0)
		goto out;
	uint64_t t0 = bench_now_ns();
	for (;;) {
		struct sv2shm_frame fr;
		r = sv2shm_frame_decoder_read_fd(d, fd, &fr);
		if (r == 1) {
			int bad = 0;
			if (got >= n)
				bad = errf(err, "more frames than the %" PRIu64 " sent", n);
			else if (fr.msg_length != size || fr.msg_type != msg_type_of(got) ||
				 fr.extension_type != EXT_TYPE || !fr.channel_msg)
				bad = errf(err, "frame %" PRIu64 ": decoder says extension_type 0x%04x msg_type %u "
						"msg_length %" PRIu32 " channel_msg %d",
					   got, fr.extension_type, fr.msg_type, fr.msg_length, fr.channel_msg);
			else
				bad = check_frame(fr.slice.data, fr.slice.len, size, got, err);
			int rr = sv2shm_slice_release(&fr.slice);
			if (bad < 0)
				goto out;
			if (rr < 0) {
				errf(err, "sv2shm_slice_release(frame %" PRIu64 "): %s", got, sv2shm_strerror(rr));
				goto out;
			}
			got++;
			continue;
		}
		if (r == -ENODATA)
			break;
		if (r == 0 || r == -EAGAIN)
			errf(err, "sv2shm_frame_decoder_read_fd(): no data for %d ms after frame %" PRIu64
				  " (the sender stalled?)",
			     WAIT_TIMEOUT_MS, got);
		else
			errf(err, "sv2shm_frame_decoder_read_fd() after frame %" PRIu64 ": %s", got, sv2shm_strerror(r));
		goto out;
	}
	res->ns = bench_now_ns() - t0;
	if (got != n) {
		errf(err, "the stream ended after %" PRIu64 " of %" PRIu64 " frames", got, n);
		goto out;
	}
	struct sv2shm_frame_decoder_stats st;
	r = sv2shm_frame_decoder_stats(d, &st);
	if (r < 0) {
		errf(err, "sv2shm_frame_decoder_stats(): %s", sv2shm_strerror(r));
		goto out;
	}
	if (st.frames != n) {
		errf(err, "sv2shm_frame_decoder_stats(): %" PRIu64 " frames, %" PRIu64 " handed out", st.frames, n);
		goto out;
	}
	res->reads = st.reads;
	rc = 0;
out:
	sv2shm_frame_decoder_free(d);
	return rc;
}

/* read() exactly n bytes of frame `seq`, counting every call. Returns 0, 1 at
 * the end of the stream before the first byte (when eof_ok), or -1 with err
 * set. */
static int read_exact(int fd, uint8_t *p, size_t n, bool eof_ok, uint64_t seq, uint64_t *reads, char *err)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, p + done, n - done);
		(*reads)++;
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		if (r == 0) {
			if (done == 0 && eof_ok)
				return 1;
			return errf(err, "frame %" PRIu64 ": end of stream after %zu of %zu bytes of its %s", seq, done,
				    n, eof_ok ? "header" : "payload");
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return errf(err, "frame %" PRIu64 ": read(): no data for %d ms (the sender stalled?)", seq,
				    WAIT_TIMEOUT_MS);
		return errf(err, "frame %" PRIu64 ": read(%zu bytes): %s", seq, n - done, strerror(errno));
	}
	return 0;
}

/* The seed codec's way: the header with one read, the payload with another. */
static int recv_two_reads(int fd, struct sv2shm_buffer *buf, size_t size, uint64_t n, struct run_result *res,
			  char *err)
{
	uint64_t reads = 0, got = 0;
	int rc = -1;
	if (wait_first_byte(fd, err) < 0)
		goto out;
	uint64_t t0 = bench_now_ns();
	for (;;) {
		uint8_t hdr[HDR];
		int r = read_exact(fd, hdr, HDR, true, got, &reads, err);
		if (r < 0)
			goto out;
		if (r == 1)
			break;
		uint32_t len = (uint32_t)hdr[3] | (uint32_t)hdr[4] << 8 | (uint32_t)hdr[5] << 16;
		if (len != size) { /* checked before get_writable(): a bad length could be huge */
			errf(err, "frame %" PRIu64 ": msg_length %" PRIu32 ", want %zu", got, len, size);
			goto out;
		}
		uint8_t *w = sv2shm_buffer_get_writable(buf, HDR + (size_t)len);
		if (!w) {
			errf(err, "sv2shm_buffer_get_writable(%zu): %s", HDR + (size_t)len,
			     sv2shm_strerror(sv2shm_buffer_last_error(buf)));
			goto out;
		}
		memcpy(w, hdr, HDR);
		if (read_exact(fd, w + HDR, len, false, got, &reads, err) < 0)
			goto out;
		struct sv2shm_slice s;
		r = sv2shm_buffer_get_data_owned(buf, &s);
		if (r < 0) {
			errf(err, "sv2shm_buffer_get_data_owned(): %s", sv2shm_strerror(r));
			goto out;
		}
		int bad = got >= n ? errf(err, "more frames than the %" PRIu64 " sent", n)
				   : check_frame(s.data, s.len, size, got, err);
		r = sv2shm_slice_release(&s);
		if (bad < 0)
			goto out;
		if (r < 0) {
			errf(err, "sv2shm_slice_release(frame %" PRIu64 "): %s", got, sv2shm_strerror(r));
			goto out;
		}
		got++;
	}
	res->ns = bench_now_ns() - t0;
	if (got != n) {
		errf(err, "the stream ended after %" PRIu64 " of %" PRIu64 " frames", got, n);
		goto out;
	}
	res->reads = reads;
	rc = 0;
out:
	if (rc < 0 && sv2shm_buffer_len(buf) > 0) {
		/* Drop a partial frame so the pool is clean for the next run. */
		struct sv2shm_slice s;
		if (sv2shm_buffer_get_data_owned(buf, &s) == 0)
			sv2shm_slice_release(&s);
	}
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Runs                                                                       */
/* ------------------------------------------------------------------------- */

/* Reap the sender (killing it first when `kill_it`). Returns 0 when it wrote
 * everything and exited 0, else -1 with err set (or kept, with the sender's
 * own failure appended: it explains the receiver's, e.g. a short stream). */
static int reap_sender(const struct frames_ctx *x, pid_t pid, bool kill_it, char *err)
{
	if (kill_it && kill(pid, SIGKILL) != 0 && errno != ESRCH)
		errf(err, "kill(sender %d): %s", (int)pid, strerror(errno));
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return errf(err, "waitpid(sender %d): %s", (int)pid, strerror(errno));
	}
	char why[ERR_LEN] = "";
	if (x->sh->err[0])
		snprintf(why, sizeof(why), "%s", x->sh->err);
	else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
		snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st) && !(kill_it && WTERMSIG(st) == SIGKILL))
		snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (why[0]) {
		err_append(err, err[0] ? "; sender: " : "sender: ");
		err_append(err, why);
		return -1;
	}
	return kill_it ? -1 : 0;
}

/* One run: a fresh socket and sender, n frames decoded by contender c. */
static int run_one(struct frames_ctx *x, enum contender c, enum transport t, size_t size, uint64_t n,
		   struct run_result *res, char *err)
{
	int fds[2];
	if (make_pair(x, t, fds, err) < 0)
		return -1;
	x->sh->err[0] = '\0';
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		errf(err, "fork(): %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		sender_main(x, fds[1], size, n, parent);
	}
	close(fds[1]);
	struct sv2shm_buffer *buf = sv2shm_pool_buffer(x->pool[c]);
	int rc = c == C_SV2SHM ? recv_sv2shm(fds[0], buf, size, n, res, err)
			       : recv_two_reads(fds[0], buf, size, n, res, err);
	/* Reap (or kill) the sender before closing our end: a sender error is then
	 * its own, never an EPIPE we caused. */
	if (reap_sender(x, pid, rc < 0, err) < 0)
		rc = -1;
	close(fds[0]);
	return rc;
}

/* A pool for one contender, its whole region touched once (no page fault in
 * a timed run). */
static int make_pool(struct sv2shm_pool **out, char *err)
{
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = POOL_CAPACITY;
	o.slots = POOL_SLOTS;
	o.policy = SV2SHM_POOL_WAIT;
	o.wait_timeout_ms = WAIT_TIMEOUT_MS;
	struct sv2shm_pool *p = NULL;
	int r = sv2shm_pool_new(&o, &p);
	if (r < 0)
		return errf(err, "sv2shm_pool_new(capacity %u, %u slots, WAIT): %s", POOL_CAPACITY, POOL_SLOTS,
			    sv2shm_strerror(r));
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t *w = sv2shm_buffer_get_writable(b, POOL_CAPACITY);
	if (!w) {
		errf(err, "sv2shm_buffer_get_writable(%u) (touching the pool): %s", POOL_CAPACITY,
		     sv2shm_strerror(sv2shm_buffer_last_error(b)));
		sv2shm_pool_destroy(p);
		return -1;
	}
	memset(w, 0, POOL_CAPACITY);
	struct sv2shm_slice s;
	r = sv2shm_buffer_get_data_owned(b, &s);
	if (r == 0)
		r = sv2shm_slice_release(&s);
	if (r < 0) {
		errf(err, "touching the pool (get_data_owned, release): %s", sv2shm_strerror(r));
		sv2shm_pool_destroy(p);
		return -1;
	}
	*out = p;
	return 0;
}

struct block_result {
	bool ok[NCONT];
	double fps[NCONT];   /* frames per second (median round) */
	double rpf[NCONT];   /* read() calls per frame (median) */
	double ns_per_frame[NCONT];
};

/* Every contender in interleaved rounds for one transport and size. Returns
 * 0, or -1 when a run failed (noted in the report). */
static int run_block(struct frames_ctx *x, struct bench_report *rep, enum transport t, size_t si,
		     const uint64_t n[NCONT], unsigned rounds, struct block_result *out)
{
	uint64_t ns[NCONT][ROUNDS], reads[NCONT][ROUNDS];
	bool failed[NCONT] = {false};
	char szs[32];
	bench_fmt_size(sizes[si], szs, sizeof(szs));
	uint64_t t_start = bench_now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		bench_progress("frames %-4s %7s round %u/%u:", transport_name[t], szs, r + 1, rounds);
		for (int c = 0; c < NCONT; c++) {
			if (failed[c])
				continue;
			char err[ERR_LEN] = "";
			struct run_result res = {0, 0};
			if (run_one(x, (enum contender)c, t, sizes[si], n[c], &res, err) < 0) {
				bench_progress(" %s FAILED", cont_name[c]);
				bench_report_note(rep, "frames %s %s %s round %u: %s", transport_name[t], szs, cont_name[c],
						  r + 1, err);
				failed[c] = true;
				continue;
			}
			bench_progress(" %s", cont_name[c]);
			ns[c][r] = res.ns;
			reads[c][r] = res.reads;
		}
		bench_progress("\n");
	}
	for (int c = 0; c < NCONT; c++) {
		out->ok[c] = !failed[c];
		if (failed[c])
			continue;
		struct bench_stats st_ns, st_reads;
		bench_stats_compute(ns[c], rounds, &st_ns);
		bench_stats_compute(reads[c], rounds, &st_reads);
		out->fps[c] = (double)n[c] * 1e9 / st_ns.median_ns;
		out->rpf[c] = st_reads.median_ns / (double)n[c];
		out->ns_per_frame[c] = st_ns.median_ns / (double)n[c];
		bench_progress("  %-10s %13.0f frames/s  %8.4f reads/frame  %8.1f ns/frame\n", cont_name[c], out->fps[c],
			       out->rpf[c], out->ns_per_frame[c]);
	}
	bench_progress("  (%.1f s)\n", (double)(bench_now_ns() - t_start) / 1e9);
	return failed[C_SV2SHM] || failed[C_TWO_READS] ? -1 : 0;
}

/* The rows of one block: sv2shm (with its ratio to two-reads), two-reads. */
static int add_rows(struct bench_report *rep, enum transport t, size_t si, const uint64_t n[NCONT], unsigned rounds,
		    const struct block_result *b)
{
	for (int c = 0; c < NCONT; c++) {
		if (!b->ok[c])
			continue;
		struct bench_row *row =
			bench_report_add_row(rep, "frames", cont_name[c], sizes[si], b->ns_per_frame[c], NAN, NAN);
		if (!row)
			return -1;
		snprintf(row->transport, sizeof(row->transport), "%s", transport_name[t]);
		row->samples = rounds;
		if (bench_row_field(row, "frames_per_s", b->fps[c], true) < 0 ||
		    bench_row_field(row, "reads_per_frame", b->rpf[c], false) < 0 ||
		    bench_row_field(row, "frames", (double)n[c], true) < 0)
			return -1;
		if (c == C_SV2SHM && b->ok[C_TWO_READS] && b->fps[C_TWO_READS] > 0) {
			row->ratio = b->fps[C_SV2SHM] / b->fps[C_TWO_READS];
			snprintf(row->ratio_vs, sizeof(row->ratio_vs), "%s", cont_name[C_TWO_READS]);
		}
	}
	return 0;
}

/* The two targets at 40 B, for one transport. */
static void add_targets(struct bench_report *rep, enum transport t, const struct block_result *b40)
{
	char name[160];
	snprintf(name, sizeof(name), "%s: reads per frame at 40 B <= 0.1", transport_name[t]);
	double v = b40 && b40->ok[C_SV2SHM] ? b40->rpf[C_SV2SHM] : NAN;
	struct bench_target *tg = bench_report_add_target(rep, name, v, 0.1, false, "reads/frame");
	if (tg) {
		if (isnan(v))
			snprintf(tg->note, sizeof(tg->note), "no sv2shm row");
		else
			snprintf(tg->note, sizeof(tg->note), "two-reads: %.2f", b40->rpf[C_TWO_READS]);
	}
	snprintf(name, sizeof(name), "%s: sv2shm >= 5x two-reads frames/s at 40 B", transport_name[t]);
	bool both = b40 && b40->ok[C_SV2SHM] && b40->ok[C_TWO_READS] && b40->fps[C_TWO_READS] > 0;
	v = both ? b40->fps[C_SV2SHM] / b40->fps[C_TWO_READS] : NAN;
	tg = bench_report_add_target(rep, name, v, 5.0, true, "x");
	if (tg) {
		if (both)
			snprintf(tg->note, sizeof(tg->note), "sv2shm %.0f vs two-reads %.0f frames/s", b40->fps[C_SV2SHM],
				 b40->fps[C_TWO_READS]);
		else
			snprintf(tg->note, sizeof(tg->note), "no %s row",
				 b40 && b40->ok[C_SV2SHM] ? cont_name[C_TWO_READS] : cont_name[C_SV2SHM]);
	}
}

/* ------------------------------------------------------------------------- */
/* Main                                                                       */
/* ------------------------------------------------------------------------- */

struct frames_cfg {
	bool on[NTRANSPORTS];
};

static int frames_opt(int argc, char **argv, int i, void *ctx)
{
	struct frames_cfg *cfg = ctx;
	if (strcmp(argv[i], "--transport") != 0)
		return 0;
	if (i + 1 >= argc) {
		fprintf(stderr, "sv2shm-bench frames: --transport needs a value (unix, tcp or all)\n");
		return -1;
	}
	const char *v = argv[i + 1];
	if (strcmp(v, "all") == 0) {
		cfg->on[T_UNIX] = cfg->on[T_TCP] = true;
	} else if (strcmp(v, "unix") == 0 || strcmp(v, "tcp") == 0) {
		cfg->on[T_UNIX] = strcmp(v, "unix") == 0;
		cfg->on[T_TCP] = !cfg->on[T_UNIX];
	} else {
		fprintf(stderr, "sv2shm-bench frames: --transport %s: want unix, tcp or all\n", v);
		return -1;
	}
	return 2;
}

static void frames_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench frames [--json] [--quick] [--transport unix|tcp|all]\n\n"
		"Decoding back-to-back Sv2 frames from a socket: a forked sender writes N frames (6-byte header,\n"
		"payload 40 B, 300 B, 4 KiB, 64 KiB) in ~%u KiB write()s over a Unix stream socketpair and a TCP\n"
		"connection on 127.0.0.1; this process decodes and checks every frame into a pool (%u MiB, %u\n"
		"slots, WAIT) and releases it. Contenders:\n"
		"  sv2shm     sv2shm_frame_decoder_read_fd() until the end of the stream\n"
		"  two-reads  the seed codec's way: read() the 6 header bytes, then read() the payload into\n"
		"             get_writable(), then get_data_owned()\n"
		"Rows: frames_per_s (median of %u interleaved rounds of about 0.3 s), reads_per_frame (read()\n"
		"calls / frames), median_ns (time per frame), ratio (frames_per_s / two-reads').\n\n"
		"  --transport T  unix, tcp or all (default: all)\n"
		"  --json         exactly one JSON object on stdout; the human table goes to stderr\n"
		"  --quick        one round of a quarter of the frames\n"
		"Exit status: 0 when every run completed (targets may be missed), 1 when a run failed, 2 usage.\n",
		CHUNK >> 10, POOL_CAPACITY >> 20, POOL_SLOTS, ROUNDS);
}

int bench_frames_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct frames_cfg cfg = {.on = {true, true}};
	if (bench_parse_opts_ex(argc, argv, &opts, frames_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		frames_usage(stdout);
		return 0;
	}

	struct bench_report rep;
	bench_report_init(&rep, "frames");
	rep.ratio_desc = "frames_per_s / two-reads' frames_per_s at the same size and transport";
	struct frames_ctx x;
	memset(&x, 0, sizeof(x));
	x.cpu_recv = x.cpu_send = -1;
	bool failed = false;
	char err[ERR_LEN] = "";

	/* The receiver on the first CPU of our affinity set, the sender on the second. */
	int cpus[2];
	if (bench_cpus(cpus, 2) == 2) {
		int r = bench_pin_thread(cpus[0], NULL, 0);
		if (r < 0) {
			bench_report_note(&rep, "pinning the receiver to CPU %d: %s: not pinning", cpus[0], strerror(-r));
		} else {
			x.cpu_recv = cpus[0];
			x.cpu_send = cpus[1];
			bench_report_note(&rep, "receiver pinned to CPU %d, sender to CPU %d", x.cpu_recv, x.cpu_send);
		}
	} else {
		bench_report_note(&rep, "fewer than 2 CPUs available: receiver and sender are not pinned");
	}

	x.sh = mmap(NULL, sizeof(*x.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (x.sh == MAP_FAILED) {
		fprintf(stderr, "sv2shm-bench frames: mmap(%zu bytes, MAP_SHARED): %s\n", sizeof(*x.sh), strerror(errno));
		bench_report_free(&rep);
		return 1;
	}
	for (int c = 0; c < NCONT; c++) {
		if (make_pool(&x.pool[c], err) < 0) {
			fprintf(stderr, "sv2shm-bench frames: %s\n", err);
			failed = true;
			goto out;
		}
	}

	const unsigned rounds = opts.quick ? QUICK_ROUNDS : ROUNDS;
	uint64_t t_start = bench_now_ns();
	struct bench_load load;
	bench_load_start(&load);
	for (int t = 0; t < NTRANSPORTS; t++) {
		if (!cfg.on[t])
			continue;
		struct block_result b40;
		bool have40 = false;
		for (size_t si = 0; si < NSIZES; si++) {
			uint64_t n[NCONT];
			for (int c = 0; c < NCONT; c++)
				n[c] = opts.quick ? counts[c][si] / QUICK_DIV : counts[c][si];
			struct block_result b;
			memset(&b, 0, sizeof(b));
			if (run_block(&x, &rep, (enum transport)t, si, n, rounds, &b) < 0)
				failed = true;
			if (add_rows(&rep, (enum transport)t, si, n, rounds, &b) < 0) {
				fprintf(stderr, "sv2shm-bench frames: out of memory for the report\n");
				failed = true;
				goto out;
			}
			if (sizes[si] == 40) {
				b40 = b;
				have40 = true;
			}
		}
		add_targets(&rep, (enum transport)t, have40 ? &b40 : NULL);
	}
	bench_progress("total %.1f s\n\n", (double)(bench_now_ns() - t_start) / 1e9);
	bench_load_note(&rep, &load);

	bench_report_note(&rep, "%u round(s) per contender, transport and size (column frames: frames per run); "
				"median_ns = the median round's time per frame; reads_per_frame counts the read() that "
				"sees the end of the stream",
			  rounds);
	for (int t = 0; t < NTRANSPORTS; t++)
		if (x.sockbuf[t][0])
			bench_report_note(&rep, "%s: asked for %d-byte socket buffers, got SO_RCVBUF %d (receiver), "
						"SO_SNDBUF %d (sender)",
					  transport_name[t], SOCK_BUF, x.sockbuf[t][0], x.sockbuf[t][1]);
	for (int c = 0; c < NCONT; c++) {
		struct sv2shm_pool_stats ps;
		int r = sv2shm_pool_stats(x.pool[c], &ps);
		if (r < 0) {
			bench_report_note(&rep, "%s: sv2shm_pool_stats(): %s", cont_name[c], sv2shm_strerror(r));
			failed = true;
			continue;
		}
		bench_report_note(&rep, "%s pool: %" PRIu64 " slices from the pool, %" PRIu64 " from system memory, "
					"%" PRIu64 " moved while written, %" PRIu64 " waits for a release",
				  cont_name[c], ps.from_pool, ps.from_system, ps.moves, ps.waits);
	}

	if (bench_report_print(&rep, opts.json) < 0)
		failed = true;
out:
	for (int c = 0; c < NCONT; c++) {
		int r = sv2shm_pool_destroy(x.pool[c]);
		if (r < 0) {
			fprintf(stderr, "sv2shm-bench frames: sv2shm_pool_destroy(%s pool): %s\n", cont_name[c],
				sv2shm_strerror(r));
			failed = true;
		}
	}
	munmap(x.sh, sizeof(*x.sh));
	bench_report_free(&rep);
	return failed ? 1 : 0;
}
