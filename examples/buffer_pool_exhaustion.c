/*
 * buffer_pool_exhaustion — the seed's buffer_pool_exhaustion.rs in C.
 *
 * Slices are taken and kept until the pool is exhausted; from then on they
 * come from system memory (ALLOC MODE), and as soon as space is released the
 * pool serves them again. The slot map is printed after every step in the
 * seed README's diagram style:
 *
 *   12345678  BACK MODE
 *   12345678  ALLOC MODE   (new bytes allocated in a new space in the heap)
 *
 * Part 1: all 8 slots taken (the README's case 1), then every slice released
 *         (case 2: the pool resets and goes back to BACK MODE).
 * Part 2: the seed example itself: an 8-byte pool goes back -> front -> alloc.
 * Part 3: the bytes run out before the slots do.
 *
 * Every step is checked; the program exits 1 on any mismatch.
 */
#include <errno.h>
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

#define MAX_HELD 16

/* The slices a part keeps, with the byte each was filled with. */
struct held {
	struct sv2shm_slice s[MAX_HELD];
	uint8_t fill[MAX_HELD];
	size_t n;
};

static struct sv2shm_pool *new_pool(uint64_t capacity)
{
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = capacity;
	o.slots = 8;
	o.policy = SV2SHM_POOL_FALLBACK; /* the seed's: fall back to system memory */
	struct sv2shm_pool *p = NULL;
	int r = sv2shm_pool_new(&o, &p);
	if (r < 0) {
		fprintf(stderr, "sv2shm_pool_new: %s\n", sv2shm_strerror(r));
		return NULL;
	}
	return p;
}

/* Print "map  MODE  note" and check map and mode. */
static void show(const struct sv2shm_pool *p, const char *want_map, int want_mode, const char *note)
{
	char map[SV2SHM_MAX_SLOTS + 1];
	CHECK(sv2shm_pool_slot_map(p, map, sizeof(map)) == 8);
	int mode = sv2shm_pool_mode(p);
	printf("  %s  %-10s  %s\n", map, sv2shm_pool_mode_name(mode), note);
	if (strcmp(map, want_map) != 0) {
		fprintf(stderr, "    expected map %s\n", want_map);
		failures++;
	}
	if (want_mode >= 0 && mode != want_mode) {
		fprintf(stderr, "    expected %s\n", sv2shm_pool_mode_name(want_mode));
		failures++;
	}
}

/* Write `len` bytes of `fill`, take the slice, keep it; check where it went. */
static void take(struct sv2shm_pool *p, struct held *h, size_t len, uint8_t fill, int want_kind)
{
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t *w = sv2shm_buffer_get_writable(b, len);
	CHECK(w != NULL);
	if (!w || h->n == MAX_HELD)
		return;
	memset(w, fill, len);
	struct sv2shm_slice *s = &h->s[h->n];
	CHECK(sv2shm_buffer_get_data_owned(b, s) == 0);
	h->fill[h->n++] = fill;
	CHECK(s->len == len);
	for (size_t i = 0; i < s->len; i++)
		CHECK(s->data[i] == fill);
	int kind = sv2shm_slice_kind(s);
	if (kind != want_kind) {
		fprintf(stderr, "    slice '%c' is a %s slice, expected %s\n", fill,
			kind == SV2SHM_SLICE_POOL ? "pool" : "system", want_kind == SV2SHM_SLICE_POOL ? "pool" : "system");
		failures++;
	}
}

/* Release the i-th kept slice (checking its bytes never changed). */
static void drop(struct held *h, size_t i)
{
	struct sv2shm_slice *s = &h->s[i];
	for (size_t j = 0; j < s->len; j++)
		CHECK(s->data[j] == h->fill[i]);
	CHECK(sv2shm_slice_release(s) == 0);
}

static void drop_all(struct held *h)
{
	for (size_t i = 0; i < h->n; i++)
		if (sv2shm_slice_kind(&h->s[i]) != SV2SHM_SLICE_NONE)
			drop(h, i);
	h->n = 0;
}

static const char *where(const struct sv2shm_slice *s)
{
	return sv2shm_slice_kind(s) == SV2SHM_SLICE_POOL ? "from the pool" : "from system memory (heap)";
}

