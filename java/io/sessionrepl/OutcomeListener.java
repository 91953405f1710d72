package io.sessionrepl;

/**
 * Told each message's outcome per destination in the asynchronous modes
 * ({@code asynchronous}, {@code fastasyncqueue}), on a sender I/O thread:
 * keep it short.
 */
@FunctionalInterface
public interface OutcomeListener {
    /** @param o the outcome (with its message id) */
    void onOutcome(Outcome o);
}
