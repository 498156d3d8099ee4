/* Test plugin: an ordinary shared object, not an Expirable plugin. */
int answer(void) { return 42; }
