/* The pool's private state, shared by pool.c and the shared-memory pool. */
#ifndef SV2SHM_POOL_H
#define SV2SHM_POOL_H

#include "internal.h"
#include "slots.h"

enum { RUN_BACK = 0, RUN_FRONT = 1 };
enum { CUR_NONE = 0, CUR_POOL = 1, CUR_SYSTEM = 2 };
enum { NO_SLOT = 64 };

/* A run of slices in address order: a ring of slot indices. */
struct pool_run {
	uint8_t idx[64];
	uint8_t head;
	uint8_t len;
};

struct sv2shm_pool {
	struct sv2shm_buffer buf; /* first: the interface and its hot cursor */

	struct sv2shm_ctl *ctl; /* control block: heap, or a shared memfd */
	uint8_t *data;          /* the region, capacity bytes */
	uint64_t cap;
	unsigned nslots;
	uint64_t all; /* mask of the nslots valid bits */
	int policy;
	int mode;

	/* The slice being written. */
	int cur;           /* CUR_* */
	unsigned cur_slot; /* CUR_POOL: reserved slot, or NO_SLOT (the rest after a split_owned()) */
	int cur_run;       /* CUR_POOL: RUN_BACK or RUN_FRONT */
	uint64_t cur_off;  /* CUR_POOL: offset in the region */
	struct sys_area sys; /* CUR_SYSTEM: the heap block (buffer.c) */

	/* The two runs (producer-private; the mask says which slots are live). */
	struct pool_run run[2];
	uint64_t back_end;  /* where the back run's next slice goes */
	uint64_t front_end; /* where the front run's next slice goes */
	uint64_t owned;     /* slots referenced by a run or by the slice being written */
	uint64_t mask_view; /* slots referenced by a run: what ctl->mask shows */
	/* Shared pools: slots whose state word in the control block (a
	 * claim's (gen, 1)) and the mask lag the private state — written by
	 * pool_sync_view(), off the way from a free slot to a published one.
	 * (The counters are written as they change.) */
	uint64_t view_due;

	/* Producer-private copies: never trust shared memory for these. */
	uint64_t off[64];      /* where each slot's slice starts in the region */
	uint64_t data_off[64]; /* the bytes handed out (after danger_set_start) */
	uint64_t data_len[64];
	uint32_t gen[64];
	uint64_t claim_no[64]; /* claim number of each slot's slice, for the slot map */
	uint64_t claim_len[64]; /* region bytes each slot's slice spans */

	struct sv2shm_pool_stats stats;
	_Atomic uint64_t refused;
	/* Releases in progress (any thread): destroy waits for them to finish
	 * touching the pool, not only for the mask to clear. */
	_Atomic uint32_t releasing;
	/* Producer pools: the generation of each slice the producer itself
	 * holds (0 = none) — private truth: the control block's state words are
	 * a view for tools (and an in-process pool's are written by releasing
	 * threads). */
	_Atomic uint32_t own_gen[64];

	bool own_memory; /* in-process pool: ctl and data are ours */
	void *owner;     /* the producer wrapping a shared pool */

	/* Shared pools: who each slot went to and where consumers record their
	 * releases (slots.h); NULL for an in-process pool. */
	struct slot_peers *peers;

	/* SV2SHM_POOL_WAIT: sleep until the release word moves past `seen`
	 * (0, -ETIMEDOUT or -errno), and the matching wake for a releaser.
	 * `announce` (shared pools) tells the consumers the wait epoch;
	 * `before_wait` (shared pools) runs before the wait's spin: it wakes
	 * consumers still asleep on entries published without a wake-up. */
	int wait_timeout_ms;
	unsigned wait_spin_us;
	uint32_t waits_started;
	int (*wait)(struct sv2shm_pool *p, uint32_t seen, int timeout_ms);
	void (*wake)(struct sv2shm_pool *p);
	void (*announce)(struct sv2shm_pool *p, uint32_t epoch);
	void (*before_wait)(struct sv2shm_pool *p);
	_Atomic uint32_t signaled_epoch;

