/* sv2shm-bench: options, timing, statistics and the result printer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* ------------------------------------------------------------------------- */
/* Options                                                                    */
/* ------------------------------------------------------------------------- */

int bench_parse_opts_ex(int argc, char **argv, struct bench_opts *o, bench_opt_fn fn, void *ctx)
{
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0) {
			o->json = true;
		} else if (strcmp(a, "--quick") == 0) {
			o->quick = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			o->help = true;
		} else {
			int used = fn ? fn(argc, argv, i, ctx) : 0;
			if (used < 0)
				return -1;
			if (used == 0) {
				fprintf(stderr, "sv2shm-bench %s: unknown argument '%s' (try --help)\n", argv[0], a);
				return -1;
			}
			i += used - 1;
		}
	}
	return 0;
}

int bench_parse_opts(int argc, char **argv, struct bench_opts *o)
{
	return bench_parse_opts_ex(argc, argv, o, NULL, NULL);
}

int bench_parse_uint(const char *mode, const char *opt, const char *val, unsigned long long min,
		     unsigned long long max, unsigned long long *out)
{
	if (!val) {
		fprintf(stderr, "sv2shm-bench %s: %s needs a value\n", mode, opt);
		return -1;
	}
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(val, &end, 10);
	if (errno || !end || end == val || *end || val[0] == '-' || v < min || v > max) {
		fprintf(stderr, "sv2shm-bench %s: %s %s: want a number in %llu..%llu\n", mode, opt, val, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Time and statistics                                                        */
/* ------------------------------------------------------------------------- */

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	/* CLOCK_MONOTONIC cannot fail with a valid pointer; keep the check anyway. */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted s[0..n), n > 0, p in (0, 100]. */
static double percentile(const uint64_t *s, size_t n, double p)
{
	double rank = ceil(p / 100.0 * (double)n);
	size_t i = rank < 1.0 ? 0 : (size_t)rank - 1;
	if (i >= n)
		i = n - 1;
	return (double)s[i];
}

void bench_stats_compute(uint64_t *samples, size_t n, struct bench_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->n = n;
	if (n == 0)
		return;
	qsort(samples, n, sizeof(*samples), cmp_u64);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (double)samples[i];
	out->mean_ns = sum / (double)n;
	out->min_ns = (double)samples[0];
	out->max_ns = (double)samples[n - 1];
	/* Median: the mean of the two middle samples for an even count. */
	if (n % 2)
		out->median_ns = (double)samples[n / 2];
	else
		out->median_ns = ((double)samples[n / 2 - 1] + (double)samples[n / 2]) / 2.0;
	out->p10_ns = percentile(samples, n, 10.0);
	out->p90_ns = percentile(samples, n, 90.0);
	out->p99_ns = percentile(samples, n, 99.0);
	double var = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)samples[i] - out->mean_ns;
		var += d * d;
	}
	out->stddev_ns = n > 1 ? sqrt(var / (double)(n - 1)) : 0.0;
}

/* ------------------------------------------------------------------------- */
/* Report                                                                     */
/* ------------------------------------------------------------------------- */

void bench_report_init(struct bench_report *r, const char *mode)
{
	memset(r, 0, sizeof(*r));
	r->mode = mode;
}

void bench_report_free(struct bench_report *r)
{
	free(r->rows);
	free(r->targets);
	for (size_t i = 0; i < r->nnotes; i++)
		free(r->notes[i]);
	free(r->notes);
	for (size_t i = 0; i < r->ntexts; i++)
		free(r->texts[i]);
	free(r->texts);
	memset(r, 0, sizeof(*r));
}

/* Grow a vector to hold one more element. Returns 0 or -ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 16;
	void *nv = realloc(*v, ncap * elem);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

static void copy_str(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

struct bench_row *bench_report_add_row(struct bench_report *r, const char *bench, const char *contender,
				       uint64_t size, double median_ns, double p99_ns, double msgs_per_s)
{
	if (grow((void **)&r->rows, &r->caprows, r->nrows, sizeof(*r->rows)) < 0)
		return NULL;
	struct bench_row *row = &r->rows[r->nrows++];
	memset(row, 0, sizeof(*row));
	copy_str(row->bench, sizeof(row->bench), bench);
	copy_str(row->contender, sizeof(row->contender), contender);
	row->size = size;
	row->median_ns = median_ns;
	row->p99_ns = p99_ns;
	row->msgs_per_s = msgs_per_s;
	row->ratio = NAN;
	row->p10_ns = row->p90_ns = row->stddev_ns = NAN;
	row->lag = -1;
	row->pool_share = NAN;
	row->from_system = -1;
	row->slices = -1;
	row->setup_ns = NAN;
	row->per_msg_ns = NAN;
	row->ratio_paired = NAN;
	return row;
}

struct bench_row *bench_report_add_fields_row(struct bench_report *r, const char *bench)
{
	struct bench_row *row = bench_report_add_row(r, bench, "", 0, NAN, NAN, NAN);
	if (row)
		row->fields_only = true;
	return row;
}

int bench_row_field(struct bench_row *row, const char *name, double value, bool integer)
{
	if (!row || row->nfields >= BENCH_MAX_FIELDS)
		return -1;
	struct bench_field *f = &row->fields[row->nfields++];
	copy_str(f->name, sizeof(f->name), name);
	f->value = value;
	f->integer = integer;
	return 0;
}

struct bench_row *bench_report_find(struct bench_report *r, const char *bench, const char *contender, uint64_t size)
{
	for (size_t i = 0; i < r->nrows; i++) {
		struct bench_row *row = &r->rows[i];
		if (row->size == size && strcmp(row->bench, bench) == 0 && strcmp(row->contender, contender) == 0)
			return row;
	}
	return NULL;
}

struct bench_target *bench_report_add_target(struct bench_report *r, const char *name, double value, double limit,
					     bool at_least, const char *unit)
{
	if (grow((void **)&r->targets, &r->captargets, r->ntargets, sizeof(*r->targets)) < 0)
		return NULL;
	struct bench_target *t = &r->targets[r->ntargets++];
	memset(t, 0, sizeof(*t));
	copy_str(t->name, sizeof(t->name), name);
	t->value = value;
	t->limit = limit;
	t->at_least = at_least;
	copy_str(t->unit, sizeof(t->unit), unit);
	return t;
}

static void add_line(char ***v, size_t *cap, size_t *n, const char *fmt, va_list ap) BENCH_PRINTF(4, 0);
static void add_line(char ***v, size_t *cap, size_t *n, const char *fmt, va_list ap)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (grow((void **)v, cap, *n, sizeof(**v)) < 0)
		return;
	char *s = strdup(buf);
	if (s)
		(*v)[(*n)++] = s;
}

void bench_report_note(struct bench_report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_line(&r->notes, &r->capnotes, &r->nnotes, fmt, ap);
	va_end(ap);
}

void bench_report_text(struct bench_report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_line(&r->texts, &r->captexts, &r->ntexts, fmt, ap);
	va_end(ap);
}

bool bench_target_ok(const struct bench_target *t)
{
	if (isnan(t->value))
		return false;
	return t->at_least ? t->value >= t->limit : t->value <= t->limit;
}

const char *bench_fmt_size(uint64_t size, char *buf, size_t n)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB"};
	unsigned u = 0;
	double v = (double)size;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (v == floor(v))
		snprintf(buf, n, "%.0f %s", v, units[u]);
	else
		snprintf(buf, n, "%.1f %s", v, units[u]);
	return buf;
}

/* ------------------------------------------------------------------------- */
/* Machine                                                                    */
/* ------------------------------------------------------------------------- */

struct machine {
	char cpu[128];
	long cpus;
	char kernel[160];
	char date[32];
};

static void machine_describe(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	copy_str(m->cpu, sizeof(m->cpu), "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "model name", 10) != 0)
				continue;
			char *colon = strchr(line, ':');
			if (!colon)
				continue;
			char *v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			copy_str(m->cpu, sizeof(m->cpu), v);
			break;
		}
		fclose(f);
	}
	m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof(m->kernel), "%s %s", u.sysname, u.release);
	else
		copy_str(m->kernel, sizeof(m->kernel), "unknown");
	time_t now = time(NULL);
	struct tm tm;
	if (now != (time_t)-1 && gmtime_r(&now, &tm))
		strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	else
		copy_str(m->date, sizeof(m->date), "unknown");
}

