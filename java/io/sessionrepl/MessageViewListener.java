package io.sessionrepl;

import java.nio.ByteBuffer;

/**
 * Receives a channel's messages one call per message, with the payload lent
 * rather than copied: no array and no object is allocated per message (the
 * shape of Aeron's {@code FragmentHandler} or a Netty handler reading a
 * pooled buffer). Set with {@link Channel.Builder#onMessageView}; it runs on
 * the engine's receiving threads, in order per connection.
 *
 * <p><b>Validity.</b> {@code payload} and {@code header} are views of the
 * native receive batch, valid only until this call returns: the same two
 * objects are reused for the next message on this thread, and the memory
 * behind them is refilled with later messages. After the call, a kept
 * {@code payload} reads nothing (its limit is set to 0) and a kept
 * {@code header} throws {@link IllegalStateException}; a buffer derived
 * from {@code payload} during the call (a {@code duplicate()} or
 * {@code slice()}) is not checked and sees whatever is written there next.
 * To keep a payload, copy it during the call:
 *
 * <pre>{@code
 * byte[] copy = new byte[payload.remaining()];
 * payload.get(copy);
 * }</pre>
 *
 * <p><b>The buffer.</b> The payload is the bytes from
 * {@code payload.position()} to {@code payload.limit()} (relative reads
 * such as {@code get(byte[])}, {@code getInt()} start at the payload); for
 * absolute reads add {@code payload.position()}; the buffer's capacity
 * spans the whole receive batch, and bytes outside position..limit belong
 * to other messages. It is read-only and
 * big-endian; a direct buffer for messages from native connections, a
 * heap buffer for messages from Tribes connections. The listener may move
 * its position, limit and byte order: they are reset for the next message.
 *
 * <p><b>Failures.</b> Throwing refuses this message only: its sender sees a
 * FAIL ({@code SR_REMOTE_FAILURE} with the exception's text) when it asked
 * for {@link SendOptions.Ack#DELIVERY}; the next message is delivered as
 * usual.
 */
@FunctionalInterface
public interface MessageViewListener {
    /**
     * @param header who sent the message and its id; valid during this call only
     * @param payload the payload, position to limit, read-only; valid during this call only
     * @throws Exception to refuse the message
     */
    void onMessage(MessageHeader header, ByteBuffer payload) throws Exception;
}
