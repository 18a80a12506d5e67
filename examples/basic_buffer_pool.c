/*
 * basic_buffer_pool — the seed's basic_buffer_pool.rs in C.
 *
 *  1. create a pool of 32 bytes (8 slots, the seed's default);
 *  2. get a writable area and write "Ciao, mundo!" into it;
 *  3. look at the data by reference (nothing is taken);
 *  4. take it as an owned slice (the slice gets a slot of the pool);
 *  5. release the slice; the slot is free again.
 *
 * The slot map is printed the way the seed's README draws it. Every step is
 * checked; the program exits 1 on any mismatch.
 *
 * Run: meson test -C build example_basic_buffer_pool --verbose
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sv2shm/sv2shm.h"

static int failures;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                      \
		}                                                                        \
	} while (0)

/* Print the slot map and mode; check the map is `want`. */
static void show(const struct sv2shm_pool *p, const char *want, const char *what)
{
	char map[SV2SHM_MAX_SLOTS + 1];
	CHECK(sv2shm_pool_slot_map(p, map, sizeof(map)) == 8);
	printf("  %s  %-10s  %s\n", map, sv2shm_pool_mode_name(sv2shm_pool_mode(p)), what);
	CHECK(strcmp(map, want) == 0);
}

int main(void)
{
	printf("basic_buffer_pool: a 32-byte pool, one message written, viewed, taken and released\n\n");

	/* 1. A pool of 32 bytes with the default 8 slots. */
	struct sv2shm_pool_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.capacity = 32;
	struct sv2shm_pool *pool = NULL;
	int r = sv2shm_pool_new(&opts, &pool);
	if (r < 0) {
		fprintf(stderr, "sv2shm_pool_new: %s\n", sv2shm_strerror(r));
		return 1;
	}
	struct sv2shm_buffer *buf = sv2shm_pool_buffer(pool);
	show(pool, "--------", "pool created (32 bytes, 8 slots)");
	CHECK(sv2shm_pool_mode(pool) == SV2SHM_MODE_BACK);

	/* 2. Write 12 bytes through get_writable. */
	static const char msg[] = "Ciao, mundo!";
	const size_t n = sizeof(msg) - 1;
	uint8_t *w = sv2shm_buffer_get_writable(buf, n);
	CHECK(w != NULL);
	if (!w)
		return 1;
	memcpy(w, msg, n);
	printf("\nwrote %zu bytes: \"%s\"; len() = %zu\n", n, msg, sv2shm_buffer_len(buf));
	CHECK(sv2shm_buffer_len(buf) == 12);

	/* 3. By reference: a view, nothing is taken yet. */
	size_t vlen = 0;
	const uint8_t *view = sv2shm_buffer_get_data_by_ref(buf, 12, &vlen);
	printf("get_data_by_ref(12): %zu bytes \"%.*s\"; len() still %zu\n", vlen, (int)vlen, (const char *)view,
	       sv2shm_buffer_len(buf));
	CHECK(vlen == 12 && memcmp(view, msg, 12) == 0);
	CHECK(sv2shm_buffer_len(buf) == 12);
	show(pool, "--------", "written but not taken: no slot is claimed yet");

	/* 4. Take the bytes as an owned slice. */
	struct sv2shm_slice slice;
	CHECK(sv2shm_buffer_get_data_owned(buf, &slice) == 0);
	printf("\nget_data_owned(): a %s slice of %zu bytes; len() = %zu\n",
	       sv2shm_slice_kind(&slice) == SV2SHM_SLICE_POOL ? "pool" : "system-memory", slice.len,
	       sv2shm_buffer_len(buf));
	CHECK(sv2shm_buffer_len(buf) == 0);
	CHECK(sv2shm_slice_kind(&slice) == SV2SHM_SLICE_POOL);
	static const uint8_t expect[12] = {67, 105, 97, 111, 44, 32, 109, 117, 110, 100, 111, 33};
	printf("  data: \"%.*s\" = [", (int)slice.len, (const char *)slice.data);
	for (size_t i = 0; i < slice.len; i++)
		printf("%s%u", i ? ", " : "", slice.data[i]);
	printf("]\n");
	CHECK(slice.len == sizeof(expect) && memcmp(slice.data, expect, sizeof(expect)) == 0);
	uint64_t off = 99, len = 99;
	CHECK(sv2shm_pool_slot_range(pool, 0, &off, &len) == 1);
	printf("  slot 0 holds bytes [%" PRIu64 ", %" PRIu64 ") of the pool\n", off, off + len);
	CHECK(off == 0 && len == 12);
	show(pool, "1-------", "slot 0 holds the 1st slice");
	CHECK(!sv2shm_buffer_is_droppable(buf));
	CHECK(sv2shm_pool_destroy(pool) == -EBUSY); /* refused while a slice is live */

	/* 5. Release it: the slot is free again, and the pool can go. */
	CHECK(sv2shm_slice_release(&slice) == 0);
	show(pool, "--------", "slice released");
	CHECK(sv2shm_slice_release(&slice) == -EALREADY); /* a second release is refused */
	CHECK(sv2shm_buffer_is_droppable(buf));

	/* The next message reuses the region from offset 0. */
	CHECK(sv2shm_buffer_write_all(buf, "Ciao!", 5) == 0);
	CHECK(sv2shm_buffer_get_data_owned(buf, &slice) == 0);
	CHECK(sv2shm_pool_slot_range(pool, 0, &off, &len) == 1);
	printf("\nnext message \"%.*s\" goes to slot 0 at offset %" PRIu64 " again\n", (int)slice.len,
	       (const char *)slice.data, off);
	CHECK(off == 0 && len == 5 && memcmp(slice.data, "Ciao!", 5) == 0);
	show(pool, "2-------", "slot 0 holds the 2nd slice");
	CHECK(sv2shm_slice_release(&slice) == 0);

	struct sv2shm_pool_stats st;
	CHECK(sv2shm_pool_stats(pool, &st) == 0);
	printf("\nstats: %" PRIu64 " slices from the pool, %" PRIu64 " from system memory, %" PRIu64 " live\n",
	       st.from_pool, st.from_system, st.live);
	CHECK(st.from_pool == 2 && st.from_system == 0 && st.live == 0);
	CHECK(sv2shm_pool_destroy(pool) == 0);

	if (failures) {
		fprintf(stderr, "basic_buffer_pool: %d check(s) failed\n", failures);
		return 1;
	}
	printf("basic_buffer_pool: all checks passed\n");
	return 0;
}
