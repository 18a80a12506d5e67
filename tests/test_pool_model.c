/*
 * Randomized model check of the pool.
 *
 * Random operation sequences run against a pool and a plain model of it:
 *   - get_writable() of a random length (0 .. 2*capacity+8), in one or several
 *     chunks, or sv2shm_buffer_write(), filled with random bytes;
 *   - take (get_data_owned);
 *   - split (split_owned) of a random n, valid (1 .. what is left after the
 *     start) or not (0, or more than is left: -EINVAL, nothing changes); a
 *     piece is taken where it was written (or, FALLBACK with no free slot,
 *     copied to system memory) and the rest stays in place, without a slot:
 *     under FAIL a later split or take of it may be refused with -EAGAIN;
 *   - release of a random live slice;
 *   - danger_set_start() with a valid or an invalid index;
 *   - release of an already released copy (or of the cleared original):
 *     must be refused and change nothing;
 *   - destroy while slices are live: must be refused with -EBUSY.
 *
 * After every step: live pool slices do not overlap (by their data pointers
 * and by sv2shm_pool_slot_range()), each lies inside its slot's range, the
 * slice being written (and the room it may still grow into) overlaps no live
 * slice, every live slice's bytes and the pending bytes equal the model's
 * shadow copies, popcount(mask) and the slot map match the model's live pool
 * slices, the mode is valid, and the counters match.
 *
 * Environment:
 *   SV2SHM_MODEL_SCALE  multiply the number of seeds (default 1)
 *   SV2SHM_MODEL_STEPS  steps per seed (default 2000)
 *   SV2SHM_MODEL_SEED   run this one seed index only (to reproduce)
 *   SV2SHM_MODEL_VERBOSE=1  print every step of the run
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sv2shm/sv2shm.h>

#define BASE_SEED UINT64_C(0x5ca1ab1e0ddba11)
#define DEFAULT_SEEDS 192u /* 8 per (N, capacity) pair */
#define DEFAULT_STEPS 2000u
#define MAX_LIVE 96u   /* live slices the model keeps at most */
#define MAX_COPIES 16u /* released copies kept for double releases */
#define LOG_LINES 24u

static const unsigned model_ns[] = {1, 2, 8, 64};
static const uint64_t model_caps[] = {0, 1, 7, 64, 1000, 65536};
#define NUM_NS (sizeof(model_ns) / sizeof(model_ns[0]))
#define NUM_CAPS (sizeof(model_caps) / sizeof(model_caps[0]))

/* --- PRNG ----------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
	return n ? splitmix64(s) % n : 0;
}

static size_t rnd_range(uint64_t *s, size_t lo, size_t hi)
{
	return lo + (size_t)rnd_below(s, (uint64_t)(hi - lo) + 1u);
}

static void rnd_fill(uint64_t *s, uint8_t *dst, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint64_t x = splitmix64(s);
		for (unsigned j = 0; j < 8 && i < n; j++, i++)
			dst[i] = (uint8_t)(x >> (8u * j));
	}
}

/* --- the model ------------------------------------------------------------ */

struct live_slice {
	struct sv2shm_slice s; /* the slice as handed out (released through this) */
	uint8_t *shadow;       /* its bytes as written */
	size_t len;
	size_t start; /* danger_set_start index it was taken with */
	int kind;
	uint32_t gen; /* model generation of its slot at take time (POOL) */
	uint64_t id;
};

struct released_copy {
	struct sv2shm_slice s; /* a copy of a POOL slice taken before its release */
	uint32_t gen;          /* model generation of the slot at take time */
};

struct model {
	/* configuration */
	unsigned seed_index;
	uint64_t seed;
	unsigned n;
	uint64_t cap;
	int policy;
	/* the pool */
	struct sv2shm_pool *p;
	struct sv2shm_buffer *b;
	/* pending slice */
	uint8_t *pend;
	size_t pend_len, pend_cap, start;
	bool pend_noslot; /* the rest of a split: in the region, no slot yet */
	/* live slices */
	struct live_slice live[MAX_LIVE];
	unsigned nlive;
	unsigned pool_live;
	size_t live_bytes;
	/* released copies */
	struct released_copy copies[MAX_COPIES];
	unsigned ncopies, copy_next;
	/* per-slot generations, as the model counts claims */
	uint32_t gen[SV2SHM_MAX_SLOTS];
	/* coverage, summed over a run */
	uint64_t cov_front_steps, cov_alloc_steps, cov_estale, cov_ealready, cov_refused_writes, cov_busy;
	uint64_t cov_moves, cov_switches, cov_resets;
	uint64_t cov_splits, cov_split_rest, cov_split_rest_moved, cov_split_copies, cov_split_eagain, cov_split_einval, cov_take_eagain;
	/* counters */
	uint64_t taken_pool, taken_system, taken_empty, refused, ids;
	/* region base, once a pool slice showed it */
	const uint8_t *base;
	/* step log */
	unsigned step;
	char log[LOG_LINES][160];
	unsigned nlog;
	char why[512];
	bool verbose;
	uint64_t rng;
	uint8_t *scratch;
	size_t scratch_cap;
};

__attribute__((format(printf, 2, 3))) static void mlog(struct model *m, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) static bool mfail(struct model *m, const char *fmt, ...);

static void mlog(struct model *m, const char *fmt, ...)
{
	char *line = m->log[m->nlog % LOG_LINES];
	int off = snprintf(line, sizeof(m->log[0]), "step %5u: ", m->step);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + off, sizeof(m->log[0]) - (size_t)off, fmt, ap);
	va_end(ap);
	m->nlog++;
	if (m->verbose)
		printf("  %s\n", line);
}

