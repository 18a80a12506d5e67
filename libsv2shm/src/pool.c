/*
 * The buffer pool (the seed's BufferPool): back / front / alloc modes over one
 * preallocated region and up to 64 slots.
 *
 * The region is used as two runs of slices (a "bip buffer"):
 *
 *   0          front_end        off(back head)            back_end        capacity
 *   | front run |    free gap    |        back run         |   free tail   |
 *
 * BACK mode appends after the newest slice of the back run; FRONT mode
 * appends after the newest slice of the front run, which must stay below the
 * oldest live slice of the back run; ALLOC mode serves slices from system
 * memory because neither run has room (or no slot is free). Every time a new
 * slice starts (and whenever a slice outgrows its room) the producer reads the
 * slot mask once and tidies both runs: freed slices at either end of a run are
 * dropped (the seed's "optimised to drop the last slice"), an empty back run
 * takes over the front run, and with every slot free the pool restarts at
 * offset 0 (the seed's reset). Then it places the slice in the run of the
 * current mode, else the other run, else system memory — so it leaves alloc
 * mode as soon as a request fits again.
 *
 * Slot numbers are names, not positions: a new slice takes the lowest free
 * slot index not still referenced by a run. The runs keep their slices in
 * address order in two small deques of slot indices.
 *
 * Concurrency: only the producer thread runs this file's allocator. Whether
 * a slot is free is decided by the protocol in slots.c (holders on any
 * thread CAS their bit off an in-process slot's state word; consumers of a
 * shared pool record releases in their own rings); the allocator asks it
 * with seq_cst loads before it reuses any byte, and never reads the shared
 * mask back: it writes it as a view of the slots its runs reference.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"
#include "pool.h"
#include "stamps.h"

#define BIT(i) (UINT64_C(1) << (i))

#if SV2SHM_STAMPS
uint64_t sv2shm_stamps_[STAMP_N];
#endif

#if SV2SHM_TRACE
#define TRACE(p, ev, slot, a, b) trace_emit((p), (p)->trace_fn, (p)->trace_user, (ev), (slot), (a), (b))
#else
#define TRACE(p, ev, slot, a, b) ((void)0)
#endif

/* --- run deques ----------------------------------------------------------- */

static inline unsigned run_at(const struct pool_run *r, unsigned i)
{
	return r->idx[(r->head + i) & 63u];
}
static inline unsigned run_first(const struct pool_run *r)
{
	return run_at(r, 0);
}
static inline unsigned run_last(const struct pool_run *r)
{
	return run_at(r, r->len - 1u);
}
static inline void run_push(struct pool_run *r, unsigned slot)
{
	r->idx[(r->head + r->len) & 63u] = (uint8_t)slot;
	r->len++;
}
static inline unsigned run_pop_first(struct pool_run *r)
{
	unsigned s = run_first(r);
	r->head = (uint8_t)((r->head + 1u) & 63u);
	r->len--;
	return s;
}
static inline unsigned run_pop_last(struct pool_run *r)
{
	unsigned s = run_last(r);
	r->len--;
	return s;
}

/* --- counters (ctl->counters: written here only, read by tools) ----------- */

/* CTR(), ctr_add(), ctr_set(): pool.h */

/* `n` slots whose slices span `bytes` in all joined the runs (n > 0) or left
 * them (n < 0, bytes negative): the live counts and their high-water marks. */
static inline void ctr_in_use(struct sv2shm_pool *p, int64_t n, int64_t bytes)
{
	uint64_t live = ctr_add(CTR(p, live), (uint64_t)n);
	uint64_t in_use = ctr_add(CTR(p, bytes_in_use), (uint64_t)bytes);
	if (n <= 0)
		return;
	if (live > atomic_load_explicit(CTR(p, hw_slots), memory_order_relaxed))
		ctr_set(CTR(p, hw_slots), live);
	if (in_use > atomic_load_explicit(CTR(p, hw_bytes), memory_order_relaxed))
		ctr_set(CTR(p, hw_bytes), in_use);
}

void pool_count_reclaimed(struct sv2shm_pool *p, uint64_t holds)
{
	ctr_add(CTR(p, reclaimed), holds);
}

/* --- mode and tidying ----------------------------------------------------- */

static void set_mode(struct sv2shm_pool *p, int mode)
{
	if (p->mode == mode)
		return;
	TRACE(p, SV2SHM_TRACE_MODE, -1, (uint64_t)p->mode, (uint64_t)mode);
	p->mode = mode;
	p->stats.mode_switches++;
	ctr_set(CTR(p, mode_switches), p->stats.mode_switches);
	atomic_store_explicit(&p->ctl->counters.mode, (uint32_t)mode, memory_order_relaxed);
}

/* Is slot s free: does no one hold its current generation? (slots.c) */
bool pool_slot_free(const struct sv2shm_pool *p, unsigned s)
{
	if (p->peers) /* latches releases: writes the producer's private records */
		return slot_holders_shared(p->peers, ((struct sv2shm_pool *)p)->own_gen, s, p->gen[s]) == 0;
	return slot_free_inproc(p->ctl, s, p->gen[s]);
}

/* A slot leaves a run: it is free, and the mask view says so. */
static void drop_slot(struct sv2shm_pool *p, unsigned s)
{
	p->owned &= ~BIT(s);
	p->mask_view &= ~BIT(s);
	ctr_add(CTR(p, releases), 1);
	ctr_in_use(p, -1, -(int64_t)p->claim_len[s]);
	if (p->owner) {
		/* Nobody holds it now (every release latched): its state word
		 * says so before place() can hand its bytes out again, so that a
		 * stale descriptor opened elsewhere (sv2shm_region_open()) is
		 * refused. The mask follows at the sync. */
		atomic_store_explicit(&p->ctl->slots[s].state, SV2SHM_STATE(p->gen[s], 0), memory_order_release);
		p->view_due |= BIT(s);
	}
}