	sv2shm_trace_fn trace_fn;
	void *trace_user;
};

int pool_check_options(const struct sv2shm_pool_options *o, unsigned *slots);
void pool_ctl_init(struct sv2shm_ctl *ctl, uint64_t capacity, unsigned nslots, uint64_t region_id);
void pool_init(struct sv2shm_pool *p, struct sv2shm_ctl *ctl, uint8_t *data, uint64_t capacity, unsigned nslots,
	       const struct sv2shm_pool_options *o);
void pool_fini(struct sv2shm_pool *p);
bool pool_busy(const struct sv2shm_pool *p);
/*
 * --- counters (ctl->counters, read by tools and the broker's STATUS) ---------
 * Written by the pool's owner thread only, in place: a shared pool's control
 * memfd is sealed against writable mappings once the producer has its own,
 * so no one else can change them, and reading one back is a load where a
 * private copy was one more store per update (a stream's producer is bound
 * by its stores). Statistics only: nothing is decided from them.
 */
#define CTR(p, f) (&(p)->ctl->counters.f)
/* Single writer: a load and a store, no locked read-modify-write. */
static inline uint64_t ctr_add(_Atomic uint64_t *c, uint64_t v)
{
	uint64_t n = atomic_load_explicit(c, memory_order_relaxed) + v;
	atomic_store_explicit(c, n, memory_order_relaxed);
	return n;
}
static inline void ctr_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Inline (every publish counts). */
static inline void pool_count_published(struct sv2shm_pool *p, uint64_t bytes)
{
	ctr_add(CTR(p, published), 1);
	ctr_add(CTR(p, bytes), bytes);
}
void pool_count_reclaimed(struct sv2shm_pool *p, uint64_t holds);
/* A shared pool's control-block view of its slots (a claimed slot's state
 * word, the mask), brought up to the private state.
 * Claims and tidies leave it due (a claim's record and a dropped slot's
 * (gen, 0) are written at once); the producer thread calls this after a
 * single-consumer publish's ring entry is out, at the start of the general
 * publish path, before a wait, and in sv2shm_producer_process(). Nothing to
 * do for an in-process pool, whose state words are the truth and are
 * written at once. */
void pool_sync_view(struct sv2shm_pool *p);
/* pool_sync_view_handed()'s common case on its own (no call, for the fast
 * publish): nothing due but `slot`, whose state word the hand-over wrote —
 * store the mask and return true; false (nothing done) when other slots are
 * due too. */
static inline bool pool_sync_view_mask(struct sv2shm_pool *p, unsigned slot)
{
	if (p->view_due & ~(UINT64_C(1) << slot))
		return false;
	if (p->view_due) {
		p->view_due = 0;
		atomic_store_explicit(&p->ctl->mask, p->mask_view, memory_order_release);
	}
	return true;
}

/* The same after a publish whose hand-over already wrote `slot`'s state
 * word: that word is not written twice. */
static inline void pool_sync_view_handed(struct sv2shm_pool *p, unsigned slot)
{
	if (!pool_sync_view_mask(p, slot)) { /* a tidy dropped slots too */
		p->view_due &= ~(UINT64_C(1) << slot);
		pool_sync_view(p);
	}
}
/* Is slot s free (no one holds its current generation)? */
bool pool_slot_free(const struct sv2shm_pool *p, unsigned s);
/* The slots holding a live slice (private state and the release records). */
uint64_t pool_live_mask(const struct sv2shm_pool *p);

/* notify.c: futexes on a 32-bit word, shared between processes. */
int futex_wait_u32(_Atomic uint32_t *word, uint32_t seen, int timeout_ms);
int futex_wake_u32(_Atomic uint32_t *word);

#endif /* SV2SHM_POOL_H */
