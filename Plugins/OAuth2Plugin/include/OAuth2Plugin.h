/* The oauth2 plugin exports only the functions declared in expirable.h. */
#include "expirable.h"