/*
 * A shared pool's freed slots at the start of the back run — where a stream
 * of slices released in order frees them, one per slice — dropped as
 * drop_slot() would, with the run, the masks and the counters updated once
 * for all, and each slot's releases latched with one store (a slot all of
 * whose consumers released leaves pub[] at once; slot_holders_shared()
 * latches bit by bit, 3 more stores per slice): a stream's producer is
 * bound by its stores, and this runs once per slice.
 */
static void tidy_back_shared(struct sv2shm_pool *p)
{
	struct pool_run *back = &p->run[RUN_BACK];
	struct slot_peers *pe = p->peers;
	uint64_t dropped = 0, bytes = 0;
	unsigned n = 0, len = back->len;
	for (; n < len; n++) {
		unsigned s = run_at(back, n);
		uint32_t gen = p->gen[s];
		if (atomic_load_explicit(&p->own_gen[s], memory_order_seq_cst) != 0)
			break;
		uint32_t pub = pe->pub[s], m = pub;
		for (; m; m &= m - 1u) {
			const _Atomic uint32_t *rel = pe->released[__builtin_ctz(m)];
			if (rel && atomic_load_explicit(&rel[s], memory_order_seq_cst) != gen)
				break;
		}
		if (m) {
			/* Someone still holds it: latch the releases there are
			 * (slot_latch(), one by one), and stop here. */
			slot_holders_shared(pe, p->own_gen, s, gen);
			break;
		}
		if (pub) {
			STAMP(STAMP_P_SEES_RELEASE);
			pe->pub[s] = 0;
			for (m = pub; m; m &= m - 1u) {
				unsigned b = (unsigned)__builtin_ctz(m);
				if (pe->held_hint[b])
					pe->held_hint[b]--;
			}
		}
		/* As in drop_slot(): the state word says "free" before place()
		 * can hand the bytes out again. */
		atomic_store_explicit(&p->ctl->slots[s].state, SV2SHM_STATE(gen, 0), memory_order_release);
		dropped |= BIT(s);
		bytes += p->claim_len[s];
	}
	if (!n)
		return;
	back->head = (uint8_t)((back->head + n) & 63u);
	back->len = (uint8_t)(len - n);
	p->owned &= ~dropped;
	p->mask_view &= ~dropped;
	p->view_due |= dropped;
	ctr_add(CTR(p, releases), n);
	ctr_in_use(p, -(int64_t)n, -(int64_t)bytes);
}

/*
 * Drop freed slices from the ends of both runs, let an empty back run take
 * over the front run, and restart at 0 when both runs are empty. Slices
 * freed in the middle of a run keep their slot index reserved until they
 * reach an end.
 */
static void tidy(struct sv2shm_pool *p)
{
	struct pool_run *back = &p->run[RUN_BACK], *front = &p->run[RUN_FRONT];
	uint64_t before = p->mask_view;

	if (p->owner)
		tidy_back_shared(p);

	while (back->len && pool_slot_free(p, run_first(back)))
		drop_slot(p, run_pop_first(back));
	while (back->len && pool_slot_free(p, run_last(back))) {
		unsigned s = run_pop_last(back);
		drop_slot(p, s);
		p->back_end = p->off[s];
	}
	while (front->len && pool_slot_free(p, run_first(front)))
		drop_slot(p, run_pop_first(front));
	while (front->len && pool_slot_free(p, run_last(front))) {
		unsigned s = run_pop_last(front);
		drop_slot(p, s);
		p->front_end = p->off[s];
	}
	if (p->mask_view != before && !p->owner)
		atomic_store_explicit(&p->ctl->mask, p->mask_view, memory_order_release);
	if (!front->len)
		p->front_end = 0;
	if (back->len)
		return;
	/* A slice being written in the front run now lies above everything
	 * live: it belongs to the back run. */
	if (p->cur == CUR_POOL && p->cur_run == RUN_FRONT)
		p->cur_run = RUN_BACK;
	if (front->len) {
		/* The back run is gone: everything above the front run is free. */
		*back = *front;
		p->back_end = p->front_end;
		front->len = 0;
		front->head = 0;
		p->front_end = 0;
	} else if (p->back_end != 0) {
		p->back_end = 0;
		p->stats.resets++;
		TRACE(p, SV2SHM_TRACE_RESET, -1, 0, 0);
	}
}

/* Where a slice of `need` bytes can go in run `which`: its offset and the
 * end of the room it may grow into. */
static bool run_fits(const struct sv2shm_pool *p, int which, uint64_t need, uint64_t *off, uint64_t *limit)
{
	const struct pool_run *back = &p->run[RUN_BACK];
	if (which == RUN_BACK) {
		if (p->back_end > p->cap || need > p->cap - p->back_end)
			return false;
		*off = p->back_end;
		*limit = p->cap;
		return true;
	}
	if (!back->len)
		return false; /* no back run: the front run is not a thing */
	uint64_t head = p->off[run_first(back)];
	if (p->front_end > head || need > head - p->front_end)
		return false;
	*off = p->front_end;
	*limit = head;
	return true;
}

/* Move the slice being written to system memory (alloc mode). */
static void *to_system(struct sv2shm_pool *p, size_t need, size_t len)
{
	struct sv2shm_buffer *b = &p->buf;
	size_t have = b->_len;
	int r = sys_area_start(b, &p->sys, b->_base, have, need);
	if (r < 0) {
		b->_error = r;
		return NULL;
	}
	if (p->cur == CUR_POOL && p->cur_slot != NO_SLOT)
		p->owned &= ~BIT(p->cur_slot);
	p->cur = CUR_SYSTEM;
	set_mode(p, SV2SHM_MODE_ALLOC);
	uint8_t *w = b->_base + have;
	b->_len = have + len;
	return w;
}

/*
 * Place the slice being written (already `b->_len` bytes, needing `need` in
 * all) in the run of the current mode, else the other run. Returns the
 * writable pointer for the `len` new bytes, or NULL when neither run has room
 * or no slot is free.
 */
