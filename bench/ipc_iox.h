/*
 * sv2shm-bench ipc: the iceoryx peer (Eclipse iceoryx 2.x, its C binding).
 *
 * Compiled for real only when meson found iceoryx_binding_c (HAVE_ICEORYX);
 * otherwise every function reports that it is not available.
 *
 * RouDi (iox-roudi, the iceoryx daemon) is started by iox_roudi_start() with
 * a config whose mempools fit each message size, and stopped by
 * iox_roudi_stop(). A process that has initialised the iceoryx runtime must
 * not fork a process that initialises it again (the runtime is a per-process
 * singleton), so both sides of an iceoryx run are forked children of a parent
 * that never touches iceoryx.
 */
#ifndef SV2SHM_BENCH_IPC_IOX_H
#define SV2SHM_BENCH_IPC_IOX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iox_side {
	size_t size;          /* payload bytes per message */
	uint64_t total;       /* messages */
	bool rt;              /* round trip: one in flight, an ack back per message */
	unsigned in_flight;   /* stream: subscriber queue capacity (messages in flight) */
	const char *instance; /* unique per run */
	unsigned spin_us;     /* poll this long before sleeping on the wait set */
	uint64_t *t_acq;      /* producer, round trip: when message i could be written */
	uint64_t *t_recv;     /* consumer, stream: when message i arrived */
	void (*fill)(uint8_t *p, size_t len, uint64_t i);                            /* producer */
	void (*check)(void *ctx, const uint8_t *p, size_t len, size_t want, uint64_t i); /* consumer */
	void *ctx;
	uint64_t *received;            /* consumer: messages received */
	volatile sig_atomic_t *alarm;  /* set when the run timed out */
	uint64_t wait_timeout_ns;      /* longest single wait */
	char *err;
	size_t errlen;
};

/** True when the iceoryx peer was compiled in. */
bool iox_available(void);

/**
 * Start iox-roudi with mempools for payloads of sizes[0..n) (plus a small
 * pool for acks), `count` chunks each. Returns 0, or -1 with err set (not
 * compiled, iox-roudi not found, it did not become ready).
 */
int iox_roudi_start(const size_t *sizes, size_t n, unsigned count, char *err, size_t errlen);

/** Stop RouDi (SIGINT, then SIGKILL after 5 s) and remove its files.
 * Returns 0, or -1 with err set (when err is not NULL) if it did not end
 * cleanly. */
int iox_roudi_stop(char *err, size_t errlen);

/** Remove what the iceoryx runtime of child `pid` (role 'p' or 'c') leaves in
 * /tmp when it dies without deregistering (killed on a timeout). */
void iox_cleanup_child(int pid, char role);

/** Producer and consumer sides (in forked children). Return 0 or -1 with
 * s->err set. */
int iox_bench_produce(const struct iox_side *s);
int iox_bench_consume(const struct iox_side *s);

#endif /* SV2SHM_BENCH_IPC_IOX_H */
