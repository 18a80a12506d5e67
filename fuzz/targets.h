/* The fuzz targets as plain functions: libFuzzer's fuzz_<name>.c and the
 * regression runner tests/test_fuzz_regress.c call these. Each returns 0;
 * a broken property aborts the process. */
#ifndef SV2SHM_FUZZ_TARGETS_H
#define SV2SHM_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

int sv2shm_fuzz_faster(const uint8_t *data, size_t size);
int sv2shm_fuzz_slower(const uint8_t *data, size_t size);
int sv2shm_fuzz_cross_process(const uint8_t *data, size_t size);
int sv2shm_fuzz_descriptor(const uint8_t *data, size_t size);
int sv2shm_fuzz_frame_decoder(const uint8_t *data, size_t size);
int sv2shm_fuzz_hostile(const uint8_t *data, size_t size);
int sv2shm_fuzz_protocol(const uint8_t *data, size_t size);

/* One-time setup a target may want before libFuzzer starts any thread
 * (cross_process and hostile fork their helper processes here). Idempotent;
 * the targets also call it themselves. */
void sv2shm_fuzz_cross_process_init(void);
void sv2shm_fuzz_descriptor_init(void);
void sv2shm_fuzz_hostile_init(void);

#endif /* SV2SHM_FUZZ_TARGETS_H */
