package dev.calcrpc.client.tcp;

import java.util.ArrayDeque;
import java.util.concurrent.Executor;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Runs tasks one at a time, in the order given, on a delegate executor: a call's listener hears
 * its events in order and never from two threads at once, whatever executor the caller chose (a
 * blocking stub's own thread included).
 */
final class SerializingExecutor implements Executor {
  private static final Logger log = Logger.getLogger(SerializingExecutor.class.getName());

  private final Executor delegate;
  private final ArrayDeque<Runnable> queue = new ArrayDeque<>();
  private boolean scheduled; // guarded by queue

  SerializingExecutor(Executor delegate) {
    this.delegate = delegate;
  }

  @Override
  public void execute(Runnable task) {
    synchronized (queue) {
      queue.add(task);
      if (scheduled) {
        return;
      }
      scheduled = true;
    }
    try {
      delegate.execute(this::runAll);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      runAll(); // the executor was shut down (its channel terminated): the listener still hears the end
    }
  }

  private void runAll() {
    while (true) {
      Runnable r;
      synchronized (queue) {
        r = queue.poll();
        if (r == null) {
          scheduled = false;
          return;
        }
      }
      try {
        r.run();
      } catch (RuntimeException e) {
        log.log(Level.SEVERE, "a call listener threw", e);
      }
    }
  }
}
