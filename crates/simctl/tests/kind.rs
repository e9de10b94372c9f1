//! The kind path (`tests/kind/`, `manifests/kind/`, the `Dockerfile`, `.github/workflows/kind.yml`)
//! checked without Docker: versions live in one place and pin node images by digest, the workflow
//! runs both supported Kubernetes versions with pinned actions and upstream's LoadBalancer e2e, the
//! image is built with the toolchain we pin, a failed run leaves evidence, and the e2e skip list
//! names real upstream tests (each with its reason) and leaves most of them running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `KEY=value` lines of a shell env file (comments and blank lines skipped).
fn env_file(rel: &str) -> BTreeMap<String, String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{rel}: {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn workflow() -> Value {
    serde_saphyr::from_str(&read(".github/workflows/kind.yml")).unwrap()
}

/// `(minor, patch)` of `kindest/node:v1.M.P@sha256:<64 hex>`; panics on anything less pinned.
fn node_image_version(image: &str) -> (u32, u32) {
    let rest = image
        .strip_prefix("kindest/node:v1.")
        .unwrap_or_else(|| panic!("{image}: not a kindest/node:v1.x image"));
    let (version, digest) = rest
        .split_once("@sha256:")
        .unwrap_or_else(|| panic!("{image}: not pinned by digest"));
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{image}: bad digest"
    );
    let (minor, patch) = version.split_once('.').unwrap();
    (minor.parse().unwrap(), patch.parse().unwrap())
}

#[test]
fn versions_live_in_one_place_and_node_images_are_pinned_by_digest() {
    let v = env_file("tests/kind/versions.env");
    let kind = &v["KIND_VERSION"];
    assert!(kind.starts_with("v0."), "{kind}");
    assert_eq!(v["KIND_SHA256_LINUX_AMD64"].len(), 64);
    let oldest = node_image_version(&v["KIND_NODE_IMAGE_OLDEST"]);
    let newest = node_image_version(&v["KIND_NODE_IMAGE_NEWEST"]);
    assert!(oldest < newest, "{oldest:?} {newest:?}");
    // PreferSameZone is beta and on by default from 1.34; older clusters would need the gate the
    // cluster config no longer sets (and 1.34+ may refuse once it is locked).
    assert!(oldest.0 >= 34, "oldest supported is 1.{}", oldest.0);
    let cluster = read("manifests/kind/cluster.yaml");
    let parsed: Value = serde_saphyr::from_str(&cluster).unwrap();
    assert!(parsed.get("featureGates").is_none(), "{parsed}");
    // The node image comes from versions.env through --image, never from the cluster config.
    assert!(!cluster.contains("image:"));
    let script = read("tests/kind/run.sh");
    for needle in [
        "source tests/kind/versions.env",
        "oldest) NODE_IMAGE=$KIND_NODE_IMAGE_OLDEST ;;",
        "newest) NODE_IMAGE=$KIND_NODE_IMAGE_NEWEST ;;",
        "kind create cluster --config manifests/kind/cluster.yaml --image \"$NODE_IMAGE\"",
    ] {
        assert!(script.contains(needle), "run.sh lacks {needle:?}");
    }
    // Nothing else names a kind release or a node image.
    let wf = read(".github/workflows/kind.yml");
    assert!(
        !wf.contains("/dl/v0.") && !wf.contains("kindest/node"),
        "{wf}"
    );
    assert!(wf.contains("source tests/kind/versions.env"));
    assert!(wf.contains("sha256sum --check"));
    // The docs name exactly these versions.
    let docs = read("docs/kind.md");
    for image in [&v["KIND_NODE_IMAGE_OLDEST"], &v["KIND_NODE_IMAGE_NEWEST"]] {
        let (tag, digest) = image.split_once("@sha256:").unwrap();
        let version = tag.strip_prefix("kindest/node:").unwrap();
        let row = format!("{version} (`{tag}@sha256:{}…`)", &digest[..8]);
        assert!(docs.contains(&row), "docs/kind.md lacks {row:?}");
    }
    assert!(
        docs.contains(&format!("| kind | {kind} ")),
        "docs/kind.md: kind {kind}"
    );
}

