/* libFuzzer entry point of the `frame_decoder` target (target_frame_decoder.c). */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_frame_decoder(data, size);
}
