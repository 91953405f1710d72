/* Shared by the cluster tests (test_members.c, test_store.c): a config for
 * a node in a private multicast group on 127.0.0.1 (TTL 1), so that each
 * test's cluster and each process's clusters stay apart. */
#ifndef SR_CLUSTER_FIXTURE_H
#define SR_CLUSTER_FIXTURE_H

#include <stdlib.h>
#include <unistd.h>

#include "check.h"

#define WAIT_MS 30000

static unsigned next_group;

/* A config in group n of this process, in 239.<octet>.x.y (each test file
 * passes its own octet). */
static inline sr_config *cluster_config_in(unsigned octet, const char *name, unsigned group) {
    sr_config *cfg = NULL;
    char addr[32], port[16], domain[64];
    unsigned pid = (unsigned)getpid();
    snprintf(addr, sizeof addr, "239.%u.%u.%u", octet, pid % 250, group % 250 + 1);
    snprintf(port, sizeof port, "%u", 23000 + (pid * 7 + group * 131 + octet * 17) % 20000);
    snprintf(domain, sizeof domain, "ffi-%s-%u-%u", name, pid, group);
    CHECK_RC(sr_config_new(&cfg), SR_OK);
    CHECK_RC(sr_config_set_listen(cfg, "127.0.0.1", 0), SR_OK);
    CHECK_RC(sr_config_set(cfg, "membershipType", "multicast"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastAddr", addr), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastPort", port), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastBindAddress", "127.0.0.1"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastTTL", "1"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastFrequency", "100"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "mcastDropTime", "2000"), SR_OK);
    CHECK_RC(sr_config_set(cfg, "domain", domain), SR_OK);
    return cfg;
}

#endif
