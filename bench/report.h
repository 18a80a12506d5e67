/*
 * sv2shm-bench: what every benchmark mode shares — command-line options,
 * timing and statistics helpers, the result table (human and JSON), and the
 * machine description that goes with it.
 *
 * A mode (ipc, later seed and lag) fills a struct bench_report with rows,
 * targets and notes, then calls bench_report_print(): a human table on
 * stdout, or with --json exactly one JSON object on stdout (the human text
 * then goes to stderr).
 */
#ifndef SV2SHM_BENCH_REPORT_H
#define SV2SHM_BENCH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------- */
/* Subcommands (dispatched by main.c)                                         */
/* ------------------------------------------------------------------------- */

/** `sv2shm-bench ipc`: cross-process round trip, streaming and fan-out (ipc.c). */
int bench_ipc_main(int argc, char **argv);

/** `sv2shm-bench seed`: the seed crate's criterion benchmarks (seed.c). */
int bench_seed_main(int argc, char **argv);

/** `sv2shm-bench lag`: the FIFO lag sweep (lag.c). */
int bench_lag_main(int argc, char **argv);

/** `sv2shm-bench soak`: SIGKILL soak of the multi-process pool (soak.c). */
int bench_soak_main(int argc, char **argv);

/* ------------------------------------------------------------------------- */
/* Options every mode understands                                             */
/* ------------------------------------------------------------------------- */

struct bench_opts {
	bool json;  /* --json: one JSON object on stdout, human text on stderr */
	bool quick; /* --quick: about ten times fewer samples */
	bool help;  /* --help / -h */
};

/**
 * Parse argv[1..argc) (argv[0] is the mode's name) for --json, --quick and
 * --help. Returns 0, or -1 after printing an error for an unknown argument.
 */
int bench_parse_opts(int argc, char **argv, struct bench_opts *o);

/**
 * A mode's own options: called with argv[i] that is not a common option.
 * Returns how many arguments it used (1 for a flag, 2 for "--opt value"), 0
 * when it does not know argv[i], or -1 after printing an error (bad value).
 */
typedef int (*bench_opt_fn)(int argc, char **argv, int i, void *ctx);

/** bench_parse_opts() with a mode's own options handled by `fn`. */
int bench_parse_opts_ex(int argc, char **argv, struct bench_opts *o, bench_opt_fn fn, void *ctx);

/** Parse an unsigned decimal option value in [min, max]. Returns 0, or -1
 * after printing an error naming `opt`. */
int bench_parse_uint(const char *mode, const char *opt, const char *val, unsigned long long min,
		     unsigned long long max, unsigned long long *out);

/* ------------------------------------------------------------------------- */
/* Time and statistics                                                        */
/* ------------------------------------------------------------------------- */

/** CLOCK_MONOTONIC in nanoseconds (comparable across processes). */
uint64_t bench_now_ns(void);

struct bench_stats {
	size_t n;
	double median_ns;
	double p10_ns;
	double p90_ns;
	double p99_ns;
	double mean_ns;
	double stddev_ns; /* sample standard deviation (n - 1) */
	double min_ns;
	double max_ns;
};

/** Sort samples[0..n) in place and summarise them (nearest-rank percentiles).
 * With n == 0 every field is 0. */
void bench_stats_compute(uint64_t *samples, size_t n, struct bench_stats *out);

/* ------------------------------------------------------------------------- */
/* Results                                                                    */
/* ------------------------------------------------------------------------- */

/* A named value of a "fields" row (bench_report_add_fields_row()). */
#define BENCH_MAX_FIELDS 32
struct bench_field {
	char name[32];
	double value;  /* NAN: null */
	bool integer;  /* printed without decimals */
};

/*
 * One result. The fields after ratio_vs are optional: bench_report_add_row()
 * sets them to "not applicable" (NAN, 0, -1 or "" as noted), and the printers
 * leave out what no row has. Such a row may also carry named values of its
 * own (bench_row_field()): JSON keys after its standard ones, and columns
 * (before the ratio) in the human table.
 *
 * A "fields" row (fields_only, from bench_report_add_fields_row()) is
 * different: it is only its bench name and its own named values, in order —
 * JSON {"bench": ..., name: value, ...}, and a table of its own in the human
 * output (a mode whose result is not a timing per contender, e.g. soak).
 */
