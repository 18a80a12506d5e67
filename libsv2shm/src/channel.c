/* SOCK_SEQPACKET messages carrying fds: the channel's setup and the rare
 * alloc-mode slice. Descriptors themselves go through the shared ring. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"

#define MAX_FDS 8

void chan_hdr(struct sv2shm_msg_hdr *h, uint16_t type)
{
	h->magic = SV2SHM_MSG_MAGIC;
	h->version = SV2SHM_MSG_VERSION;
	h->type = type;
}

int chan_check_hdr(const struct sv2shm_msg_hdr *h, uint16_t type)
{
	if (h->magic != SV2SHM_MSG_MAGIC || h->version != SV2SHM_MSG_VERSION || h->type != type)
		return -EPROTO;
	return 0;
}

int chan_send(int sock, const void *msg, size_t len, const int *fds, unsigned nfds)
{
	if (nfds > MAX_FDS)
		return -EINVAL;
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
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
	for (;;) {
		/* MSG_DONTWAIT: never block on a peer that does not read. */
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == (ssize_t)len)
			return 0;
		if (n >= 0)
			return -EPROTO; /* SOCK_SEQPACKET sends whole messages */
		if (errno != EINTR)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

int chan_recv(int sock, void *msg, size_t len, int *fds, unsigned min_fds, unsigned nfds, int timeout_ms)
{
	if (nfds > MAX_FDS || min_fds > nfds)
		return -EINVAL;
	if (timeout_ms >= 0) {
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		int pr;
		do
			pr = poll(&pfd, 1, timeout_ms);
		while (pr < 0 && errno == EINTR);
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;
	}
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	/* One byte more than expected, to tell a long message from a right one. */
	uint8_t tmp[256];
	if (len >= sizeof(tmp))
		return -EINVAL;
	struct iovec iov = {.iov_base = tmp, .iov_len = len + 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	int got[MAX_FDS];
	unsigned ngot = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (ngot < MAX_FDS)
				got[ngot++] = fd;
			else
				close(fd);
		}
	}
	int r = 0;
	if (n == 0 && ngot == 0) {
		/* EOF, or a zero-length datagram: only the former is a hang-up. */
		struct pollfd pfd = {.fd = sock, .events = POLLRDHUP};
		bool eof = poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP));
		r = eof ? -EPIPE : -EPROTO;
	} else if ((size_t)n != len || ngot < min_fds || ngot > nfds || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
		r = -EPROTO;
	if (r < 0) {
		for (unsigned i = 0; i < ngot; i++)
			close(got[i]);
		return r;
	}
	memcpy(msg, tmp, len);
	memcpy(fds, got, sizeof(int) * ngot);
	return (int)ngot;
}
