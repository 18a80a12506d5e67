/*
 * The broker's logic, apart from sockets and the event loop: pools,
 * subscriptions, consumers, reclaim, STATUS. Everything it needs from the
 * outside (sending, watching processes, a deadline, the clock) goes through
 * struct broker_env, so a fuzz target can drive it with messages alone
 * (server.c is the real environment).
 *
 * Entry points (broker_handle_message, broker_process_exited, broker_timer,
 * broker_client_writable, broker_client_close) are never re-entered: the
 * environment's callbacks must not call back into the broker. A client the
 * broker gives up on (8 bad messages, a full socket, its process exited) is
 * cleaned up before the entry point returns, and env->close() is called for
 * its connection then; the `struct client` is freed at that moment too.
 */
#ifndef SV2SHMD_BROKER_H
#define SV2SHMD_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits: the daemon never grows because of clients. */
#define BROKER_MAX_CLIENTS 1024
#define BROKER_MAX_POOLS 256
#define BROKER_MAX_CONSUMERS 31          /* per pool, as the producer's holder bits */
#define BROKER_MAX_PENDING 1024          /* subscriptions waiting for their producer */
#define BROKER_MAX_PENDING_PER_CLIENT 8
#define BROKER_MAX_BAD 8                 /* bad messages before a client is disconnected */
#define BROKER_SUBSCRIBE_TIMEOUT_MS 5000

struct broker;
struct client;

struct broker_creds {
	int32_t pid;
	uint32_t uid;
	uint32_t gid;
};

/* What the broker needs from the outside. `conn` is the environment's own
 * handle of a connection, given to broker_client_new(). */
struct broker_env {
	void *ctx;
	/* Send one message, with fd (-1: none; it stays the caller's), without
	 * blocking: 0, -EAGAIN (the socket is full) or another -errno. */
	int (*send)(void *ctx, void *conn, const void *msg, size_t len, int fd);
	/* May a STATUS stream queue another message now? (Leaves room in the
	 * socket for replies that cannot wait, such as INTRODUCE.) */
	bool (*stream_room)(void *ctx, void *conn);
	/* Call broker_client_writable() once the socket has room. 0 or -errno. */
	int (*want_writable)(void *ctx, void *conn);
	/* Reading this client's messages may go on (its STATUS stream ended). */
	void (*resume)(void *ctx, void *conn);
	/* The broker is done with this connection: close it. */
	void (*close)(void *ctx, void *conn);
	/* Watch process pid; when it exits, call broker_process_exited(cookie).
	 * same_conn: a connection whose peer is that process (no pid-reuse race),
	 * or NULL. 0 and *handle, -ESRCH (already gone) or another -errno. */
	int (*watch_process)(void *ctx, int32_t pid, void *same_conn, void *cookie, void **handle);
	void (*unwatch_process)(void *ctx, void *handle);
	/* Is the watched process still running? */
	bool (*process_alive)(void *ctx, void *handle);
	/* uid and gid of a process (for consumers a producer re-attaches). */
	int (*process_creds)(void *ctx, int32_t pid, uint32_t *uid, uint32_t *gid);
	/* Call broker_timer() at this CLOCK_MONOTONIC ms (0: no deadline). */
	void (*set_deadline)(void *ctx, uint64_t ms);
	uint64_t (*now_ms)(void *ctx);
};

struct broker_config {
	const char *version;    /* STATUS_END.version */
	const char *event_loop; /* STATUS_END.event_loop */
	uint64_t token_seed;    /* first INTRODUCE token (random in the daemon) */
	unsigned subscribe_timeout_ms; /* 0: BROKER_SUBSCRIBE_TIMEOUT_MS */
};

int broker_new(const struct broker_env *env, const struct broker_config *cfg, struct broker **out);
/* Close every client (env->close), release every pool. */
void broker_free(struct broker *b);

/* A new connection: NULL when refused (limit, or its process already
 * exited); the caller closes it then. */
struct client *broker_client_new(struct broker *b, const struct broker_creds *cr, void *conn);
/* Count a connection refused before it became a client (credentials). */
void broker_note_refused(struct broker *b, const char *why);

/* Flags for broker_handle_message(), from recvmsg(). */
#define BROKER_MSG_TRUNC 1u  /* the datagram was larger than the buffer */
#define BROKER_MSG_CTRUNC 2u /* more fds came than the control buffer holds */

/*
 * One datagram from client c: `len` bytes and the fds that came with it
 * (the broker owns them: it keeps or closes every one). Returns 0 (go on
 * reading), 1 (stop reading: a STATUS stream is in progress; env->resume()
 * says when to go on) or -EPIPE (the client is gone: env->close() was
 * called and c is freed).
 */
int broker_handle_message(struct broker *b, struct client *c, const void *msg, size_t len, const int *fds,
			  unsigned nfds, unsigned flags);

/* True while a STATUS stream to c waits for room (do not read from c). */
bool broker_client_paused(const struct client *c);
/* The connection has room again (after env->want_writable()). */
void broker_client_writable(struct broker *b, struct client *c);
/* The connection ended (EOF, error): forget the client; env->close() is called. */
void broker_client_close(struct broker *b, struct client *c, const char *why);

/* A watched process exited (env->watch_process's cookie). */
void broker_process_exited(struct broker *b, void *cookie);
/* The deadline passed: subscriptions whose producer did not answer time out. */
void broker_timer(struct broker *b);

/* For the log at shutdown and for tests. */
unsigned broker_clients(const struct broker *b);
unsigned broker_pools(const struct broker *b);
uint64_t broker_refused(const struct broker *b);

#endif /* SV2SHMD_BROKER_H */