struct bench_row {
	char bench[32];      /* e.g. "ipc-roundtrip" */
	char contender[32];  /* e.g. "memfd-spin" */
	uint64_t size;       /* message size in bytes (0: not one size) */
	double median_ns;
	double p99_ns;       /* NAN: not reported */
	double msgs_per_s;   /* NAN: not reported */
	double ratio;        /* NAN when the row has no ratio */
	char ratio_vs[32];   /* what the ratio compares with ("" when none) */
	/* optional */
	double p10_ns, p90_ns; /* spread of the samples (NAN: n/a) */
	double stddev_ns;      /* NAN: n/a */
	uint64_t samples;      /* samples behind the statistics (0: n/a) */
	unsigned slots;        /* pool slots N (0: n/a) */
	int lag;               /* FIFO lag L (-1: n/a) */
	unsigned consumers;    /* fan-out consumers (0: n/a) */
	double pool_share;     /* slices served from the pool, 0..1 (NAN: n/a) */
	int64_t from_system;   /* slices served from system memory (-1: n/a) */
	int64_t slices;        /* slices taken in all (-1: n/a) */
	double setup_ns;       /* median construction + destruction inside a sample (NAN: n/a) */
	double per_msg_ns;     /* median time per message (NAN: n/a) */
	double ratio_paired;   /* the ratio as a median of per-sample pairs (NAN: n/a) */
	char transport[16];    /* what carried the bytes, e.g. "unix", "tcp" ("": n/a) */
	/* fields rows (and a plain row's named values) */
	bool fields_only;
	unsigned nfields;
	struct bench_field fields[BENCH_MAX_FIELDS];
};

struct bench_target {
	char name[160];      /* "spinning round trip within 2x of memfd-spin at 64 B" */
	double value;        /* measured (NAN: could not be measured) */
	double limit;        /* the target's bound */
	bool at_least;       /* true: value >= limit passes; false: value <= limit passes */
	char unit[16];       /* "x", "ms" */
	char note[160];      /* why it could not be measured, or extra detail */
};

struct bench_report {
	const char *mode; /* "ipc" */
	const char *ratio_desc; /* what the ratio column means (NULL: not explained) */
	char **texts;           /* lines printed under the table (bench_report_text) */
	size_t ntexts, captexts;
	struct bench_row *rows;
	size_t nrows, caprows;
	struct bench_target *targets;
	size_t ntargets, captargets;
	char **notes;
	size_t nnotes, capnotes;
};

void bench_report_init(struct bench_report *r, const char *mode);
void bench_report_free(struct bench_report *r);

/** Append a row (ratio NAN, no ratio_vs). Returns it, or NULL (out of memory). */
struct bench_row *bench_report_add_row(struct bench_report *r, const char *bench, const char *contender,
				       uint64_t size, double median_ns, double p99_ns, double msgs_per_s);

/** Append a "fields" row named `bench` (no contender, no statistics). Returns
 * it, or NULL (out of memory). */
struct bench_row *bench_report_add_fields_row(struct bench_report *r, const char *bench);

/** Append a named value to a row (integer: printed as one; otherwise a fields
 * row prints one decimal, a plain row 4 significant digits). Returns 0, or -1
 * when the row is full. */
int bench_row_field(struct bench_row *row, const char *name, double value, bool integer);

/** The row for (bench, contender, size), or NULL. */
struct bench_row *bench_report_find(struct bench_report *r, const char *bench, const char *contender, uint64_t size);

/** Append a target. Returns it, or NULL (out of memory). */
struct bench_target *bench_report_add_target(struct bench_report *r, const char *name, double value, double limit,
					     bool at_least, const char *unit);

/** Append a free-form note (printed under the table, and in JSON "notes"). */
void bench_report_note(struct bench_report *r, const char *fmt, ...) BENCH_PRINTF(2, 3);

/** Append a line of text printed right under the table (a second view of the
 * rows, e.g. the seed's README layout); in JSON as "summary". */
void bench_report_text(struct bench_report *r, const char *fmt, ...) BENCH_PRINTF(2, 3);

/** Does target t pass? (false when its value is NAN) */
bool bench_target_ok(const struct bench_target *t);

/** "64 B", "1 KiB", "16 KiB", "1.5 MiB" into buf. Returns buf. */
const char *bench_fmt_size(uint64_t size, char *buf, size_t n);

/**
 * Print the report: with json == false, the human table, targets and notes on
 * stdout; with json == true, exactly one JSON object on stdout and the human
 * text on stderr. Returns 0, or -1 when writing stdout failed.
 */
int bench_report_print(const struct bench_report *r, bool json);

