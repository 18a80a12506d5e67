/*
 * How the client shows things: the broker's status as text (the seed's slot
 * diagram, `12345678  BACK MODE`), as one JSON object, as Prometheus text;
 * frames as `hexdump -C -v` shows a file.
 */
#include "common.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

/* A string from the broker, for a terminal or a label: at most max bytes (the
 * arrays it fills need not hold a NUL), anything but printable ASCII as '?'. */
struct clean {
	char s[96];
};

static struct clean clean(const char *src, size_t max)
{
	struct clean c;
	size_t n = 0;
	for (; n < max && n + 1 < sizeof(c.s) && src[n]; n++)
		c.s[n] = src[n] >= 0x20 && src[n] < 0x7f ? src[n] : '?';
	c.s[n] = 0;
	return c;
}

#define FIELD(obj, arr) clean((obj)->arr, sizeof((obj)->arr)).s

static unsigned nconsumers(const struct sv2shm_status_pool *p)
{
	unsigned n = p->nconsumers;
	unsigned cap = sizeof(p->consumers) / sizeof(p->consumers[0]);
	return n < cap ? n : cap;
}

static void print_uptime(FILE *f, uint64_t ms)
{
	uint64_t s = ms / 1000;
	if (s < 60)
		fprintf(f, "%" PRIu64 ".%01" PRIu64 "s", s, ms % 1000 / 100);
	else if (s < 86400)
		fprintf(f, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", s / 3600, s / 60 % 60, s % 60);
	else
		fprintf(f, "%" PRIu64 "d%02" PRIu64 "h%02" PRIu64 "m", s / 86400, s / 3600 % 24, s / 60 % 60);
}

void print_pool_text(FILE *f, const struct sv2shm_status_pool *p)
{
	const struct sv2shm_pool_counters *c = &p->counters;
	fprintf(f, "pool %s  producer pid %d uid %u  policy %s  capacity %" PRIu64 " bytes  %u slots\n",
		FIELD(p, name), (int)p->pid, (unsigned)p->uid, cli_policy_name(p->policy), p->capacity, p->slots);
	fprintf(f, "  %s  %s\n", FIELD(p, slot_map), sv2shm_pool_mode_name(p->mode));
	fprintf(f, "  in use: live %" PRIu64 " slots, bytes_in_use %" PRIu64 "   high water: hw_slots %" PRIu64
		   ", hw_bytes %" PRIu64 "\n",
		c->live, c->bytes_in_use, c->hw_slots, c->hw_bytes);
	fprintf(f, "  published %" PRIu64 "  bytes %" PRIu64 "  releases %" PRIu64 "  reclaimed %" PRIu64 "\n",
		c->published, c->bytes, c->releases, c->reclaimed);
	fprintf(f, "  fallbacks %" PRIu64 "  waits %" PRIu64 "  wait_ns %" PRIu64 "  mode_switches %" PRIu64 "\n",
		c->fallbacks, c->waits, c->wait_ns, c->mode_switches);
	unsigned n = nconsumers(p);
	fprintf(f, "  consumers: %u\n", n);
	if (n)
		fprintf(f, "  %6s %6s %8s %8s %5s\n", "id", "holder", "pid", "uid", "held");
	for (unsigned i = 0; i < n; i++) {
		const struct sv2shm_status_consumer *k = &p->consumers[i];
		fprintf(f, "  %6d %6u %8d %8u %5u\n", k->id, k->holder, (int)k->pid, (unsigned)k->uid, k->held);
	}
}

void print_status_text(FILE *f, const struct sv2shm_status *st)
{
	fprintf(f, "broker: sv2shmd %s  event loop %s  up ", FIELD(st, version), FIELD(st, event_loop));
	print_uptime(f, st->uptime_ms);
	fprintf(f, "  clients %u  refused %" PRIu64 "\n", st->clients, st->refused);
	if (st->npools == 0)
		fprintf(f, "no pools\n");
	for (unsigned i = 0; i < st->npools; i++)
		print_pool_text(f, &st->pools[i]);
}

void print_json_string(FILE *f, const char *s, size_t max)
{
	fputc('"', f);
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch >= 0x20 && ch < 0x7f)
			fputc(ch, f);
		else
			fprintf(f, "\\u%04x", ch);
	}
	fputc('"', f);
}

