/*
 * sv2shm-bench lag: the FIFO lag sweep.
 *
 * A FIFO consumer releases slices in arrival order but keeps the L newest:
 * after taking message i, message i - L is released. For each pool size N
 * (8 and 64 slots, capacity 2^16 * 5) and each L in 0..N-1, a sample writes
 * 2000 messages of the seed's lengths (2^14 - rand(0..12000), in
 * get_writable(10) calls) and reports how many slices the pool served from
 * its region (pool_share, from_system) and the time per message (median over
 * the samples; construction and the final releases are not timed).
 *
 * The pool's guarantee (README, tests/test_pool_fifo.c): every slice comes
 * from the pool while L < N - 1 and (L + 2) x largest message <= capacity,
 * i.e. L <= 18 for 16 KiB messages in 320 KiB. With L = N - 1 the L kept
 * slices, the slice being written and a released slice whose slot is still
 * referenced by a run compete for N slots; above L ~ 29 the kept bytes alone
 * (about 10 KiB per message on average) exceed the capacity.
 *
 * Contenders: pool, shared-pool (the producer's pool) and system-memory (the
 * time reference; every slice from system memory).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"
#include "workload.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define LAG_MESSAGES 2000u
#define LAG_SAMPLES 25u

enum { LC_POOL, LC_SHARED, LC_SYSMEM, NLC };
static const char *const lc_names[NLC] = {"pool", "shared-pool", "system-memory"};
static const int lc_kind[NLC] = {SV2_POOL, SV2_SHARED, SV2_SYSMEM};

struct lag_cfg {
	unsigned slots_list[2];
	unsigned nslots;
	unsigned samples;
	unsigned messages;
	int max_lag; /* -1: N - 1 */
};

struct lag_sample {
	uint64_t ns;
	uint64_t from_pool, from_system;
};

/*
 * One sample: `messages` messages, the `lag` newest kept. Returns 0, or -1
 * with err set.
 */
static int lag_sample(int kind, unsigned slots, unsigned lag, unsigned messages, uint64_t seed,
		      struct sv2shm_slice *fifo, struct lag_sample *out, char *err, size_t errlen)
{
	struct sv2_buf sb;
	if (sv2_buf_new(&sb, kind, slots, SEED_CAPACITY, err, errlen) < 0)
		return -1;
	const uint8_t *data = seed_data();
	uint64_t rng = seed_rng_init(seed);
	unsigned head = 0, count = 0; /* fifo ring of lag + 1 entries */
	const unsigned ring = lag + 1;
	int rc = 0;
	struct sv2shm_buffer *b = sb.b;
	uint64_t t0 = bench_now_ns();
	for (unsigned i = 0; i < messages; i++) {
		size_t len = seed_msg_len(&rng);
		SEED_WRITE_MSG(sv2shm_buffer_get_writable, b, len, data + (i % 1000u), goto fail_write);
		struct sv2shm_slice *slot = &fifo[(head + count) % ring];
		int r = sv2shm_buffer_get_data_owned(b, slot);
		if (r < 0) {
			snprintf(err, errlen, "sv2shm_buffer_get_data_owned() returned %d (%s)", r, sv2shm_strerror(r));
			rc = -1;
			break;
		}
		count++;
		if (count > lag) {
			r = sv2shm_slice_release(&fifo[head]);
			if (r < 0) {
				snprintf(err, errlen, "sv2shm_slice_release() returned %d (%s)", r, sv2shm_strerror(r));
				rc = -1;
				break;
			}
			head = (head + 1) % ring;
			count--;
		}
	}
	out->ns = bench_now_ns() - t0;
	goto drain;
fail_write:
	snprintf(err, errlen, "get_writable(10) returned NULL (%s)", sv2shm_strerror(sv2shm_buffer_last_error(b)));
	rc = -1;
	out->ns = 0;
drain:
	while (count) {
		sv2shm_slice_release(&fifo[head]);
		head = (head + 1) % ring;
		count--;
	}
	sv2_buf_counts(&sb, messages, &out->from_pool, &out->from_system);
	if (sv2_buf_free(&sb, err, errlen) < 0)
		rc = -1;
	return rc;
}

/*
 * Every (L, contender) of one N. Samples are the outer loop: sample s runs
 * every L and every contender (rotating their order) before sample s + 1,
 * so the VM's slow and fast phases (seconds long) spread over all L alike.
 */
