//! Writing a file so that readers see either the old file or the complete new one, never a
//! half-written one: an interrupted or failed run leaves its previous output intact.
//!
//! What may sit at an output's path: nothing (a new file is created), a regular file (replaced),
//! or a symbolic link, which is written through: the file it points to is replaced (atomically,
//! in that file's directory) and the link is kept. Anything else — a directory, a device such as
//! `/dev/null`, a FIFO, a socket — is refused, since replacing it by a regular file would
//! destroy it (as root, "writing" to `/dev/null` by rename would replace the system's device).

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Links followed before giving up, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// Writes `path` through a temporary file in the same directory as the file it replaces,
/// renamed over it once `write` has succeeded and the data is flushed. On failure (or a panic
/// inside `write`) the temporary file is removed and `path` is untouched.
///
/// A symbolic link at `path` is written through (see the module documentation); a path that is
/// neither a regular file nor a link to one is refused before anything is written. A new file
/// gets the mode any new file gets (0666 less the umask); a replaced file keeps its permissions.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let target = destination(path)?;
    let replaced = existing_permissions(&target)?;
    let (file, tmp) = temporary_in(parent_dir(&target), &target)
        // Named after the destination: the temporary's name means nothing to the user.
        .map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    if let Some(permissions) = replaced {
        file.set_permissions(permissions)
            .map_err(|e| Error::io(path, e))?;
    }
    file.sync_all().map_err(|e| Error::io(path, e))?;
    drop(file);
    // On failure `tmp` comes back inside the error and is removed when that is dropped.
    tmp.persist(&target).map_err(|e| Error::io(path, e.error))
}

/// The file a write to `path` would replace or create: `path` itself, or where its chain of
/// symbolic links ends. Refuses a path at which anything but a regular file, a link to one or
/// nothing at all sits, naming what is there, and a missing directory.
pub fn destination(path: &Path) -> Result<PathBuf> {
    if path.file_name().is_none() {
        return Err(Error::parameter(format!(
            "{} is not a file name",
            path.display()
        )));
    }
    let target = follow_links(path)?;
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_file() => Ok(target),
        Ok(meta) => Err(Error::io(
            path,
            std::io::Error::new(
                if meta.is_dir() {
                    ErrorKind::IsADirectory
                } else {
                    ErrorKind::InvalidInput
                },
                format!(
                    "{}{}, not a regular file: an output replaces its file, so impasto refuses \
                     to write here (choose a file path)",
                    if target == path {
                        "this is ".to_string()
                    } else {
                        format!("a link to {}, which is ", target.display())
                    },
                    kind_of(&meta.file_type())
                ),
            ),
        )),
        // Nothing there yet (or a parent that is not a directory, which this names).
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            check_parent_dir(&target)?;
            Ok(target)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Checks, before any long work, that `path` can be written: what sits there may be replaced
/// ([`destination`]), and a file can be created in the directory it would be written into (a
/// temporary file is created there and removed at once).
pub fn check_writable(path: &Path) -> Result<()> {
    let target = destination(path)?;
    temporary_in(parent_dir(&target), &target)
        .map(drop)
        .map_err(|e| Error::io(path, e))
}

/// Follows the chain of symbolic links at `path` to the path where it ends (which need not
/// exist: a dangling link is written through too, creating its target).
pub fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = std::fs::read_link(&current).map_err(|e| Error::io(&current, e))?;
                // A relative link is relative to the directory holding it.
                current = parent_dir(&current).join(next);
            }
            _ => return Ok(current),
        }
    }
    Err(Error::io(
        path,
        std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("more than {MAX_LINKS} symbolic links in a chain (a loop?)"),
        ),
    ))
}

/// What a non-regular file is, in words.
fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// The permissions of the regular file `target` about to be replaced, if there is one.
fn existing_permissions(target: &Path) -> Result<Option<std::fs::Permissions>> {
    match std::fs::metadata(target) {
        Ok(meta) => Ok(Some(meta.permissions())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// A hidden temporary file `.NAME.XXXXXX.tmp` in `dir`, removed when the returned path is
/// dropped. Created with mode 0666 less the umask, as `File::create` would, rather than
/// `tempfile`'s private 0600: it becomes the output.
fn temporary_in(dir: &Path, target: &Path) -> std::io::Result<(File, tempfile::TempPath)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    match builder.tempfile_in(dir) {
        Ok(file) => Ok(file.into_parts()),
        // tempfile names its random temporary in the message, which means nothing to the user.
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot create a file in {}: {}", dir.display(), e.kind()),
        )),
    }
}

