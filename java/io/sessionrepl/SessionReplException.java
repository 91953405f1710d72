package io.sessionrepl;

/**
 * A failure reported by the native engine. {@link #result()} is the name of
 * the C ABI's {@code sr_result} code ({@code SR_TIMEOUT},
 * {@code SR_INVALID_CONFIG_VALUE}, {@code SR_REMOTE_FAILURE}, ...), and
 * {@link #detail()} says what exactly went wrong (for example which
 * configuration key was refused and why). {@code SR_PANIC} means an
 * internal error was caught at the JNI boundary: the JVM keeps running.
 */
public class SessionReplException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String result;
    private final String detail;

    /**
     * Creates an exception.
     *
     * @param result the {@code sr_result} name, e.g. {@code SR_TIMEOUT}
     * @param detail what went wrong
     */
    public SessionReplException(String result, String detail) {
        super(result + ": " + detail);
        this.result = result;
        this.detail = detail;
    }

    /** @return the {@code sr_result} name, e.g. {@code SR_NOT_RUNNING} */
    public String result() {
        return result;
    }

    /** @return the detail text of the failure */
    public String detail() {
        return detail;
    }
}