/* ------------------------------------------------------------------------- */
/* Human output                                                               */
/* ------------------------------------------------------------------------- */

/* 1234567 -> "1,234,567" */
static const char *fmt_thousands(double v, char *buf, size_t n)
{
	if (isnan(v) || v < 0) {
		snprintf(buf, n, "-");
		return buf;
	}
	char digits[32];
	snprintf(digits, sizeof(digits), "%.0f", v);
	size_t len = strlen(digits), o = 0;
	for (size_t i = 0; i < len && o + 2 < n; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

/* Which optional columns some row has. */
struct columns {
	bool size, p10, p90, p99, mps, slots, lag, consumers, per_msg, from_system, pool_share, transport;
	/* the named values of plain rows, in order of first appearance */
	unsigned nextra;
	const char *extra[BENCH_MAX_FIELDS];
	int extra_w[BENCH_MAX_FIELDS];
};

/* A plain row's named value `name`, or NULL. */
static const struct bench_field *row_field(const struct bench_row *row, const char *name)
{
	for (unsigned k = 0; k < row->nfields; k++)
		if (strcmp(row->fields[k].name, name) == 0)
			return &row->fields[k];
	return NULL;
}

static void find_columns(const struct bench_report *r, struct columns *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < r->nrows; i++) {
		const struct bench_row *row = &r->rows[i];
		if (row->fields_only)
			continue;
		c->size |= row->size > 0;
		c->p10 |= !isnan(row->p10_ns);
		c->p90 |= !isnan(row->p90_ns);
		c->p99 |= !isnan(row->p99_ns);
		c->mps |= !isnan(row->msgs_per_s);
		c->slots |= row->slots > 0;
		c->lag |= row->lag >= 0;
		c->consumers |= row->consumers > 0;
		c->per_msg |= !isnan(row->per_msg_ns);
		c->from_system |= row->from_system >= 0;
		c->pool_share |= !isnan(row->pool_share);
		c->transport |= row->transport[0] != '\0';
		for (unsigned k = 0; k < row->nfields; k++) {
			unsigned e = 0;
			while (e < c->nextra && strcmp(c->extra[e], row->fields[k].name) != 0)
				e++;
			if (e == c->nextra && c->nextra < BENCH_MAX_FIELDS) {
				int w = (int)strlen(row->fields[k].name);
				c->extra[c->nextra] = row->fields[k].name;
				c->extra_w[c->nextra++] = w > 12 ? w : 12;
			}
		}
	}
}

/* A field's value as text: "-" for NAN, integers with thousands separators,
 * others with one decimal (fields rows) or 4 significant digits (plain rows). */
static const char *fmt_field(const struct bench_field *f, bool plain, char *buf, size_t n)
{
	if (isnan(f->value))
		snprintf(buf, n, "-");
	else if (f->integer)
		fmt_thousands(f->value, buf, n);
	else if (plain)
		snprintf(buf, n, "%.4g", f->value);
	else
		snprintf(buf, n, "%.1f", f->value);
	return buf;
}

/* Each fields row as a table of its own: a line of names, a line of values. */
static void print_fields_rows(const struct bench_report *r, FILE *out)
{
	for (size_t i = 0; i < r->nrows; i++) {
		const struct bench_row *row = &r->rows[i];
		if (!row->fields_only)
			continue;
		int w[BENCH_MAX_FIELDS + 1];
		char vals[BENCH_MAX_FIELDS][48];
		w[0] = (int)strlen(row->bench) > 5 ? (int)strlen(row->bench) : 5;
		for (unsigned k = 0; k < row->nfields; k++) {
			fmt_field(&row->fields[k], false, vals[k], sizeof(vals[k]));
			int a = (int)strlen(row->fields[k].name), b = (int)strlen(vals[k]);
			w[k + 1] = a > b ? a : b;
		}
		fprintf(out, "%-*s", w[0], "bench");
		for (unsigned k = 0; k < row->nfields; k++)
			fprintf(out, "  %*s", w[k + 1], row->fields[k].name);
		fprintf(out, "\n%-*s", w[0], row->bench);
		for (unsigned k = 0; k < row->nfields; k++)
			fprintf(out, "  %*s", w[k + 1], vals[k]);
		fputs("\n\n", out);
	}
}

static void print_human(const struct bench_report *r, const struct machine *m, FILE *out)
{
	struct columns c;
	find_columns(r, &c);
	fprintf(out, "sv2shm-bench %s: %s, %ld CPUs, %s, %s\n\n", r->mode, m->cpu, m->cpus, m->kernel, m->date);
	if (r->ratio_desc)
		fprintf(out, "ratio: %s\n\n", r->ratio_desc);
	print_fields_rows(r, out);
	size_t nplain = 0;
	for (size_t i = 0; i < r->nrows; i++)
		nplain += !r->rows[i].fields_only;
	if (!nplain)
		goto after_table;
	fprintf(out, "%-14s %-16s", "bench", "contender");
	if (c.transport)
		fprintf(out, " %-9s", "transport");
	if (c.slots)
		fprintf(out, " %5s", "slots");
	if (c.lag)
		fprintf(out, " %4s", "lag");
	if (c.consumers)
		fprintf(out, " %4s", "cons");
	if (c.size)
		fprintf(out, " %8s", "size");
	fprintf(out, " %11s", "median_ns");
	if (c.p10)
		fprintf(out, " %11s", "p10_ns");
	if (c.p90)
		fprintf(out, " %11s", "p90_ns");
	if (c.p99)
		fprintf(out, " %11s", "p99_ns");
	if (c.mps)
		fprintf(out, " %13s", "msgs_per_s");
	if (c.per_msg)
		fprintf(out, " %10s", "ns_per_msg");
	if (c.from_system)
		fprintf(out, " %11s", "from_system");
	if (c.pool_share)
		fprintf(out, " %6s", "pool");
	for (unsigned e = 0; e < c.nextra; e++)
		fprintf(out, " %*s", c.extra_w[e], c.extra[e]);
	fprintf(out, "  %s\n", "ratio");
	const struct bench_row *last = NULL;
	for (size_t i = 0; i < r->nrows; i++) {
		const struct bench_row *row = &r->rows[i];
		if (row->fields_only)
			continue;
		if (last && (strcmp(last->bench, row->bench) != 0 || last->size != row->size ||
			     last->slots != row->slots || last->lag != row->lag || last->consumers != row->consumers ||
			     strcmp(last->transport, row->transport) != 0))
			fputc('\n', out);
		last = row;
		char b[64], ratio[64] = "";
		if (!isnan(row->ratio))
			snprintf(ratio, sizeof(ratio), "%.2fx vs %s", row->ratio, row->ratio_vs);
		fprintf(out, "%-14s %-16s", row->bench, row->contender);
		if (c.transport)
			fprintf(out, " %-9s", row->transport[0] ? row->transport : "-");
		if (c.slots)
			fprintf(out, " %5s", row->slots ? fmt_thousands((double)row->slots, b, sizeof(b)) : "-");
		if (c.lag)
			fprintf(out, " %4s", row->lag >= 0 ? fmt_thousands((double)row->lag, b, sizeof(b)) : "-");
		if (c.consumers)
			fprintf(out, " %4s", row->consumers ? fmt_thousands((double)row->consumers, b, sizeof(b)) : "-");
		if (c.size)
			fprintf(out, " %8s", row->size ? bench_fmt_size(row->size, b, sizeof(b)) : "-");
		fprintf(out, " %11s", fmt_thousands(row->median_ns, b, sizeof(b)));
		if (c.p10)
			fprintf(out, " %11s", fmt_thousands(row->p10_ns, b, sizeof(b)));
		if (c.p90)
			fprintf(out, " %11s", fmt_thousands(row->p90_ns, b, sizeof(b)));
		if (c.p99)
			fprintf(out, " %11s", fmt_thousands(row->p99_ns, b, sizeof(b)));
		if (c.mps)
			fprintf(out, " %13s", fmt_thousands(row->msgs_per_s, b, sizeof(b)));
		if (c.per_msg)
			fprintf(out, " %10s", fmt_thousands(row->per_msg_ns, b, sizeof(b)));
		if (c.from_system)
			fprintf(out, " %11s",
				row->from_system >= 0 ? fmt_thousands((double)row->from_system, b, sizeof(b)) : "-");
		if (c.pool_share) {
			if (isnan(row->pool_share))
				snprintf(b, sizeof(b), "-");
			else
				snprintf(b, sizeof(b), "%.3f", row->pool_share);
			fprintf(out, " %6s", b);
		}
		for (unsigned e = 0; e < c.nextra; e++) {
			const struct bench_field *f = row_field(row, c.extra[e]);
			fprintf(out, " %*s", c.extra_w[e], f ? fmt_field(f, true, b, sizeof(b)) : "-");
		}
		fprintf(out, "  %s\n", ratio);
	}
	if (r->ntexts)
		fputc('\n', out);
after_table:
	for (size_t i = 0; i < r->ntexts; i++)
		fprintf(out, "%s\n", r->texts[i]);
	if (r->ntargets)
		fputc('\n', out);
	for (size_t i = 0; i < r->ntargets; i++) {
		const struct bench_target *t = &r->targets[i];
		if (isnan(t->value)) {
			fprintf(out, "target: %s: not measured  MISSED%s%s\n", t->name, t->note[0] ? " — " : "", t->note);
			continue;
		}
		char note[200] = "";
		if (t->note[0])
			snprintf(note, sizeof(note), "  (%s)", t->note);
		fprintf(out, "target: %s: %.2f%s%s  %s%s\n", t->name, t->value, strcmp(t->unit, "x") == 0 ? "" : " ",
			t->unit, bench_target_ok(t) ? "OK" : "MISSED", note);
	}
	if (r->nnotes)
		fputc('\n', out);
	for (size_t i = 0; i < r->nnotes; i++)
		fprintf(out, "note: %s\n", r->notes[i]);
}

/* ------------------------------------------------------------------------- */
/* JSON output                                                                */
/* ------------------------------------------------------------------------- */

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

/* An integer-valued number, or null for NAN. */
static void json_int(FILE *out, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", out);
	else
		fprintf(out, "%.0f", v);
}

static void json_num(FILE *out, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", out);
	else
		fprintf(out, "%.4g", v);
}

static void print_json(const struct bench_report *r, const struct machine *m, FILE *out)
{
	fputs("{\"machine\": {\"cpu\": ", out);
	json_str(out, m->cpu);
	fprintf(out, ", \"cpus\": %ld, \"kernel\": ", m->cpus);
	json_str(out, m->kernel);
	fputs(", \"date\": ", out);
	json_str(out, m->date);
	fputs("},\n \"rows\": [", out);
	for (size_t i = 0; i < r->nrows; i++) {
		const struct bench_row *row = &r->rows[i];
		fputs(i ? ",\n  {\"bench\": " : "\n  {\"bench\": ", out);
		json_str(out, row->bench);
		if (row->fields_only) {
			for (unsigned k = 0; k < row->nfields; k++) {
				fputs(", ", out);
				json_str(out, row->fields[k].name);
				fputs(": ", out);
				if (row->fields[k].integer)
					json_int(out, row->fields[k].value);
				else if (isnan(row->fields[k].value) || isinf(row->fields[k].value))
					fputs("null", out);
				else
					fprintf(out, "%.1f", row->fields[k].value);
			}
			fputc('}', out);
			continue;
		}
		fputs(", \"contender\": ", out);
		json_str(out, row->contender);
		if (row->size)
			fprintf(out, ", \"size\": %llu", (unsigned long long)row->size);
		if (row->transport[0]) {
			fputs(", \"transport\": ", out);
			json_str(out, row->transport);
		}
		if (row->slots)
			fprintf(out, ", \"slots\": %u", row->slots);
		if (row->lag >= 0)
			fprintf(out, ", \"lag\": %d", row->lag);
		if (row->consumers)
			fprintf(out, ", \"consumers\": %u", row->consumers);
		fputs(", \"median_ns\": ", out);
		json_int(out, row->median_ns);
		static const struct {
			const char *name;
			size_t off;
		} opt[] = {
			{"p10_ns", offsetof(struct bench_row, p10_ns)},
			{"p90_ns", offsetof(struct bench_row, p90_ns)},
			{"p99_ns", offsetof(struct bench_row, p99_ns)},
			{"stddev_ns", offsetof(struct bench_row, stddev_ns)},
			{"msgs_per_s", offsetof(struct bench_row, msgs_per_s)},
			{"per_msg_ns", offsetof(struct bench_row, per_msg_ns)},
			{"setup_ns", offsetof(struct bench_row, setup_ns)},
		};
		for (size_t k = 0; k < sizeof(opt) / sizeof(opt[0]); k++) {
			double v;
			memcpy(&v, (const char *)row + opt[k].off, sizeof(v));
			if (isnan(v))
				continue;
			fprintf(out, ", \"%s\": ", opt[k].name);
			json_int(out, v);
		}
		for (unsigned k = 0; k < row->nfields; k++) {
			fputs(", ", out);
			json_str(out, row->fields[k].name);
			fputs(": ", out);
			if (row->fields[k].integer)
				json_int(out, row->fields[k].value);
			else
				json_num(out, row->fields[k].value);
		}
		if (row->samples)
			fprintf(out, ", \"samples\": %llu", (unsigned long long)row->samples);
		if (!isnan(row->pool_share)) {
			fputs(", \"pool_share\": ", out);
			json_num(out, row->pool_share);
		}
		if (row->from_system >= 0)
			fprintf(out, ", \"from_system\": %lld", (long long)row->from_system);
		if (row->slices >= 0)
			fprintf(out, ", \"slices\": %lld", (long long)row->slices);
		fputs(", \"ratio\": ", out);
		json_num(out, row->ratio);
		if (!isnan(row->ratio_paired)) {
			fputs(", \"ratio_paired\": ", out);
			json_num(out, row->ratio_paired);
		}
		fputs(", \"ratio_vs\": ", out);
		if (row->ratio_vs[0])
			json_str(out, row->ratio_vs);
		else
			fputs("null", out);
		fputc('}', out);
	}
	fputs("],\n \"targets\": [", out);
	for (size_t i = 0; i < r->ntargets; i++) {
		const struct bench_target *t = &r->targets[i];
		fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", out);
		json_str(out, t->name);
		fputs(", \"value\": ", out);
		json_num(out, t->value);
		fputs(", \"limit\": ", out);
		json_num(out, t->limit);
		fputs(", \"unit\": ", out);
		json_str(out, t->unit);
		fprintf(out, ", \"ok\": %s", bench_target_ok(t) ? "true" : "false");
		fputs(", \"note\": ", out);
		json_str(out, t->note);
		fputc('}', out);
	}
	fputs("],\n \"notes\": [", out);
	for (size_t i = 0; i < r->nnotes; i++) {
		fputs(i ? ",\n  " : "\n  ", out);
		json_str(out, r->notes[i]);
	}
	fputs("],\n \"summary\": [", out);
	for (size_t i = 0; i < r->ntexts; i++) {
		fputs(i ? ",\n  " : "\n  ", out);
		json_str(out, r->texts[i]);
	}
	fputs("]", out);
	if (r->ratio_desc) {
		fputs(",\n \"ratio_desc\": ", out);
		json_str(out, r->ratio_desc);
	}
	fprintf(out, ",\n \"mode\": ");
	json_str(out, r->mode);
	fputs("}\n", out);
}

int bench_report_print(const struct bench_report *r, bool json)
{
	struct machine m;
	machine_describe(&m);
	if (json) {
		print_human(r, &m, stderr);
		print_json(r, &m, stdout);
	} else {
		print_human(r, &m, stdout);
	}
	if (fflush(stdout) != 0 || ferror(stdout))
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Background load                                                            */
/* ------------------------------------------------------------------------- */

static bool read_proc_stat(uint64_t *busy, uint64_t *steal, uint64_t *all)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return false;
	unsigned long long v[10] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
		       &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 8)
		return false;
	/* user nice system idle iowait irq softirq steal (guest time is in user) */
	*busy = v[0] + v[1] + v[2] + v[5] + v[6];
	*steal = v[7];
	*all = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	return true;
}