static inline __attribute__((always_inline)) void *place(struct sv2shm_pool *p, size_t need)
{
	struct sv2shm_buffer *b = &p->buf;
	unsigned slot;
	if (p->cur == CUR_POOL) {
		slot = p->cur_slot; /* NO_SLOT after a split: taken at the claim */
	} else {
		/* Lowest slot not referenced by a run: a slot leaves its run only
		 * once it is free, so every such slot is free. */
		uint64_t free_slots = p->all & ~p->owned;
		if (!free_slots)
			return NULL;
		slot = (unsigned)__builtin_ctzll(free_slots);
	}

	int order[2] = {RUN_BACK, RUN_FRONT};
	if (p->mode == SV2SHM_MODE_FRONT) {
		order[0] = RUN_FRONT;
		order[1] = RUN_BACK;
	}
	for (int i = 0; i < 2; i++) {
		uint64_t off, limit;
		if (!run_fits(p, order[i], need, &off, &limit))
			continue;
		uint8_t *dst = p->data + off;
		if (p->cur == CUR_POOL && dst != b->_base) {
			if (b->_len)
				memmove(dst, b->_base, b->_len);
			p->stats.moves++;
		}
		p->cur = CUR_POOL;
		p->cur_slot = slot;
		p->cur_run = order[i];
		p->cur_off = off;
		if (slot != NO_SLOT)
			p->owned |= BIT(slot);
		set_mode(p, order[i] == RUN_BACK ? SV2SHM_MODE_BACK : SV2SHM_MODE_FRONT);
		b->_base = dst;
		b->_room = (size_t)(limit - off);
		uint8_t *w = dst + b->_len;
		b->_len = need;
		return w;
	}
	return NULL;
}

static int64_t now_us(void)
{
	return (int64_t)(mono_ns() / 1000u);
}

/* Has a slot at an end of a run been freed? Only those make room (a slice
 * freed in the middle keeps its index and bytes until it reaches an end). */
static bool ends_free(const struct sv2shm_pool *p)
{
	for (int i = 0; i < 2; i++) {
		const struct pool_run *r = &p->run[i];
		if (r->len && (pool_slot_free(p, run_first(r)) || (r->len > 1 && pool_slot_free(p, run_last(r)))))
			return true;
	}
	return false;
}

/*
 * The words whose change can free a slot at an end of a run — what the
 * wait's spin watches, one load each, instead of running ends_free() (the
 * whole release protocol) every turn. Too many to watch: `all`, and the spin
 * runs ends_free() every turn as before.
 */
enum { WATCH_MAX = 8 };
struct end_watch {
	const _Atomic uint32_t *w32[WATCH_MAX];
	uint32_t v32[WATCH_MAX];
	const _Atomic uint64_t *w64[4];
	uint64_t v64[4];
	unsigned n32, n64;
	bool all;
};

/* Add one 32-bit word to the watch; false when the watch is full (it then
 * watches `all`). */
static bool watch_word(struct end_watch *w, const _Atomic uint32_t *word)
{
	if (w->n32 == WATCH_MAX) {
		w->all = true;
		return false;
	}
	w->w32[w->n32] = word;
	w->v32[w->n32] = atomic_load_explicit(word, memory_order_relaxed);
	w->n32++;
	return true;
}

static void watch_slot(const struct sv2shm_pool *p, unsigned s, struct end_watch *w)
{
	if (!p->peers) { /* in-process: the holders clear their bits in the state word */
		if (w->n64 == 4) {
			w->all = true;
			return;
		}
		w->w64[w->n64] = &p->ctl->slots[s].state;
		w->v64[w->n64] = atomic_load_explicit(w->w64[w->n64], memory_order_relaxed);
		w->n64++;
		return;
	}
	/* Shared: our own hold, and the records of the consumers it went to
	 * (their bits only: this runs on the way from a publish to the wait's
	 * spin, which a round trip's release may already be waiting for). */
	if (!watch_word(w, &p->own_gen[s]))
		return;
	for (uint32_t pub = p->peers->pub[s]; pub; pub &= pub - 1u) {
		unsigned b = (unsigned)__builtin_ctz(pub);
		if (p->peers->released[b] && !watch_word(w, &p->peers->released[b][s]))
			return;
	}
}

static void watch_ends(const struct sv2shm_pool *p, struct end_watch *w)
{
	w->n32 = w->n64 = 0;
	w->all = false;
	for (int i = 0; i < 2 && !w->all; i++) {
		const struct pool_run *r = &p->run[i];
		if (r->len)
			watch_slot(p, run_first(r), w);
		if (r->len > 1 && !w->all)
			watch_slot(p, run_last(r), w);
	}
}

/* Has a watched word changed since watch_ends()? */
static bool watch_changed(const struct end_watch *w)
{
	if (w->all)
		return true;
	for (unsigned k = 0; k < w->n32; k++)
		if (atomic_load_explicit(w->w32[k], memory_order_relaxed) != w->v32[k])
			return true;
	for (unsigned k = 0; k < w->n64; k++)
		if (atomic_load_explicit(w->w64[k], memory_order_relaxed) != w->v64[k])
			return true;
	return false;
}

/* A wait's deadline in us (-1: none), set at its first clock read: *d is
 * -2 until then. */
static void wait_deadline(const struct sv2shm_pool *p, int64_t *d, uint64_t now_ns)
{
	if (*d == -2)
		*d = p->wait_timeout_ms < 0 ? -1 : (int64_t)(now_ns / 1000u) + (int64_t)p->wait_timeout_ms * 1000;
}

/*
 * SV2SHM_POOL_WAIT: sleep until a release happens (or the deadline). The
 * producer stores an odd epoch in producer_waiting (and, for a shared pool,
 * in every consumer's ring) — absolute values from its private count, never
 * read back — then looks for a freed slot; a releaser records its release
 * and then reads the epoch (slots.h). Both sides use seq_cst, so at least
 * one of them sees the other: either the producer sees the freed slot and
 * does not sleep, or the releaser sees the waiter and wakes it.
 */
