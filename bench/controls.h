/*
 * sv2shm-bench: the seed's two control structs (utils/buffer/benches/
 * control_struct.rs), rewritten in C. Both are references for the
 * benchmarks only; the seed says of them "completely broken".
 *
 * ppool (the seed's PPool): a map from slot number to its own vector of
 * `capacity` bytes, 255 slots; get_writable() writes into the vector of the
 * top slot of a free-slot stack (a map lookup on every call); get_data_owned()
 * pops that slot; dropping a slice pushes its slot on a mutex-protected
 * to-free list, which is moved back to the free stack only when the stack is
 * empty. The seed's map is a BTreeMap<u8, Vec<u8>>; here it is a sorted key
 * array searched by bisection on every call (same O(log n) lookup).
 *
 * max-efficiency (the seed's MaxEfficeincy, unrealistic upper bound):
 * get_writable() hands out the next bytes of one preallocated buffer after a
 * bounds check, with no other bookkeeping; get_data_owned() returns a view
 * of what was written and rewinds to the start. Slices alias each other.
 * (The seed's own version always returns the first `len` bytes of the
 * buffer: `&mut self.inner[0..len]`.)
 */
#ifndef SV2SHM_BENCH_CONTROLS_H
#define SV2SHM_BENCH_CONTROLS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PPOOL_SLOTS 255

struct ppool_vec {
	uint8_t *ptr;
	size_t len, cap;
};

struct ppool {
	/* the "map": keys sorted, values alongside */
	uint8_t keys[PPOOL_SLOTS];
	struct ppool_vec vals[PPOOL_SLOTS];
	unsigned nkeys;
	/* free-slot stack (the seed's Vec<u8>, popped from the end) */
	uint8_t free_slots[PPOOL_SLOTS];
	unsigned nfree;
	/* the seed's Arc<Mutex<Vec<u8>>> */
	pthread_mutex_t lock;
	uint8_t to_free[PPOOL_SLOTS];
	unsigned nto_free;
};

struct ppool_slice {
	uint8_t *data;
	size_t len;
	uint8_t index;
	struct ppool *owner;
};

/** Create (255 vectors of `capacity` zeroed bytes, as vec![0; capacity]).
 * Returns NULL when out of memory. */
struct ppool *ppool_new(size_t capacity);
void ppool_free(struct ppool *p);

/** The seed's PPool::free(): move the to-free list back to the free stack. */
void ppool_collect(struct ppool *p);

/** BTreeMap::get_mut(&slot). */
static inline struct ppool_vec *ppool_map_get(struct ppool *p, uint8_t key)
{
	unsigned lo = 0, hi = p->nkeys;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (p->keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->nkeys && p->keys[lo] == key ? &p->vals[lo] : NULL;
}

/** get_writable(len); NULL where the seed panics (slot full, or no slot left
 * even after collecting). */
static inline void *ppool_get_writable(struct ppool *p, size_t len)
{
	if (p->nfree == 0) {
		ppool_collect(p);
		if (p->nfree == 0)
			return NULL;
	}
	struct ppool_vec *v = ppool_map_get(p, p->free_slots[p->nfree - 1]);
	if (!v || len > v->cap - v->len)
		return NULL;
	uint8_t *w = v->ptr + v->len;
	v->len += len;
	return w;
}

/** get_data_owned(): pop the top slot. Returns 0, or -1 (no slot). */
static inline int ppool_get_data_owned(struct ppool *p, struct ppool_slice *out)
{
	if (p->nfree == 0)
		return -1;
	uint8_t slot = p->free_slots[--p->nfree];
	struct ppool_vec *v = ppool_map_get(p, slot);
	if (!v)
		return -1;
	out->data = v->ptr;
	out->len = v->len;
	out->index = slot;
	out->owner = p;
	return 0;
}

/** Drop for SSlice: push the slot on the to-free list (any thread). */
static inline void ppool_slice_drop(struct ppool_slice *s)
{
	struct ppool *p = s->owner;
	pthread_mutex_lock(&p->lock);
	p->to_free[p->nto_free++] = s->index;
	pthread_mutex_unlock(&p->lock);
	s->owner = NULL;
}

struct maxe {
	uint8_t *buf;
	size_t cap;
	size_t len;
};

struct maxe_slice {
	uint8_t *data;
	size_t len;
};

/** Create (vec![0; capacity]). Returns NULL when out of memory. */
struct maxe *maxe_new(size_t capacity);
void maxe_free(struct maxe *m);

static inline void *maxe_get_writable(struct maxe *m, size_t len)
{
	if (len > m->cap - m->len)
		return NULL;
	uint8_t *w = m->buf + m->len;
	m->len += len;
	return w;
}

static inline void maxe_get_data_owned(struct maxe *m, struct maxe_slice *out)
{
	out->data = m->buf;
	out->len = m->len;
	m->len = 0;
}

#endif /* SV2SHM_BENCH_CONTROLS_H */
