package dev.calcrpc.client.security;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.regex.Pattern;

/**
 * Host names in targets, and the rule every calc client applies to tokens: a bearer token goes in
 * plaintext only to this machine ("localhost" or a loopback IP address), as grpc-go's
 * RequireTransportSecurity demands TLS for per-call credentials. Anyone on the path of a plaintext
 * connection could read the token and call as its principal.
 */
public final class Hosts {
  private static final Pattern IPV4 = Pattern.compile("\\d{1,3}(\\.\\d{1,3}){3}");

  private Hosts() {}

  /**
   * Whether host is "localhost" or a loopback IP address literal (127.0.0.0/8, ::1; brackets
   * allowed). Names are not resolved: "localhost.example.com" is not loopback.
   */
  public static boolean isLoopback(String host) {
    if (host == null) {
      return false;
    }
    String h = host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
    if (h.equalsIgnoreCase("localhost")) {
      return true;
    }
    if (IPV4.matcher(h).matches()) {
      String[] octets = h.split("\\.");
      for (String o : octets) {
        if (Integer.parseInt(o) > 255) {
          return false;
        }
      }
      return Integer.parseInt(octets[0]) == 127;
    }
    if (!h.contains(":")) {
      return false; // a name: never resolved here
    }
    try {
      return InetAddress.getByName("[" + h + "]").isLoopbackAddress(); // bracketed: parsed as IPv6, never looked up
    } catch (UnknownHostException e) {
      return false;
    }
  }

  /**
   * The host of a target: "HOST:PORT", "[V6]:PORT", "dns:///HOST:PORT", or a comma-separated list
   * of them (the first one's host; see {@link #hostsOf}).
   */
  public static String hostOf(String target) {
    return hostsOf(target)[0];
  }

  /** The hosts of every entry of a target as {@link #hostOf} reads one. */
  public static String[] hostsOf(String target) {
    String[] parts = target.split(",", -1);
    String[] out = new String[parts.length];
    for (int i = 0; i < parts.length; i++) {
      out[i] = host(parts[i].trim());
    }
    return out;
  }

  private static String host(String t) {
    int scheme = t.indexOf(":///");
    if (scheme >= 0) {
      t = t.substring(scheme + 4);
    } else if (t.startsWith("dns:")) {
      t = t.substring(4);
    }
    if (t.startsWith("[")) {
      int end = t.indexOf(']');
      return end < 0 ? t : t.substring(1, end);
    }
    int colon = t.lastIndexOf(':');
    return colon < 0 || t.indexOf(':') != colon ? t : t.substring(0, colon);
  }

  /**
   * Refuses a token that would travel in plaintext to a host that is not loopback, and a token
   * that does not fit on one header line.
   *
   * @param token the bearer token, or null / empty for none
   * @param secure whether the connection is TLS
   * @param target the target the token would go to (every host of a list is checked)
   * @throws IllegalArgumentException naming the host and what to do
   */
  public static void checkToken(String token, boolean secure, String target) {
    if (token == null || token.isEmpty()) {
      return;
    }
    BearerToken.validate(token);
    if (secure) {
      return;
    }
    for (String h : hostsOf(target)) {
      if (!isLoopback(h)) {
        throw new IllegalArgumentException("refusing to send the token (CALC_TOKEN) in plaintext to " + h
            + ", which is not a loopback address: use TLS (--tls or --tls-ca)");
      }
    }
  }
}
