/*  tests/unit/unit.h — the one CUnit main every Parley unit suite uses.
 *
 *  CUnit 2.1-3's basic runner returns success even when tests fail, so the
 *  exit code is computed from the failure counts before the registry goes.
 */
#ifndef PARLEY_UNIT_H
#define PARLEY_UNIT_H

#include <CUnit/Basic.h>

/* Runs one suite of `tests` (ending with CU_TEST_INFO_NULL); returns the
   process exit code: 0 when every assertion passed. */
static inline int
unit_run (const char *suite_name, CU_TestInfo *tests)
{
    if (CU_initialize_registry () != CUE_SUCCESS)
        return 2;
    CU_SuiteInfo suites[] = { { suite_name, NULL, NULL, NULL, NULL, tests },
                              CU_SUITE_INFO_NULL };
    if (CU_register_suites (suites) != CUE_SUCCESS) {
        CU_cleanup_registry ();
        return 2;
    }
    CU_basic_set_mode (CU_BRM_VERBOSE);
    CU_basic_run_tests ();
    unsigned failed = CU_get_number_of_tests_failed () + CU_get_number_of_failures ();
    CU_cleanup_registry ();
    return failed ? 1 : 0;
}

#endif