static uint64_t self_cpu_ns(void)
{
	struct rusage a, b;
	if (getrusage(RUSAGE_SELF, &a) != 0 || getrusage(RUSAGE_CHILDREN, &b) != 0)
		return 0;
	uint64_t us = (uint64_t)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) *
			      1000000u +
		      (uint64_t)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec);
	return us * 1000u;
}

void bench_load_start(struct bench_load *l)
{
	memset(l, 0, sizeof(*l));
	l->ok = read_proc_stat(&l->busy_ticks, &l->steal_ticks, &l->all_ticks);
	l->self_ns = self_cpu_ns();
	l->wall_ns = bench_now_ns();
}

void bench_load_note(struct bench_report *r, const struct bench_load *start)
{
	struct bench_load end;
	bench_load_start(&end);
	long hz = sysconf(_SC_CLK_TCK);
	if (!start->ok || !end.ok || hz <= 0 || end.all_ticks <= start->all_ticks)
		return;
	double tick_ns = 1e9 / (double)hz;
	double busy_s = (double)(end.busy_ticks - start->busy_ticks) * tick_ns / 1e9;
	double self_s = (double)(end.self_ns - start->self_ns) / 1e9;
	double wall_s = (double)(end.wall_ns - start->wall_ns) / 1e9;
	double other_s = busy_s > self_s ? busy_s - self_s : 0;
	double steal = 100.0 * (double)(end.steal_ticks - start->steal_ticks) /
		       (double)(end.all_ticks - start->all_ticks);
	bench_report_note(r, "background load during the %.0f s run: other processes used %.1f CPU-seconds (%.0f%% of "
			     "one CPU), steal %.1f%% of all CPU time%s",
			  wall_s, other_s, wall_s > 0 ? 100.0 * other_s / wall_s : 0.0, steal,
			  wall_s > 0 && other_s / wall_s > 0.05 ? ": numbers are disturbed, rerun on a quiet machine" : "");
}

