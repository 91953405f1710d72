//! Bounded lock-free queues and buffer pools for the hot path.