static int wait_for_release(struct sv2shm_pool *p, int64_t *deadline /* us */)
{
	struct sv2shm_ctl *ctl = p->ctl;
	pool_sync_view(p); /* a full pool is what a tool looks at */
	if (p->before_wait)
		p->before_wait(p);
	/* A bounded spin first: a release seen here needs no wake-up at all,
	 * and a cross-core cache-line hand-off is ~100x cheaper than a sleep.
	 * After 2 us it yields the CPU between looks: a consumer that shares
	 * our core gets to release what we wait for. The clock is first read
	 * after 64 looks, and the spin's budget and the wait's deadline start
	 * there (1-2 us late): a clock read costs ~25 ns on a VM, and a
	 * release often lands within the first looks — from then on, the
	 * producer's way to its next slice is the round trip's critical path. */
	if (p->wait_spin_us != SV2SHM_SPIN_NONE) {
		uint64_t until = 0, pure = 0;
		struct end_watch w;
		watch_ends(p, &w);
		if (ends_free(p))
			return 0;
		for (unsigned i = 1;; i++) {
			if (watch_changed(&w)) {
				/* A record moved: is a slot free now? (A record
				 * a consumer rewrote for nothing: watch anew.) */
				if (ends_free(p))
					return 0;
				watch_ends(p, &w);
				if (ends_free(p)) /* a release between the two */
					return 0;
			}
			cpu_relax();
			if ((i & 63u) == 0) {
				uint64_t now = mono_ns();
				if (!until) {
					until = now + (uint64_t)p->wait_spin_us * 1000u;
					pure = now + 2000u;
					wait_deadline(p, deadline, now);
				} else if (now >= until) {
					break;
				} else if (now >= pure) {
					sched_yield();
				}
			}
		}
	}
	uint64_t now = mono_ns();
	wait_deadline(p, deadline, now);
	int timeout = -1;
	if (*deadline >= 0) {
		int64_t left = *deadline - (int64_t)(now / 1000u);
		if (left <= 0)
			return -ETIMEDOUT;
		left = (left + 999) / 1000; /* whole ms, rounded up: never early */
		timeout = left > INT32_MAX ? INT32_MAX : (int)left;
	}
	uint64_t t_wait = now;
	uint32_t seq = atomic_load_explicit(&ctl->release_seq, memory_order_acquire);
	uint32_t epoch = 2u * ++p->waits_started - 1u; /* odd */
	/* A shared pool's announce queues the producer's futex wait before it
	 * tells the consumers; our own threads, which read producer_waiting and
	 * also wake once per epoch, learn it after that too: a wake-up sent
	 * before the wait is queued would be lost for the whole epoch. */
	if (p->announce)
		p->announce(p, epoch);
	atomic_store_explicit(&ctl->producer_waiting, epoch, memory_order_seq_cst);
	int r = 0;
	if (!ends_free(p))
		r = p->wait(p, seq, timeout);
	atomic_store_explicit(&ctl->producer_waiting, epoch + 1u, memory_order_seq_cst);
	if (p->announce)
		p->announce(p, epoch + 1u);
	p->stats.waits++;
	ctr_set(CTR(p, waits), p->stats.waits);
	ctr_add(CTR(p, wait_ns), mono_ns() - t_wait);
	return r == -ETIMEDOUT ? 0 : r; /* the loop checks the deadline itself */
}

/* The pool is full and the caller gets an error instead of a wait: as
 * before a wait, consumers asleep on entries published with
 * SV2SHM_PUBLISH_MORE are woken first, so that a caller retrying finds the
 * room their releases make. */
static void refused_full(struct sv2shm_pool *p)
{
	if (p->before_wait)
		p->before_wait(p);
}

/* How far into a shared pool's region slices may land before a tidy (see
 * pool_get_writable_slow). */
#define LAZY_TIDY_SPAN UINT64_C(8192)

static __attribute__((noinline)) void *pool_get_writable_slower(struct sv2shm_buffer *b, size_t len);

/*
 * The slow path's most common case on its own: a new slice of a shared pool
 * in back mode near the start of its region, a slot free and room behind
 * the back run — place()'s result for it, without a tidy (the lazy case
 * below), and without a stack frame: a stream's producer is bound by the
 * stores it makes per slice. Anything else takes the general way.
 */
static void *pool_get_writable_slow(struct sv2shm_buffer *b, size_t len)
{
	struct sv2shm_pool *p = container_of(b, struct sv2shm_pool, buf);
	uint64_t free_slots = p->all & ~p->owned, end = p->back_end;
	/* A copy of place()'s steps for this one case, on purpose: calling
	 * place() here (always inline) costs a frame and 6 more stores per
	 * slice (bench/calls.sh). */
	if (p->cur != CUR_NONE || b->_len != 0 || !p->owner || p->mode != SV2SHM_MODE_BACK || !free_slots ||
	    p->front_end > end || end > LAZY_TIDY_SPAN || len > LAZY_TIDY_SPAN - end || end > p->cap ||
	    len > p->cap - end)
		return pool_get_writable_slower(b, len);
	unsigned slot = (unsigned)__builtin_ctzll(free_slots);
	p->cur = CUR_POOL;
	p->cur_slot = slot;
	p->cur_run = RUN_BACK;
	p->cur_off = end;
	p->owned |= BIT(slot);
	uint8_t *dst = p->data + end;
	b->_base = dst;
	b->_room = (size_t)(p->cap - end);
	b->_len = len;
	return dst;
}

/*
 * The slow path of get_writable: the slice being written has no room for
 * `len` more bytes (or has no place yet). Runs once per slice, plus once per
 * outgrown room.
 */
