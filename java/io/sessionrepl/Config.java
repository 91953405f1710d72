package io.sessionrepl;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Configuration of a {@link Channel} or {@link SessionStore}: the keys of
 * the C API, which are Tomcat's attribute names ({@code replicationMode},
 * {@code ackTimeout}, {@code tcpListenAddress}, {@code tcpListenPort},
 * {@code mcastAddr}, {@code membershipType}, {@code backupCount}, ...; see
 * {@code docs/CONFIG.md}). Each {@link #set} is checked by the native
 * parser at once, so a bad key or value fails where it is set, with a
 * {@link SessionReplException} naming the key; rules across keys are
 * checked by {@link #validate} and when a channel or store starts.
 *
 * <pre>{@code
 * Config c = new Config()
 *     .set("tcpListenAddress", "127.0.0.1")
 *     .set("replicationMode", "fastasyncqueue")
 *     .set("membershipType", "none");
 * }</pre>
 */
public final class Config {
    private final LinkedHashMap<String, String> values = new LinkedHashMap<>();

    /** An empty configuration: every key at its default. */
    public Config() {
        Native.load();
    }

    /**
     * Sets one key, checked at once.
     *
     * @param key a configuration key (Tomcat attribute name)
     * @param value its value as text
     * @return this config
     * @throws SessionReplException {@code SR_UNKNOWN_CONFIG_KEY} or
     *     {@code SR_INVALID_CONFIG_VALUE}, with the key in the detail
     */
    public Config set(String key, String value) {
        if (key == null || value == null) {
            throw new SessionReplException("SR_NULL_PARAMETER", "null configuration key or value");
        }
        Native.configCheck(new String[] {key}, new String[] {value}, false);
        values.put(key, value);
        return this;
    }

    /**
     * Sets every entry of {@code m}, in its iteration order.
     *
     * @param m keys and values
     * @return this config
     * @throws SessionReplException as {@link #set}
     */
    public Config setAll(Map<String, String> m) {
        for (Map.Entry<String, String> e : m.entrySet()) {
            set(e.getKey(), e.getValue());
        }
        return this;
    }

    /**
     * @param key a key
     * @return the value set for it, or null if it is at its default
     */
    public String get(String key) {
        return values.get(key);
    }

    /** @return the keys and values set, in the order set */
    public Map<String, String> values() {
        return Collections.unmodifiableMap(values);
    }

    /**
     * Checks the whole configuration, cross-key rules included, as a
     * channel start would.
     *
     * @throws SessionReplException {@code SR_INVALID_CONFIG_VALUE} naming the key
     */
    public void validate() {
        Native.configCheck(keys(), vals(), true);
    }

    String[] keys() {
        return values.keySet().toArray(new String[0]);
    }

    String[] vals() {
        return values.values().toArray(new String[0]);
    }

    @Override
    public String toString() {
        return values.toString();
    }
}
