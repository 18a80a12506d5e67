/*
 * Connections and processes, between the event loop and the broker.
 *
 * A connection is watched for input (multishot poll on io_uring); on input
 * it is read with recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) until EAGAIN,
 * at most 64 messages per turn (then it is kicked, to be fair to others).
 *
 * Why not a multishot recvmsg: broker messages are small, fixed-size and
 * carry fds. Multishot receive needs a provided-buffer ring (registered,
 * refilled, its buffers returned in order), and SCM_RIGHTS with it brings
 * per-message control buffers inside those buffers to parse and fds to
 * account for; at a few messages per client per minute it would buy
 * nothing over "readable -> recvmsg until EAGAIN" but code to get wrong.
 *
 * Every send is sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL): a client whose socket
 * is full is disconnected by the broker (it never reads its replies), except
 * for STATUS replies, which the broker streams while the socket has room
 * (SIOCOUTQ below half of SO_SNDBUF, so a reply that cannot wait, such as an
 * INTRODUCE, still fits) and then waits for writability.
 *
 * Process watches are pidfds: from SO_PEERPIDFD when the process is a
 * connection's peer (no pid-reuse race), else pidfd_open(pid).
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "broker.h"
#include "broker_wire.h"
#include "log.h"
#include "loop.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define READS_PER_TURN 64
#define MAX_FDS_PER_MSG 8
/* Asked for on every connection (the kernel caps it at net.core.wmem_max):
 * room for many replies, and STATUS streams whatever it gets. */
#define SNDBUF_BYTES (1 << 20)

struct conn;

struct server {
	struct loop *loop;
	struct broker *b;
	int sigfd;
	struct watch *sigw;
	bool stop;
	struct conn *closed; /* freed after the turn: handlers may still hold them */
	struct ratelimit rl_accept;
};

struct conn {
	struct server *s;
	int fd;
	struct watch *w;
	struct client *c;
	int sndbuf;
	bool closed;
	struct conn *next_closed;
};

struct procw {
	struct server *s;
	int pidfd;
	struct watch *w;
	void *cookie;
};

/* --- the broker's environment --------------------------------------------- */

