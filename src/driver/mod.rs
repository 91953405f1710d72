//! I/O backends behind one contract.
