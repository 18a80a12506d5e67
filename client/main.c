/*
 * sv2shm: the command-line client of the sv2shmd broker.
 *
 *   sv2shm status   [--json] [--watch [--interval MS]] [--prometheus]
 *   sv2shm produce  --pool NAME [...]
 *   sv2shm consume  --pool NAME [...]
 *   sv2shm demo     [--json] [--seconds N]
 *   sv2shm --help | --version
 *
 * Each command parses its own options (see its file); sv2shm(1) has them all.
 */
#include "common.h"

#include <string.h>

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *what;
};

static const struct command commands[] = {
	{"status", cmd_status, "every pool: slot map, mode, counters, high-water marks, consumers; the broker"},
	{"produce", cmd_produce, "register a pool and publish Sv2 frames (stdin, a file, loopback TCP, synthetic)"},
	{"consume", cmd_consume, "subscribe to a pool, receive, check and print its frames"},
	{"demo", cmd_demo, "a private broker, a producer, three consumers, one killed and replaced"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: sv2shm COMMAND [OPTIONS]\n"
		   "       sv2shm COMMAND --help\n"
		   "       sv2shm --version\n\n"
		   "Zero-copy Stratum V2 frame pools through the sv2shmd broker.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\nEvery command takes --socket PATH (default: %s) and --help.\n"
		   "Exit status: 0 success, 1 failure, 2 bad usage. See sv2shm(1).\n",
		cli_default_socket());
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("sv2shm %s\n", SV2SHM_CLIENT_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return cli_usage_error(NULL, "unknown option '%s'", cmd);
	return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
