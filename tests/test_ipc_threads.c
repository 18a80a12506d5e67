/*
 * A consumer that receives on one thread and releases on another, as the API
 * allows ("release ... from any thread"), against a producer on a third,
 * with two slots so that every slot is reused at once: the producer sees a
 * release record, reuses the slot and publishes its next generation while
 * the release that wrote the record may still be finishing.
 *
 * Checked: every slice arrives, in order, with its bytes; recv never refuses
 * a valid entry (an earlier version failed the open of the next generation
 * with -EEXIST while the previous release was still running, and the slot
 * leaked for good); releases of copies racing each other give exactly one
 * success and the loser writes nothing (an earlier version let a late loser
 * overwrite the record of the slot's next generation); a duplicate of a
 * descriptor, opened again on the receiving thread while the slice's copies
 * are being released on two others, never opens (an earlier version took the
 * hold word before it saw the release record and gave it back after, and a
 * copy's release could take it in between: two successful releases of one
 * slice); after the drain the producer sees nothing held.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ipc_common.h"
#include "region.h"

#define N_SLICES 60000u
#define N_DUPS 30000u /* dups: a thread per slice; the last bug showed within 20 000 */
#define SLICE_LEN 64u
#define QN 64u /* hand-over queue recv -> release thread (more than the slots) */

struct run {
	struct sv2shm_producer *p;
	struct sv2shm_consumer *c;
	int id;
	bool copies; /* the release thread releases a copy too, racing the original */
	bool dups;   /* every slice: copies race, and recv opens its descriptor again meanwhile */
	uint64_t n;  /* slices */
	/* recv -> release hand-over */
	struct sv2shm_slice q[QN];
	_Atomic unsigned qh, qt;
	/* results */
	_Atomic int prod_err, recv_err, rel_err;
	_Atomic unsigned long received, released, copies_refused, dups_refused;
	char what[160];
};

static uint64_t key_of(uint64_t i)
{
	return pat_key(0x5eed, i);
}

static void *producer_main(void *arg)
{
	struct run *x = arg;
	struct sv2shm_buffer *b = sv2shm_producer_buffer(x->p);
	for (uint64_t i = 0; i < x->n; i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, SLICE_LEN);
		if (!w) {
			x->prod_err = sv2shm_buffer_last_error(b);
			snprintf(x->what, sizeof(x->what), "get_writable(slice %" PRIu64 "): %s", i,
				 sv2shm_strerror(x->prod_err));
			return NULL;
		}
		pat_fill(w, key_of(i), 0, SLICE_LEN);
		struct sv2shm_slice s;
		int r = sv2shm_buffer_get_data_owned(b, &s);
		while (r == 0 && (r = sv2shm_producer_publish(x->p, &s, &x->id, 1, 0)) == -EAGAIN)
			ipc_sleep_us(1); /* at its limit (REFUSE): the consumer catches up */
		if (r != 0) {
			x->prod_err = r < 0 ? r : -EPIPE;
			snprintf(x->what, sizeof(x->what), "publish(slice %" PRIu64 "): %d (%s)", i, r,
				 r < 0 ? sv2shm_strerror(r) : "not delivered");
			sv2shm_slice_release(&s);
			return NULL;
		}
	}
	return NULL;
}

/* The descriptor of slice s (just handed to the release thread), opened
 * again through sv2shm_region_open() until its release has run: held
 * (-EEXIST, try again), then released (-ENOENT), or its slot moved on
 * (-ESTALE; -EACCES once the producer's view dropped us; -EFAULT when its
 * record already names the next slice's bytes) — never a second hold.
 * Returns 0, or -1 with recv_err set. */