static bool mfail(struct model *m, const char *fmt, ...)
{
	if (m->why[0])
		return false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->why, sizeof(m->why), fmt, ap);
	va_end(ap);
	char map[SV2SHM_MAX_SLOTS + 1] = "";
	sv2shm_pool_slot_map(m->p, map, sizeof(map));
	fprintf(stderr,
		"MODEL FAILURE: seed index %u (seed 0x%016" PRIx64 ") N=%u capacity=%" PRIu64
		" policy=%s step %u: %s\n  now: slot map %s mode %s, model: %u live (%u pool), pending %zu bytes "
		"start %zu\n  reproduce: SV2SHM_MODEL_SEED=%u SV2SHM_MODEL_VERBOSE=1 test_pool_model\n  last steps:\n",
		m->seed_index, m->seed, m->n, m->cap, m->policy == SV2SHM_POOL_FAIL ? "FAIL" : "FALLBACK", m->step,
		m->why, map, sv2shm_pool_mode_name(sv2shm_pool_mode(m->p)), m->nlive, m->pool_live, m->pend_len,
		m->start, m->seed_index);
	unsigned first = m->nlog > LOG_LINES ? m->nlog - LOG_LINES : 0;
	for (unsigned i = first; i < m->nlog; i++)
		fprintf(stderr, "    %s\n", m->log[i % LOG_LINES]);
	return false;
}

static bool pend_reserve(struct model *m, size_t need)
{
	if (need <= m->pend_cap)
		return true;
	size_t nc = m->pend_cap ? m->pend_cap : 64;
	while (nc < need)
		nc *= 2;
	uint8_t *np = realloc(m->pend, nc);
	if (!np)
		return false;
	m->pend = np;
	m->pend_cap = nc;
	return true;
}

static bool scratch_reserve(struct model *m, size_t need)
{
	if (need <= m->scratch_cap)
		return true;
	uint8_t *np = realloc(m->scratch, need);
	if (!np)
		return false;
	m->scratch = np;
	m->scratch_cap = need;
	return true;
}

static const char *kind_name(int k)
{
	switch (k) {
	case SV2SHM_SLICE_NONE:
		return "NONE";
	case SV2SHM_SLICE_EMPTY:
		return "EMPTY";
	case SV2SHM_SLICE_SYSTEM:
		return "SYSTEM";
	case SV2SHM_SLICE_POOL:
		return "POOL";
	default:
		return "?";
	}
}

/* --- invariants ----------------------------------------------------------- */

