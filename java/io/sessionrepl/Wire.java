package io.sessionrepl;

import java.io.ByteArrayOutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * The byte encodings between Java and the native library (the Rust side is
 * {@code bindings/jni/src/enc.rs}): big-endian; byte strings as a u32
 * length then the bytes; addresses as family (4 or 6), address, u16 port.
 */
final class Wire {
    private Wire() {}

    /** Reads an encoding. */
    static final class In {
        private final ByteBuffer b;

        In(byte[] data) {
            b = ByteBuffer.wrap(data);
        }

        /** Reads {@code data} from its position to its limit (moving its position). */
        In(ByteBuffer data) {
            b = data;
        }

        int u8() { return b.get() & 0xff; }
        int u32() { return b.getInt(); }
        long u64() { return b.getLong(); }
        boolean more() { return b.hasRemaining(); }

        byte[] fixed(int n) {
            byte[] a = new byte[n];
            b.get(a);
            return a;
        }

        byte[] bytes() { return fixed(u32()); }

        byte[] optBytes() { return u8() == 0 ? null : bytes(); }

        String str() { return new String(bytes(), StandardCharsets.UTF_8); }

        InetSocketAddress addr() {
            int fam = u8();
            byte[] ip = fixed(fam == 4 ? 4 : 16);
            int port = b.getShort() & 0xffff;
            try {
                return new InetSocketAddress(InetAddress.getByAddress(ip), port);
            } catch (UnknownHostException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /** Builds an encoding. */
    static final class Out {
        private final ByteArrayOutputStream o = new ByteArrayOutputStream(64);

        Out u8(int v) { o.write(v); return this; }

        Out u32(int v) {
            o.write(v >>> 24); o.write(v >>> 16); o.write(v >>> 8); o.write(v);
            return this;
        }

        Out u64(long v) { u32((int) (v >>> 32)); return u32((int) v); }

        Out bytes(byte[] b) { u32(b.length); o.write(b, 0, b.length); return this; }

        Out optBytes(byte[] b) { return b == null ? u8(0) : u8(1).bytes(b); }

        Out str(String s) { return bytes(s.getBytes(StandardCharsets.UTF_8)); }

        Out addr(InetSocketAddress a) {
            if (a.isUnresolved()) {
                throw new IllegalArgumentException("unresolved address " + a);
            }
            byte[] ip = a.getAddress().getAddress();
            u8(ip.length == 4 ? 4 : 6);
            o.write(ip, 0, ip.length);
            o.write(a.getPort() >>> 8); o.write(a.getPort());
            return this;
        }

        byte[] done() { return o.toByteArray(); }
    }

    /** An address list as {@code Dec::addrs} reads it; null for none. */
    static byte[] addrs(InetSocketAddress... to) {
        if (to == null || to.length == 0) {
            return null;
        }
        Out o = new Out().u32(to.length);
        for (InetSocketAddress a : to) {
            o.addr(a);
        }
        return o.done();
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