#define JSTR(f, s, arr) print_json_string(f, (s)->arr, sizeof((s)->arr))

/* Every field of struct sv2shm_pool_counters, by its C name. */
struct counter_field {
	const char *name;
	size_t off;
};

#define COUNTER(x) {#x, offsetof(struct sv2shm_pool_counters, x)}
static const struct counter_field counter_fields[] = {
	COUNTER(published), COUNTER(bytes),         COUNTER(releases), COUNTER(reclaimed),
	COUNTER(fallbacks), COUNTER(waits),         COUNTER(wait_ns),  COUNTER(mode_switches),
	COUNTER(hw_slots),  COUNTER(hw_bytes),      COUNTER(live),     COUNTER(bytes_in_use),
};
#define N_COUNTERS (sizeof(counter_fields) / sizeof(counter_fields[0]))

static uint64_t counter_value(const struct sv2shm_pool_counters *c, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)c + off, sizeof(v));
	return v;
}

void print_status_json(FILE *f, const struct sv2shm_status *st)
{
	fprintf(f, "{\"pools\": [");
	for (unsigned i = 0; i < st->npools; i++) {
		const struct sv2shm_status_pool *p = &st->pools[i];
		fprintf(f, "%s{\"name\": ", i ? ", " : "");
		JSTR(f, p, name);
		fprintf(f, ", \"pid\": %d, \"uid\": %u, \"capacity\": %" PRIu64 ", \"slots\": %u, \"policy\": ",
			(int)p->pid, (unsigned)p->uid, p->capacity, p->slots);
		print_json_string(f, cli_policy_name(p->policy), SIZE_MAX);
		fprintf(f, ", \"mode\": ");
		print_json_string(f, cli_mode_word(p->mode), SIZE_MAX);
		fprintf(f, ", \"slot_map\": ");
		JSTR(f, p, slot_map);
		fprintf(f, ", \"counters\": {");
		for (size_t k = 0; k < N_COUNTERS; k++)
			fprintf(f, "%s\"%s\": %" PRIu64, k ? ", " : "", counter_fields[k].name,
				counter_value(&p->counters, counter_fields[k].off));
		fprintf(f, "}, \"consumers\": [");
		unsigned n = nconsumers(p);
		for (unsigned k = 0; k < n; k++) {
			const struct sv2shm_status_consumer *c = &p->consumers[k];
			fprintf(f, "%s{\"id\": %d, \"holder\": %u, \"pid\": %d, \"uid\": %u, \"held\": %u}", k ? ", " : "",
				c->id, c->holder, (int)c->pid, (unsigned)c->uid, c->held);
		}
		fprintf(f, "]}");
	}
	fprintf(f, "], \"broker\": {\"version\": ");
	JSTR(f, st, version);
	fprintf(f, ", \"event_loop\": ");
	JSTR(f, st, event_loop);
	fprintf(f, ", \"uptime_ms\": %" PRIu64 ", \"clients\": %u, \"refused\": %" PRIu64 ", \"pools\": %u}}\n",
		st->uptime_ms, st->clients, st->refused, st->npools);
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void prom_label(FILE *f, const char *raw, size_t max)
{
	struct clean c = clean(raw, max);
	const char *s = c.s;
	fputc('"', f);
	for (size_t i = 0; i < max && s[i]; i++) {
		if (s[i] == '\\' || s[i] == '"')
			fprintf(f, "\\%c", s[i]);
		else if (s[i] == '\n')
			fputs("\\n", f);
		else
			fputc(s[i], f);
	}
	fputc('"', f);
}

static void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_pool(FILE *f, const char *name, const struct sv2shm_status_pool *p)
{
	fprintf(f, "%s{pool=", name);
	prom_label(f, p->name, sizeof(p->name));
	fputc('}', f);
}

enum prom_src { FROM_COUNTER, FROM_CAPACITY, FROM_SLOTS, FROM_CONSUMERS, FROM_MODE };

struct prom_metric {
	const char *name;
	const char *type;
	const char *help;
	enum prom_src src;
	size_t off;  /* FROM_COUNTER: offset in struct sv2shm_pool_counters */
	bool ns;     /* the counter is in ns: shown in seconds */
};

#define PC(x) FROM_COUNTER, offsetof(struct sv2shm_pool_counters, x)
static const struct prom_metric prom_metrics[] = {
	{"sv2shm_pool_capacity_bytes", "gauge", "Bytes preallocated in the pool's region.", FROM_CAPACITY, 0, false},
	{"sv2shm_pool_slots", "gauge", "Slot count of the pool.", FROM_SLOTS, 0, false},
	{"sv2shm_pool_mode", "gauge", "Current mode: 0 back, 1 front, 2 alloc (system memory: the pool is full).",
	 FROM_MODE, 0, false},
	{"sv2shm_pool_published_total", "counter", "Slices published (pool and alloc-mode).", PC(published), false},
	{"sv2shm_pool_published_bytes_total", "counter", "Bytes published.", PC(bytes), false},
	{"sv2shm_pool_releases_total", "counter", "Slots freed (the last holder let go).", PC(releases), false},
	{"sv2shm_pool_reclaimed_total", "counter", "Holds reclaimed from consumers that were removed or died.",
	 PC(reclaimed), false},
	{"sv2shm_pool_fallbacks_total", "counter", "Slices served from system memory (alloc mode).", PC(fallbacks),
	 false},
	{"sv2shm_pool_waits_total", "counter", "Producer sleeps for a free slot (policy wait).", PC(waits), false},
	{"sv2shm_pool_wait_seconds_total", "counter", "Time the producer spent in those sleeps.", PC(wait_ns), true},
	{"sv2shm_pool_mode_switches_total", "counter", "Changes of mode.", PC(mode_switches), false},
	{"sv2shm_pool_live_slots", "gauge", "Slots in use now.", PC(live), false},
	{"sv2shm_pool_bytes_in_use", "gauge", "Bytes of the region in use now.", PC(bytes_in_use), false},
	{"sv2shm_pool_hw_slots", "gauge", "High-water mark: most slots in use at once.", PC(hw_slots), false},
	{"sv2shm_pool_hw_bytes", "gauge", "High-water mark: most bytes of the region in use at once.", PC(hw_bytes),
	 false},
	{"sv2shm_pool_consumers", "gauge", "Consumers subscribed to the pool.", FROM_CONSUMERS, 0, false},
};

void print_status_prometheus(FILE *f, const struct sv2shm_status *st)
{
	prom_head(f, "sv2shm_broker_up", "gauge", "1 when the broker answered.");
	fprintf(f, "sv2shm_broker_up 1\n");
	prom_head(f, "sv2shm_broker_info", "gauge", "The broker's version and event loop.");
	fprintf(f, "sv2shm_broker_info{version=");
	prom_label(f, st->version, sizeof(st->version));
	fprintf(f, ",event_loop=");
	prom_label(f, st->event_loop, sizeof(st->event_loop));
	fprintf(f, "} 1\n");
	prom_head(f, "sv2shm_broker_uptime_seconds", "gauge", "Seconds since the broker started.");
	fprintf(f, "sv2shm_broker_uptime_seconds %" PRIu64 ".%03" PRIu64 "\n", st->uptime_ms / 1000,
		st->uptime_ms % 1000);
	prom_head(f, "sv2shm_broker_clients", "gauge", "Clients connected to the broker.");
	fprintf(f, "sv2shm_broker_clients %u\n", st->clients);
	prom_head(f, "sv2shm_broker_refused_total", "counter", "Connections or requests the broker refused.");
	fprintf(f, "sv2shm_broker_refused_total %" PRIu64 "\n", st->refused);
	prom_head(f, "sv2shm_broker_pools", "gauge", "Pools registered (that this user may see).");
	fprintf(f, "sv2shm_broker_pools %u\n", st->npools);

	prom_head(f, "sv2shm_pool_info", "gauge", "A registered pool: its policy and producer pid.");
	for (unsigned i = 0; i < st->npools; i++) {
		const struct sv2shm_status_pool *p = &st->pools[i];
		fprintf(f, "sv2shm_pool_info{pool=");
		prom_label(f, p->name, sizeof(p->name));
		fprintf(f, ",policy=\"%s\",pid=\"%d\"} 1\n", cli_policy_name(p->policy), (int)p->pid);
	}
	for (size_t m = 0; m < sizeof(prom_metrics) / sizeof(prom_metrics[0]); m++) {
		const struct prom_metric *pm = &prom_metrics[m];
		prom_head(f, pm->name, pm->type, pm->help);
		for (unsigned i = 0; i < st->npools; i++) {
			const struct sv2shm_status_pool *p = &st->pools[i];
			uint64_t v = 0;
			switch (pm->src) {
			case FROM_COUNTER:
				v = counter_value(&p->counters, pm->off);
				break;
			case FROM_CAPACITY:
				v = p->capacity;
				break;
			case FROM_SLOTS:
				v = p->slots;
				break;
			case FROM_CONSUMERS:
				v = nconsumers(p);
				break;
			case FROM_MODE:
				v = (uint64_t)(p->mode < 0 ? 0 : p->mode);
				break;
			}
			prom_pool(f, pm->name, p);
			if (pm->ns)
				fprintf(f, " %" PRIu64 ".%09" PRIu64 "\n", v / 1000000000u, v % 1000000000u);
			else
				fprintf(f, " %" PRIu64 "\n", v);
		}
	}
	prom_head(f, "sv2shm_consumer_held_slots", "gauge", "Slots a consumer holds, as its producer last published them.");
	for (unsigned i = 0; i < st->npools; i++) {
		const struct sv2shm_status_pool *p = &st->pools[i];
		for (unsigned k = 0; k < nconsumers(p); k++) {
			const struct sv2shm_status_consumer *c = &p->consumers[k];
			fprintf(f, "sv2shm_consumer_held_slots{pool=");
			prom_label(f, p->name, sizeof(p->name));
			fprintf(f, ",id=\"%d\",holder=\"%u\",pid=\"%d\"} %u\n", c->id, c->holder, (int)c->pid, c->held);
		}
	}
}

void print_hexdump(FILE *f, const uint8_t *p, size_t n)
{
	if (n == 0)
		return; /* as hexdump: nothing at all */
	for (size_t off = 0; off < n; off += 16) {
		char line[96];
		int len = snprintf(line, sizeof(line), "%08zx  ", off);
		for (size_t i = 0; i < 16; i++) {
			if (off + i < n)
				len += snprintf(line + len, sizeof(line) - (size_t)len, "%02x ", p[off + i]);
			else
				len += snprintf(line + len, sizeof(line) - (size_t)len, "   ");
			if (i == 7)
				line[len++] = ' ';
		}
		line[len] = 0;
		fprintf(f, "%s |", line);
		for (size_t i = 0; i < 16 && off + i < n; i++)
			fputc(p[off + i] >= 0x20 && p[off + i] < 0x7f ? p[off + i] : '.', f);
		fprintf(f, "|\n");
	}
	fprintf(f, "%08zx\n", n);
}