static int reopen(struct run *x, const struct sv2shm_slice *s, uint64_t i)
{
	struct sv2shm_region *rg = sv2shm_consumer_region(x->c);
	const struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
				      .kind = SV2SHM_DESC_POOL,
				      .slot = s->_slot,
				      .generation = s->_gen,
				      .region_id = rg->id,
				      .offset = (uint64_t)(s->data - rg->data),
				      .length = s->len};
	uint8_t raw[SV2SHM_DESC_SIZE];
	struct sv2shm_slice dup;
	int r = sv2shm_desc_encode(&d, raw);
	/* Again and again while it is held: the open that lands right after
	 * the release is the one that races the copy's release. */
	for (uint64_t t0 = ipc_now_ns(); r == 0;) {
		r = sv2shm_region_open(rg, raw, (unsigned)sv2shm_consumer_id(x->c), &dup);
		if (r != -EEXIST || ipc_now_ns() - t0 > 5000000000u || x->rel_err)
			break;
		r = 0;
	}
	if (r == -ENOENT || r == -ESTALE || r == -EACCES || r == -EFAULT) {
		x->dups_refused++;
		return 0;
	}
	if (r == 0)
		sv2shm_slice_release(&dup);
	x->recv_err = r == 0 ? -EEXIST : r;
	snprintf(x->what, sizeof(x->what), "a duplicate of slice %" PRIu64 " opened again: %d (%s)", i, r,
		 r == 0 ? "a second hold" : sv2shm_strerror(r));
	return -1;
}

static void *recv_main(void *arg)
{
	struct run *x = arg;
	for (uint64_t i = 0; i < x->n; i++) {
		struct sv2shm_slice s;
		int r = sv2shm_consumer_recv(x->c, &s, 5000);
		if (r != 1) {
			x->recv_err = r == 0 ? -ETIMEDOUT : r;
			snprintf(x->what, sizeof(x->what), "recv(slice %" PRIu64 "): %d (%s)", i, r,
				 r == 0 ? "timeout" : sv2shm_strerror(r));
			return NULL;
		}
		if (s.len != SLICE_LEN || pat_check(s.data, key_of(i), s.len) != s.len) {
			x->recv_err = -EBADMSG;
			snprintf(x->what, sizeof(x->what), "slice %" PRIu64 ": wrong bytes", i);
			return NULL;
		}
		while (atomic_load(&x->qh) - atomic_load(&x->qt) >= QN)
			ipc_sleep_us(1);
		struct sv2shm_slice mine = s;
		x->q[atomic_load(&x->qh) % QN] = s;
		atomic_fetch_add(&x->qh, 1u);
		x->received++;
		if (x->dups && reopen(x, &mine, i) < 0)
			return NULL;
	}
	return NULL;
}

struct copy_arg {
	struct sv2shm_slice s;
	_Atomic int r;
	_Atomic int *after; /* not NULL: release once *after is set (the original's release returned) */
};

static void *release_copy(void *arg)
{
	struct copy_arg *a = arg;
	for (uint64_t t0 = ipc_now_ns(); a->after && !atomic_load(a->after) && ipc_now_ns() - t0 < 5000000000u;)
		;
	a->r = sv2shm_slice_release(&a->s);
	return NULL;
}

static void *release_main(void *arg)
{
	struct run *x = arg;
	for (uint64_t i = 0; i < x->n; i++) {
		while (atomic_load(&x->qt) == atomic_load(&x->qh)) {
			if (x->recv_err || x->prod_err)
				return NULL;
			ipc_sleep_us(1);
		}
		struct sv2shm_slice s = x->q[atomic_load(&x->qt) % QN];
		atomic_fetch_add(&x->qt, 1u);
		int r;
		if (x->copies && (x->dups || (i % 64u) == 0)) {
			/* Two copies released at once on two threads: one wins. */
			/* dups: the copy goes right after the original, while the
			 * receiving thread opens the descriptor again. */
			_Atomic int done = 0;
			struct copy_arg a = {.s = s, .after = x->dups ? &done : NULL};
			pthread_t t;
			if (pthread_create(&t, NULL, release_copy, &a) != 0) {
				x->rel_err = -EAGAIN;
				return NULL;
			}
			r = sv2shm_slice_release(&s);
			atomic_store(&done, 1);
			pthread_join(t, NULL);
			/* The loser finds the slice released (-EALREADY) or, if the
			 * slot was reused and its next generation opened meanwhile,
			 * stale (-ESTALE); either way it changed nothing. */
			int other = a.r;
			bool lost_r = r == -EALREADY || r == -ESTALE, lost_o = other == -EALREADY || other == -ESTALE;
			if (!((r == 0 && lost_o) || (lost_r && other == 0))) {
				x->rel_err = -EINVAL;
				snprintf(x->what, sizeof(x->what), "two copies of slice %" PRIu64 " released: %d and %d",
					 i, r, other);
				return NULL;
			}
			x->copies_refused++;
			r = 0;
		} else {
			r = sv2shm_slice_release(&s);
		}
		if (r != 0) {
			x->rel_err = r;
			snprintf(x->what, sizeof(x->what), "release(slice %" PRIu64 "): %s", i, sv2shm_strerror(r));
			return NULL;
		}
		x->released++;
	}
	return NULL;
}

