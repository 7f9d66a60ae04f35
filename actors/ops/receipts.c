/*  actors/ops/receipts.c — the receipts operations (API.md). */
#include "ops.h"

const op_def_t ops_receipts[] = {
    { NULL, NULL, false }
};
