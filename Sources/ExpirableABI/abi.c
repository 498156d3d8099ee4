/* The ABI is the header alone; this file only gives SwiftPM a source for the C target. */
#include "expirable.h"
