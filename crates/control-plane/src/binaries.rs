//! Where the built binaries are (the cache `tests/control-plane/build.sh` fills, or the
//! environment's directory), and what a test does when they are missing.

use super::*;

/// Where the built binaries are, checked to be complete.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The directory binaries are looked for in: `$SIMCLOUD_CONTROL_PLANE_BIN`, else the
    /// `build.sh` cache (`${SIMCLOUD_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-~/.cache}/simcloud/control-plane}/<version>/bin`).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os(BIN_ENV) {
            return PathBuf::from(d);
        }
        let root = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|c| PathBuf::from(c).join("simcloud/control-plane"))
            })
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
                PathBuf::from(home).join(".cache/simcloud/control-plane")
            });
        root.join(VERSION).join("bin")
    }

    /// The binaries in [`Binaries::default_dir`].
    pub fn locate() -> Result<Self, Error> {
        Self::in_dir(Self::default_dir())
    }

    /// The binaries in `dir`, which must hold every one of [`BINARIES`], executable and not
    /// empty. A cache made by `build.sh` also has its manifest beside `dir` (written last, so a
    /// build that was interrupted has none).
    pub fn in_dir(dir: PathBuf) -> Result<Self, Error> {
        use std::os::unix::fs::PermissionsExt;
        if !dir.is_dir() {
            return Err(Error::NotBuilt { dir });
        }
        let broken = |problem: String| Error::BrokenCache {
            dir: dir.clone(),
            problem,
        };
        if std::env::var_os(BIN_ENV).is_none()
            && dir.file_name().is_some_and(|n| n == "bin")
            && !dir.with_file_name("manifest").is_file()
        {
            return Err(broken(
                "it has no manifest (an interrupted build?)".to_owned(),
            ));
        }
        for name in BINARIES {
            let path = dir.join(name);
            let meta =
                std::fs::metadata(&path).map_err(|e| broken(format!("{name} is missing ({e})")))?;
            if !meta.is_file() || meta.len() == 0 {
                return Err(broken(format!("{name} is empty or not a file")));
            }
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(broken(format!("{name} is not executable")));
            }
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Set to `1` to let tests of this tier skip (with a message) when the binaries are missing.
/// Ignored under CI (`CI` set), where a missing fixture is a failure.
pub const SKIP_ENV: &str = "SIMCLOUD_SKIP_CONTROL_PLANE";

/// For tests of the control-plane tier: the binaries, or `None` when they are missing and the
/// developer asked to skip with `SIMCLOUD_SKIP_CONTROL_PLANE=1` (never under CI). Otherwise a
/// missing or broken fixture panics with the error, which names the build command: a test of
/// this tier never passes silently without its control plane.
pub fn binaries_for_test() -> Option<Binaries> {
    match Binaries::locate() {
        Ok(b) => Some(b),
        Err(e) => {
            let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
            if skip && std::env::var_os("CI").is_none() {
                eprintln!("SKIPPED (control-plane tier): {e}");
                None
            } else {
                panic!("{e} (or set {SKIP_ENV}=1 to skip this tier outside CI)");
            }
        }
    }
}
