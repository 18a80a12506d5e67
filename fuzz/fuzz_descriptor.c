/* libFuzzer entry points of the `descriptor` target (target_descriptor.c):
 * the producers and regions it fuzzes against are made once, up front. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sv2shm_fuzz_descriptor_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_descriptor(data, size);
}