static void run_threads(bool copies, bool dups, unsigned spin)
{
	int sv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = 1u << 16;
	o.pool.slots = 2;
	o.pool.policy = SV2SHM_POOL_WAIT;
	o.pool.wait_timeout_ms = 5000;
	o.pool.wait_spin_us = spin; /* SPIN_NONE: every wait sleeps, every release wakes it */
	o.max_held = 2;
	o.on_limit = SV2SHM_LIMIT_REFUSE;
	struct run *x = calloc(1, sizeof(*x));
	assert_non_null(x);
	x->copies = copies || dups;
	x->dups = dups;
	x->n = dups ? N_DUPS : N_SLICES;
	assert_int_equal(sv2shm_producer_new(&o, &x->p), 0);
	x->id = sv2shm_producer_add_consumer(x->p, sv[0]);
	assert_true(x->id > 0);
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	co.spin_us = spin;
	assert_int_equal(sv2shm_consumer_new(sv[1], &co, &x->c), 0);

	pthread_t tp, tr, tl;
	assert_int_equal(pthread_create(&tp, NULL, producer_main, x), 0);
	assert_int_equal(pthread_create(&tr, NULL, recv_main, x), 0);
	assert_int_equal(pthread_create(&tl, NULL, release_main, x), 0);
	pthread_join(tp, NULL);
	pthread_join(tr, NULL);
	pthread_join(tl, NULL);
	printf("  copies %d, dups %d, spin %u: received %lu, released %lu, copy races %lu, duplicates refused %lu\n",
	       copies, dups, spin, x->received, x->released, x->copies_refused, x->dups_refused);
	if (x->prod_err || x->recv_err || x->rel_err)
		fail_msg("producer %d, recv %d, release %d: %s", x->prod_err, x->recv_err, x->rel_err, x->what);
	assert_int_equal(x->received, x->n);
	assert_int_equal(x->released, x->n);
	if (dups)
		assert_int_equal(x->dups_refused, x->n);
	/* Every release was seen: nothing held, every slot free. */
	assert_int_equal(sv2shm_producer_held(x->p, x->id), 0);
	assert_int_equal(ipc_mask(x->p), 0);
	assert_int_equal(sv2shm_consumer_free(x->c), 0);
	assert_int_equal(sv2shm_producer_destroy(x->p), 0);
	free(x);
}

static void test_release_thread_sleeping(void **state)
{
	(void)state;
	run_threads(false, false, SV2SHM_SPIN_NONE);
}

static void test_release_thread_spinning(void **state)
{
	(void)state;
	run_threads(false, false, 0);
}

static void test_release_copies_race(void **state)
{
	(void)state;
	run_threads(true, false, SV2SHM_SPIN_NONE);
}

static void test_reopen_during_release_race(void **state)
{
	(void)state;
	run_threads(true, true, 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_release_thread_sleeping),
		cmocka_unit_test(test_release_thread_spinning),
		cmocka_unit_test(test_release_copies_race),
		cmocka_unit_test(test_reopen_during_release_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
