/*
 * Logging: one function. Messages a client can provoke go through a
 * ratelimit first (see log.h); everything else is rare by construction
 * (start, registrations, subscriptions, deaths, shutdown).
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static enum log_level max_level = LVL_INFO;
static bool use_syslog;

void log_init(enum log_level level, bool to_syslog)
{
	max_level = level;
	use_syslog = to_syslog;
	if (use_syslog)
		openlog("sv2shmd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_close(void)
{
	if (use_syslog)
		closelog();
	use_syslog = false;
}

bool log_enabled(enum log_level level)
{
	return level <= max_level;
}

int log_level_parse(const char *s)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++) {
		const char *a = names[i], *b = s;
		while (*a && *a == *b)
			a++, b++;
		if (!*a && !*b)
			return i;
	}
	return -1;
}

void logm(enum log_level level, const char *fmt, ...)
{
	if (level > max_level)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (use_syslog) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		syslog(prio[level], "%s", line);
		return;
	}
	static const char *const tag[] = {"error", "warn", "info", "debug"};
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld sv2shmd %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, tag[level], line);
}

bool ratelimit_ok(struct ratelimit *rl, unsigned burst, uint64_t interval_ms, uint64_t now)
{
	if (now - rl->start_ms >= interval_ms || rl->start_ms == 0) {
		if (rl->suppressed)
			log_warn("(%u similar messages suppressed)", rl->suppressed);
		rl->start_ms = now ? now : 1;
		rl->n = 0;
		rl->suppressed = 0;
	}
	if (rl->n < burst) {
		rl->n++;
		return true;
	}
	rl->suppressed++;
	return false;
}

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