#[test]
fn the_workflow_runs_both_versions_with_pinned_actions_and_upstream_e2e() {
    let wf = workflow();
    let job = &wf["jobs"]["kind"];
    assert_eq!(job["strategy"]["fail-fast"], false, "{job}");
    assert_eq!(
        job["strategy"]["matrix"]["kubernetes"],
        serde_json::json!(["oldest", "newest"])
    );
    for (name, j) in wf["jobs"].as_object().unwrap() {
        for step in j["steps"].as_array().unwrap() {
            let Some(uses) = step["uses"].as_str() else {
                continue;
            };
            let (_, rev) = uses.split_once('@').unwrap();
            assert!(
                rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()),
                "job {name}: {uses} is not pinned to a commit"
            );
        }
    }
    let steps = job["steps"].as_array().unwrap();
    let run = steps
        .iter()
        .find(|s| s["run"] == "tests/kind/run.sh")
        .expect("a step runs tests/kind/run.sh");
    assert_eq!(run["env"]["KUBERNETES"], "${{ matrix.kubernetes }}");
    assert_eq!(run["env"]["UPSTREAM_E2E"], "1");
    // The image the workflow builds (with cached layers) is the one run.sh loads into kind.
    assert_eq!(run["env"]["BUILD_IMAGE"], "0");
    let build = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("an image build step");
    assert_eq!(build["with"]["tags"], "simcloud/ccm:dev");
    assert_eq!(build["with"]["load"], true);
    assert_eq!(build["with"]["cache-from"], "type=gha");
    assert!(read("tests/kind/run.sh").contains("IMAGE=simcloud/ccm:dev"));
    assert!(steps.iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache@"))
    }));
    // The port-80 frontends bind as the runner user.
    assert!(steps.iter().any(|s| {
        s["run"]
            .as_str()
            .is_some_and(|r| r.contains("net.ipv4.ip_unprivileged_port_start=0"))
    }));
}