static int run_slots(struct bench_report *rep, unsigned slots, const struct lag_cfg *cfg, bool quick)
{
	unsigned samples = quick ? (cfg->samples / 5 ? cfg->samples / 5 : 1) : cfg->samples;
	/* Default: L = 0..N-1, and two more past it where that stays below 64
	 * (N = 8: L = 8 and 9 show what happens at L >= N). */
	unsigned max_lag = cfg->max_lag >= 0 ? (unsigned)cfg->max_lag : slots + 1 < 64 ? slots + 1 : 63;
	unsigned nl = max_lag + 1;
	struct sv2shm_slice *fifo = calloc(nl, sizeof(*fifo));
	/* per (L, contender): samples, counts */
	uint64_t *ns = calloc((size_t)nl * NLC * samples, sizeof(uint64_t));
	uint64_t *from_pool = calloc((size_t)nl * NLC, sizeof(uint64_t));
	uint64_t *from_system = calloc((size_t)nl * NLC, sizeof(uint64_t));
	size_t *n = calloc((size_t)nl * NLC, sizeof(size_t));
	int rc = 0;
	bool failed[NLC] = {false};
	if (!fifo || !ns || !from_pool || !from_system || !n) {
		rc = -1;
		goto out;
	}
	uint64_t t_start = bench_now_ns();
	bench_progress("lag  slots %-2u L = 0..%u ", slots, max_lag);
	for (unsigned s = 0; s < samples + 1; s++) { /* sample 0: warm-up */
		for (unsigned lag = 0; lag <= max_lag; lag++) {
			for (int j = 0; j < NLC; j++) {
				int c = (int)((s + lag + (unsigned)j) % NLC);
				if (failed[c])
					continue;
				struct lag_sample ls;
				char err[256] = "";
				if (lag_sample(lc_kind[c], slots, lag, cfg->messages, s, fifo, &ls, err, sizeof(err)) < 0) {
					bench_report_note(rep, "lag N=%u L=%u %s: FAILED: %s", slots, lag, lc_names[c], err);
					failed[c] = true;
					rc = -1;
					continue;
				}
				if (s == 0)
					continue;
				size_t k = (size_t)lag * NLC + (size_t)c;
				ns[k * samples + n[k]++] = ls.ns;
				from_pool[k] += ls.from_pool;
				from_system[k] += ls.from_system;
			}
		}
		if (s % 5 == 4)
			bench_progress(".");
	}
	bench_progress(" %.1f s\n", (double)(bench_now_ns() - t_start) / 1e9);
	for (unsigned lag = 0; lag <= max_lag; lag++) {
		for (int c = 0; c < NLC; c++) {
			size_t k = (size_t)lag * NLC + (size_t)c;
			if (failed[c] || !n[k])
				continue;
			struct bench_stats st;
			bench_stats_compute(ns + k * samples, n[k], &st);
			double per = st.median_ns / cfg->messages;
			struct bench_row *row = bench_report_add_row(rep, "lag", lc_names[c], 0, per, NAN, 1e9 / per);
			if (!row)
				continue;
			row->p10_ns = st.p10_ns / cfg->messages;
			row->p90_ns = st.p90_ns / cfg->messages;
			row->per_msg_ns = per;
			row->samples = st.n;
			row->slots = slots;
			row->lag = (int)lag;
			row->from_system = (int64_t)from_system[k];
			row->slices = (int64_t)n[k] * cfg->messages;
			uint64_t all = from_pool[k] + from_system[k];
			row->pool_share = all ? (double)from_pool[k] / (double)all : NAN;
		}
	}
out:
	free(ns);
	free(from_pool);
	free(from_system);
	free(n);
	free(fifo);
	return rc;
}

static void add_ratios(struct bench_report *rep)
{
	for (size_t i = 0; i < rep->nrows; i++) {
		struct bench_row *row = &rep->rows[i];
		for (size_t j = 0; j < rep->nrows; j++) {
			const struct bench_row *ref = &rep->rows[j];
			if (ref->slots != row->slots || ref->lag != row->lag || strcmp(ref->contender, "system-memory") != 0)
				continue;
			if (row->median_ns > 0) {
				row->ratio = ref->median_ns / row->median_ns;
				snprintf(row->ratio_vs, sizeof(row->ratio_vs), "system-memory");
			}
		}
	}
}

