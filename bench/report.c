/* sv2shm-bench: options, timing, statistics and the result printer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Options                                                                    */
/* ------------------------------------------------------------------------- */

int bench_parse_opts(int argc, char **argv, struct bench_opts *o)
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
			fprintf(stderr, "sv2shm-bench %s: unknown argument '%s' (try --help)\n", argv[0], a);
			return -1;
		}
	}
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
	out->p99_ns = percentile(samples, n, 99.0);
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
	return row;
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

void bench_report_note(struct bench_report *r, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (grow((void **)&r->notes, &r->capnotes, r->nnotes, sizeof(*r->notes)) < 0)
		return;
	char *s = strdup(buf);
	if (s)
		r->notes[r->nnotes++] = s;
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

static void print_human(const struct bench_report *r, const struct machine *m, FILE *out)
{
	fprintf(out, "sv2shm-bench %s: %s, %ld CPUs, %s, %s\n\n", r->mode, m->cpu, m->cpus, m->kernel, m->date);
	fprintf(out, "%-14s %-16s %8s %11s %11s %13s  %s\n", "bench", "contender", "size", "median_ns", "p99_ns",
		"msgs_per_s", "ratio");
	const char *last_bench = NULL;
	uint64_t last_size = 0;
	for (size_t i = 0; i < r->nrows; i++) {
		const struct bench_row *row = &r->rows[i];
		if (last_bench && (strcmp(last_bench, row->bench) != 0 || last_size != row->size))
			fputc('\n', out);
		last_bench = row->bench;
		last_size = row->size;
		char sz[32], med[32], p99[32], mps[32], ratio[64] = "";
		if (!isnan(row->ratio))
			snprintf(ratio, sizeof(ratio), "%.2fx vs %s", row->ratio, row->ratio_vs);
		fprintf(out, "%-14s %-16s %8s %11s %11s %13s  %s\n", row->bench, row->contender,
			bench_fmt_size(row->size, sz, sizeof(sz)), fmt_thousands(row->median_ns, med, sizeof(med)),
			fmt_thousands(row->p99_ns, p99, sizeof(p99)), fmt_thousands(row->msgs_per_s, mps, sizeof(mps)),
			ratio);
	}
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
		fputs(", \"contender\": ", out);
		json_str(out, row->contender);
		fprintf(out, ", \"size\": %llu, \"median_ns\": ", (unsigned long long)row->size);
		json_int(out, row->median_ns);
		fputs(", \"p99_ns\": ", out);
		json_int(out, row->p99_ns);
		fputs(", \"msgs_per_s\": ", out);
		json_int(out, row->msgs_per_s);
		fputs(", \"ratio\": ", out);
		json_num(out, row->ratio);
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
	fputs("]}\n", out);
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
