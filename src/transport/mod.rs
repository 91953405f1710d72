//! Senders (the four replication modes) and the receiver.
