/* steal_test.c -- work stealing's test mode (pb_steal_test in testing/pb_testing.h).
 *
 * Sets the flag that the work lists' PB_WLIST_RUN reads (core/wlist.h) and returns the
 * count of units taken from another thread's list. Nothing else.
 */
#include "core/wlist.h"
#include "testing/pb_testing.h"

long pb_steal_test(int on) {
    atomic_store(&pb_steal_test_on, on != 0);
    return atomic_exchange(&pb_steal_test_count, 0);
}