static void *pool_get_writable_slower(struct sv2shm_buffer *b, size_t len)
{
	struct sv2shm_pool *p = container_of(b, struct sv2shm_pool, buf);
	size_t need;
	if (__builtin_add_overflow(b->_len, len, &need)) {
		b->_error = -EOVERFLOW;
		return NULL;
	}
	if (p->cur == CUR_SYSTEM)
		return sys_area_grow(b, &p->sys, len);

	int64_t deadline = -2; /* not computed yet */
	for (bool waited = false;; waited = true) {
		/* A shared pool writing near the start of its region tidies only
		 * when the slice does not fit without: tidying reads every
		 * consumer's release line, which the consumers write — for small
		 * slices that is most of the cost of one — and one tidy frees
		 * every slot released since the last. Further in, it tidies
		 * first, as an in-process pool always does (the seed's slot
		 * numbering and resets are part of its behaviour): a tidy that
		 * finds everything released starts again at offset 0, so large
		 * slices keep reusing the same bytes, warm in the cache, instead
		 * of walking the whole region. After a wait, place() would fail
		 * as it did before it (nothing but a tidy changes its answer). */
		uint64_t top = p->back_end > p->front_end ? p->back_end : p->front_end;
		bool lazy = !waited && p->owner && top <= LAZY_TIDY_SPAN && need <= LAZY_TIDY_SPAN - top;
		uint8_t *w = lazy ? place(p, need) : NULL;
		if (w)
			return w;
		tidy(p);
		w = place(p, need);
		if (w)
			return w;
		/* Full. Keep what was written where it is: place() changed nothing
		 * for the current slice, and tidying only frees memory. */
		if (p->policy == SV2SHM_POOL_FALLBACK)
			return to_system(p, need, len);
		if (need > p->cap) {
			b->_error = -EMSGSIZE; /* no release can ever make room */
			return NULL;
		}
		if (p->policy == SV2SHM_POOL_FAIL) {
			refused_full(p);
			b->_error = -EAGAIN;
			return NULL;
		}
		if (p->wait_timeout_ms == 0 || (deadline >= 0 && now_us() >= deadline)) {
			refused_full(p);
			b->_error = -ETIMEDOUT;
			return NULL;
		}
		int r = wait_for_release(p, &deadline); /* sets the deadline */
		if (r < 0 && r != -EINTR) {
			b->_error = r;
			return NULL;
		}
	}
}

/* A slice handed out from system memory (alloc mode, or no slot free under
 * SV2SHM_POOL_FALLBACK): counted like the seed's from-system slices. */
static void count_system(struct sv2shm_pool *p, const struct sv2shm_slice *out)
{
	TRACE(p, SV2SHM_TRACE_SYSTEM, -1, 0, out->len);
	p->stats.from_system++;
	ctr_set(CTR(p, fallbacks), p->stats.from_system);
	if (!p->owner)
		pool_count_published(p, out->len);
}

/*
 * A slot for the slice being written when it has none (the rest left by a
 * split_owned()): the lowest free one, after a tidy if none is, else as the
 * policy says — -EAGAIN (FAIL), a wait up to the timeout (WAIT), or
 * -ENOSPC (FALLBACK: the caller copies the bytes to system memory). The
 * slice's bytes stay where they are meanwhile.
 */
static int take_slot(struct sv2shm_pool *p)
{
	int64_t deadline = -2; /* not computed yet */
	for (bool tidied = false;; tidied = true) {
		uint64_t free_slots = p->all & ~p->owned;
		if (free_slots) {
			p->cur_slot = (unsigned)__builtin_ctzll(free_slots);
			p->owned |= BIT(p->cur_slot);
			return 0;
		}
		if (!tidied) {
			tidy(p);
			continue;
		}
		if (p->policy == SV2SHM_POOL_FALLBACK)
			return -ENOSPC;
		if (p->policy == SV2SHM_POOL_FAIL) {
			refused_full(p);
			return -EAGAIN;
		}
		if (p->wait_timeout_ms == 0 || (deadline >= 0 && now_us() >= deadline)) {
			refused_full(p);
			return -ETIMEDOUT;
		}
		int r = wait_for_release(p, &deadline); /* sets the deadline */
		if (r < 0 && r != -EINTR)
			return r;
		tidy(p);
	}
}

/* Claim slot s for the region bytes [off, off + span) (the first `skip` of
 * them are not handed out: danger_set_start) and fill *out. */
static inline __attribute__((always_inline)) void claim(struct sv2shm_pool *p, unsigned s, uint64_t off, uint64_t span, uint64_t skip,
		  struct sv2shm_slice *out)
{
	uint32_t gen = ++p->gen[s];
	if (gen == 0) /* 0 means "not held" in the private records */
		gen = ++p->gen[s];
	struct sv2shm_ctl_slot *cs = &p->ctl->slots[s];
	p->off[s] = off;
	p->data_off[s] = off + skip;
	p->data_len[s] = span - skip;
	uint64_t no = ++p->stats.from_pool; /* the claim's number, from 1 */
	p->claim_no[s] = no;
	/* The record first: whoever sees the state word name this generation
	 * (the hand-over's, or the sync's) finds its bytes here. */
	cs->offset = off + skip;
	cs->length = span - skip;
	cs->claim = no;
	p->mask_view |= BIT(s);
	p->claim_len[s] = span;
	ctr_in_use(p, 1, (int64_t)span);
	if (p->owner) {
		/* A shared pool's state word is a view; the truth is own_gen and
		 * the peers' records. Its (gen, 1) and the mask follow at the
		 * next pool_sync_view(): a publish's hand-over
		 * writes the state word itself before its descriptor goes out. */
		atomic_store_explicit(&p->own_gen[s], gen, memory_order_relaxed);
		p->peers->pub[s] = 0;
		p->view_due |= BIT(s);
	} else {
		/* The slot is free: only stale releases can touch its state
		 * word, and their CAS fails on the new generation. */
		atomic_store_explicit(&cs->state, SV2SHM_STATE(gen, 1u), memory_order_release);
		pool_count_published(p, span - skip);
		atomic_store_explicit(&p->ctl->mask, p->mask_view, memory_order_release);
	}

	if (p->cur_run == RUN_BACK)
		p->back_end = off + span;
	else
		p->front_end = off + span;
	run_push(&p->run[p->cur_run], s);
	TRACE(p, SV2SHM_TRACE_CLAIM, (int)s, off, span);

