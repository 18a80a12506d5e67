/* libFuzzer entry point of the `faster` target (target_faster.c). */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_faster(data, size);
}
