//! `sessionrepl bench`: the scenarios of `bench/SCENARIOS.md`, with the
//! raw-socket floor and the Tribes peer measured in the same run.

