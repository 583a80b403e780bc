"""From a file change to a read of the library: the watcher, the settle timer, the scanner and
what it needs (the read job it can leave behind, the baseline, the removal guard, its status)."""
