//! Processes left running by a fixture whose owner was killed outright.
//!
//! Dropping a [`ControlPlane`](crate::ControlPlane) kills its processes, but a `kill -9` of the
//! process that owns it (a test runner's timeout, a CI job stopped) runs no drop, and etcd and
//! the Kubernetes components then run on, holding memory, ports and their directory. Each
//! fixture directory therefore names its owner and its processes, and each fixture, as it
//! starts, ends the processes of directories under the same parent whose owner is gone.
//!
//! A recorded process is killed only while `/proc/<pid>/exe` is still the executable recorded
//! for it, so a process ID reused by something else is left alone. Linux only: elsewhere
//! nothing is recorded or swept.

use std::path::{Path, PathBuf};

/// The file naming a fixture directory's owner (its process ID).
const OWNER_FILE: &str = "owner.pid";
/// The file listing a fixture directory's processes: `<pid> <executable>` per line.
const PROCESSES_FILE: &str = "processes";
/// What the fixture names the directories it makes.
pub(crate) const DIR_PREFIX: &str = "control-plane-";

/// The executable a running process runs, as the kernel reports it.
fn executable(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Records this process as the owner of the fixture in `dir`.
pub(crate) fn record_owner(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(OWNER_FILE), format!("{}\n", std::process::id()))
}

/// Records a process started for the fixture in `dir`.
pub(crate) fn record_process(dir: &Path, pid: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    let Some(exe) = executable(pid) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(PROCESSES_FILE))?;
    writeln!(f, "{pid} {}", exe.display())
}

/// Kills the recorded processes of every fixture directory under `parent` whose owner has
/// died, and removes those directories; returns how many processes were killed. Directories
/// of a live owner, and those whose processes had all ended (kept after a failing test, for
/// a look), are left as they are.
pub(crate) fn sweep(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut killed = 0;
    let fixtures = entries.flatten().filter(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX))
    });
    for dir in fixtures.map(|e| e.path()) {
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        // No owner recorded: not a fixture's, or one being made right now.
        let Some(owner) = owner else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        let listed = std::fs::read_to_string(dir.join(PROCESSES_FILE)).unwrap_or_default();
        let orphans: Vec<u32> = listed
            .lines()
            .filter_map(|line| {
                let (pid, exe) = line.split_once(' ')?;
                let pid = pid.parse::<u32>().ok()?;
                (executable(pid)? == Path::new(exe)).then_some(pid)
            })
            .collect();
        if orphans.is_empty() {
            continue;
        }
        for pid in &orphans {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            match status {
                Ok(s) if s.success() => killed += 1,
                other => tracing::warn!(pid, ?other, "cannot kill a dead fixture's process"),
            }
        }
        tracing::warn!(
            dir = %dir.display(),
            owner,
            processes = orphans.len(),
            "killed the processes of a control-plane fixture whose owner died without stopping them"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A directory as a fixture leaves it: owned by `owner`, running `child`.
    fn fixture_dir(parent: &Path, name: &str, owner: u32, child: &std::process::Child) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(OWNER_FILE), format!("{owner}\n")).unwrap();
        record_process(&dir, child.id()).unwrap();
        dir
    }

    #[test]
    fn the_processes_of_a_dead_owner_are_killed_and_a_live_owners_kept() {
        let parent =
            std::env::temp_dir().join(format!("orphans-test-{:016x}", rand::random::<u64>()));
        // An owner that has died: a process that ran and was reaped.
        let mut gone = Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let mut orphan = sleeper();
        let mut kept = sleeper();
        let mut unrelated = sleeper();
        let dead_dir = fixture_dir(&parent, "control-plane-dead", gone.id(), &orphan);
        let live_dir = fixture_dir(&parent, "control-plane-live", std::process::id(), &kept);
        // Not a fixture's directory by name, whatever its files say.
        let other_dir = fixture_dir(&parent, "something-else", gone.id(), &unrelated);

        assert_eq!(sweep(&parent), 1);
        assert_eq!(
            orphan.wait().unwrap().signal(),
            Some(9),
            "the orphan is killed"
        );
        assert!(!dead_dir.exists(), "its directory is removed");
        for (child, dir) in [(&mut kept, &live_dir), (&mut unrelated, &other_dir)] {
            assert!(child.try_wait().unwrap().is_none(), "{}", dir.display());
            assert!(dir.exists());
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // Nothing left to kill: a second sweep does nothing, and a directory whose processes
        // have all ended is kept.
        let ended = fixture_dir(&parent, "control-plane-ended", gone.id(), &kept);
        assert_eq!(sweep(&parent), 0);
        assert!(ended.exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
