package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class BackoffTest {
  @Test
  void grpcConnectionBackoff() {
    Backoff b = Backoff.CONNECTION;
    // rnd 0.5 is no jitter: 1 s, 1.6 s, 2.56 s, ... capped at 120 s
    assertEquals(Duration.ofSeconds(1), b.delay(0, 0.5));
    assertEquals(Duration.ofMillis(1600), b.delay(1, 0.5));
    assertEquals(Duration.ofMillis(2560), b.delay(2, 0.5));
    assertEquals(Duration.ofSeconds(120), b.delay(11, 0.5));
    assertEquals(Duration.ofSeconds(120), b.delay(1000, 0.5));
    // jitter: ±20%
    assertEquals(Duration.ofMillis(800), b.delay(0, 0));
    assertEquals(Duration.ofSeconds(144), b.delay(50, 1));
  }

  @Test
  void millisecondsForTests() {
    Backoff b = new Backoff(Duration.ofMillis(10), 2, 0, Duration.ofMillis(35));
    assertEquals(List.of(10L, 20L, 35L, 35L), List.of(b.delay(0, 0.3).toMillis(), b.delay(1, 0.9).toMillis(),
        b.delay(2, 0.5).toMillis(), b.delay(3, 0.5).toMillis()));
  }

  @Test
  void badValues() {
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ZERO, 1.6, 0.2, Duration.ofSeconds(1)));
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ofSeconds(2), 1.6, 0.2, Duration.ofSeconds(1)));
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ofSeconds(1), 0.5, 0.2, Duration.ofSeconds(1)));
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ofSeconds(1), 1.6, 1, Duration.ofSeconds(1)));
  }
}
