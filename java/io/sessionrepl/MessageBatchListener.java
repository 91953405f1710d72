package io.sessionrepl;

/**
 * Receives a channel's messages a batch at a time: every message a
 * receiving worker found queued at once, in order per connection, in one
 * call across JNI instead of one call per message. Set with
 * {@link Channel.Builder#onMessageBatch}; it runs on the engine's worker
 * threads.
 *
 * <p>A message refused with {@link MessageBatch#fail} makes its sender see a
 * FAIL ({@code SR_REMOTE_FAILURE}) when it asked for
 * {@link SendOptions.Ack#DELIVERY}; throwing refuses every message of the
 * batch not refused already.
 */
@FunctionalInterface
public interface MessageBatchListener {
    /**
     * @param batch the messages; its buffers are valid only during this call
     * @throws Exception to refuse the whole batch
     */
    void onBatch(MessageBatch batch) throws Exception;
}
