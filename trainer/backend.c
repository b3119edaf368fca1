#include "train.h"

const char *train_backends(void)
{
#ifdef QATPLAN_HAVE_CUDA
    return "cpu+cuda";
#else
    return "cpu";
#endif
}
