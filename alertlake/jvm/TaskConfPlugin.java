package org.alertlake.spark;

import java.lang.reflect.Method;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.TaskContext;
import org.apache.spark.TaskFailedReason;
import org.apache.spark.api.plugin.DriverPlugin;
import org.apache.spark.api.plugin.ExecutorPlugin;
import org.apache.spark.api.plugin.PluginContext;
import org.apache.spark.api.plugin.SparkPlugin;
import org.apache.spark.sql.internal.ReadOnlySQLConf;
import org.apache.spark.sql.internal.SQLConf;
import org.apache.spark.sql.internal.SQLConf$;

/**
 * One SQL configuration object per Spark task, instead of one per read of it.
 *
 * <p>Inside a task, Spark 4.2's {@code SQLConf.get()} builds a new {@code ReadOnlySQLConf} (and its
 * {@code ConfigReader}, which copies maps) on every call, unless the thread has an "existing" conf. Its Avro
 * reader ({@code from_avro}) calls it for every field of every nested record it builds (through
 * {@code TypeOps.apply}, which reads {@code spark.sql.types.framework.enabled}, whose default is a function
 * that reads an environment variable): for a ZTF alert and its history, thousands of times. That was about
 * three quarters of the CPU of decoding bronze rows.
 *
 * <p>This executor plugin gives each task thread, when the task starts, the conf Spark would have built (the
 * same class, over the same task's properties), and removes it when the task ends. The one value that the
 * Avro reader reads per field, {@code typesFrameworkEnabled}, is read once per task. Nothing else changes:
 * other settings are still read from the task's properties at each call.
 *
 * <p>Enabled by {@code alertlake.spark.build_spark} (setting {@code spark_task_conf_cache}); if Spark's
 * internals change so that the thread's conf cannot be found, the plugin logs it and does nothing.
 */
public class TaskConfPlugin implements SparkPlugin {
  private static final AtomicLong TASKS = new AtomicLong();

  /** How many tasks of this JVM were given their conf (tests and diagnostics read it through py4j). */
  public static long tasksGivenConf() {
    return TASKS.get();
  }

  @Override
  public DriverPlugin driverPlugin() {
    return null;
  }

  @Override
  public ExecutorPlugin executorPlugin() {
    return new Executor();
  }

  /** The task's read-only conf, with {@code typesFrameworkEnabled} read once. */
  static final class TaskConf extends ReadOnlySQLConf {
    private final boolean typesFramework;

    TaskConf(TaskContext task) {
      super(task);
      typesFramework = super.typesFrameworkEnabled();
    }

    @Override
    public boolean typesFrameworkEnabled() {
      return typesFramework;
    }
  }

  static final class Executor implements ExecutorPlugin {
    private ThreadLocal<SQLConf> existing;
    private final ThreadLocal<Boolean> ours = new ThreadLocal<>();

    @Override
    @SuppressWarnings("unchecked")
    public void init(PluginContext context, Map<String, String> extraConf) {
      try {
        Method accessor = SQLConf$.class.getDeclaredMethod("existingConf");
        accessor.setAccessible(true);
        existing = (ThreadLocal<SQLConf>) accessor.invoke(SQLConf$.MODULE$);
      } catch (ReflectiveOperationException | RuntimeException e) {
        existing = null;
        System.err.println("alertlake TaskConfPlugin: no per-thread SQL conf in this Spark (" + e + "); plugin off");
      }
    }

    @Override
    public void onTaskStart() {
      TaskContext task = TaskContext.get();
      if (existing == null || task == null || existing.get() != null) {
        return;
      }
      existing.set(new TaskConf(task));
      ours.set(Boolean.TRUE);
      TASKS.incrementAndGet();
    }

    private void clear() {
      if (ours.get() != null) {
        existing.remove();
        ours.remove();
      }
    }

    @Override
    public void onTaskSucceeded() {
      clear();
    }

    @Override
    public void onTaskFailed(TaskFailedReason reason) {
      clear();
    }
  }
}
