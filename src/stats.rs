//! Statistics counters.