void bench_progress(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

/* ------------------------------------------------------------------------- */
/* CPUs                                                                       */
/* ------------------------------------------------------------------------- */

int bench_cpus(int *cpus, int max)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 0;
	int n = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	return n;
}

int bench_pin_thread(int cpu, const int *all, int nall)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu >= 0) {
		CPU_SET(cpu, &set);
	} else {
		for (int i = 0; i < nall; i++)
			CPU_SET(all[i], &set);
	}
	int r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	return -r;
}

/* ------------------------------------------------------------------------- */
/* Shared by the cross-process modes                                          */
/* ------------------------------------------------------------------------- */

const char *volatile bench_where = "setup";
static const char *volatile hard_alarm_mode = "";

static void write_str(const char *s)
{
	if (write(2, s, strlen(s)) < 0) {
	}
}

static void on_hard_alarm(int sig)
{
	(void)sig;
	write_str("\nsv2shm-bench ");
	write_str((const char *)hard_alarm_mode);
	write_str(": HARD TIMEOUT: the run did not end in time; the producer was in ");
	write_str((const char *)bench_where);
	write_str(" (every wait there is bounded: a library call that blocked?)\n");
	_exit(1); /* the children die with us (PR_SET_PDEATHSIG) */
}

int bench_hard_alarm(const char *mode, unsigned seconds)
{
	hard_alarm_mode = mode;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_hard_alarm;
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		fprintf(stderr, "sv2shm-bench %s: sigaction(SIGALRM): %s\n", mode, strerror(errno));
		return -1;
	}
	alarm(seconds);
	return 0;
}

