// tests/browser/WsEchoClient.java -- a WebSocket echo client on Java's own stack
// (java.net.http.WebSocket + JSSE), with a client certificate from a PKCS#12 file.
// Single-file program: no build step, no dependency beyond a JDK 11+.
//
//   java tests/browser/WsEchoClient.java URL --ca CA.pem
//        [--pfx CLIENT.pfx --pfx-password-file FILE [--present-anyway]] [--expect-refused]
//
// Trust comes from CA.pem alone (chain and host name are verified by JSSE). Sends text
// (ASCII, empty, 200 000 UTF-16 units of mixed scripts) and binary (all 256 byte values,
// empty, 1 MiB pseudo-random) pipelined, then 20 round trips, and checks that every echo
// comes back byte-exact (text as text, binary as binary); ends with a clean close.
// --present-anyway: send the PKCS#12 certificate even when its issuer is not among the CAs the
// server names in its CertificateRequest (JSSE's default key manager then sends none), so
// that the server's own verification is what refuses a foreign certificate.
// --expect-refused: the connection must fail (exit 0 if it does, 1 if it opens).
// Prints one "ok:"/"FAILED:" line per check; exit 0 when all pass.

import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.WebSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.net.Socket;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.TrustManagerFactory;

public class WsEchoClient {
    static int failures = 0;

    static boolean check(boolean ok, String what) {
        if (!ok) failures++;
        System.out.println((ok ? "ok: " : "FAILED: ") + what);
        return ok;
    }