static void part1(void)
{
	printf("Part 1: 8 slots, 64 bytes; take 1-byte slices and keep them all\n");
	struct sv2shm_pool *p = new_pool(64);
	if (!p) {
		failures++;
		return;
	}
	struct held h = {.n = 0};
	static const char *const maps[] = {"1-------", "12------", "123-----", "1234----",
					   "12345---", "123456--", "1234567-", "12345678"};
	show(p, "--------", SV2SHM_MODE_BACK, "");
	for (int i = 0; i < 8; i++) {
		take(p, &h, 1, (uint8_t)('A' + i), SV2SHM_SLICE_POOL);
		char note[64];
		snprintf(note, sizeof(note), "slice '%c' %s%s", 'A' + i, where(&h.s[h.n - 1]),
			 i == 7 ? " (the pool is now full)" : "");
		show(p, maps[i], SV2SHM_MODE_BACK, note);
	}
	for (int i = 8; i < 11; i++) {
		take(p, &h, 1, (uint8_t)('A' + i), SV2SHM_SLICE_SYSTEM);
		char note[80];
		snprintf(note, sizeof(note), "slice '%c' %s", 'A' + i, where(&h.s[h.n - 1]));
		show(p, "12345678", SV2SHM_MODE_ALLOC, note);
	}
	struct sv2shm_pool_stats st;
	CHECK(sv2shm_pool_stats(p, &st) == 0);
	CHECK(st.from_pool == 8 && st.from_system == 3 && st.live == 8);

	drop_all(&h);
	show(p, "--------", -1, "RESET: every slice released");
	take(p, &h, 1, 'L', SV2SHM_SLICE_POOL);
	show(p, "9-------", SV2SHM_MODE_BACK, "slice 'L' from the pool again, at offset 0");
	take(p, &h, 1, 'M', SV2SHM_SLICE_POOL);
	show(p, "9a------", SV2SHM_MODE_BACK, "slice 'M' from the pool");
	uint64_t off, len;
	CHECK(sv2shm_pool_slot_range(p, 0, &off, &len) == 1 && off == 0 && len == 1);
	CHECK(sv2shm_pool_stats(p, &st) == 0);
	CHECK(st.resets >= 1);
	drop_all(&h);
	CHECK(sv2shm_pool_destroy(p) == 0);
}

static void part2(void)
{
	printf("\nPart 2 (the seed's example): 8 slots, 8 bytes; back -> front -> alloc\n");
	struct sv2shm_pool *p = new_pool(8);
	if (!p) {
		failures++;
		return;
	}
	struct held h = {.n = 0};
	show(p, "--------", SV2SHM_MODE_BACK, "");
	static const char *const maps_a[] = {"1-------", "12------", "123-----", "1234----"};
	for (int i = 0; i < 4; i++) {
		take(p, &h, 1, 'a', SV2SHM_SLICE_POOL);
		show(p, maps_a[i], SV2SHM_MODE_BACK, "\"a\" from the pool");
	}
	drop(&h, 0); /* the oldest */
	show(p, "-234----", SV2SHM_MODE_BACK, "the first slice released");
	take(p, &h, 1, 'b', SV2SHM_SLICE_POOL);
	show(p, "5234----", SV2SHM_MODE_BACK, "\"b\" from the pool, after the back run (offset 4)");
	static const char *const maps_c[] = {"52346---", "523467--", "5234678-", "52346789"};
	for (int i = 0; i < 4; i++) {
		take(p, &h, 1, 'c', SV2SHM_SLICE_POOL);
		show(p, maps_c[i], i < 3 ? SV2SHM_MODE_BACK : SV2SHM_MODE_FRONT,
		     i < 3 ? "\"c\" from the pool" : "\"c\" from the pool: back is full, SWITCH TO FRONT MODE");
	}
	uint64_t off, len;
	CHECK(sv2shm_pool_slot_range(p, 7, &off, &len) == 1);
	CHECK(off == 0 && len == 1); /* the front slice reuses the freed first byte */
	take(p, &h, 1, 'd', SV2SHM_SLICE_SYSTEM);
	show(p, "52346789", SV2SHM_MODE_ALLOC, "\"d\" from system memory: back and front are full");
	drop_all(&h);
	show(p, "--------", -1, "every slice released");
	CHECK(sv2shm_pool_destroy(p) == 0);
}

static void part3(void)
{
	printf("\nPart 3: 8 slots, 16 bytes; 5-byte slices run out of bytes first\n");
	struct sv2shm_pool *p = new_pool(16);
	if (!p) {
		failures++;
		return;
	}
	struct held h = {.n = 0};
	show(p, "--------", SV2SHM_MODE_BACK, "");
	take(p, &h, 5, '1', SV2SHM_SLICE_POOL);
	show(p, "1-------", SV2SHM_MODE_BACK, "5 bytes from the pool (bytes 0..4)");
	take(p, &h, 5, '2', SV2SHM_SLICE_POOL);
	show(p, "12------", SV2SHM_MODE_BACK, "5 bytes from the pool (bytes 5..9)");
	take(p, &h, 5, '3', SV2SHM_SLICE_POOL);
	show(p, "123-----", SV2SHM_MODE_BACK, "5 bytes from the pool (bytes 10..14)");
	take(p, &h, 5, '4', SV2SHM_SLICE_SYSTEM);
	show(p, "123-----", SV2SHM_MODE_ALLOC, "5 bytes from system memory: 1 byte left, slots free");
	drop(&h, 0);
	show(p, "-23-----", SV2SHM_MODE_ALLOC, "the first slice released (bytes 0..4 free)");
	take(p, &h, 5, '5', SV2SHM_SLICE_POOL);
	show(p, "423-----", SV2SHM_MODE_FRONT, "5 bytes from the pool again, at the front (bytes 0..4)");
	uint64_t off, len;
	CHECK(sv2shm_pool_slot_range(p, 0, &off, &len) == 1 && off == 0 && len == 5);
	drop_all(&h);
	CHECK(sv2shm_pool_destroy(p) == 0);
}

int main(void)
{
	printf("buffer_pool_exhaustion: what happens when the pool runs out\n\n");
	part1();
	part2();
	part3();
	if (failures) {
		fprintf(stderr, "buffer_pool_exhaustion: %d check(s) failed\n", failures);
		return 1;
	}
	printf("\nbuffer_pool_exhaustion: all checks passed\n");
	return 0;
}