static int env_send(void *ctx, void *conn, const void *msg, size_t len, int fd)
{
	(void)ctx;
	struct conn *k = conn;
	if (k->closed)
		return -EPIPE;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(k->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

static bool env_stream_room(void *ctx, void *conn)
{
	(void)ctx;
	struct conn *k = conn;
	int queued = 0;
	if (ioctl(k->fd, SIOCOUTQ, &queued) < 0)
		return true; /* unknown: try, EAGAIN will tell */
	return queued < k->sndbuf / 2;
}

static int env_want_writable(void *ctx, void *conn)
{
	(void)ctx;
	struct conn *k = conn;
	return k->w ? loop_want_out(k->w) : -EBADF;
}

static void env_resume(void *ctx, void *conn)
{
	(void)ctx;
	struct conn *k = conn;
	if (!k->closed && k->w)
		loop_kick(k->w);
}

static void env_close(void *ctx, void *conn)
{
	struct server *s = ctx;
	struct conn *k = conn;
	if (k->closed)
		return;
	k->closed = true;
	k->c = NULL;
	loop_unwatch(k->w);
	k->w = NULL;
	close(k->fd);
	k->fd = -1;
	k->next_closed = s->closed;
	s->closed = k;
}

static void on_process_exit(void *ctx, unsigned events)
{
	struct procw *pw = ctx;
	if (!(events & LOOP_IN)) {
		/* LOOP_ERR alone: the kernel refused to watch it. Make sure
		 * before treating a live consumer as dead (that would free the
		 * slots it reads). */
		struct pollfd p = {.fd = pw->pidfd, .events = POLLIN};
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) {
			log_error("cannot watch a process (pidfd %d): its death will go unnoticed", pw->pidfd);
			return;
		}
	}
	/* The broker unwatches (and frees pw) from here: touch nothing after. */
	broker_process_exited(pw->s->b, pw->cookie);
}

static int env_watch_process(void *ctx, int32_t pid, void *same_conn, void *cookie, void **handle)
{
	struct server *s = ctx;
	int pidfd = -1;
	if (same_conn) {
		struct conn *k = same_conn;
		socklen_t sl = sizeof(pidfd);
		if (k->fd < 0 || getsockopt(k->fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &sl) < 0)
			pidfd = -1;
		else if (pidfd >= 0)
			fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	}
	if (pidfd < 0) {
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
		if (pidfd < 0)
			return -errno;
	}
	struct procw *pw = calloc(1, sizeof(*pw));
	if (!pw) {
		close(pidfd);
		return -ENOMEM;
	}
	pw->s = s;
	pw->pidfd = pidfd;
	pw->cookie = cookie;
	pw->w = loop_watch(s->loop, pidfd, on_process_exit, pw);
	if (!pw->w) {
		int r = -errno;
		close(pidfd);
		free(pw);
		return r;
	}
	*handle = pw;
	return 0;
}

static void env_unwatch_process(void *ctx, void *handle)
{
	(void)ctx;
	struct procw *pw = handle;
	loop_unwatch(pw->w);
	close(pw->pidfd);
	free(pw);
}

static bool env_process_alive(void *ctx, void *handle)
{
	(void)ctx;
	struct procw *pw = handle;
	struct pollfd p = {.fd = pw->pidfd, .events = POLLIN};
	return !(poll(&p, 1, 0) == 1 && (p.revents & POLLIN));
}

static int env_process_creds(void *ctx, int32_t pid, uint32_t *uid, uint32_t *gid)
{
	(void)ctx;
	char path[32];
	struct stat sb;
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (stat(path, &sb) < 0)
		return -errno;
	*uid = sb.st_uid;
	*gid = sb.st_gid;
	return 0;
}

static void on_timer(void *ctx)
{
	struct server *s = ctx;
	broker_timer(s->b);
}

static void env_set_deadline(void *ctx, uint64_t ms)
{
	struct server *s = ctx;
	loop_set_timer(s->loop, ms, on_timer, s);
}

static uint64_t env_now_ms(void *ctx)
{
	(void)ctx;
	return now_ms();
}

/* --- connections ---------------------------------------------------------- */

/* Read what the client sent, one datagram at a time. */
static void conn_read(struct server *s, struct conn *k)
{
	for (int i = 0; i < READS_PER_TURN; i++) {
		if (k->closed || broker_client_paused(k->c))
			return;
		/* One byte more than the largest message: a larger datagram
		 * shows as MSG_TRUNC. */
		union {
			uint64_t align;
			uint8_t bytes[BMSG_MAX + 1];
		} buf;
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MSG)];
		} cbuf;
		struct iovec iov = {.iov_base = buf.bytes, .iov_len = sizeof(buf.bytes)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
				    .msg_controllen = sizeof(cbuf.buf)};
		ssize_t n = recvmsg(k->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			char why[64];
			snprintf(why, sizeof(why), "recvmsg: %s", strerror(errno));
			broker_client_close(s->b, k->c, why);
			return;
		}
		int fds[MAX_FDS_PER_MSG];
		unsigned nfds = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t j = 0; j < cnt; j++) {
				int fd;
				memcpy(&fd, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
				if (nfds < MAX_FDS_PER_MSG)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
		if (n == 0 && nfds == 0) {
			/* A zero-length datagram, or the end: only a hang-up says. */
			struct pollfd p = {.fd = k->fd, .events = POLLIN | POLLRDHUP};
			if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) {
				broker_client_close(s->b, k->c, "it hung up");
				return;
			}
		}
		unsigned flags = 0;
		if (mh.msg_flags & MSG_TRUNC)
			flags |= BROKER_MSG_TRUNC;
		if (mh.msg_flags & MSG_CTRUNC)
			flags |= BROKER_MSG_CTRUNC;
		int r = broker_handle_message(s->b, k->c, buf.bytes, (size_t)n, fds, nfds, flags);
		if (r != 0)
			return; /* gone, or paused by a STATUS stream */
	}
	/* More may be queued: come back next turn, after the others. */
	if (!k->closed)
		loop_kick(k->w);
}

static void on_conn(void *ctx, unsigned events)
{
	struct conn *k = ctx;
	struct server *s = k->s;
	if (k->closed)
		return;
	if (events & LOOP_OUT) {
		broker_client_writable(s->b, k->c);
		if (k->closed)
			return;
	}
	if ((events & (LOOP_HUP | LOOP_ERR)) && broker_client_paused(k->c)) {
		/* Its STATUS stream can never be delivered: do not wait for room. */
		broker_client_close(s->b, k->c, "it hung up");
		return;
	}
	if (events & (LOOP_IN | LOOP_HUP | LOOP_ERR))
		conn_read(s, k);
}