/**
 * Background load: what else ran on the machine while a mode measured.
 * bench_load_start() at the beginning; bench_load_note() at the end adds a
 * note with the CPU time other processes used and the VM's steal time.
 */
struct bench_load {
	uint64_t busy_ticks;  /* /proc/stat: user+nice+system+irq+softirq, all CPUs */
	uint64_t steal_ticks;
	uint64_t all_ticks;
	uint64_t self_ns;     /* this process and its reaped children */
	uint64_t wall_ns;
	bool ok;
};
void bench_load_start(struct bench_load *l);
void bench_load_note(struct bench_report *r, const struct bench_load *start);

/** The CPUs this process may run on (sched_getaffinity), lowest first.
 * Returns how many were written to cpus[0..max), 0 when unknown. */
int bench_cpus(int *cpus, int max);

/** Pin the calling thread to `cpu` (-1: to every CPU of `all`/`nall`).
 * Returns 0 or -errno. */
int bench_pin_thread(int cpu, const int *all, int nall);

/** Progress line on stderr (not part of the results). */
void bench_progress(const char *fmt, ...) BENCH_PRINTF(1, 2);

/* ------------------------------------------------------------------------- */
/* Shared by the cross-process modes (ipc, broker, soak, seed's threads)      */
/* ------------------------------------------------------------------------- */

/** A spin's pause between two looks. */
static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/** The byte every position of message i holds (1..251: never 0). */
static inline uint8_t bench_msg_byte(uint64_t i)
{
	return (uint8_t)(1 + i % 251);
}

/** Sum of n bytes: a consumer "reads every byte" (SSE2 when available).
 * Inline: it is part of every contender's consumer loop. */
static inline uint64_t bench_sum_bytes(const uint8_t *p, size_t n)
{
	uint64_t total = 0;
#if defined(__SSE2__)
	const __m128i z = _mm_setzero_si128();
	__m128i a0 = z, a1 = z, a2 = z, a3 = z;
	for (; n >= 64; n -= 64, p += 64) {
		a0 = _mm_add_epi64(a0, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)p), z));
		a1 = _mm_add_epi64(a1, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)), z));
		a2 = _mm_add_epi64(a2, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)), z));
		a3 = _mm_add_epi64(a3, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)), z));
	}
	for (; n >= 16; n -= 16, p += 16)
		a0 = _mm_add_epi64(a0, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)p), z));
	__m128i a = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
	total = (uint64_t)_mm_cvtsi128_si64(a) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(a, a));
#endif
	while (n--)
		total += *p++;
	return total;
}

/** Where the mode's main process is, for the hard alarm's message (a
 * string literal: the handler writes it with write(2)). */
extern const char *volatile bench_where;

/** Arm the whole-run alarm: after `seconds`, print which call the process
 * was in (bench_where) and _exit(1) (the children die with us through
 * PR_SET_PDEATHSIG). Returns 0, or -1 after printing why. */
int bench_hard_alarm(const char *mode, unsigned seconds);

/** Format an error message into err[0..n) (a mode's err buffer). Returns
 * -1, for `return bench_errf(...)`. */
int bench_errf(char *err, size_t n, const char *fmt, ...) BENCH_PRINTF(3, 4);

/** close(*fd) when it is open, then *fd = -1 (teardown: a failing close
 * has nothing left to undo). */
void bench_close_fd(int *fd);

/** Spin until *w != old (acquire) and store the new value in *out: the
 * memfd-spin references' wait, one look per pause. Every 4096 looks: *stop
 * (when not NULL: the peer gave up) and the clock. Returns 0, -ECANCELED,
 * or -ETIMEDOUT after about timeout_ns. */
int bench_spin_change(_Atomic uint32_t *w, uint32_t old, uint32_t *out, _Atomic uint32_t *stop, uint64_t timeout_ns);

/** A waitpid() status as text: "exit N", "killed by signal N (name)". */
void bench_describe_status(int status, char *buf, size_t n);

/** Ignore SIGPIPE (a dead peer's socket is an error code, not a signal).
 * Returns 0, or -1 after printing why. */
int bench_ignore_sigpipe(const char *mode);

/** A memfd of `len` bytes mapped shared read-write and pre-faulted (the
 * memfd references' memory; a forked child inherits the mapping). NULL with
 * errno set and *failed naming the call that failed. */
void *bench_memfd_map(size_t len, const char **failed);

#endif /* SV2SHM_BENCH_REPORT_H */
