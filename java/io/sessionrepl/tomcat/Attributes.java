package io.sessionrepl.tomcat;

import io.sessionrepl.Config;
import io.sessionrepl.SessionReplException;

import java.io.IOException;
import java.net.InetAddress;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;

/**
 * The {@code server.xml} attributes of one native component: Tomcat's own
 * names (those the stock {@code NioReceiver}, {@code McastService} and
 * {@code PooledParallelSender} accept) mapped to sessionrepl keys where they
 * mean something, accepted and logged once as not applicable where they do
 * not, and any sessionrepl key as is. Values are kept as text and checked
 * at start, where a bad one is an error naming the attribute.
 */
final class Attributes {
    private static final Log log = LogFactory.getLog(Attributes.class);
    private static final Set<String> LOGGED = ConcurrentHashMap.newKeySet();

    /** What a Tomcat attribute's value must be. */
    enum Type { INT, LONG, BOOL, ADDR, STRING }

    /** One known Tomcat attribute: its type and sessionrepl key (null: not applicable). */
    static final class Known {
        final Type type;
        final String key;

        Known(Type type, String key) {
            this.type = type;
            this.key = key;
        }
    }

    private final String component;
    private final Map<String, Known> known;
    private final LinkedHashMap<String, String> values = new LinkedHashMap<>();

    Attributes(String component, Map<String, Known> known) {
        this.component = component;
        this.known = known;
    }

    static Map<String, Known> table(Object... rows) {
        Map<String, Known> m = new LinkedHashMap<>();
        for (int i = 0; i < rows.length; i += 3) {
            m.put((String) rows[i], new Known((Type) rows[i + 1], (String) rows[i + 2]));
        }
        return m;
    }

    /**
     * Records an attribute. Returns false (Tomcat's digester then warns)
     * for a name that is neither a known Tomcat attribute nor a sessionrepl key.
     */
    boolean set(String name, String value) {
        if (!known.containsKey(name) && !isSessionreplKey(name)) {
            return false;
        }
        values.put(name, value);
        return true;
    }

    String get(String name) {
        return values.get(name);
    }

    static boolean isSessionreplKey(String name) {
        try {
            new Config().set(name, "\u0000");
            return true;
        } catch (SessionReplException e) {
            return !"SR_UNKNOWN_CONFIG_KEY".equals(e.result());
        }
    }

    /** Marks a Tomcat attribute the Java side handles itself (e.g. {@code autoBind}). */
    static final String HANDLED = "";

    /**
     * Checks every value and applies the mapped ones to {@code cfg}: first
     * Tomcat's attributes, then sessionrepl keys, so an explicit
     * sessionrepl key wins over a Tomcat attribute that maps to it.
     */
    void applyTo(Config cfg) throws IOException {
        for (Map.Entry<String, String> e : values.entrySet()) {
            Known k = known.get(e.getKey());
            if (k != null) {
                apply(cfg, e.getKey(), e.getValue().trim(), k);
            }
        }
        for (Map.Entry<String, String> e : values.entrySet()) {
            if (!known.containsKey(e.getKey())) {
                apply(cfg, e.getKey(), e.getValue().trim(), null);
            }
        }
    }

    private void apply(Config cfg, String name, String v, Known k) throws IOException {
        try {
            if (k == null) {
                cfg.set(name, v);
                return;
            }
            String checked = check(name, k.type, v);
            if (k.key == null) {
                if (LOGGED.add(component + "." + name)) {
                    log.info(component + " attribute '" + name + "' has no meaning for the native "
                        + "engine and is ignored");
                }
            } else if (!k.key.isEmpty() && checked != null) {
                cfg.set(k.key, checked);
            }
        } catch (SessionReplException x) {
            throw new IOException(component + " attribute '" + name + "'=\"" + v + "\": " + x.detail(), x);
        }
    }

    /** The value as the sessionrepl key wants it, or null to leave the key at its default. */
    private String check(String name, Type t, String v) throws IOException {
        try {
            switch (t) {
                case INT:
                    return String.valueOf(Integer.parseInt(v));
                case LONG:
                    return String.valueOf(Long.parseLong(v));
                case BOOL:
                    if (!v.equalsIgnoreCase("true") && !v.equalsIgnoreCase("false")) {
                        throw new IllegalArgumentException("expected true or false");
                    }
                    return v.toLowerCase();
                case ADDR:
                    if (v.equalsIgnoreCase("auto")) {
                        return InetAddress.getLocalHost().getHostAddress();
                    }
                    return InetAddress.getByName(v).getHostAddress();
                default:
                    return v;
            }
        } catch (IllegalArgumentException | IOException x) {
            throw new IOException(component + " attribute '" + name + "'=\"" + v + "\": " + x.getMessage(), x);
        }
    }
}
