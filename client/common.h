/*
 * sv2shm, the command-line client: what the commands share.
 *
 *   main.c       dispatch, --help, --version
 *   cli.c        option values, messages, exit codes, signals, the broker connection
 *   synthetic.c  synthetic checksummed frames (the layout is in sv2shm(1), SYNTHETIC FRAMES)
 *   print.c      status as text, JSON and Prometheus text; hex dumps
 *   status.c     sv2shm status
 *   produce.c    sv2shm produce
 *   consume.c    sv2shm consume
 *   demo.c       sv2shm demo: a private broker, a producer and consumers in one command
 *
 * Exit status of every command: 0 success, 1 runtime failure (a message
 * with sv2shm_strerror()), 2 bad usage.
 */
#ifndef SV2SHM_CLI_COMMON_H
#define SV2SHM_CLI_COMMON_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <sv2shm/client.h>

#ifndef SV2SHM_CLIENT_VERSION
#define SV2SHM_CLIENT_VERSION "unknown"
#endif

#define EXIT_USAGE 2

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* --- cli.c: messages and option values ----------------------------------- */

/* "sv2shm CMD: message" and a hint to --help on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* "sv2shm CMD: what: <sv2shm_strerror(err)>" on stderr; returns 1. */
int cli_fail(const char *cmd, int err, const char *fmt, ...) CLI_PRINTF(3, 4);

/* "sv2shm CMD: message" on stderr. */
void cli_note(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* An unsigned decimal in [min, max]; with `sizes`, a K/M/G suffix (powers of
 * 1024, an optional "iB" or "B" after it). Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, bool sizes, uint64_t *out);

/* "MIN-MAX" with MIN <= MAX, both in [lo, hi]. Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *min, uint64_t *max);

/* A pool name as the broker takes it: 1..63 of [A-Za-z0-9._-]. */
bool cli_name_ok(const char *name);

/* Getopt's complaint about argv, as a clear message (see cli_getopt_error()). */
int cli_getopt_error(const char *cmd, int c, char **argv, int optind_now);

/* The pool policy and limit policy names. */
const char *cli_policy_name(int policy); /* "fallback", "fail", "wait", or "?" */
int cli_policy_parse(const char *s);     /* SV2SHM_POOL_*, or -EINVAL */
const char *cli_limit_name(int on_limit);
int cli_limit_parse(const char *s);
/* "BACK", "FRONT", "ALLOC", or "?" */
const char *cli_mode_word(int mode);
const char *cli_event_reason(int reason);

/* CLOCK_MONOTONIC in ns / ms. */
uint64_t cli_now_ns(void);
uint64_t cli_now_ms(void);

/* --- cli.c: signals --------------------------------------------------------- */

/* Set by SIGINT / SIGTERM once cli_catch_signals() ran: commands stop
 * cleanly (summary, release, destroy) and exit. */
extern volatile sig_atomic_t cli_stop;
extern volatile sig_atomic_t cli_stop_signal;

/* Install the SIGINT / SIGTERM handler (no SA_RESTART: blocking calls return
 * EINTR) and ignore SIGPIPE. */
void cli_catch_signals(void);

/* --- cli.c: the broker ------------------------------------------------------- */

/* Connect to the broker at `socket` (NULL: the default), with a clear message
 * on failure. Returns 0 or the library's negative errno (message printed). */
int cli_connect(const char *cmd, const char *socket, struct sv2shm_client **out);

/* The socket path a command uses when it is given none (static storage). */
const char *cli_default_socket(void);

/* --- synthetic.c: synthetic frames (see sv2shm(1), SYNTHETIC FRAMES) ------- */

#define SYNTH_EXTENSION_TYPE 0x0000u
#define SYNTH_MSG_TYPE 0xfeu       /* a test message type, as rust-stratum-v2's TestMessage1 */
#define SYNTH_MIN_PAYLOAD 12u      /* sequence (8) + checksum (4) */
#define SYNTH_SEQ_OFFSET 6u        /* in the frame */
#define SYNTH_SUM_OFFSET 14u
#define SYNTH_DATA_OFFSET 18u

uint32_t synth_fnv1a32(const uint8_t *p, size_t n);

/* Write a whole frame (6 + payload bytes) for sequence `seq` into `frame`. */
void synth_fill(uint8_t *frame, uint64_t seq, uint32_t payload);

/* Check a frame against the layout. Returns NULL (and sets *seq), or a short reason
 * ("too short", "length mismatch", "wrong type", "bad checksum"). */
const char *synth_check(const uint8_t *frame, size_t len, uint64_t *seq);

/* A payload length in [min, max] for sequence `seq` (deterministic). */
uint32_t synth_length(uint64_t seq, uint32_t min, uint32_t max);

/* --- print.c ------------------------------------------------------------------ */

/* A JSON string literal for s (at most `max` bytes of it), every byte that is
 * not printable ASCII escaped as \u00XX: always valid JSON. */
