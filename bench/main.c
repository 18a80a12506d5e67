/*
 * sv2shm-bench: benchmarks of sv2shm.
 *
 *   sv2shm-bench ipc [--json] [--quick]    cross-process round trip and streaming
 *   sv2shm-bench --help
 *
 * Each mode is one entry of the table below; a mode parses its own options
 * (bench_parse_opts() for the common ones) and prints through report.c.
 */
#include "report.h"

#include <stdio.h>
#include <string.h>

struct bench_cmd {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the mode's name */
	const char *usage;                 /* options after the name */
	const char *what;
};

static const struct bench_cmd cmds[] = {
	{"ipc", bench_ipc_main, "[--json] [--quick]",
	 "cross-process round trip and streaming: sv2shm against memfd spin/futex, Unix sockets and pipes"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: sv2shm-bench MODE [OPTIONS]\n       sv2shm-bench --help\n\nmodes:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(out, "  %-6s %-20s %s\n", cmds[i].name, cmds[i].usage, cmds[i].what);
	fprintf(out, "\ncommon options:\n"
		     "  --json    print exactly one JSON object on stdout (human text goes to stderr)\n"
		     "  --quick   about ten times fewer samples (a smoke run)\n"
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