    static String sha(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b)).substring(0, 16);
    }

    /** A received message: String for text, byte[] for binary. */
    static final class Receiver implements WebSocket.Listener {
        final LinkedBlockingQueue<Object> queue = new LinkedBlockingQueue<>();
        final CompletableFuture<Integer> closed = new CompletableFuture<>();
        StringBuilder text = new StringBuilder();
        ByteArrayOutputStream bin = new ByteArrayOutputStream();

        @Override public void onOpen(WebSocket ws) { ws.request(1); }

        @Override public CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
            text.append(data);
            if (last) { queue.add(text.toString()); text = new StringBuilder(); }
            ws.request(1);
            return null;
        }

        @Override public CompletionStage<?> onBinary(WebSocket ws, ByteBuffer data, boolean last) {
            byte[] b = new byte[data.remaining()];
            data.get(b);
            bin.write(b, 0, b.length);
            if (last) { queue.add(bin.toByteArray()); bin = new ByteArrayOutputStream(); }
            ws.request(1);
            return null;
        }

        @Override public CompletionStage<?> onClose(WebSocket ws, int code, String reason) {
            closed.complete(code);
            return null;
        }

        @Override public void onError(WebSocket ws, Throwable error) {
            closed.completeExceptionally(error);
            queue.add(error);
        }

        Object next() throws Exception {
            Object m = queue.poll(15, TimeUnit.SECONDS);
            if (m == null) throw new Exception("no message within 15 s");
            if (m instanceof Throwable) throw new Exception("WebSocket error: " + m, (Throwable) m);
            return m;
        }
    }

    /** Offers the one identity of the PKCS#12 file whatever CAs the server asks for. */
    static final class PresentAnyway extends X509ExtendedKeyManager {
        final X509ExtendedKeyManager d;
        final String alias;
        PresentAnyway(X509ExtendedKeyManager d, String alias) { this.d = d; this.alias = alias; }
        @Override public String chooseClientAlias(String[] t, Principal[] i, Socket s) { return alias; }
        @Override public String chooseEngineClientAlias(String[] t, Principal[] i, SSLEngine e) { return alias; }
        @Override public String[] getClientAliases(String t, Principal[] i) { return new String[] {alias}; }
        @Override public String[] getServerAliases(String t, Principal[] i) { return d.getServerAliases(t, i); }
        @Override public String chooseServerAlias(String t, Principal[] i, Socket s) { return d.chooseServerAlias(t, i, s); }
        @Override public X509Certificate[] getCertificateChain(String a) { return d.getCertificateChain(a); }
        @Override public PrivateKey getPrivateKey(String a) { return d.getPrivateKey(a); }
    }

    static boolean sameMessage(Object got, Object sent) {
        if (sent instanceof String) return got instanceof String && got.equals(sent);
        return got instanceof byte[] && Arrays.equals((byte[]) got, (byte[]) sent);
    }

    static void send(WebSocket ws, Object m) throws Exception {
        if (m instanceof String) ws.sendText((String) m, true).get(15, TimeUnit.SECONDS);
        else ws.sendBinary(ByteBuffer.wrap((byte[]) m), true).get(15, TimeUnit.SECONDS);
    }

    public static void main(String[] args) throws Exception {
        String url = null, ca = null, pfx = null, passFile = null;
        boolean expectRefused = false, presentAnyway = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--ca": ca = args[++i]; break;
                case "--pfx": pfx = args[++i]; break;
                case "--pfx-password-file": passFile = args[++i]; break;
                case "--expect-refused": expectRefused = true; break;
                case "--present-anyway": presentAnyway = true; break;
                default:
                    if (url == null && !args[i].startsWith("-")) url = args[i];
                    else { System.err.println("WsEchoClient: bad argument " + args[i]); System.exit(2); }
            }
        }
        if (url == null || ca == null) { System.err.println("usage: WsEchoClient URL --ca CA.pem [--pfx F --pfx-password-file F] [--expect-refused]"); System.exit(2); }

        // trust: the CA file only
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = new FileInputStream(ca)) {
            int n = 0;
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in))
                trust.setCertificateEntry("ca" + (n++), c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        // identity: the PKCS#12 file
        KeyManager[] kms = null;
        if (pfx != null) {
            char[] pw = Files.readString(Path.of(passFile), StandardCharsets.UTF_8).replaceAll("\\r?\\n$", "").toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = new FileInputStream(pfx)) { ks.load(in, pw); }
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pw);
            kms = kmf.getKeyManagers();
            if (presentAnyway) {
                String alias = null;
                for (String a : java.util.Collections.list(ks.aliases())) if (ks.isKeyEntry(a)) alias = a;
                kms = new KeyManager[] {new PresentAnyway((X509ExtendedKeyManager) kms[0], alias)};
            }
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kms, tmf.getTrustManagers(), null);

        System.out.println("WsEchoClient: Java " + System.getProperty("java.version") + " (" + System.getProperty("java.vm.name")
                + "), java.net.http.WebSocket, " + url + (pfx != null ? " with client certificate " + pfx : " without a client certificate"));
        HttpClient http = HttpClient.newBuilder().sslContext(ctx).connectTimeout(Duration.ofSeconds(10)).build();
        Receiver rx = new Receiver();
        WebSocket ws;
        try {
            ws = http.newWebSocketBuilder().connectTimeout(Duration.ofSeconds(10)).buildAsync(URI.create(url), rx).get(20, TimeUnit.SECONDS);
        } catch (Exception e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            String why = c.getClass().getSimpleName() + ": " + c.getMessage();
            if (expectRefused) check(true, "connection refused as expected (" + why + ")");
            else check(false, "connect " + url + ": " + why);
            System.exit(failures == 0 ? 0 : 1);
            return;
        }
        if (expectRefused) {
            check(false, "connection to " + url + " was NOT refused");
            ws.abort();
            System.exit(1);
        }
        check(true, "WebSocket open to " + url);

        StringBuilder big = new StringBuilder();
        while (big.length() < 200000) big.append("tlsgate \u2713 \u00e9\u00e8 \u4e2d\u6587 \ud83d\ude80 ").append(big.length()).append('\n');
        byte[] all = new byte[256];
        for (int i = 0; i < 256; i++) all[i] = (byte) i;
        byte[] rnd = new byte[1 << 20];
        new Random(0x715a7e).nextBytes(rnd);
        List<Object> msgs = List.of("hello tlsgate \u2713 \ud83d\ude80", "", big.toString(), all, new byte[0], rnd);
        try {
            for (Object m : msgs) send(ws, m);
            for (Object m : msgs) {
                Object got = rx.next();
                if (m instanceof String)
                    check(sameMessage(got, m), "text message (" + ((String) m).getBytes(StandardCharsets.UTF_8).length + " bytes UTF-8) echoed exactly as text");
                else
                    check(sameMessage(got, m), "binary message (" + ((byte[]) m).length + " bytes) echoed byte-exact sha256=" + sha((byte[]) m) + "...");
            }
            boolean rt = true;
            Random r = new Random(20);
            for (int i = 0; i < 20 && rt; i++) {
                Object m;
                if (i % 2 == 1) { byte[] b = new byte[1 + i * 997]; r.nextBytes(b); m = b; }
                else m = "round trip " + i + " " + "x".repeat(i * 1013);
                send(ws, m);
                rt = sameMessage(rx.next(), m);
            }
            check(rt, "20 request/response round trips echoed exactly");
            ws.sendClose(WebSocket.NORMAL_CLOSURE, "done").get(10, TimeUnit.SECONDS);
            int code = rx.closed.get(10, TimeUnit.SECONDS);
            check(code == WebSocket.NORMAL_CLOSURE, "clean close (code " + code + ")");
        } catch (Exception e) {
            check(false, "echo: " + e);
            ws.abort();
        }
        System.out.println("WsEchoClient: " + (failures == 0 ? "all checks passed" : failures + " check(s) FAILED"));
        System.exit(failures == 0 ? 0 : 1);
    }
}
