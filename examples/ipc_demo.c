/*
 * Multi-process demo: one producer process writes Sv2 frames into a shared
 * pool and publishes each to two consumer processes (fan-out); the consumers
 * read the frames in place, check them, and release them; the producer shows
 * its slot map as it goes. Exits 1 on any mismatch.
 *
 *   ipc_demo [FRAMES]      (default 2000)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sv2shm/ipc.h>

#define CONSUMERS 2

/* Payload byte i of frame n: anything a consumer can recompute. */
static uint8_t pattern(uint32_t n, size_t i)
{
	return (uint8_t)(n * 31u + i * 7u);
}

static int consumer_main(int sock, int index)
{
	struct sv2shm_consumer *c;
	int r = sv2shm_consumer_new(sock, NULL, &c);
	if (r < 0) {
		fprintf(stderr, "consumer %d: cannot attach: %s\n", index, sv2shm_strerror(r));
		return 1;
	}
	uint32_t expect = 0;
	uint64_t bytes = 0;
	int bad = 0;
	struct sv2shm_slice s;
	while ((r = sv2shm_consumer_recv(c, &s, 10000)) == 1) {
		/* An Sv2 frame: extension_type u16, msg_type u8, msg_length u24, payload. */
		uint32_t len = s.len >= 6 ? (uint32_t)(s.data[3] | s.data[4] << 8 | s.data[5] << 16) : 0;
		uint32_t n = 0;
		if (s.len >= 10)
			memcpy(&n, s.data + 6, 4);
		if (s.len < 10 || len != s.len - 6 || n != expect || s.data[2] != (uint8_t)(n % 200)) {
			bad++;
		} else {
			for (size_t i = 10; i < s.len; i++)
				if (s.data[i] != pattern(n, i)) {
					bad++;
					break;
				}
		}
		expect++;
		bytes += s.len;
		sv2shm_slice_release(&s);
	}
	printf("consumer %d (holder bit %d, releases via %s): %u frames, %llu bytes, %d bad, ended: %s\n", index,
	       sv2shm_consumer_id(c), sv2shm_consumer_notify_name(c), expect, (unsigned long long)bytes, bad,
	       sv2shm_strerror(r));
	sv2shm_consumer_free(c);
	return bad == 0 && r == -EPIPE ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: %s [FRAMES]\n  a producer and %d consumer processes passing Sv2 frames through a shared pool\n",
		       argv[0], CONSUMERS);
		return 0;
	}
	long frames = argc > 1 ? strtol(argv[1], NULL, 10) : 2000;
	if (frames <= 0 || frames > 100000000) {
		fprintf(stderr, "FRAMES must be 1 .. 100000000\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct sv2shm_producer_options o = {
		.pool = {.capacity = 256 * 1024, .slots = 8, .policy = SV2SHM_POOL_WAIT, .wait_timeout_ms = 5000},
		/* Every frame to both consumers: no per-consumer limit (a consumer
		 * may hold every other slot), the producer WAITs for room instead. */
		.max_held = 8};
	struct sv2shm_producer *p;
	int r = sv2shm_producer_new(&o, &p);
	if (r < 0) {
		fprintf(stderr, "producer: %s\n", sv2shm_strerror(r));
		return 1;
	}
	int ids[CONSUMERS];
	pid_t pids[CONSUMERS];
	for (int k = 0; k < CONSUMERS; k++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			perror("socketpair");
			return 1;
		}
		pids[k] = fork();
		if (pids[k] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[k] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(sv[0]);
			_exit(consumer_main(sv[1], k + 1));
		}
		close(sv[1]);
		ids[k] = sv2shm_producer_add_consumer(p, sv[0]);
		if (ids[k] < 0) {
			fprintf(stderr, "add_consumer: %s\n", sv2shm_strerror(ids[k]));
			return 1;
		}
	}
	printf("producer: pool of %u bytes, %u slots, %d consumers, wakes via %s\n", (unsigned)o.pool.capacity,
	       o.pool.slots, CONSUMERS, sv2shm_producer_notify_name(p));

	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	struct sv2shm_pool *pool = sv2shm_producer_pool(p);
	unsigned seed = 1;
	for (uint32_t n = 0; n < (uint32_t)frames; n++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t payload = 4 + (seed >> 8) % 16000;
		uint8_t hdr[SV2SHM_FRAME_HEADER_SIZE];
		sv2shm_frame_header_encode(hdr, 0, (uint8_t)(n % 200), payload);
		uint8_t *w = sv2shm_buffer_get_writable(b, sizeof(hdr) + payload);
		if (!w) {
			fprintf(stderr, "producer: frame %u: %s\n", n, sv2shm_strerror(sv2shm_buffer_last_error(b)));
			return 1;
		}
		memcpy(w, hdr, sizeof(hdr));
		memcpy(w + 6, &n, 4);
		for (size_t i = 10; i < sizeof(hdr) + payload; i++)
			w[i] = pattern(n, i);
		struct sv2shm_slice s;
		sv2shm_buffer_get_data_owned(b, &s);
		r = sv2shm_producer_publish(p, &s, ids, CONSUMERS, 0);
		if (r != 0) { /* > 0: a consumer did not get it (it is gone) */
			fprintf(stderr, "producer: publish %u: %s\n", n, sv2shm_strerror(r));
			return 1;
		}
		if (n < 12 || n % (uint32_t)(frames / 8 + 1) == 0) {
			char map[SV2SHM_MAX_SLOTS + 1];
			sv2shm_pool_slot_map(pool, map, sizeof(map));
			printf("frame %-6u %5u bytes  %s  %s\n", n, (unsigned)(sizeof(hdr) + payload), map,
			       sv2shm_pool_mode_name(sv2shm_pool_mode(pool)));
		}
	}
	/* Wait for the consumers to let go of everything, then hang up. */
	struct sv2shm_pool_stats st;
	for (int i = 0; i < 5000; i++) {
		sv2shm_pool_stats(pool, &st);
		if (st.mask == 0)
			break;
		usleep(1000);
	}
	sv2shm_pool_stats(pool, &st);
	printf("producer: %llu frames from the pool, %llu from system memory, %llu waits for a free slot, mask %llx\n",
	       (unsigned long long)st.from_pool, (unsigned long long)st.from_system, (unsigned long long)st.waits,
	       (unsigned long long)st.mask);
	int fail = st.mask != 0 || st.from_pool + st.from_system != (uint64_t)frames;
	if (sv2shm_producer_destroy(p) < 0)
		fail = 1;
	for (int k = 0; k < CONSUMERS; k++) {
		int status;
		if (waitpid(pids[k], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail = 1;
	}
	printf("%s\n", fail ? "demo FAILED" : "demo OK: every frame reached both consumers intact, every slot came back");
	return fail;
}
