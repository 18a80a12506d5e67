/* libFuzzer entry point of the `protocol` target (target_protocol.c): the
 * broker daemon's logic (daemon/broker.c) driven through a fake environment. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_protocol(data, size);
}
