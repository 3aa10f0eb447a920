//! A small thread pool for the hot loops: no allocation per parallel call.
