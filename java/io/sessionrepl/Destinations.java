package io.sessionrepl;

import java.lang.ref.Cleaner;
import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * A destination set prepared once for many sends: the addresses are
 * checked and decoded into native memory when it is made, so
 * {@link Channel#sendTo(Destinations, byte[], SendOptions)} passes one
 * handle across JNI instead of an address list to encode, copy and decode
 * on every call. Immutable and thread-safe; one set may be used with any
 * channel. Its native memory is freed when the object becomes unreachable.
 *
 * <pre>{@code
 * Destinations backup = Destinations.of(peerAddress);
 * for (byte[] delta : deltas) {
 *     ch.sendTo(backup, delta, SendOptions.DEFAULT);
 * }
 * }</pre>
 */
public final class Destinations {
    /** Frees the native sets of unreachable objects (one daemon thread, started on first use). */
    private static final Cleaner CLEANER = Cleaner.create();

    /** Every current member of the sending channel (no address given). */
    private static final Destinations MEMBERS = new Destinations(new InetSocketAddress[0]);

    private final InetSocketAddress[] addrs;
    private final long handle;

    private Destinations(InetSocketAddress[] addrs) {
        this.addrs = addrs;
        long h = Native.destsNew(Wire.addrs(addrs));
        this.handle = h;
        CLEANER.register(this, () -> Native.destsFree(h));
    }

    /**
     * @param to the addresses (none: every current member of the sending
     *     channel, as a null or empty array does for {@code send})
     * @return a prepared set of them, in this order
     * @throws NullPointerException for a null address
     * @throws IllegalArgumentException for an unresolved address
     */
    public static Destinations of(InetSocketAddress... to) {
        if (to == null || to.length == 0) {
            return MEMBERS;
        }
        InetSocketAddress[] a = to.clone();
        for (InetSocketAddress x : a) {
            java.util.Objects.requireNonNull(x, "destination address");
        }
        return new Destinations(a);
    }

    /** @return the addresses (empty: every current member) */
    public List<InetSocketAddress> addresses() {
        return Collections.unmodifiableList(Arrays.asList(addrs));
    }

    /**
     * The native set; the caller keeps this object reachable until its
     * native call returned ({@link java.lang.ref.Reference#reachabilityFence}).
     */
    long handle() {
        return handle;
    }

    @Override
    public String toString() {
        return "Destinations" + Arrays.toString(addrs);
    }
}