/* Per N and pool contender: where the pool stops serving every slice. */
static void add_summary(struct bench_report *rep, const struct lag_cfg *cfg)
{
	bench_report_text(rep, "Summary (pool_share = slices from the pool's region / all; time per message, "
			       "median; speedup vs system-memory at the same L):");
	for (unsigned k = 0; k < cfg->nslots; k++) {
		unsigned slots = cfg->slots_list[k];
		for (int c = 0; c < NLC; c++) {
			if (c == LC_SYSMEM)
				continue;
			int last_full = -1, first_short = -1, max_l = -1;
			double share_last = NAN;
			double t_lo = INFINITY, t_hi = 0, sp_lo = INFINITY, sp_hi = 0;
			for (size_t i = 0; i < rep->nrows; i++) {
				const struct bench_row *row = &rep->rows[i];
				if (row->slots != slots || strcmp(row->contender, lc_names[c]) != 0)
					continue;
				if (row->lag > max_l) {
					max_l = row->lag;
					share_last = row->pool_share;
				}
				if (row->from_system == 0 && first_short < 0)
					last_full = row->lag;
				if (row->from_system > 0 && first_short < 0)
					first_short = row->lag;
				if (row->from_system == 0) {
					t_lo = fmin(t_lo, row->median_ns);
					t_hi = fmax(t_hi, row->median_ns);
					if (!isnan(row->ratio)) {
						sp_lo = fmin(sp_lo, row->ratio);
						sp_hi = fmax(sp_hi, row->ratio);
					}
				}
			}
			if (max_l < 0)
				continue;
			char tail[256] = "";
			if (first_short >= 0) {
				const struct bench_row *fs = NULL;
				for (size_t i = 0; i < rep->nrows; i++) {
					const struct bench_row *row = &rep->rows[i];
					if (row->slots == slots && row->lag == first_short &&
					    strcmp(row->contender, lc_names[c]) == 0)
						fs = row;
				}
				snprintf(tail, sizeof(tail), "; from L = %d some slices come from system memory (pool_share %.4f "
							     "at L = %d, %.4f at L = %d)",
					 first_short, fs ? fs->pool_share : NAN, first_short, share_last, max_l);
			}
			bench_report_text(rep, "  N = %2u %-12s every slice from the pool for L = 0..%d: %.0f..%.0f ns per "
					       "message, %.2f..%.2fx faster than system-memory%s",
					  slots, lc_names[c], last_full, t_lo, t_hi, sp_lo, sp_hi, tail);
		}
	}
}

static const struct bench_row *find_lag(const struct bench_report *rep, const char *who, unsigned slots, int lag)
{
	for (size_t i = 0; i < rep->nrows; i++) {
		const struct bench_row *row = &rep->rows[i];
		if (row->slots == slots && row->lag == lag && strcmp(row->contender, who) == 0)
			return row;
	}
	return NULL;
}

/* What happens from L = N - 1 on, where the sweep reached it. */
static void add_edge_note(struct bench_report *rep, const struct lag_cfg *cfg)
{
	for (unsigned k = 0; k < cfg->nslots; k++) {
		unsigned n = cfg->slots_list[k];
		const struct bench_row *a = find_lag(rep, "pool", n, (int)n - 1);
		if (!a)
			continue;
		const struct bench_row *b = find_lag(rep, "pool", n, (int)n);
		const struct bench_row *c = find_lag(rep, "pool", n, (int)n + 1);
		char more[200] = "";
		if (b && c)
			snprintf(more, sizeof(more), "; L = N = %u: %.4f; L = N + 1 = %u: %.4f", n, b->pool_share, n + 1,
				 c->pool_share);
		bench_report_text(rep, "  N = %2u at L = N - 1 = %u: pool_share %.4f (%lld of %lld slices from system "
				       "memory)%s",
				  n, n - 1, a->pool_share, (long long)a->from_system, (long long)a->slices, more);
	}
	bench_report_note(rep, "L >= N - 1: the L kept slices and the one being written need L + 1 slots. At L = N - 1 "
			       "they fill all N exactly; FIFO release frees the oldest slice, which sits at the start of "
			       "its run, so its slot comes back at once and (bytes permitting) every slice still fits. "
			       "At L >= N the slice being written finds every slot taken and goes to system memory, "
			       "and system slices then occupy FIFO places without a slot: in steady state L - N + 1 of "
			       "every L + 1 slices come from system memory (1/9 at L = N = 8, 2/10 at L = 9). At N = 64 "
			       "the bytes run out first: L kept slices of ~10 KiB (4.3..16 KiB) plus the one being "
			       "written exceed the 320 KiB capacity from L ~ 24 on (the guarantee, (L + 2) x 16 KiB <= "
			       "capacity, holds to L = 18).");
}