	/* Every field, no memset first. */
	out->data = p->data + off + skip;
	out->len = span - skip;
	out->_owner = p;
	out->_gen = gen;
	out->_slot = (uint16_t)s;
	out->_kind = SV2SHM_SLICE_POOL;
	out->_holder = 0;
}

/* Hand out the first `span` bytes of the pool slice being written (from
 * _start): in its slot, taking one first if it has none; under FALLBACK with
 * every slot live, as a copy in system memory. The slice being written has
 * no slot afterwards. Returns 0 or the policy's error (nothing changed). */
static inline __attribute__((always_inline)) int take_piece(struct sv2shm_pool *p, size_t span, struct sv2shm_slice *out)
{
	struct sv2shm_buffer *b = &p->buf;
	int r = p->cur_slot == NO_SLOT ? take_slot(p) : 0;
	if (r == -ENOSPC) {
		r = slice_copy_to_system(out, b->_base + b->_start, span - b->_start);
		if (r == 0)
			count_system(p, out);
		return r;
	}
	if (r < 0)
		return r;
	claim(p, p->cur_slot, p->cur_off, span, b->_start, out);
	p->cur_slot = NO_SLOT;
	return 0;
}

/*
 * get_data_owned()'s common case for a shared pool: the whole slice being
 * written (no danger_set_start()), in the slot place() took — claim()'s
 * records, with the stores it can do without: pub[s] is already 0 (a slot
 * is free only once every consumer it went to is latched out of it),
 * cur_slot is not read again before place() sets it (cur is CUR_NONE), and
 * the buffer's start is already 0. A copy of claim() for this case on
 * purpose: calling claim() here costs 8 more stores per slice
 * (bench/calls.sh); test_pool_model and the ipc tests run both.
 */
static __attribute__((noinline)) int pool_get_data_owned_shared(struct sv2shm_pool *p, struct sv2shm_slice *out)
{
	struct sv2shm_buffer *b = &p->buf;
	unsigned s = p->cur_slot;
	uint64_t off = p->cur_off, span = b->_len;
	uint32_t gen = p->gen[s] + 1u;
	if (gen == 0) /* 0 means "not held" in the private records */
		gen = 1;
	p->gen[s] = gen;
	p->off[s] = off;
	p->data_off[s] = off;
	p->data_len[s] = span;
	p->claim_len[s] = span;
	uint64_t no = ++p->stats.from_pool;
	p->claim_no[s] = no;
	/* The record first: whoever sees the state word name this generation
	 * (the hand-over's, or the sync's) finds its bytes here. */
	struct sv2shm_ctl_slot *cs = &p->ctl->slots[s];
	cs->offset = off;
	cs->length = span;
	cs->claim = no;
	p->mask_view |= BIT(s);
	p->view_due |= BIT(s);
	atomic_store_explicit(&p->own_gen[s], gen, memory_order_relaxed);
	ctr_in_use(p, 1, (int64_t)span);
	p->back_end = off + span;
	run_push(&p->run[RUN_BACK], s);
	TRACE(p, SV2SHM_TRACE_CLAIM, (int)s, off, span);
	out->data = p->data + off;
	out->len = span;
	out->_owner = p;
	out->_gen = gen;
	out->_slot = (uint16_t)s;
	out->_kind = SV2SHM_SLICE_POOL;
	out->_holder = 0;
	p->cur = CUR_NONE;
	b->_base = sv2shm_empty_area;
	b->_len = 0;
	b->_room = 0;
	return 0;
}

static __attribute__((noinline)) int pool_get_data_owned_general(struct sv2shm_buffer *b,
								   struct sv2shm_slice *out);

/* Which way: two tail calls, so that the common one runs without the
 * general one's stack frame. */
static int pool_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	struct sv2shm_pool *p = container_of(b, struct sv2shm_pool, buf);
	if (p->cur == CUR_POOL && b->_start == 0 && b->_len != 0 && p->cur_slot != NO_SLOT && p->owner &&
	    p->cur_run == RUN_BACK && p->peers->pub[p->cur_slot] == 0)
		return pool_get_data_owned_shared(p, out);
	return pool_get_data_owned_general(b, out);
}

/* Claim the slot of the slice just written and hand it out. */
static int pool_get_data_owned_general(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	struct sv2shm_pool *p = container_of(b, struct sv2shm_pool, buf);
	if (b->_len == b->_start) {
		/* Nothing (left) to hand out: keep the place and the room. */
		slice_empty(out);
		b->_len = 0;
		b->_start = 0;
		return 0;
	}
	if (p->cur == CUR_SYSTEM) {
		sys_area_take(b, &p->sys, out);
		p->cur = CUR_NONE;
		count_system(p, out);
		return 0;
	}
	/* CUR_POOL: b->_len > 0 implies a place was chosen. */
	int r = take_piece(p, b->_len, out);
	if (r < 0)
		return r;
	p->cur = CUR_NONE;
	buffer_clear(b);
	return 0;
}

/* After a split in alloc mode: the rest (a partial frame, say) goes back
 * into the pool when it fits there again — copied, it is small next to what
 * was handed out — so that a reader splitting frames off a system-memory
 * block does not stay in alloc mode for good. */
static void back_to_pool(struct sv2shm_pool *p)
{
	struct sv2shm_buffer *b = &p->buf;
	if (b->_len > p->cap / 4)
		return;
	uint8_t *src = b->_base;
	size_t len = b->_len;
	p->cur = CUR_NONE;
	tidy(p);
	if (!place(p, len)) { /* changed nothing */
		p->cur = CUR_SYSTEM;
		return;
	}
	/* place() pointed the buffer at the pool and counted len bytes. */
	memcpy(b->_base, src, len);
	b->_len = len;
	sys_area_drop(&p->sys);
}

/* Hand out the first n bytes after _start; the rest stays in place as the
 * slice being written, without a slot until it is claimed. */
