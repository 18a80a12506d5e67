/* Tracing (the seed's `debug` feature): compiled in with -Dtrace=true. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

static const char *event_name(int ev)
{
	switch (ev) {
	case SV2SHM_TRACE_CLAIM:
		return "claim";
	case SV2SHM_TRACE_RELEASE:
		return "release";
	case SV2SHM_TRACE_MODE:
		return "mode";
	case SV2SHM_TRACE_RESET:
		return "reset";
	case SV2SHM_TRACE_SYSTEM:
		return "system";
	default:
		return "?";
	}
}

void trace_emit(const struct sv2shm_pool *p, sv2shm_trace_fn fn, void *user, int event, int slot, uint64_t a,
		uint64_t b)
{
	struct sv2shm_trace_record rec = {
		.time_ns = mono_ns(), .event = event, .slot = slot, .a = a, .b = b};
	if (fn) {
		fn(p, &rec, user);
		return;
	}
	if (event == SV2SHM_TRACE_MODE) {
		fprintf(stderr, "[sv2shm %" PRIu64 ".%09" PRIu64 "] pool %p: %s -> %s\n", rec.time_ns / 1000000000u,
			rec.time_ns % 1000000000u, (const void *)p, sv2shm_pool_mode_name((int)a),
			sv2shm_pool_mode_name((int)b));
		return;
	}
	fprintf(stderr, "[sv2shm %" PRIu64 ".%09" PRIu64 "] pool %p: %s slot %d offset %" PRIu64 " length %" PRIu64 "\n",
		rec.time_ns / 1000000000u, rec.time_ns % 1000000000u, (const void *)p, event_name(event), slot, a, b);
}

SV2SHM_API bool sv2shm_trace_enabled(void)
{
	return SV2SHM_TRACE != 0;
}
