/* sv2shm-bench: the seed's control structs (see controls.h). */
#include "controls.h"

#include <stdlib.h>
#include <string.h>

struct ppool *ppool_new(size_t capacity)
{
	struct ppool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		return NULL;
	}
	for (unsigned k = 0; k < PPOOL_SLOTS; k++) {
		uint8_t *b = calloc(1, capacity ? capacity : 1);
		if (!b) {
			ppool_free(p);
			return NULL;
		}
		p->keys[k] = (uint8_t)k;
		p->vals[k].ptr = b;
		p->vals[k].len = 0; /* unsafe { b.set_len(0) } */
		p->vals[k].cap = capacity;
		p->nkeys = k + 1;
		p->free_slots[p->nfree++] = (uint8_t)k;
	}
	return p;
}

void ppool_free(struct ppool *p)
{
	if (!p)
		return;
	for (unsigned k = 0; k < p->nkeys; k++)
		free(p->vals[k].ptr);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void ppool_collect(struct ppool *p)
{
	pthread_mutex_lock(&p->lock);
	while (p->nto_free) {
		uint8_t slot = p->to_free[--p->nto_free];
		p->free_slots[p->nfree++] = slot;
		struct ppool_vec *v = ppool_map_get(p, slot);
		if (v)
			v->len = 0;
	}
	pthread_mutex_unlock(&p->lock);
}

struct maxe *maxe_new(size_t capacity)
{
	struct maxe *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->buf = calloc(1, capacity ? capacity : 1);
	if (!m->buf) {
		free(m);
		return NULL;
	}
	m->cap = capacity;
	return m;
}

void maxe_free(struct maxe *m)
{
	if (!m)
		return;
	free(m->buf);
	free(m);
}
