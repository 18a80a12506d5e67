/*
 * sv2shm status [--json] [--watch [--interval MS]] [--prometheus] [--socket PATH]
 *
 * Every pool the broker lets us see, drawn as the seed draws a pool
 * (`12345678  BACK MODE`), with its counters, high-water marks and consumers,
 * and the broker's own line. --watch redraws it in place until SIGINT.
 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void status_usage(FILE *f)
{
	fprintf(f, "usage: sv2shm status [--json | --prometheus] [--watch [--interval MS]] [--socket PATH]\n\n"
		   "Show every pool: its slot map as the seed draws it, policy, capacity, slots, mode,\n"
		   "counters, high-water marks (hw_slots, hw_bytes: most slots held at once, most bytes\n"
		   "in use), consumers (id, holder, pid, uid, slots held); and the broker.\n\n"
		   "  --json           one JSON object: {\"pools\": [...], \"broker\": {...}} (see sv2shm(1))\n"
		   "  --prometheus     Prometheus text format, for node_exporter's textfile collector\n"
		   "  --watch          redraw every --interval ms until Ctrl-C (with --json: one object a line)\n"
		   "  --interval MS    with --watch: 1 .. 3600000, default 500\n"
		   "  --socket PATH    the broker's socket (default: %s)\n"
		   "  --help           this text\n",
		cli_default_socket());
}

enum { FMT_TEXT, FMT_JSON, FMT_PROMETHEUS };

static int show_once(struct sv2shm_client *c, int fmt, FILE *out)
{
	struct sv2shm_status *st;
	int r = sv2shm_client_status(c, &st);
	if (r < 0)
		return r;
	if (fmt == FMT_JSON)
		print_status_json(out, st);
	else if (fmt == FMT_PROMETHEUS)
		print_status_prometheus(out, st);
	else
		print_status_text(out, st);
	sv2shm_status_free(st);
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL); /* SIGINT ends it early (no SA_RESTART) */
}

static int watch(struct sv2shm_client *c, int fmt, uint64_t interval)
{
	while (!cli_stop) {
		sv2shm_client_process(c); /* reconnects after a broker restart */
		if (fmt == FMT_JSON) {
			int r = show_once(c, fmt, stdout);
			if (r < 0)
				cli_fail("status", r, "status");
			fflush(stdout);
		} else {
			/* The whole screen at once: no flicker. */
			char *buf = NULL;
			size_t len = 0;
			FILE *m = open_memstream(&buf, &len);
			if (!m)
				return cli_fail("status", -ENOMEM, "open_memstream");
			time_t now = time(NULL);
			struct tm tm;
			localtime_r(&now, &tm);
			fprintf(m, "\033[H\033[2J");
			fprintf(m, "sv2shm status --watch  every %llu ms  %02d:%02d:%02d  (Ctrl-C to quit)\n\n",
				(unsigned long long)interval, tm.tm_hour, tm.tm_min, tm.tm_sec);
			int r = show_once(c, fmt, m);
			if (r < 0)
				fprintf(m, "no status from the broker: %s (retrying)\n", sv2shm_strerror(r));
			fclose(m);
			fwrite(buf, 1, len, stdout);
			fflush(stdout);
			free(buf);
		}
		sleep_ms(interval);
	}
	return 0;
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
		{"watch", no_argument, NULL, 'w'},        {"interval", required_argument, NULL, 'i'},
		{"prometheus", no_argument, NULL, 'p'},   {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *socket = NULL;
	bool json = false, prom = false, watching = false, interval_set = false;
	uint64_t interval = 500;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'w':
			watching = true;
			break;
		case 'i':
			if (cli_parse_u64(optarg, 1, 3600000, false, &interval) < 0)
				return cli_usage_error("status", "--interval takes 1 .. 3600000 ms, not '%s'", optarg);
			interval_set = true;
			break;
		case 'p':
			prom = true;
			break;
		case 'h':
			status_usage(stdout);
			return 0;
		default:
			return cli_getopt_error("status", c, argv, optind);
		}
	}
	if (optind < argc)
		return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
	if (json && prom)
		return cli_usage_error("status", "--json and --prometheus are two formats: choose one");
	if (prom && watching)
		return cli_usage_error("status", "--prometheus prints once (for a textfile collector), not with --watch");
	if (interval_set && !watching)
		return cli_usage_error("status", "--interval goes with --watch");

	cli_catch_signals();
	struct sv2shm_client *cl;
	if (cli_connect("status", socket, &cl) < 0)
		return 1;
	int fmt = json ? FMT_JSON : prom ? FMT_PROMETHEUS : FMT_TEXT;
	int ret = 0;
	if (watching) {
		ret = watch(cl, fmt, interval);
	} else {
		int r = show_once(cl, fmt, stdout);
		if (r < 0)
			ret = cli_fail("status", r, "no status from the broker");
	}
	sv2shm_client_close(cl);
	if (fflush(stdout) != 0 && !watching)
		ret = cli_fail("status", -errno, "writing the status");
	return ret;
}
