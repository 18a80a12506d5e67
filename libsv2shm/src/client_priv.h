/* What the broker client (client.c) and the producer / consumer (producer.c,
 * consumer.c) tell each other. None of it is public. */
#ifndef SV2SHM_CLIENT_PRIV_H
#define SV2SHM_CLIENT_PRIV_H

#include <sys/types.h>

#include "sv2shm/client.h"

/* --- producer.c, for client.c --------------------------------------------- */

/* Tie a producer to the client that registered it under `name`: its
 * process() and waits handle the broker's messages from then on. */
void producer_attach_client(struct sv2shm_producer *p, struct sv2shm_client *c, const char *name);
/* The client is going away (or reconnected with a new fd). */
void producer_client_fd_changed(struct sv2shm_producer *p);
/* The control memfd, capacity, slot count and policy (for REGISTER). */
int producer_ctl_fd(const struct sv2shm_producer *p);
void producer_geometry(const struct sv2shm_producer *p, uint64_t *capacity, unsigned *slots, int *policy);
const char *producer_name(const struct sv2shm_producer *p);
/* An introduction from the broker: add the consumer on `sock` (owned from
 * now on). Returns its id (> 0) and sets *holder and *ring_fd (the ring
 * memfd, not a copy: do not close), or -errno. */
int producer_introduce(struct sv2shm_producer *p, int sock, pid_t pid, unsigned *holder, int *ring_fd);
/* Each consumer, for REATTACH after a broker restart. */
typedef void (*producer_consumer_fn)(void *user, int id, unsigned holder, pid_t pid, int ring_fd);
void producer_each_consumer(const struct sv2shm_producer *p, producer_consumer_fn fn, void *user);

/* --- consumer.c, for client.c --------------------------------------------- */

/* The client keeps the pool's name and our id (it re-attaches us); the
 * consumer only tells it when it is freed. */
void consumer_attach_client(struct sv2shm_consumer *k, struct sv2shm_client *c);

/* --- client.c, for producer.c and consumer.c ------------------------------ */

/* Handle the broker's messages without blocking (producer_events calls it
 * when the broker's fd is readable). */
int client_process_internal(struct sv2shm_client *c);
/* The broker connection's fd, or -1. */
int client_broker_fd(const struct sv2shm_client *c);
/* A producer removed consumer `id` (CONSUMER_GONE to the broker). */
void client_consumer_removed(struct sv2shm_client *c, const char *name, int id, int reason, unsigned held);
/* A producer made through the client is destroyed (UNREGISTER). */
void client_producer_destroyed(struct sv2shm_client *c, struct sv2shm_producer *p);
/* A consumer made through the client is freed. */
void client_consumer_freed(struct sv2shm_client *c, struct sv2shm_consumer *k);

#endif /* SV2SHM_CLIENT_PRIV_H */
