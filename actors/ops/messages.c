/*  actors/ops/messages.c — the messages operations (API.md). */
#include "ops.h"

const op_def_t ops_messages[] = {
    { NULL, NULL, false }
};