static int pool_split_owned(struct sv2shm_buffer *b, size_t n, struct sv2shm_slice *out)
{
	struct sv2shm_pool *p = container_of(b, struct sv2shm_pool, buf);
	size_t used = b->_start + n;
	if (p->cur == CUR_SYSTEM) {
		sys_area_split(b, &p->sys, n, out);
		count_system(p, out);
		back_to_pool(p);
		return 0;
	}
	int r = take_piece(p, used, out);
	if (r < 0)
		return r;
	p->cur_off += used;
	b->_base += used;
	b->_room -= used;
	b->_len -= used;
	b->_start = 0;
	return 0;
}

int pool_release_slice(struct sv2shm_pool *p, unsigned slot, uint32_t gen)
{
	if (slot >= p->nslots)
		return -EINVAL;
	atomic_fetch_add_explicit(&p->releasing, 1u, memory_order_seq_cst);
	int r;
	if (p->owner) {
		/* A producer's slice: its private record decides, whatever a peer
		 * may have written into the shared control block. */
		uint32_t want = gen;
		if (!atomic_compare_exchange_strong_explicit(&p->own_gen[slot], &want, 0u, memory_order_seq_cst,
							     memory_order_seq_cst))
			r = want == 0 ? -EALREADY : -ESTALE;
		else
			r = 1; /* consumers never held it: publish clears own_gen itself */
	} else {
		r = slot_release_bit(p->ctl, p->nslots, slot, gen, 0);
	}
	if (r == -EALREADY || r == -ESTALE)
		atomic_fetch_add_explicit(&p->refused, 1u, memory_order_relaxed);
	if (r >= 0) {
#if SV2SHM_TRACE
		/* The slice's bytes as claimed: the slot is ours until this release. */
		TRACE(p, SV2SHM_TRACE_RELEASE, (int)slot, p->data_off[slot], p->data_len[slot]);
#endif
		if (r == 1 && p->wake && slot_waiter_needs_wake(&p->ctl->producer_waiting, &p->signaled_epoch))
			p->wake(p);
	}
	/* Last touch of the pool: destroy may free it once this reaches 0. */
	atomic_fetch_sub_explicit(&p->releasing, 1u, memory_order_release);
	return r < 0 ? r : 0;
}

/* True while a slice of the pool is live or a release is still running. */
bool pool_busy(const struct sv2shm_pool *p)
{
	for (unsigned s = 0; s < p->nslots; s++) {
		if (p->owner ? atomic_load_explicit(&((struct sv2shm_pool *)p)->own_gen[s], memory_order_seq_cst) != 0
			     : SV2SHM_STATE_HOLDERS(atomic_load_explicit(&p->ctl->slots[s].state, memory_order_seq_cst)) != 0)
			return true;
	}
	return atomic_load_explicit(&p->releasing, memory_order_seq_cst) != 0;
}

static bool pool_is_droppable(const struct sv2shm_buffer *b)
{
	const struct sv2shm_pool *p = container_of(b, const struct sv2shm_pool, buf);
	return !pool_busy(p);
}

static const struct sv2shm_buffer_ops pool_ops = {
	.get_writable_slow = pool_get_writable_slow,
	.get_data_owned = pool_get_data_owned,
	.is_droppable = pool_is_droppable,
	.split_owned = pool_split_owned,
};

/* --- construction --------------------------------------------------------- */

int pool_check_options(const struct sv2shm_pool_options *o, unsigned *slots)
{
	if (!o)
		return -EINVAL;
	unsigned n = o->slots ? o->slots : SV2SHM_DEFAULT_SLOTS;
	if (n > SV2SHM_MAX_SLOTS || o->capacity > SV2SHM_POOL_MAX_CAPACITY)
		return -EINVAL;
	if (o->policy != SV2SHM_POOL_FALLBACK && o->policy != SV2SHM_POOL_FAIL && o->policy != SV2SHM_POOL_WAIT)
		return -EINVAL;
	*slots = n;
	return 0;
}

void pool_ctl_init(struct sv2shm_ctl *ctl, uint64_t capacity, unsigned nslots, uint64_t region_id)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->magic = SV2SHM_CTL_MAGIC;
	ctl->version = SV2SHM_CTL_VERSION;
	ctl->capacity = capacity;
	ctl->nslots = nslots;
	ctl->ctl_size = (uint32_t)sizeof(*ctl);
	ctl->region_id = region_id;
}

/* In-process pools sleep on the release word with a futex. */
static int inproc_wait(struct sv2shm_pool *p, uint32_t seen, int timeout_ms)
{
	return futex_wait_u32(&p->ctl->release_seq, seen, timeout_ms);
}

static void inproc_wake(struct sv2shm_pool *p)
{
	atomic_fetch_add_explicit(&p->ctl->release_seq, 1u, memory_order_seq_cst);
	futex_wake_u32(&p->ctl->release_seq);
}

void pool_init(struct sv2shm_pool *p, struct sv2shm_ctl *ctl, uint8_t *data, uint64_t capacity, unsigned nslots,
	       const struct sv2shm_pool_options *o)
{
	int policy = o->policy;
	p->buf._ops = &pool_ops;
	buffer_clear(&p->buf);
	p->ctl = ctl;
	p->data = data;
	p->cap = capacity;
	p->nslots = nslots;
	p->all = nslots == 64 ? ~UINT64_C(0) : BIT(nslots) - 1u;
	p->policy = policy;
	atomic_store_explicit(&ctl->counters.policy, (uint32_t)policy, memory_order_relaxed);
	atomic_store_explicit(&ctl->counters.mode, SV2SHM_MODE_BACK, memory_order_relaxed);
	p->mode = SV2SHM_MODE_BACK;
	p->cur = CUR_NONE;
	p->stats.slots = nslots;
	p->stats.capacity = capacity;
	p->wait_timeout_ms = o->wait_timeout_ms;
	p->wait_spin_us = o->wait_spin_us ? o->wait_spin_us : 50;
	p->wait = inproc_wait;
	p->wake = inproc_wake;
}