#[test]
fn the_image_builds_only_the_ccm_with_the_pinned_toolchain_and_cached_dependencies() {
    let dockerfile = read("Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("a pinned channel")
        .trim_matches('"');
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    assert!(
        from.starts_with(&format!("FROM rust:{channel}-")),
        "{from} is not rust-toolchain.toml's {channel}"
    );
    let build = &dockerfile[dockerfile.find("AS build").unwrap()..];
    let cook = build.find("cargo chef cook").expect("dependencies cooked");
    let copy = build.find("COPY . .").unwrap();
    assert!(
        cook < copy,
        "dependencies build before the sources are copied"
    );
    assert!(build.contains("cargo build --release --locked -p ccm &&"));
    assert!(!dockerfile.contains("-p cloud-sim") && !dockerfile.contains("-p simctl"));
    let ignored = read(".dockerignore");
    for path in ["target", ".git", "tests/kind/artifacts"] {
        assert!(
            ignored.lines().any(|l| l == path),
            "{path} not in .dockerignore"
        );
    }
}

/// The alternatives of the script's `NAME='a|b|c'` line.
fn alternatives(script: &str, name: &str) -> Vec<String> {
    let line = script
        .lines()
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= line"));
    let value = line[name.len() + 1..].trim_matches('\'');
    value.split('|').map(str::to_owned).collect()
}

/// Whether a ginkgo pattern made of literals, `.` and `\[`/`\]` occurs in `text`.
fn occurs(pattern: &str, text: &str) -> bool {
    let pattern = pattern.replace("\\[", "[").replace("\\]", "]");
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    (0..=t.len().saturating_sub(p.len()))
        .any(|s| t.len() >= p.len() && p.iter().zip(&t[s..]).all(|(a, b)| *a == '.' || a == b))
}

#[test]
fn occurs_matches_like_ginkgo_for_the_patterns_we_use() {
    assert!(occurs("source.ranges", "allow access from source ranges"));
    assert!(occurs(
        "\\[Feature:LoadBalancer\\]",
        "LoadBalancers [Feature:LoadBalancer] x"
    ));
    assert!(!occurs("source.ranges", "source-range"));
    assert!(!occurs("abc", "ab"));
}

/// Titles of upstream's LoadBalancer tests, from the Kubernetes source Go already downloaded for
/// the control-plane fixture (tests/control-plane/go.mod); `None` when it is not there.
fn upstream_loadbalancer_tests() -> Option<Vec<String>> {
    let gomod = read("tests/control-plane/go.mod");
    let version = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("require k8s.io/kubernetes "))
        .or_else(|| {
            gomod
                .lines()
                .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        })?
        .trim()
        .to_owned();
    let go = ["go", "/usr/local/go/bin/go"].into_iter().find_map(|go| {
        std::process::Command::new(go)
            .args(["env", "GOMODCACHE"])
            .output()
            .ok()
    })?;
    let cache = String::from_utf8(go.stdout).ok()?;
    let file = Path::new(cache.trim())
        .join(format!("k8s.io/kubernetes@{version}"))
        .join("test/e2e/network/loadbalancer.go");
    let source = std::fs::read_to_string(file).ok()?;
    let titles = source
        .split("It(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(t, _)| t.to_owned()))
        .collect();
    Some(titles)
}

#[test]
fn the_upstream_e2e_skip_list_names_real_tests_with_reasons_and_leaves_most_running() {
    let script = read("tests/kind/upstream-e2e.sh");
    assert_eq!(
        alternatives(&script, "FOCUS"),
        ["\\[Feature:LoadBalancer\\]"]
    );
    let skips = alternatives(&script, "SKIP");
    for skip in &skips {
        assert!(
            script
                .lines()
                .any(|l| l.starts_with("#  - ") && l.contains(skip.as_str())),
            "the skip {skip:?} has no reason in a `#  - ` comment"
        );
    }
    assert!(script.contains("--report-dir=\"$ARTIFACTS/junit\""));
    assert!(script.contains("kubernetes-test-linux-amd64.tar.gz"));
    let Some(titles) = upstream_loadbalancer_tests() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Kubernetes source in Go's module cache: run tests/control-plane/build.sh"
        );
        eprintln!(
            "SKIPPED: no Kubernetes source in Go's module cache (tests/control-plane/build.sh)"
        );
        return;
    };
    assert!(titles.len() >= 10, "{titles:?}");
    // Every skip (but the labels, which match the `[Disruptive]`/`[Serial]` markers) names a test
    // that exists, so a renamed upstream test cannot silently start running or stay skipped.
    for skip in skips
        .iter()
        .filter(|s| !["Disruptive", "Serial"].contains(&s.as_str()))
    {
        assert!(
            titles.iter().any(|t| occurs(skip, t)),
            "the skip {skip:?} matches no upstream LoadBalancer test: {titles:#?}"
        );
    }
    let running: Vec<&String> = titles
        .iter()
        .filter(|t| !skips.iter().any(|s| occurs(s, t)))
        .collect();
    eprintln!("upstream LoadBalancer tests that run: {running:#?}");
    assert!(
        running.len() * 2 > titles.len(),
        "the skip list leaves only {} of {} tests",
        running.len(),
        titles.len()
    );
}
/// The kind run leaves evidence behind when it fails, however it fails, and the workflow keeps it.
#[test]
fn the_kind_run_collects_evidence_on_any_failure_and_the_workflow_uploads_it() {
    let script = read("tests/kind/run.sh");
    for needle in [
        "trap cleanup EXIT",
        "trap 'exit 130' INT",
        "trap 'exit 143' TERM",
        "kind export logs",
        "kubectl get pods -A -o wide",
        "kubectl get events -A",
        "kubectl describe svc web",
        // A re-run starts clean and does not trip over the Secret of the last one.
        "kind delete cluster --name \"$CLUSTER\" >/dev/null 2>&1 || true\nkind create cluster",
        "--dry-run=client -o yaml |",
    ] {
        assert!(script.contains(needle), "run.sh lacks {needle:?}");
    }
    // The cleanup collects only when the exit status says something failed.
    let cleanup = &script[script.find("cleanup() {").unwrap()..];
    assert!(
        cleanup.contains("if [[ $status != 0 ]]; then\n        collect"),
        "{cleanup}"
    );
    // The gateway comes from the nodes' own network, not a network named `kind`.
    assert!(!script.contains("docker network inspect kind"));
    let wf = workflow();
    assert_eq!(wf["permissions"]["contents"], "read", "{wf}");
    assert!(wf["concurrency"]["group"].is_string(), "{wf}");
    let steps = wf["jobs"]["kind"]["steps"].as_array().unwrap();
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload step");
    assert_eq!(upload["if"], "always()");
    let e2e = steps
        .iter()
        .find(|s| s["run"] == "tests/kind/run.sh")
        .unwrap();
    assert_eq!(e2e["env"]["ARTIFACTS"], upload["with"]["path"]);
}

/// run.sh refuses bad input and missing tools at once, before it creates or starts anything (these
/// paths run here: they need no Docker).
#[test]
fn the_kind_run_refuses_bad_input_before_touching_anything() {
    let run = |envs: &[(&str, &str)]| {
        let bash = if Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/usr/bin/bash"
        };
        let out = std::process::Command::new(bash)
            .arg(root().join("tests/kind/run.sh"))
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("KUBERNETES", "middle")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KUBERNETES must be oldest or newest"), "{err}");
    // A PATH with only what the script needs before its check (dirname): no docker, kind, kubectl.
    let bin = std::env::temp_dir().join(format!("simcloud-kind-path-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let dirname = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("dirname"))
        .find(|p| p.exists())
        .expect("dirname on the PATH");
    let _ = std::fs::remove_file(bin.join("dirname"));
    std::os::unix::fs::symlink(dirname, bin.join("dirname")).unwrap();
    let (code, err) = run(&[("PATH", bin.to_str().unwrap())]);
    std::fs::remove_dir_all(&bin).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("needs docker on the PATH"), "{err}");
    assert!(
        !err.contains("evidence collected"),
        "nothing to collect yet: {err}"
    );
}
