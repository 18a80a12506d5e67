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

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------- */
/* Subcommands (dispatched by main.c)                                         */
/* ------------------------------------------------------------------------- */

/** `sv2shm-bench ipc`: cross-process round trip and streaming (ipc.c). */
int bench_ipc_main(int argc, char **argv);

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

/* ------------------------------------------------------------------------- */
/* Time and statistics                                                        */
/* ------------------------------------------------------------------------- */

/** CLOCK_MONOTONIC in nanoseconds (comparable across processes). */
uint64_t bench_now_ns(void);

struct bench_stats {
	size_t n;
	double median_ns;
	double p99_ns;
	double mean_ns;
	double min_ns;
	double max_ns;
};

/** Sort samples[0..n) in place and summarise them (nearest-rank percentiles).
 * With n == 0 every field is 0. */
void bench_stats_compute(uint64_t *samples, size_t n, struct bench_stats *out);

/* ------------------------------------------------------------------------- */
/* Results                                                                    */
/* ------------------------------------------------------------------------- */

struct bench_row {
	char bench[32];      /* e.g. "ipc-roundtrip" */
	char contender[32];  /* e.g. "memfd-spin" */
	uint64_t size;       /* message size in bytes */
	double median_ns;
	double p99_ns;
	double msgs_per_s;
	double ratio;        /* NAN when the row has no ratio */
	char ratio_vs[32];   /* what the ratio compares with ("" when none) */
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

/** The row for (bench, contender, size), or NULL. */
struct bench_row *bench_report_find(struct bench_report *r, const char *bench, const char *contender, uint64_t size);

/** Append a target. Returns it, or NULL (out of memory). */
struct bench_target *bench_report_add_target(struct bench_report *r, const char *name, double value, double limit,
					     bool at_least, const char *unit);

/** Append a free-form note (printed under the table, and in JSON "notes"). */
void bench_report_note(struct bench_report *r, const char *fmt, ...) BENCH_PRINTF(2, 3);

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

/** Progress line on stderr (not part of the results). */
void bench_progress(const char *fmt, ...) BENCH_PRINTF(1, 2);

#endif /* SV2SHM_BENCH_REPORT_H */
