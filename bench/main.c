/*
 * sv2shm-bench: benchmarks of sv2shm.
 *
 *   sv2shm-bench seed [--slots N] [--json]  the seed crate's benchmarks
 *   sv2shm-bench lag [--slots N] [--json]   FIFO lag sweep
 *   sv2shm-bench ipc [--json] [--quick]     cross-process round trip, streaming, fan-out
 *   sv2shm-bench soak [--seconds N] [--json] SIGKILL soak: integrity and reclaim time
 *   sv2shm-bench broker [--json] [--quick]  pools through the broker: fan-out, round-robin, reclaim
 *   sv2shm-bench frames [--json] [--quick]  Sv2 frames decoded from a socket: frames/s, reads per frame
 *   sv2shm-bench paired [--json] [--quick] [--pairs N] [--block N] [--sizes LIST]
 *                                           sv2shm vs memfd-spin round trip in alternating blocks, per-pair ratios
 *   sv2shm-bench stamps [--json] [--quick] [--block N] [--blocks N]
 *                                           the 64 B round trip split in four parts (a -Dstamps=true build)
 *   sv2shm-bench calls [--json] [--count N] [--size B] [--batch K]
 *                                           the small-slice stream path in one thread (bench/calls.sh: callgrind counts)
 *   sv2shm-bench --help
 *
 * Each mode is one entry of the table below; a mode parses its own options
 * (bench_parse_opts() for the common ones) and prints through report.c.
 */
#include "report.h"

#include <stdio.h>
#include <string.h>

/* `sv2shm-bench broker` (broker.c). */
int bench_broker_main(int argc, char **argv);
/* `sv2shm-bench frames` (frames.c). */
int bench_frames_main(int argc, char **argv);
/* `sv2shm-bench paired` (paired.c). */
int bench_paired_main(int argc, char **argv);
/* `sv2shm-bench stamps` (stamps.c). */
int bench_stamps_main(int argc, char **argv);
/* `sv2shm-bench calls` (calls.c). */
int bench_calls_main(int argc, char **argv);

struct bench_cmd {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the mode's name */
	const char *usage;                 /* options after the name */
	const char *what;
};

static const struct bench_cmd cmds[] = {
	{"seed", bench_seed_main, "[--slots N] [--json]",
	 "the seed crate's benchmarks: single-thread, multi-thread, multi-thread-2, workers"},
	{"lag", bench_lag_main, "[--slots N] [--json]",
	 "FIFO lag sweep: slices released in arrival order, the L newest kept"},
	{"ipc", bench_ipc_main, "[--json] [--quick]",
	 "cross-process round trip, streaming, fan-out: sv2shm vs memfd, sockets, pipes, iceoryx"},
	{"soak", bench_soak_main, "[--seconds N] [--json]",
	 "SIGKILL soak: consumers killed and replaced while slices flow; integrity and reclaim time"},
	{"broker", bench_broker_main, "[--json] [--quick]",
	 "pools through a private sv2shmd: fan-out and round-robin vs the direct channel, reclaim after SIGKILL"},
	{"frames", bench_frames_main, "[--json] [--quick]",
	 "back-to-back Sv2 frames from a Unix and a TCP socket: frames/s and read()s per frame vs two reads a frame"},
	{"paired", bench_paired_main, "[--json] [--quick] ...",
	 "sv2shm vs memfd-spin round trip in alternating blocks, one process pair: per-pair ratios (--pairs, --block, "
	 "--sizes)"},
	{"stamps", bench_stamps_main, "[--json] [--quick] [--block N] [--blocks N]",
	 "the 64 B round trip of sv2shm and memfd-spin split into producer path, hand-offs, consumer path "
	 "(needs -Dstamps=true)"},
	{"calls", bench_calls_main, "[--json] ...",
	 "the small-slice stream path in one process and one thread, producer and consumer alternating "
	 "(--count, --size, --batch); bench/calls.sh counts its instructions and stores per call with callgrind"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: sv2shm-bench MODE [OPTIONS]\n       sv2shm-bench --help\n\nmodes:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(out, "  %-6s %-22s %s\n", cmds[i].name, cmds[i].usage, cmds[i].what);
	fprintf(out, "\ncommon options:\n"
		     "  --json    print exactly one JSON object on stdout (human text goes to stderr)\n"
		     "  --quick   fewer samples (a smoke run)\n"
		     "  --help    this text, or a mode's own help after the mode's name\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "sv2shm-bench: unknown mode '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
