package io.sessionrepl;

/**
 * Receives a channel's messages, on the engine's receiver thread, in order
 * per connection. Throwing makes the sender see a FAIL outcome
 * ({@code SR_REMOTE_FAILURE} with the exception's text) when it asked for
 * {@link SendOptions.Ack#DELIVERY}.
 */
@FunctionalInterface
public interface MessageListener {
    /**
     * @param m the message
     * @throws Exception to refuse the message
     */
    void onMessage(Message m) throws Exception;
}
