"""The shared kernel: settings and logging, used by events/, projections/ and services/ alike."""