/// The directory a path lives in; a bare file name lives in the current directory.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks that the directory `path` would be written into exists, so that a typo fails before
/// a long run rather than after it.
pub fn check_parent_dir(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the output directory does not exist",
            ),
        )),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// [`write_atomic`] of a byte string.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::write(&path, "old").unwrap();
        write_bytes_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["out.csv"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half").unwrap();
            Err(Error::parameter("encoder failed"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("encoder failed"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["out.csv"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/out.csv");
        let err = write_bytes_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("no/such/dir"), "{err}");
    }

    #[test]
    fn a_symlink_is_written_through_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("real");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("log.csv"), "old").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("real/log.csv", &link).unwrap();
        write_bytes_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(sub.join("log.csv")).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["link.csv", "real"]);
        assert_eq!(entries(&sub), ["log.csv"]);

        // A dangling link creates its target.
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink(sub.join("made.csv"), &dangling).unwrap();
        write_bytes_atomic(&dangling, b"x").unwrap();
        assert_eq!(std::fs::read_to_string(sub.join("made.csv")).unwrap(), "x");
        assert!(std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn special_files_and_directories_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fifo = d.join("fifo.csv");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let socket = d.join("socket.csv");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let null_link = d.join("null.csv");
        std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
        let directory = d.join("dir.csv");
        std::fs::create_dir(&directory).unwrap();
        for (path, what) in [
            (&fifo, "FIFO"),
            (&socket, "socket"),
            (
                &null_link,
                "a link to /dev/null, which is a character device",
            ),
            (&directory, "directory"),
        ] {
            for err in [
                check_writable(path).unwrap_err(),
                write_bytes_atomic(path, b"x").unwrap_err(),
            ] {
                let message = format!("{err:#}");
                assert!(message.contains(what), "{message}");
                assert!(message.contains("not a regular file"), "{message}");
            }
        }
        let kinds = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
        use std::os::unix::fs::FileTypeExt;
        assert!(kinds(&fifo).is_fifo() && kinds(&socket).is_socket());
        assert!(kinds(&null_link).is_symlink() && kinds(&directory).is_dir());
        assert!(kinds(Path::new("/dev/null")).is_char_device());
        assert_eq!(
            entries(d),
            ["dir.csv", "fifo.csv", "null.csv", "socket.csv"]
        );
    }

    #[test]
    fn an_unwritable_directory_is_found_by_the_check() {
        // Permission bits do not stop root, which these tests may run as; /sys refuses new
        // files even to root.
        let sys = Path::new("/sys");
        if !sys.is_dir() {
            return;
        }
        let err = check_writable(&sys.join("impasto-out.png")).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("cannot create a file in /sys"),
            "{message}"
        );
        // A parent that is a regular file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = check_writable(&file.join("out.png")).unwrap_err();
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
        // And the check leaves nothing behind.
        check_writable(&dir.path().join("out.png")).unwrap();
        assert_eq!(entries(dir.path()), ["file"]);
    }

    #[test]
    fn a_new_file_gets_the_usual_mode_and_a_replaced_one_keeps_its_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let usual = dir.path().join("usual");
        File::create(&usual).unwrap();
        let new = dir.path().join("new.csv");
        write_bytes_atomic(&new, b"x").unwrap();
        assert_eq!(mode(&new), mode(&usual));

        let kept = dir.path().join("kept.csv");
        std::fs::write(&kept, "old").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_bytes_atomic(&kept, b"new").unwrap();
        assert_eq!(mode(&kept), 0o640);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "new");
    }

    #[test]
    fn a_panic_while_writing_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::write(&path, "old").unwrap();
        let result = std::panic::catch_unwind(|| {
            let _ = write_atomic(&path, |w| {
                w.write_all(b"half").unwrap();
                w.flush().unwrap();
                panic!("encoder bug");
            });
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["out.csv"]);
    }
}
