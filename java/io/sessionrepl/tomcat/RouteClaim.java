package io.sessionrepl.tomcat;

import java.nio.charset.StandardCharsets;

/**
 * A node's claim to rename a session for its jvmRoute, kept in the
 * session itself as attribute {@link #ATTRIBUTE} (see {@link RouteBinder}):
 * the session's old and new id, the claimant's store address and the
 * claim attempt (unique per attempt and per run of the claimant, so a
 * node restarted at the same address tells its earlier run's claim from
 * its own). The value is UTF-8, the four fields separated by newlines.
 */
final class RouteClaim {
    /** The session attribute a claim is written to (never handed to the webapp). */
    static final String ATTRIBUTE = RouteBinder.RECORD + "claim";
    /** Bound on a claim's encoded size: a longer value is not a claim. */
    private static final int MAX_BYTES = 4096;

    final String oldId;
    final String newId;
    final String claimant;
    final String attempt;

    RouteClaim(String oldId, String newId, String claimant, String attempt) {
        this.oldId = oldId;
        this.newId = newId;
        this.claimant = claimant;
        this.attempt = attempt;
    }

    byte[] encode() {
        return (oldId + '\n' + newId + '\n' + claimant + '\n' + attempt).getBytes(StandardCharsets.UTF_8);
    }

    /**
     * The claim in a session attribute's value, or null when there is none
     * or it is malformed (written by anyone: a webapp may use the name too).
     */
    static RouteClaim parse(byte[] value) {
        if (value == null || value.length > MAX_BYTES) {
            return null;
        }
        String[] f = new String(value, StandardCharsets.UTF_8).split("\n", -1);
        if (f.length != 4) {
            return null;
        }
        for (String field : f) {
            if (field.isEmpty()) {
                return null;
            }
        }
        return new RouteClaim(f[0], f[1], f[2], f[3]);
    }

    @Override
    public String toString() {
        return oldId + " -> " + newId + " by " + claimant + " (attempt " + attempt + ")";
    }
}
