/*
 * The daemon's running half: the event loop, the listening socket's
 * connections, their messages, process watches (pidfds) and signals, wired
 * to the broker (broker.h) through its environment.
 */
#ifndef SV2SHMD_SERVER_H
#define SV2SHMD_SERVER_H

#include <stdbool.h>

struct server_config {
	int listen_fd;           /* AF_UNIX SOCK_SEQPACKET, listening, O_NONBLOCK */
	const char *socket_path; /* for the log */
	const char *version;
	bool try_io_uring;
};

/* Run until SIGTERM or SIGINT (blocked by the caller before). Returns the
 * exit status: 0 after a clean shutdown, 1 when the loop could not run. */
int server_run(const struct server_config *cfg);

#endif /* SV2SHMD_SERVER_H */
