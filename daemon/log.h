/*
 * sv2shmd's logging: one function, four levels, to stderr (--foreground) or
 * syslog, and a rate limiter for messages a client can provoke (so a
 * misbehaving client cannot flood the log).
 */
#ifndef SV2SHMD_LOG_H
#define SV2SHMD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LVL_ERROR = 0, LVL_WARN = 1, LVL_INFO = 2, LVL_DEBUG = 3 };

/* Where and how much: `level` is the most verbose level written. */
void log_init(enum log_level level, bool to_syslog);
void log_close(void);
bool log_enabled(enum log_level level);

/* Parse "error", "warn", "info", "debug". Returns the level or -1. */
int log_level_parse(const char *s);

void logm(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) logm(LVL_ERROR, __VA_ARGS__)
#define log_warn(...) logm(LVL_WARN, __VA_ARGS__)
#define log_info(...) logm(LVL_INFO, __VA_ARGS__)
#define log_debug(...) logm(LVL_DEBUG, __VA_ARGS__)

/*
 * At most `burst` messages per `interval_ms`; the next message after a
 * window with suppressed ones first says how many were dropped. Zero-
 * initialise. ratelimit_ok() returns true when the caller may log now.
 */
struct ratelimit {
	uint64_t start_ms;
	unsigned n;
	unsigned suppressed;
};

bool ratelimit_ok(struct ratelimit *rl, unsigned burst, uint64_t interval_ms, uint64_t now_ms);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t now_ms(void);

#endif /* SV2SHMD_LOG_H */
