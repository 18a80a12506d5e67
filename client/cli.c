/*
 * What every command needs: messages and exit codes, option values, signals,
 * the broker connection.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t cli_stop;
volatile sig_atomic_t cli_stop_signal;

static void vnote(const char *cmd, const char *fmt, va_list ap) CLI_PRINTF(2, 0);

static void vnote(const char *cmd, const char *fmt, va_list ap)
{
	fprintf(stderr, "sv2shm%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	vfprintf(stderr, fmt, ap);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vnote(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'sv2shm %s%s--help' for more information.\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int cli_fail(const char *cmd, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vnote(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", sv2shm_strerror(err));
	return 1;
}

void cli_note(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vnote(cmd, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, bool sizes, uint64_t *out)
{
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	if (*end && sizes) {
		unsigned shift = 0;
		switch (*end) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		default:
			return -EINVAL;
		}
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
	}
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli_parse_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *min, uint64_t *max)
{
	const char *dash = s ? strchr(s, '-') : NULL;
	if (!dash || dash == s)
		return -EINVAL;
	char first[32];
	size_t n = (size_t)(dash - s);
	if (n >= sizeof(first))
		return -EINVAL;
	memcpy(first, s, n);
	first[n] = 0;
	int r = cli_parse_u64(first, lo, hi, false, min);
	if (r == 0)
		r = cli_parse_u64(dash + 1, lo, hi, false, max);
	if (r == 0 && *min > *max)
		r = -EINVAL;
	return r;
}

bool cli_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SV2SHM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

int cli_getopt_error(const char *cmd, int c, char **argv, int optind_now)
{
	const char *arg = optind_now > 0 ? argv[optind_now - 1] : "?";
	if (c == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", arg);
	return cli_usage_error(cmd, "unknown option '%s'", arg);
}

static const char *const policy_names[] = {"fallback", "fail", "wait"};
static const char *const limit_names[] = {"skip", "disconnect", "refuse"};

const char *cli_policy_name(int policy)
{
	return policy >= 0 && policy < 3 ? policy_names[policy] : "?";
}

int cli_policy_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, policy_names[i]))
			return i;
	return -EINVAL;
}

const char *cli_limit_name(int on_limit)
{
	return on_limit >= 0 && on_limit < 3 ? limit_names[on_limit] : "?";
}

int cli_limit_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, limit_names[i]))
			return i;
	return -EINVAL;
}

const char *cli_mode_word(int mode)
{
	switch (mode) {
	case SV2SHM_MODE_BACK:
		return "BACK";
	case SV2SHM_MODE_FRONT:
		return "FRONT";
	case SV2SHM_MODE_ALLOC:
		return "ALLOC";
	default:
		return "?";
	}
}

const char *cli_event_reason(int reason)
{
	switch (reason) {
	case SV2SHM_EVENT_HANGUP:
		return "hung up";
	case SV2SHM_EVENT_PROTOCOL:
		return "broke the protocol";
	case SV2SHM_EVENT_LIMIT:
		return "at its limit (--on-limit disconnect)";
	case SV2SHM_EVENT_REMOVED:
		return "removed";
	default:
		return "removed (unknown reason)";
	}
}

uint64_t cli_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cli_now_ms(void)
{
	return cli_now_ns() / 1000000u;
}

static void on_stop(int sig)
{
	if (cli_stop) { /* the second one: do what it says at once */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	cli_stop = 1;
	cli_stop_signal = sig;
}

void cli_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

const char *cli_default_socket(void)
{
	static char path[256];
	if (!path[0] && sv2shm_default_socket(path, sizeof(path)) < 0)
		snprintf(path, sizeof(path), "/run/sv2shm/sv2shmd.sock");
	return path;
}

int cli_connect(const char *cmd, const char *socket, struct sv2shm_client **out)
{
	struct sv2shm_client_options o = {.socket_path = socket};
	int r = sv2shm_client_connect(&o, out);
	if (r == 0)
		return 0;
	const char *path = socket ? socket : cli_default_socket();
	switch (r) {
	case -ENOENT:
		cli_fail(cmd, r, "no broker socket at %s (is sv2shmd running? --socket PATH)", path);
		break;
	case -ECONNREFUSED:
		cli_fail(cmd, r, "nobody listens on %s (a stale socket: is sv2shmd running?)", path);
		break;
	case -EACCES:
		cli_fail(cmd, r, "not allowed to connect to %s", path);
		break;
	default:
		cli_fail(cmd, r, "cannot connect to the broker at %s", path);
		break;
	}
	return r;
}