void print_json_string(FILE *f, const char *s, size_t max);

/* The status as `sv2shm status` draws it / as JSON / as Prometheus text. */
void print_status_text(FILE *f, const struct sv2shm_status *st);
void print_pool_text(FILE *f, const struct sv2shm_status_pool *p);
void print_status_json(FILE *f, const struct sv2shm_status *st);
void print_status_prometheus(FILE *f, const struct sv2shm_status *st);

/* The frame as `hexdump -C -v` prints a file. */
void print_hexdump(FILE *f, const uint8_t *p, size_t n);

/* --- the commands ----------------------------------------------------------- */

/* argv[0] is the command's name; each returns the exit status. */
int cmd_status(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_consume(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* --- produce.c, as a function (the demo runs it in a child) ------------------ */

enum produce_source {
	SOURCE_STDIN,
	SOURCE_FILE,
	SOURCE_LISTEN,
	SOURCE_SYNTHETIC,
};

/* What the producer delivered to one consumer (a consumer's id is never
 * reused). Written by the producer only; the demo keeps these in shared
 * memory and reads them while it runs and after the producer is gone. */
struct produce_track {
	_Atomic int id;                 /* 0: unused */
	_Atomic uint64_t delivered;     /* publish said it got these */
	_Atomic uint64_t first_seq;     /* synthetic sequence of the first one */
	_Atomic uint64_t last_seq;      /* ... and of the last one */
	_Atomic int removed;            /* an event said it was removed */
	_Atomic int reason;             /* enum sv2shm_event_reason */
	_Atomic uint32_t held_at_removal;
};

#define PRODUCE_TRACK_MAX 64

/* The producer's totals, for the summary and the demo. */
struct produce_report {
	_Atomic uint64_t sent;         /* frames published (at least one consumer got each) */
	_Atomic uint64_t bytes;        /* their bytes */
	_Atomic uint64_t skipped;      /* deliveries publish left out (a consumer at its limit) */
	_Atomic uint64_t removals;     /* consumer removals (events) */
	_Atomic uint64_t reclaimed;    /* slots reclaimed, from the pool's counters at the end */
	_Atomic int registered;        /* the pool is registered */
	_Atomic int started;           /* enough consumers came: frames flow */
	_Atomic int finished;          /* the run is over (destroyed or failed) */
	struct produce_track track[PRODUCE_TRACK_MAX];
};

struct produce_opts {
	const char *socket;
	const char *pool;
	struct sv2shm_register_options reg;
	enum produce_source source;
	const char *path;              /* SOURCE_FILE */
	const char *listen;            /* SOURCE_LISTEN: "127.0.0.1:PORT", "[::1]:PORT" */
	uint32_t synth_min, synth_max; /* SOURCE_SYNTHETIC */
	uint64_t count;                /* 0: until the input ends (forever for synthetic) */
	uint64_t duration_ms;          /* 0: no limit (the demo's) */
	double rate;                   /* frames per second, 0: as fast as possible */
	unsigned consumers;            /* wait for this many before the first frame */
	bool round_robin;
	bool quiet;
	bool no_summary;               /* no summary lines on stderr (the demo prints its own) */
	struct produce_report *report; /* NULL: a private one */
};

int produce_run(const struct produce_opts *o);

/* --- consume.c, as a function ---------------------------------------------------- */

/* A consumer's counts. Written by the consumer only, one frame at a time,
 * before that frame is released; the demo keeps them in shared memory, so
 * they survive the consumer's SIGKILL. */
struct consume_report {
	_Atomic int pid;
	_Atomic int holder;            /* our holder bit: sv2shm_consumer_id() */
	_Atomic int subscribed;
	_Atomic int finished;
	_Atomic uint64_t received;
	_Atomic uint64_t verified;
	_Atomic uint64_t corrupt;
	_Atomic uint64_t bytes;
	_Atomic uint64_t missed;       /* sv2shm_consumer_missed() */
	_Atomic uint64_t gaps;         /* sequence numbers skipped over (--checksum) */
	_Atomic uint64_t skipped_errors; /* skippable recv errors */
	_Atomic uint64_t first_seq;    /* --checksum: the first sequence number seen */
	_Atomic uint64_t last_seq;     /* ... and the last */
	_Atomic int held_now;          /* frames held now (--hold-ms) */
};

struct consume_opts {
	const char *socket;
	const char *pool;
	uint64_t count;         /* 0: no limit */
	bool checksum;
	uint64_t hold_ms;
	bool hexdump;
	bool json;
	bool quiet;
	int64_t timeout_ms;     /* < 0: none */
	int subscribe_timeout_ms; /* < 0: the client's */
	bool no_summary;        /* no summary line on stderr (the demo prints its own) */
	struct consume_report *report; /* NULL: a private one */
};

int consume_run(const struct consume_opts *o);

#endif /* SV2SHM_CLI_COMMON_H */
