package org.alertlake.hadoop;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.ChecksumFs;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FsServerDefaults;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.local.LocalConfigKeys;
import org.apache.hadoop.fs.permission.FsAction;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system ({@code file://}) without a process per file.
 *
 * <p>Without Hadoop's native library, which Spark does not ship, {@code RawLocalFileSystem} runs {@code chmod}
 * for every file it creates (twice with its checksum file) and {@code readlink} twice for every rename made
 * through a {@code FileContext}, as Spark's streaming checkpoints and Delta's log are. The real-time pipeline's
 * JVM started about 28 such processes a micro-batch, one after the other on the thread that runs the stream,
 * 4 to 5 ms each on this machine.
 *
 * <p>Here the same two operations use {@code java.nio}: permissions are set with
 * {@code Files.setPosixFilePermissions}, and a path's link status is its file status when it is not a symbolic
 * link, as Hadoop's own code returns it. Symbolic links, a sticky bit and file systems without POSIX permissions
 * take Hadoop's own way. Everything else is Hadoop's class.
 *
 * <p>{@code alertlake.spark.build_spark} names these classes in {@code fs.file.impl} (the {@code FileSystem},
 * checksummed as Hadoop's {@code LocalFileSystem}) and {@code fs.AbstractFileSystem.file.impl} (the
 * {@code FileContext} side, checksummed as Hadoop's {@code LocalFs}), unless the setting
 * {@code spark_local_fs_without_processes} is false.
 */
public class LocalFileSystem extends org.apache.hadoop.fs.LocalFileSystem {
  public LocalFileSystem() {
    super(new Raw());
  }

  /** {@code RawLocalFileSystem} with permissions and link status through {@code java.nio}. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      if (permission.getStickyBit()) {
        super.setPermission(p, permission);
        return;
      }
      java.nio.file.Path path = pathToFile(p).toPath();
      try {
        Files.setPosixFilePermissions(path, posix(permission));
      } catch (UnsupportedOperationException e) {
        super.setPermission(p, permission);
      }
    }

    @Override
    public FileStatus getFileLinkStatus(Path f) throws IOException {
      File file = pathToFile(f);
      if (Files.isSymbolicLink(file.toPath())) {
        return super.getFileLinkStatus(f);
      }
      return getFileStatus(f); // not a link (or missing: FileNotFoundException), as Hadoop answers it
    }

    static Set<PosixFilePermission> posix(FsPermission permission) {
      Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
      add(set, permission.getUserAction(), PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE,
          PosixFilePermission.OWNER_EXECUTE);
      add(set, permission.getGroupAction(), PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE,
          PosixFilePermission.GROUP_EXECUTE);
      add(set, permission.getOtherAction(), PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE,
          PosixFilePermission.OTHERS_EXECUTE);
      return set;
    }

    private static void add(Set<PosixFilePermission> set, FsAction action, PosixFilePermission read,
        PosixFilePermission write, PosixFilePermission execute) {
      if (action.implies(FsAction.READ)) {
        set.add(read);
      }
      if (action.implies(FsAction.WRITE)) {
        set.add(write);
      }
      if (action.implies(FsAction.EXECUTE)) {
        set.add(execute);
      }
    }
  }

  /** The {@code FileContext} side: Hadoop's {@code LocalFs} (checksummed) over {@link Raw}. */
  public static class Fs extends ChecksumFs {
    public Fs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(new RawFs(uri, conf));
    }
  }

  /** Hadoop's {@code RawLocalFs} over {@link Raw}. */
  public static class RawFs extends DelegateToFileSystem {
    public RawFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
      super(uri, new Raw(), conf, "file", false);
    }

    @Override
    public int getUriDefaultPort() {
      return -1; // no default port for file:///
    }

    @Override
    @Deprecated
    public FsServerDefaults getServerDefaults() throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    public FsServerDefaults getServerDefaults(Path f) throws IOException {
      return LocalConfigKeys.getServerDefaults();
    }

    @Override
    public boolean isValidName(String src) {
      return true; // local file systems differ in what they accept: as Hadoop's RawLocalFs, leave it to them
    }
  }
}
