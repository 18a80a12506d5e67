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
 * overwrite the record of the slot's next generation); after the drain the
 * producer sees nothing held.
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

#define N_SLICES 60000u
#define SLICE_LEN 64u
#define QN 64u /* hand-over queue recv -> release thread (more than the slots) */

struct run {
	struct sv2shm_producer *p;
	struct sv2shm_consumer *c;
	int id;
	bool copies; /* the release thread releases a copy too, racing the original */
	/* recv -> release hand-over */
	struct sv2shm_slice q[QN];
	_Atomic unsigned qh, qt;
	/* results */
	_Atomic int prod_err, recv_err, rel_err;
	_Atomic unsigned long received, released, copies_refused;
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
	for (uint64_t i = 0; i < N_SLICES; i++) {
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

static void *recv_main(void *arg)
{
	struct run *x = arg;
	for (uint64_t i = 0; i < N_SLICES; i++) {
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
		x->q[atomic_load(&x->qh) % QN] = s;
		atomic_fetch_add(&x->qh, 1u);
		x->received++;
	}
	return NULL;
}

struct copy_arg {
	struct sv2shm_slice s;
	_Atomic int r;
};

static void *release_copy(void *arg)
{
	struct copy_arg *a = arg;
	a->r = sv2shm_slice_release(&a->s);
	return NULL;
}

static void *release_main(void *arg)
{
	struct run *x = arg;
	for (uint64_t i = 0; i < N_SLICES; i++) {
		while (atomic_load(&x->qt) == atomic_load(&x->qh)) {
			if (x->recv_err || x->prod_err)
				return NULL;
			ipc_sleep_us(1);
		}
		struct sv2shm_slice s = x->q[atomic_load(&x->qt) % QN];
		atomic_fetch_add(&x->qt, 1u);
		int r;
		if (x->copies && (i % 64u) == 0) {
			/* Two copies released at once on two threads: one wins. */
			struct copy_arg a = {.s = s};
			pthread_t t;
			if (pthread_create(&t, NULL, release_copy, &a) != 0) {
				x->rel_err = -EAGAIN;
				return NULL;
			}
			r = sv2shm_slice_release(&s);
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

static void run_threads(bool copies, unsigned spin)
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
	x->copies = copies;
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
	printf("  copies %d, spin %u: received %lu, released %lu, copy races %lu\n", copies, spin, x->received,
	       x->released, x->copies_refused);
	if (x->prod_err || x->recv_err || x->rel_err)
		fail_msg("producer %d, recv %d, release %d: %s", x->prod_err, x->recv_err, x->rel_err, x->what);
	assert_int_equal(x->received, N_SLICES);
	assert_int_equal(x->released, N_SLICES);
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
	run_threads(false, SV2SHM_SPIN_NONE);
}

static void test_release_thread_spinning(void **state)
{
	(void)state;
	run_threads(false, 0);
}

static void test_release_copies_race(void **state)
{
	(void)state;
	run_threads(true, SV2SHM_SPIN_NONE);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_release_thread_sleeping),
		cmocka_unit_test(test_release_thread_spinning),
		cmocka_unit_test(test_release_copies_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
