package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class TargetTest {
  @Test
  void endpoints() {
    assertEquals(List.of(new TcpChannel.Endpoint("127.0.0.1", 4000)), TcpChannel.parseTarget("127.0.0.1:4000"));
    assertEquals(List.of(new TcpChannel.Endpoint("a", 1), new TcpChannel.Endpoint("::1", 2), new TcpChannel.Endpoint("b.example", 65535)),
        TcpChannel.parseTarget("a:1, [::1]:2,b.example:65535,a:1"));
    assertEquals("[::1]:2", new TcpChannel.Endpoint("::1", 2).toString());
  }

  @Test
  void malformed() {
    for (String t : new String[] {"", "host", ":4000", "host:", "host:0", "host:65536", "host:x", "::1:4000", "[::1]4000",
        "a:1,", "dns:///calc:4000"}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TcpChannel.parseTarget(t), t);
      assertTrue(e.getMessage().contains("want"), e.getMessage());
    }
  }
}
