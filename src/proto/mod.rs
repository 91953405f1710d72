//! Sans-IO protocol state machines: decoding, ack tracking, timeouts.