static void on_accept(void *ctx, int fd)
{
	struct server *s = ctx;
	if (fd < 0) {
		if (ratelimit_ok(&s->rl_accept, 1, 1000, now_ms()))
			log_warn("accept: %s%s", strerror(-fd),
				 fd == -EMFILE || fd == -ENFILE ? " (out of fds: pausing 100 ms)" : "");
		return;
	}
	struct ucred uc;
	socklen_t ul = sizeof(uc);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0 || ul != sizeof(uc) || uc.pid <= 0) {
		close(fd);
		broker_note_refused(s->b, "no peer credentials");
		return;
	}
	struct conn *k = calloc(1, sizeof(*k));
	if (!k) {
		close(fd);
		broker_note_refused(s->b, "out of memory");
		return;
	}
	k->s = s;
	k->fd = fd;
	int sz = SNDBUF_BYTES;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	socklen_t sl = sizeof(k->sndbuf);
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &k->sndbuf, &sl) < 0)
		k->sndbuf = 212992;
	struct broker_creds cr = {.pid = uc.pid, .uid = uc.uid, .gid = uc.gid};
	k->c = broker_client_new(s->b, &cr, k);
	if (!k->c) {
		close(fd);
		free(k);
		return;
	}
	k->w = loop_watch(s->loop, fd, on_conn, k);
	if (!k->w) {
		log_error("cannot watch a connection: %s", strerror(errno));
		broker_client_close(s->b, k->c, "cannot watch it");
	}
}

/* --- signals -------------------------------------------------------------- */

static void on_signal(void *ctx, unsigned events)
{
	struct server *s = ctx;
	(void)events;
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("%s from pid %u: shutting down", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
				 (unsigned)si.ssi_pid);
			s->stop = true;
			break;
		case SIGHUP:
			log_info("SIGHUP: nothing to reload (ignored)");
			break;
		default:
			break;
		}
	}
}

static void free_closed(struct server *s)
{
	while (s->closed) {
		struct conn *k = s->closed;
		s->closed = k->next_closed;
		free(k);
	}
}

int server_run(const struct server_config *cfg)
{
	struct server srv;
	memset(&srv, 0, sizeof(srv));
	struct server *s = &srv;
	s->sigfd = -1;
	int status = 1;

	int r = loop_new(cfg->try_io_uring, &s->loop);
	if (r < 0) {
		log_error("cannot make the event loop: %s", strerror(-r));
		return 1;
	}
	if (loop_why_not(s->loop))
		log_info("event loop: %s (%s)", loop_name(s->loop), loop_why_not(s->loop));
	else
		log_info("event loop: %s", loop_name(s->loop));

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sigfd < 0 || !(s->sigw = loop_watch(s->loop, s->sigfd, on_signal, s))) {
		log_error("signalfd: %s", strerror(errno));
		goto out;
	}

	struct broker_env env = {
		.ctx = s,
		.send = env_send,
		.stream_room = env_stream_room,
		.want_writable = env_want_writable,
		.resume = env_resume,
		.close = env_close,
		.watch_process = env_watch_process,
		.unwatch_process = env_unwatch_process,
		.process_alive = env_process_alive,
		.process_creds = env_process_creds,
		.set_deadline = env_set_deadline,
		.now_ms = env_now_ms,
	};
	uint64_t seed = 0;
	if (getentropy(&seed, sizeof(seed)) < 0)
		seed = now_ms() ^ ((uint64_t)getpid() << 32);
	struct broker_config bc = {
		.version = cfg->version,
		.event_loop = loop_name(s->loop),
		.token_seed = seed | 1u,
	};
	r = broker_new(&env, &bc, &s->b);
	if (r < 0) {
		log_error("broker: %s", strerror(-r));
		goto out;
	}
	r = loop_accept(s->loop, cfg->listen_fd, on_accept, s);
	if (r < 0) {
		log_error("cannot accept on %s: %s", cfg->socket_path, strerror(-r));
		goto out;
	}
	log_info("sv2shmd %s listening on %s (pid %d)", cfg->version, cfg->socket_path, (int)getpid());

	status = 0;
	while (!s->stop) {
		r = loop_run_once(s->loop);
		free_closed(s);
		if (r < 0) {
			log_error("event loop: %s", strerror(-r));
			status = 1;
			break;
		}
	}
	loop_accept_stop(s->loop);
	log_info("closing %u client connections; %u pools forgotten (producers and consumers go on)",
		 broker_clients(s->b), broker_pools(s->b));
out:
	if (s->b)
		broker_free(s->b);
	free_closed(s);
	if (s->sigw)
		loop_unwatch(s->sigw);
	if (s->sigfd >= 0)
		close(s->sigfd);
	loop_free(s->loop);
	return status;
}