/* Free what pool_init's owner did not allocate itself: the heap block of a
 * slice being written. */
void pool_fini(struct sv2shm_pool *p)
{
	sys_area_drop(&p->sys);
}

SV2SHM_API int sv2shm_pool_new(const struct sv2shm_pool_options *opts, struct sv2shm_pool **out)
{
	unsigned n;
	if (!out)
		return -EINVAL;
	int r = pool_check_options(opts, &n);
	if (r < 0)
		return r;
	struct sv2shm_pool *p = calloc(1, sizeof(*p));
	struct sv2shm_ctl *ctl = aligned_alloc(SV2SHM_CACHE_LINE, sizeof(*ctl));
	uint8_t *data = NULL;
	if (!p || !ctl)
		goto nomem;
	if (opts->capacity) {
		/* Lazily backed anonymous memory: a 4 GiB pool costs address space
		 * until it is written. */
		void *m = mmap(NULL, (size_t)opts->capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (m == MAP_FAILED)
			goto nomem;
		data = m;
	}
	pool_ctl_init(ctl, opts->capacity, n, 0);
	pool_init(p, ctl, data, opts->capacity, n, opts);
	p->own_memory = true;
	*out = p;
	return 0;
nomem:
	free(ctl);
	free(p);
	return -ENOMEM;
}

SV2SHM_API int sv2shm_pool_destroy(struct sv2shm_pool *p)
{
	if (!p)
		return 0;
	if (!p->own_memory)
		return -EINVAL; /* a shared pool is destroyed by its own function */
	if (pool_busy(p))
		return -EBUSY;
	pool_fini(p);
	if (p->data)
		munmap(p->data, (size_t)p->cap);
	free(p->ctl);
	free(p);
	return 0;
}

SV2SHM_API struct sv2shm_buffer *sv2shm_pool_buffer(struct sv2shm_pool *p)
{
	return p ? &p->buf : NULL;
}

SV2SHM_API struct sv2shm_pool *sv2shm_pool_from_buffer(struct sv2shm_buffer *b)
{
	if (!b || b->_ops != &pool_ops)
		return NULL;
	return container_of(b, struct sv2shm_pool, buf);
}

/* --- introspection ------------------------------------------------------ */

SV2SHM_API int sv2shm_pool_mode(const struct sv2shm_pool *p)
{
	return p ? p->mode : -EINVAL;
}

SV2SHM_API const char *sv2shm_pool_mode_name(int mode)
{
	switch (mode) {
	case SV2SHM_MODE_BACK:
		return "BACK MODE";
	case SV2SHM_MODE_FRONT:
		return "FRONT MODE";
	case SV2SHM_MODE_ALLOC:
		return "ALLOC MODE";
	default:
		return "?";
	}
}

void pool_sync_view(struct sv2shm_pool *p)
{
	uint64_t due = p->view_due;
	if (!due)
		return;
	p->view_due = 0;
	for (; due; due &= due - 1u) {
		unsigned s = (unsigned)__builtin_ctzll(due);
		/* A slot in the runs: who holds it as far as the producer
		 * knows — us, and the consumers it went to whose releases are
		 * not latched yet. (A dropped slot's (gen, 0) is written at
		 * once, drop_slot.) */
		if (!(p->mask_view & BIT(s)))
			continue;
		uint32_t holders =
			p->peers->pub[s] | (atomic_load_explicit(&p->own_gen[s], memory_order_relaxed) ? 1u : 0u);
		atomic_store_explicit(&p->ctl->slots[s].state, SV2SHM_STATE(p->gen[s], holders), memory_order_release);
	}
	atomic_store_explicit(&p->ctl->mask, p->mask_view, memory_order_release);
}

/* The slots holding a live slice, from private state: the slots the runs
 * reference, less those no one holds any more. */
uint64_t pool_live_mask(const struct sv2shm_pool *p)
{
	uint64_t m = 0, c = p->mask_view;
	while (c) {
		unsigned s = (unsigned)__builtin_ctzll(c);
		c &= c - 1u;
		if (!pool_slot_free(p, s))
			m |= BIT(s);
	}
	return m;
}

static char claim_char(uint64_t claim)
{
	static const char names[] = "123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	if (claim == 0)
		return '?';
	return names[(claim - 1) % (sizeof(names) - 1)];
}

SV2SHM_API int sv2shm_pool_slot_map(const struct sv2shm_pool *p, char *buf, size_t size)
{
	if (!p || !buf)
		return -EINVAL;
	if (size < p->nslots + 1u)
		return -ENOSPC;
	uint64_t m = pool_live_mask(p);
	for (unsigned i = 0; i < p->nslots; i++)
		buf[i] = (m & BIT(i)) ? claim_char(p->claim_no[i]) : '-';
	buf[p->nslots] = '\0';
	return (int)p->nslots;
}

SV2SHM_API int sv2shm_pool_stats(const struct sv2shm_pool *p, struct sv2shm_pool_stats *out)
{
	if (!p || !out)
		return -EINVAL;
	*out = p->stats;
	out->mask = pool_live_mask(p);
	out->live = (uint64_t)__builtin_popcountll(out->mask);
	out->refused_releases = atomic_load_explicit(&p->refused, memory_order_relaxed);
	return 0;
}

SV2SHM_API int sv2shm_pool_slot_range(const struct sv2shm_pool *p, unsigned slot, uint64_t *off, uint64_t *len)
{
	if (!p || !off || !len || slot >= p->nslots)
		return -EINVAL;
	if (!(pool_live_mask(p) & BIT(slot)))
		return 0;
	*off = p->data_off[slot];
	*len = p->data_len[slot];
	return 1;
}

SV2SHM_API int sv2shm_pool_set_trace(struct sv2shm_pool *p, sv2shm_trace_fn fn, void *user)
{
	if (!p)
		return -EINVAL;
#if SV2SHM_TRACE
	p->trace_fn = fn;
	p->trace_user = user;
	return 0;
#else
	(void)fn;
	(void)user;
	return -ENOTSUP;
#endif
}