struct range {
	uint64_t lo, hi;
	unsigned who;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

static bool check_all(struct model *m)
{
	struct sv2shm_pool *p = m->p;
	struct sv2shm_buffer *b = m->b;
	struct sv2shm_pool_stats st;
	if (sv2shm_pool_stats(p, &st) != 0)
		return mfail(m, "sv2shm_pool_stats failed");

	int mode = sv2shm_pool_mode(p);
	if (mode != SV2SHM_MODE_BACK && mode != SV2SHM_MODE_FRONT && mode != SV2SHM_MODE_ALLOC)
		return mfail(m, "mode %d is not one of the three", mode);

	unsigned pc = (unsigned)__builtin_popcountll(st.mask);
	if (pc != m->pool_live || st.live != m->pool_live)
		return mfail(m, "popcount(mask 0x%" PRIx64 ")=%u, stats.live=%" PRIu64 ", model holds %u pool slices",
			    st.mask, pc, st.live, m->pool_live);
	if (m->n < 64 && (st.mask >> m->n) != 0)
		return mfail(m, "mask 0x%" PRIx64 " has bits beyond slot %u", st.mask, m->n);
	if (st.slots != m->n || st.capacity != m->cap)
		return mfail(m, "stats.slots=%u capacity=%" PRIu64, st.slots, st.capacity);

	char map[SV2SHM_MAX_SLOTS + 1];
	int r = sv2shm_pool_slot_map(p, map, sizeof(map));
	if (r != (int)m->n || strlen(map) != m->n)
		return mfail(m, "slot_map returned %d \"%s\"", r, map);
	unsigned used = 0;
	for (unsigned i = 0; i < m->n; i++) {
		bool taken = map[i] != '-';
		used += taken;
		if (taken != !!(st.mask & (UINT64_C(1) << i)))
			return mfail(m, "slot map \"%s\" disagrees with mask 0x%" PRIx64 " at slot %u", map, st.mask, i);
	}
	if (used != m->pool_live)
		return mfail(m, "slot map \"%s\" shows %u slices, model holds %u", map, used, m->pool_live);

	/* Slot ranges: live exactly for mask bits, inside the region, disjoint. */
	struct range rg[SV2SHM_MAX_SLOTS];
	uint64_t roff[SV2SHM_MAX_SLOTS], rlen[SV2SHM_MAX_SLOTS];
	unsigned nr = 0;
	for (unsigned i = 0; i < m->n; i++) {
		uint64_t off = 0, len = 0;
		r = sv2shm_pool_slot_range(p, i, &off, &len);
		if (r != (int)!!(st.mask & (UINT64_C(1) << i)))
			return mfail(m, "slot_range(%u) returned %d with mask 0x%" PRIx64, i, r, st.mask);
		roff[i] = off;
		rlen[i] = len;
		if (r == 1) {
			if (len == 0 || off > m->cap || len > m->cap - off)
				return mfail(m, "slot %u range [%" PRIu64 ", +%" PRIu64 ") outside capacity %" PRIu64, i,
					    off, len, m->cap);
			rg[nr].lo = off;
			rg[nr].hi = off + len;
			rg[nr].who = i;
			nr++;
		}
	}
	if (sv2shm_pool_slot_range(p, m->n, &roff[0], &rlen[0]) != -EINVAL)
		return mfail(m, "slot_range(N) not refused");
	qsort(rg, nr, sizeof(rg[0]), cmp_range);
	for (unsigned i = 1; i < nr; i++)
		if (rg[i].lo < rg[i - 1].hi)
			return mfail(m, "slot ranges overlap: slot %u [%" PRIu64 ",%" PRIu64 ") and slot %u [%" PRIu64
				    ",%" PRIu64 ")",
				    rg[i - 1].who, rg[i - 1].lo, rg[i - 1].hi, rg[i].who, rg[i].lo, rg[i].hi);

	/* Live slices: kinds, bytes, placement of pool slices. */
	struct range pr[MAX_LIVE];
	unsigned np = 0;
	uint64_t seen_slots = 0;
	for (unsigned i = 0; i < m->nlive; i++) {
		struct live_slice *ls = &m->live[i];
		int k = sv2shm_slice_kind(&ls->s);
		if (k != ls->kind)
			return mfail(m, "live slice #%" PRIu64 " kind %s, was %s", ls->id, kind_name(k),
				    kind_name(ls->kind));
		if (ls->s.len != ls->len)
			return mfail(m, "live slice #%" PRIu64 " len %zu, expected %zu", ls->id, ls->s.len, ls->len);
		if (ls->len && memcmp(ls->s.data, ls->shadow, ls->len) != 0) {
			size_t j = 0;
			while (ls->s.data[j] == ls->shadow[j])
				j++;
			return mfail(m, "live %s slice #%" PRIu64 " (%zu bytes, slot %u) differs at byte %zu: 0x%02x, "
				    "written 0x%02x",
				    kind_name(k), ls->id, ls->len, ls->s._slot, j, ls->s.data[j], ls->shadow[j]);
		}
		if (k != SV2SHM_SLICE_POOL)
			continue;
		unsigned s = ls->s._slot;
		if (s >= m->n || !(st.mask & (UINT64_C(1) << s)))
			return mfail(m, "live pool slice #%" PRIu64 " names slot %u, free in mask 0x%" PRIx64, ls->id, s,
				    st.mask);
		if (seen_slots & (UINT64_C(1) << s))
			return mfail(m, "two live pool slices name slot %u", s);
		seen_slots |= UINT64_C(1) << s;
		/* The slot's range is the slice's bytes; a pool may also count the
		 * prefix skipped with danger_set_start() in it. Either way the
		 * slice lies in the range and all slices agree on the region base. */
		const uint8_t *base;
		if (rlen[s] == ls->len)
			base = ls->s.data - roff[s];
		else if (rlen[s] == ls->start + ls->len)
			base = ls->s.data - ls->start - roff[s];
		else
			return mfail(m, "slot %u range [%" PRIu64 ", +%" PRIu64 ") does not match slice #%" PRIu64
				     " (start %zu, len %zu)",
				     s, roff[s], rlen[s], ls->id, ls->start, ls->len);
		if (!m->base)
			m->base = base;
		else if (base != m->base)
			return mfail(m, "slice #%" PRIu64 " (slot %u, off %" PRIu64 ") implies region base %p, not %p",
				     ls->id, s, roff[s], (const void *)base, (const void *)m->base);
		pr[np].lo = (uint64_t)(uintptr_t)ls->s.data;
		pr[np].hi = pr[np].lo + ls->len;
		pr[np].who = i;
		np++;
	}
	if (np != m->pool_live)
		return mfail(m, "model counts %u pool slices, found %u", m->pool_live, np);
	qsort(pr, np, sizeof(pr[0]), cmp_range);
	for (unsigned i = 1; i < np; i++)
		if (pr[i].lo < pr[i - 1].hi)
			return mfail(m, "live pool slices #%" PRIu64 " and #%" PRIu64 " overlap", m->live[pr[i - 1].who].id,
				    m->live[pr[i].who].id);

	/* The slice being written: its bytes, and no overlap of it (or of the
	 * room it may still grow into without the slow path) with live slices. */
	if (sv2shm_buffer_len(b) != m->pend_len)
		return mfail(m, "len() %zu, model wrote %zu", sv2shm_buffer_len(b), m->pend_len);
	size_t vlen = SIZE_MAX;
	const uint8_t *view = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	if (!view || vlen != m->pend_len - m->start)
		return mfail(m, "get_data_by_ref: %p len %zu, expected %zu", (const void *)view, vlen,
			    m->pend_len - m->start);
	if (vlen && memcmp(view, m->pend + m->start, vlen) != 0)
		return mfail(m, "pending bytes (%zu, start %zu) differ from what was written", m->pend_len, m->start);
	if (m->base && m->cap) {
		uint64_t lo = (uint64_t)(uintptr_t)b->_base;
		uint64_t rb = (uint64_t)(uintptr_t)m->base;
		if (lo >= rb && lo < rb + m->cap) {
			uint64_t hi = lo + (b->_room > b->_len ? b->_room : b->_len);
			if (hi > rb + m->cap)
				return mfail(m, "pending slice room [%" PRIu64 ", %" PRIu64 ") runs past capacity %" PRIu64,
					    lo - rb, hi - rb, m->cap);
			for (unsigned i = 0; i < nr; i++)
				if (lo < rb + rg[i].hi && rb + rg[i].lo < hi)
					return mfail(m,
						    "pending slice room [%" PRIu64 ", %" PRIu64 ") (len %zu) overlaps live "
						    "slot %u [%" PRIu64 ", %" PRIu64 ")",
						    lo - rb, hi - rb, b->_len, rg[i].who, rg[i].lo, rg[i].hi);
		}
	}

	if (st.from_pool != m->taken_pool || st.from_system != m->taken_system)
		return mfail(m, "from_pool=%" PRIu64 " from_system=%" PRIu64 ", model took %" PRIu64 " pool + %" PRIu64
			    " system",
			    st.from_pool, st.from_system, m->taken_pool, m->taken_system);
	if (st.refused_releases != m->refused)
		return mfail(m, "refused_releases=%" PRIu64 ", model %" PRIu64, st.refused_releases, m->refused);
	if (sv2shm_buffer_is_droppable(b) != (m->pool_live == 0))
		return mfail(m, "is_droppable=%d with %u live pool slices", sv2shm_buffer_is_droppable(b), m->pool_live);
	return true;
}

/* --- operations ------------------------------------------------------------ */

static size_t pick_len(struct model *m)
{
	uint64_t cap = m->cap;
	uint64_t r = rnd_below(&m->rng, 100);
	uint64_t hi;
	if (r < 35)
		hi = 8;
	else if (r < 75)
		hi = cap / m->n + 8;
	else if (r < 90)
		hi = cap + 8;
	else
		hi = 2 * cap + 8;
	return (size_t)rnd_below(&m->rng, hi + 1);
}

static bool op_write(struct model *m)
{
	size_t len = pick_len(m);
	unsigned chunks = rnd_below(&m->rng, 3) == 0 ? (unsigned)rnd_range(&m->rng, 2, 5) : 1u;
	bool use_write = rnd_below(&m->rng, 4) == 0;
	if (!pend_reserve(m, m->pend_len + len) || !scratch_reserve(m, len + 1))
		return mfail(m, "test out of memory");
	rnd_fill(&m->rng, m->scratch, len);
	size_t done = 0;
	mlog(m, "write %zu bytes in %u chunk(s)%s", len, chunks, use_write ? " via write()" : "");
	for (unsigned c = 0; c < chunks; c++) {
		size_t n = c + 1 == chunks ? len - done : (size_t)rnd_below(&m->rng, len - done + 1);
		size_t before = sv2shm_buffer_len(m->b);
		int err = 0;
		if (use_write) {
			ssize_t w = sv2shm_buffer_write(m->b, m->scratch + done, n);
			if (w < 0)
				err = (int)w;
			else if ((size_t)w != n)
				return mfail(m, "write(%zu) returned %zd", n, w);
		} else {
			uint8_t *w = sv2shm_buffer_get_writable(m->b, n);
			if (!w)
				err = sv2shm_buffer_last_error(m->b);
			else
				memcpy(w, m->scratch + done, n);
		}
		if (err) {
			/* FAIL policy: -EMSGSIZE when the slice could never fit the
			 * region, else -EAGAIN (the pool is full now). */
			int expect = (uint64_t)before + n > m->cap ? -EMSGSIZE : -EAGAIN;
			if (m->policy != SV2SHM_POOL_FAIL || err != expect)
				return mfail(m, "get_writable/write(%zu) after %zu bytes failed: %d (%s)%s", n, before, err,
					     sv2shm_strerror(err),
					     m->policy != SV2SHM_POOL_FAIL ? ""
					     : expect == -EMSGSIZE ? ", expected -EMSGSIZE"
								   : ", expected -EAGAIN");
			if (sv2shm_buffer_len(m->b) != before)
				return mfail(m, "refused get_writable(%zu) changed len() from %zu to %zu", n, before,
					    sv2shm_buffer_len(m->b));
			mlog(m, "  chunk %u of %zu bytes refused (%d) at len %zu", c + 1, n, err, before);
			m->cov_refused_writes++;
			return true;
		}
		if (n)
			memcpy(m->pend + m->pend_len, m->scratch + done, n);
		m->pend_len += n;
		done += n;
	}
	return true;
}

static void log_state(struct model *m, const char *what)
{
	char map[SV2SHM_MAX_SLOTS + 1] = "";
	sv2shm_pool_slot_map(m->p, map, sizeof(map));
	mlog(m, "  %s: %s %s", what, map, sv2shm_pool_mode_name(sv2shm_pool_mode(m->p)));
}

static bool op_take(struct model *m)
{
	if (m->nlive == MAX_LIVE)
		return true;
	struct live_slice *ls = &m->live[m->nlive];
	memset(ls, 0, sizeof(*ls));
	int r = sv2shm_buffer_get_data_owned(m->b, &ls->s);
	size_t len = m->pend_len - m->start;
	if (r == -EAGAIN && m->policy == SV2SHM_POOL_FAIL && m->pend_noslot && len > 0 && m->pool_live > 0) {
		/* The rest of a split has no slot, and every slot is live (or
		 * kept by a live slice further along its run). Nothing changes. */
		mlog(m, "take of %zu bytes (rest of a split): -EAGAIN with %u pool slices live", len, m->pool_live);
		m->cov_take_eagain++;
		return true;
	}
	if (r != 0)
		return mfail(m, "get_data_owned returned %d (%zu bytes, start %zu, rest of a split: %s)", r, len,
			     m->start, m->pend_noslot ? "yes" : "no");
	int k = sv2shm_slice_kind(&ls->s);
	ls->id = ++m->ids;
	mlog(m, "take #%" PRIu64 ": %zu bytes (start %zu) -> %s slot %u", ls->id, len, m->start, kind_name(k),
	     ls->s._slot);
	if (len == 0) {
		if (k != SV2SHM_SLICE_EMPTY || ls->s.len != 0)
			return mfail(m, "empty take gave kind %s len %zu", kind_name(k), ls->s.len);
		m->taken_empty++;
	} else if (k == SV2SHM_SLICE_POOL) {
		m->taken_pool++;
		m->pool_live++;
		ls->gen = ++m->gen[ls->s._slot < SV2SHM_MAX_SLOTS ? ls->s._slot : 0];
	} else if (k == SV2SHM_SLICE_SYSTEM) {
		m->taken_system++;
	} else {
		return mfail(m, "take of %zu bytes gave kind %s", len, kind_name(k));
	}
	if (m->policy == SV2SHM_POOL_FAIL && k == SV2SHM_SLICE_SYSTEM)
		return mfail(m, "FAIL policy handed out a SYSTEM slice");
	if (m->cap == 0 && k == SV2SHM_SLICE_POOL)
		return mfail(m, "capacity 0 handed out a POOL slice");
	ls->kind = k;
	ls->len = len;
	ls->start = m->start;
	if (len) {
		ls->shadow = malloc(len);
		if (!ls->shadow)
			return mfail(m, "test out of memory");
		memcpy(ls->shadow, m->pend + m->start, len);
	}
	m->nlive++;
	m->live_bytes += len;
	m->pend_len = 0;
	m->start = 0;
	m->pend_noslot = false;
	log_state(m, "after take");
	return true;
}

static bool op_split(struct model *m)
{
	if (m->nlive == MAX_LIVE)
		return true;
	size_t avail = m->pend_len - m->start;
	bool valid = avail > 0 && rnd_below(&m->rng, 6) != 0;
	size_t n;
	if (valid) {
		/* Mostly small pieces (frames), sometimes all of it. */
		uint64_t r = rnd_below(&m->rng, 10);
		n = r == 0 ? avail : r < 6 ? rnd_range(&m->rng, 1, avail < 16 ? avail : 16) : rnd_range(&m->rng, 1, avail);
	} else {
		n = rnd_below(&m->rng, 3) == 0 ? 0 : avail + 1 + (size_t)rnd_below(&m->rng, 9);
	}
	struct live_slice *ls = &m->live[m->nlive];
	memset(ls, 0, sizeof(*ls));
	memset(&ls->s, 0x5a, sizeof(ls->s));
	struct sv2shm_pool_stats before, after;
	sv2shm_pool_stats(m->p, &before);
	const uint8_t *v0 = sv2shm_buffer_get_data_by_ref(m->b, SIZE_MAX, NULL);
	int r = sv2shm_buffer_split_owned(m->b, n, &ls->s);
	sv2shm_pool_stats(m->p, &after);
	mlog(m, "split %zu of %zu bytes (start %zu, rest of a split: %s): %d", n, avail, m->start,
	     m->pend_noslot ? "yes" : "no", r);
	if (!valid) {
		if (r != -EINVAL)
			return mfail(m, "split_owned(%zu) with %zu bytes after the start returned %d, expected -EINVAL", n,
				     avail, r);
		if (sv2shm_buffer_last_error(m->b) != -EINVAL)
			return mfail(m, "split_owned(%zu) refused but last_error is %d", n, sv2shm_buffer_last_error(m->b));
		if (after.from_pool != before.from_pool || after.from_system != before.from_system ||
		    after.mask != before.mask)
			return mfail(m, "refused split_owned(%zu) changed the pool", n);
		m->cov_split_einval++;
		return true; /* check_all: len() and the pending bytes unchanged */
	}
	if (r == -EAGAIN && m->policy == SV2SHM_POOL_FAIL && m->pend_noslot && m->pool_live > 0) {
		if (after.from_pool != before.from_pool || after.from_system != before.from_system ||
		    after.live != before.live)
			return mfail(m, "split_owned(%zu) refused with -EAGAIN but the pool changed", n);
		if (sv2shm_buffer_get_data_by_ref(m->b, SIZE_MAX, NULL) != v0)
			return mfail(m, "split_owned(%zu) refused with -EAGAIN but the pending bytes moved", n);
		m->cov_split_eagain++;
		return true;
	}
	if (r != 0)
		return mfail(m, "split_owned(%zu) of %zu bytes (start %zu) returned %d (%s)", n, avail, m->start, r,
			     sv2shm_strerror(r));
	int k = sv2shm_slice_kind(&ls->s);
	ls->id = ++m->ids;
	mlog(m, "  split #%" PRIu64 ": %zu bytes -> %s slot %u", ls->id, n, kind_name(k), ls->s._slot);
	if (k == SV2SHM_SLICE_POOL) {
		if (ls->s.data != v0)
			return mfail(m, "split #%" PRIu64 " is a POOL slice but not where its bytes were written", ls->id);
		m->taken_pool++;
		m->pool_live++;
		ls->gen = ++m->gen[ls->s._slot < SV2SHM_MAX_SLOTS ? ls->s._slot : 0];
	} else if (k == SV2SHM_SLICE_SYSTEM) {
		if (m->policy == SV2SHM_POOL_FAIL)
			return mfail(m, "FAIL policy split out a SYSTEM slice");
		if (ls->s.data != v0) {
			/* A copy: only for a rest that has no slot, with every slot kept. */
			if (!m->pend_noslot || m->pool_live == 0)
				return mfail(m, "split #%" PRIu64 " copied to system memory (rest of a split: %s, %u pool "
					     "slices live)",
					     ls->id, m->pend_noslot ? "yes" : "no", m->pool_live);
			m->cov_split_copies++;
		}
		m->taken_system++;
	} else {
		return mfail(m, "split of %zu bytes gave kind %s", n, kind_name(k));
	}
	if (m->cap == 0 && k == SV2SHM_SLICE_POOL)
		return mfail(m, "capacity 0 split out a POOL slice");
	if (ls->s.len != n)
		return mfail(m, "split_owned(%zu) gave %zu bytes", n, ls->s.len);
	ls->kind = k;
	ls->len = n;
	ls->start = m->start;
	ls->shadow = malloc(n);
	if (!ls->shadow)
		return mfail(m, "test out of memory");
	memcpy(ls->shadow, m->pend + m->start, n);
	m->nlive++;
	m->live_bytes += n;
	m->cov_splits++;
	size_t used = m->start + n;
	memmove(m->pend, m->pend + used, m->pend_len - used);
	m->pend_len -= used;
	m->start = 0;
	if (m->pend_len) {
		/* The rest stays where it is, right after the piece — in the
		 * region (a POOL piece, or a copy for want of a slot). A rest in
		 * a system-memory block (alloc mode) may go back into the region
		 * (copied: pool.c's back_to_pool()); then it is in the region. */
		const uint8_t *v1 = sv2shm_buffer_get_data_by_ref(m->b, SIZE_MAX, NULL);
		bool in_region = k == SV2SHM_SLICE_POOL || ls->s.data != v0;
		if (v1 != v0 + n) {
			if (in_region)
				return mfail(m, "the rest of split #%" PRIu64 " is not where it was written (moved by %td)",
					     ls->id, v1 - (v0 + n));
			if (m->base && (v1 < m->base || v1 + m->pend_len > m->base + m->cap))
				return mfail(m, "the rest of split #%" PRIu64 " left its block but not for the region",
					     ls->id);
			m->cov_split_rest_moved++;
		}
		m->cov_split_rest++;
		/* Without a slot when in the region (a piece in system memory is
		 * a copy of a slotless rest, or the rest is in system memory). */
		if (k == SV2SHM_SLICE_POOL || ls->s.data != v0)
			m->pend_noslot = true;
	} else {
		m->pend_noslot = false;
	}
	log_state(m, "after split");
	return true;
}

static bool op_release(struct model *m)
{
	if (!m->nlive)
		return true;
	unsigned i = (unsigned)rnd_below(&m->rng, m->nlive);
	struct live_slice *ls = &m->live[i];
	struct sv2shm_slice copy = ls->s;
	mlog(m, "release #%" PRIu64 " (%s, %zu bytes, slot %u)", ls->id, kind_name(ls->kind), ls->len, ls->s._slot);
	int r = sv2shm_slice_release(&ls->s);
	if (r != 0)
		return mfail(m, "release of live slice #%" PRIu64 " returned %d", ls->id, r);
	if (sv2shm_slice_kind(&ls->s) != SV2SHM_SLICE_NONE || ls->s.data != NULL || ls->s.len != 0)
		return mfail(m, "released slice struct not cleared");
	/* The cleared original must be refused (without touching any pool). */
	if (rnd_below(&m->rng, 4) == 0) {
		r = sv2shm_slice_release(&ls->s);
		if (r != -EALREADY)
			return mfail(m, "second release of the cleared original returned %d, expected -EALREADY", r);
	}
	if (ls->kind == SV2SHM_SLICE_POOL) {
		m->pool_live--;
		struct released_copy *rc = &m->copies[m->copy_next];
		rc->s = copy;
		rc->gen = ls->gen;
		m->copy_next = (m->copy_next + 1) % MAX_COPIES;
		if (m->ncopies < MAX_COPIES)
			m->ncopies++;
	}
	m->live_bytes -= ls->len;
	free(ls->shadow);
	m->live[i] = m->live[--m->nlive];
	log_state(m, "after release");
	return true;
}

static bool stats_equal_but_refused(const struct sv2shm_pool_stats *a, const struct sv2shm_pool_stats *b)
{
	return a->from_pool == b->from_pool && a->from_system == b->from_system &&
	       a->mode_switches == b->mode_switches && a->resets == b->resets && a->moves == b->moves &&
	       a->live == b->live && a->mask == b->mask && a->slots == b->slots && a->capacity == b->capacity;
}

static bool op_double_release(struct model *m)
{
	if (!m->ncopies)
		return true;
	struct released_copy *rc = &m->copies[rnd_below(&m->rng, m->ncopies)];
	struct sv2shm_slice s = rc->s, before_struct = rc->s;
	struct sv2shm_pool_stats before, after;
	char map0[SV2SHM_MAX_SLOTS + 1], map1[SV2SHM_MAX_SLOTS + 1];
	sv2shm_pool_stats(m->p, &before);
	sv2shm_pool_slot_map(m->p, map0, sizeof(map0));
	int mode0 = sv2shm_pool_mode(m->p);
	unsigned slot = s._slot;
	int expect = m->gen[slot] != rc->gen ? -ESTALE : -EALREADY;
	int r = sv2shm_slice_release(&s);
	mlog(m, "double release of a copy (slot %u, gen %u, slot gen now %u): %d", slot, rc->gen, m->gen[slot], r);
	if (r != -EALREADY && r != -ESTALE)
		return mfail(m, "double release returned %d, expected -EALREADY or -ESTALE", r);
	if (r == -ESTALE)
		m->cov_estale++;
	else
		m->cov_ealready++;
	if (r != expect)
		return mfail(m, "double release returned %s, expected %s (slot %u reused: %s)",
			    r == -ESTALE ? "-ESTALE" : "-EALREADY", expect == -ESTALE ? "-ESTALE" : "-EALREADY", slot,
			    expect == -ESTALE ? "yes" : "no");
	m->refused++;
	sv2shm_pool_stats(m->p, &after);
	sv2shm_pool_slot_map(m->p, map1, sizeof(map1));
	if (!stats_equal_but_refused(&before, &after) || strcmp(map0, map1) != 0 || sv2shm_pool_mode(m->p) != mode0)
		return mfail(m, "refused release changed the pool: mask 0x%" PRIx64 " -> 0x%" PRIx64 ", map %s -> %s",
			    before.mask, after.mask, map0, map1);
	if (after.refused_releases != before.refused_releases + 1)
		return mfail(m, "refused_releases %" PRIu64 " -> %" PRIu64, before.refused_releases,
			    after.refused_releases);
	if (memcmp(&s, &before_struct, sizeof(s)) != 0)
		return mfail(m, "refused release modified the slice struct");
	return true;
}

static bool op_set_start(struct model *m)
{
	bool valid = rnd_below(&m->rng, 5) != 0;
	size_t idx = valid ? (size_t)rnd_below(&m->rng, m->pend_len + 1) : m->pend_len + 1 + (size_t)rnd_below(&m->rng, 9);
	int r = sv2shm_buffer_danger_set_start(m->b, idx);
	mlog(m, "danger_set_start(%zu) with len %zu: %d", idx, m->pend_len, r);
	if (valid) {
		if (r != 0)
			return mfail(m, "danger_set_start(%zu) with len %zu returned %d", idx, m->pend_len, r);
		m->start = idx;
	} else if (r != -EINVAL) {
		return mfail(m, "danger_set_start(%zu) with len %zu returned %d, expected -EINVAL", idx, m->pend_len, r);
	}
	return true;
}

static bool op_destroy_busy(struct model *m)
{
	if (!m->pool_live)
		return true;
	int r = sv2shm_pool_destroy(m->p);
	mlog(m, "destroy with %u live pool slices: %d", m->pool_live, r);
	if (r != -EBUSY)
		return mfail(m, "destroy with %u live pool slices returned %d, expected -EBUSY", m->pool_live, r);
	m->cov_busy++;
	return true;
}

/* --- a run ------------------------------------------------------------------ */

static void model_free(struct model *m)
{
	for (unsigned i = 0; i < m->nlive; i++) {
		(void)sv2shm_slice_release(&m->live[i].s);
		free(m->live[i].shadow);
	}
	m->nlive = 0;
	if (m->p) {
		int r = sv2shm_pool_destroy(m->p);
		if (r != 0 && !m->why[0])
			mfail(m, "final destroy returned %d", r);
	}
	m->p = NULL;
	free(m->pend);
	free(m->scratch);
	m->pend = m->scratch = NULL;
}

static bool run_seed(struct model *m, unsigned seed_index, unsigned steps, bool verbose)
{
	memset(m, 0, sizeof(*m));
	m->seed_index = seed_index;
	m->seed = BASE_SEED ^ ((uint64_t)seed_index * UINT64_C(0x9e3779b97f4a7c15));
	m->rng = m->seed;
	m->n = model_ns[seed_index % NUM_NS];
	m->cap = model_caps[(seed_index / NUM_NS) % NUM_CAPS];
	m->policy = (seed_index / (NUM_NS * NUM_CAPS)) % 4 == 3 ? SV2SHM_POOL_FAIL : SV2SHM_POOL_FALLBACK;
	m->verbose = verbose;
	if (verbose)
		printf("seed index %u: N=%u capacity=%" PRIu64 " policy=%s\n", seed_index, m->n, m->cap,
		       m->policy == SV2SHM_POOL_FAIL ? "FAIL" : "FALLBACK");

	struct sv2shm_pool_options o = {0};
	o.capacity = m->cap;
	o.slots = m->n;
	o.policy = m->policy;
	int r = sv2shm_pool_new(&o, &m->p);
	if (r != 0) {
		fprintf(stderr, "seed index %u: sv2shm_pool_new returned %d\n", seed_index, r);
		m->p = NULL;
		return false;
	}
	m->b = sv2shm_pool_buffer(m->p);
	/* Keep the live bytes bounded so that checking all of them every step
	 * stays cheap. */
	size_t byte_budget = (size_t)(3 * m->cap + 4096);
	bool ok = check_all(m);
	for (m->step = 1; ok && m->step <= steps; m->step++) {
		uint64_t x = rnd_below(&m->rng, 100);
		bool crowded = m->nlive >= MAX_LIVE || m->live_bytes > byte_budget ||
			       (m->pool_live >= m->n && rnd_below(&m->rng, 2));
		if (crowded && x < 50)
			x = 60; /* release instead */
		else if (x >= 34 && x < 56 && m->pend_len == 0 && rnd_below(&m->rng, 4) != 0)
			x = 0; /* mostly write before taking */
		if (x < 34)
			ok = op_write(m);
		else if (x < 56)
			ok = rnd_below(&m->rng, 5) < 2 ? op_split(m) : op_take(m);
		else if (x < 80)
			ok = op_release(m);
		else if (x < 87)
			ok = op_set_start(m);
		else if (x < 97)
			ok = op_double_release(m);
		else
			ok = op_destroy_busy(m);
		if (ok)
			ok = check_all(m);
		int mode = sv2shm_pool_mode(m->p);
		m->cov_front_steps += mode == SV2SHM_MODE_FRONT;
		m->cov_alloc_steps += mode == SV2SHM_MODE_ALLOC;
	}
	/* Drain: release everything and check the pool is empty. */
	while (ok && m->nlive) {
		ok = op_release(m) && check_all(m);
	}
	if (ok) {
		struct sv2shm_pool_stats st;
		sv2shm_pool_stats(m->p, &st);
		m->cov_moves = st.moves;
		m->cov_switches = st.mode_switches;
		m->cov_resets = st.resets;
		if (st.mask != 0 || !sv2shm_buffer_is_droppable(m->b))
			ok = mfail(m, "mask 0x%" PRIx64 " after releasing everything", st.mask);
	}
	model_free(m);
	return ok && !m->why[0];
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	double d = strtod(v, &end);
	if (end == v || d < 0)
		return def;
	return (unsigned)d;
}

static double env_scale(void)
{
	const char *v = getenv("SV2SHM_MODEL_SCALE");
	if (!v || !*v)
		return 1.0;
	double d = strtod(v, NULL);
	return d > 0 ? d : 1.0;
}

static void test_model_random(void **state)
{
	(void)state;
	unsigned steps = env_uint("SV2SHM_MODEL_STEPS", DEFAULT_STEPS);
	bool verbose = env_uint("SV2SHM_MODEL_VERBOSE", 0) != 0;
	const char *one = getenv("SV2SHM_MODEL_SEED");
	unsigned first = 0, count = (unsigned)(DEFAULT_SEEDS * env_scale());
	if (count == 0)
		count = 1;
	if (one && *one) {
		first = (unsigned)strtoul(one, NULL, 0);
		count = 1;
	}
	struct model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	unsigned failures = 0;
	uint64_t pool = 0, sys = 0, empty = 0, front = 0, alloc = 0, estale = 0, ealready = 0, refw = 0, busy = 0;
	uint64_t moves = 0, switches = 0, resets = 0;
	uint64_t splits = 0, split_rest = 0, split_moved = 0, split_copies = 0, split_eagain = 0, split_einval = 0;
	uint64_t take_eagain = 0;
	for (unsigned i = first; i < first + count; i++) {
		if (!run_seed(m, i, steps, verbose))
			failures++;
		pool += m->taken_pool;
		sys += m->taken_system;
		empty += m->taken_empty;
		front += m->cov_front_steps;
		alloc += m->cov_alloc_steps;
		estale += m->cov_estale;
		ealready += m->cov_ealready;
		refw += m->cov_refused_writes;
		busy += m->cov_busy;
		moves += m->cov_moves;
		switches += m->cov_switches;
		resets += m->cov_resets;
		splits += m->cov_splits;
		split_rest += m->cov_split_rest;
		split_moved += m->cov_split_rest_moved;
		split_copies += m->cov_split_copies;
		split_eagain += m->cov_split_eagain;
		split_einval += m->cov_split_einval;
		take_eagain += m->cov_take_eagain;
	}
	printf("model: %u seeds x %u steps (N in {1,2,8,64}, capacity in {0,1,7,64,1000,65536}), %u failing\n"
	       "  slices: %" PRIu64 " pool, %" PRIu64 " system, %" PRIu64 " empty\n"
	       "  steps in FRONT mode %" PRIu64 ", in ALLOC mode %" PRIu64 "; mode switches %" PRIu64 ", moves %" PRIu64
	       ", resets %" PRIu64 "\n"
	       "  refused double releases: %" PRIu64 " -EALREADY, %" PRIu64 " -ESTALE; FAIL-policy refusals %" PRIu64
	       "; destroy -EBUSY %" PRIu64 "\n",
	       count, steps, failures, pool, sys, empty, front, alloc, switches, moves, resets, ealready, estale, refw,
	       busy);
	printf("  splits %" PRIu64 " (%" PRIu64 " leaving a rest, %" PRIu64 " of them back from system memory; %" PRIu64
	       " copied for want of a slot), -EINVAL %" PRIu64 ", -EAGAIN %" PRIu64 " (and %" PRIu64
	       " takes of a slotless rest)\n",
	       splits, split_rest, split_moved, split_copies, split_einval, split_eagain, take_eagain);
	free(m);
	assert_int_equal(failures, 0);
	/* The generator must reach the interesting paths (full runs only). */
	if (count >= DEFAULT_SEEDS && steps >= DEFAULT_STEPS) {
		assert_true(front > 0);
		assert_true(alloc > 0);
		assert_true(moves > 0);
		assert_true(resets > 0);
		assert_true(estale > 0);
		assert_true(ealready > 0);
		assert_true(refw > 0);
		assert_true(busy > 0);
		assert_true(splits > 0);
		assert_true(split_rest > 0);
		assert_true(split_copies > 0);
		assert_true(split_einval > 0);
		assert_true(split_eagain > 0);
		assert_true(take_eagain > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_random),
	};
	return cmocka_run_group_tests_name("pool_model", tests, NULL, NULL);
}
