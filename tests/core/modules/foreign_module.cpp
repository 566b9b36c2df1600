// A shared module that is not a ferry transport: the loader must refuse it by name.
extern "C" __attribute__((visibility("default"))) int some_other_library_entry() { return 42; }