int bench_ignore_sigpipe(const char *mode)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0) {
		fprintf(stderr, "sv2shm-bench %s: sigaction(SIGPIPE): %s\n", mode, strerror(errno));
		return -1;
	}
	return 0;
}

void *bench_memfd_map(size_t len, const char **failed)
{
	*failed = "memfd_create";
	int fd = memfd_create("sv2shm-bench-ref", MFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	*failed = "ftruncate";
	if (ftruncate(fd, (off_t)len) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	*failed = "mmap";
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd); /* the mapping keeps the memfd alive, and a child inherits it */
	if (m == MAP_FAILED) {
		errno = e;
		return NULL;
	}
	memset(m, 0, len); /* pre-fault */
	return m;
}

int bench_errf(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

void bench_close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd); /* nothing useful to do on failure of a close in teardown */
		*fd = -1;
	}
}

int bench_spin_change(_Atomic uint32_t *w, uint32_t old, uint32_t *out, _Atomic uint32_t *stop, uint64_t timeout_ns)
{
	uint64_t deadline = 0;
	for (unsigned n = 1;; n++) {
		uint32_t v = atomic_load_explicit(w, memory_order_acquire);
		if (v != old) {
			*out = v;
			return 0;
		}
		bench_cpu_relax();
		if ((n & 0xfffu) == 0) {
			if (stop && atomic_load_explicit(stop, memory_order_relaxed))
				return -ECANCELED;
			uint64_t now = bench_now_ns();
			if (!deadline)
				deadline = now + timeout_ns;
			else if (now > deadline)
				return -ETIMEDOUT;
		}
	}
}

void bench_describe_status(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "status 0x%x", status);
}