static int lag_opt(int argc, char **argv, int i, void *ctx)
{
	struct lag_cfg *cfg = ctx;
	const char *a = argv[i];
	const char *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--slots") == 0) {
		if (bench_parse_uint("lag", a, v, 1, SV2SHM_MAX_SLOTS, &x) < 0)
			return -1;
		cfg->slots_list[0] = (unsigned)x;
		cfg->nslots = 1;
		return 2;
	}
	if (strcmp(a, "--samples") == 0) {
		if (bench_parse_uint("lag", a, v, 1, 100000, &x) < 0)
			return -1;
		cfg->samples = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--messages") == 0) {
		if (bench_parse_uint("lag", a, v, 1, 1000000, &x) < 0)
			return -1;
		cfg->messages = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--max-lag") == 0) {
		if (bench_parse_uint("lag", a, v, 0, 4096, &x) < 0)
			return -1;
		cfg->max_lag = (int)x;
		return 2;
	}
	return 0;
}

static void lag_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench lag [--slots N] [--json] [--quick] [--samples N] [--messages N] [--max-lag L]\n\n"
		"FIFO lag sweep: %u messages of the seed's lengths (2^14 - rand(0..12000), written in get_writable(10)\n"
		"calls), released in arrival order while the L newest are kept, for L = 0..N-1 (and N, N+1 below 64),\n"
		"into a pool of N slots and capacity 2^16*5. Reports pool_share (slices from the pool's region / all),\n"
		"from_system and the time per message. Contenders: pool, shared-pool, system-memory.\n\n"
		"  --slots N     only this slot count (default: 8 and 64; L = 0..N+1 when N+1 < 64, else 0..63)\n"
		"  --samples N   samples per (N, L, contender) (default %u)\n"
		"  --messages N  messages per sample (default %u)\n"
		"  --max-lag L   sweep L = 0..L instead of 0..N-1\n"
		"  --json        exactly one JSON object on stdout; the human table goes to stderr\n"
		"  --quick       a fifth of the samples (%u by default)\n",
		LAG_MESSAGES, LAG_SAMPLES, LAG_MESSAGES, LAG_SAMPLES / 5);
}

int bench_lag_main(int argc, char **argv)
{
	struct lag_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.slots_list[0] = 8;
	cfg.slots_list[1] = 64;
	cfg.nslots = 2;
	cfg.samples = LAG_SAMPLES;
	cfg.messages = LAG_MESSAGES;
	cfg.max_lag = -1;
	struct bench_opts opts;
	if (bench_parse_opts_ex(argc, argv, &opts, lag_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		lag_usage(stdout);
		return 0;
	}
	(void)seed_data();
	int cpus[CPU_SETSIZE];
	int ncpus = bench_cpus(cpus, CPU_SETSIZE);

	struct bench_report rep;
	bench_report_init(&rep, "lag");
	rep.ratio_desc = "speedup vs system-memory at the same N and L: its time per message / this one (> 1: faster)";
	if (ncpus > 0 && bench_pin_thread(cpus[0], cpus, ncpus) == 0)
		bench_report_note(&rep, "pinned to CPU %d", cpus[0]);
	struct bench_load load;
	bench_load_start(&load);
	bool failed = false;
	for (unsigned k = 0; k < cfg.nslots; k++)
		if (run_slots(&rep, cfg.slots_list[k], &cfg, opts.quick) < 0)
			failed = true;
	bench_load_note(&rep, &load);
	add_ratios(&rep);
	add_summary(&rep, &cfg);
	add_edge_note(&rep, &cfg);
	bench_report_note(&rep, "median_ns, p10_ns, p90_ns: time per message (a sample's %u messages / %u); "
				"from_system and slices: totals over the samples",
			  cfg.messages, cfg.messages);
	int pr = bench_report_print(&rep, opts.json);
	bench_report_free(&rep);
	if (pr < 0)
		return 1;
	return failed ? 1 : 0;
}
