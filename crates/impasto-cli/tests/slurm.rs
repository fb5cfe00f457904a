//! A real Slurm run of deploy/slurm/impasto-array.sbatch on a one-node cluster this test starts
//! itself (tests/slurm/cluster.sh: munged, slurmctld and slurmd in a temporary directory, on free
//! ports). `sbatch --array=0-3` over 8 photos; task 1 is cancelled (scancel: SIGTERM) while it
//! works and resubmitted alone; then every photo's result must exist exactly once, and each must
//! have been written exactly once over all the tasks' reports and logs.
//!
//! Needs root and Debian's slurmctld, slurmd, slurm-client and munge (.ci/run installs them);
//! without them it fails, it does not skip.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{real_weights, shared};
use impasto::image_io::{self, Image};

fn here(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The cluster, stopped when dropped (also when the test fails).
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let o = Command::new("bash")
            .arg(here("tests/slurm/cluster.sh"))
            .arg("start")
            .arg(dir)
            .output()
            .expect("running tests/slurm/cluster.sh");
        assert!(
            o.status.success(),
            "could not start the one-node Slurm cluster (this test needs root and \
             `apt-get install slurmctld slurmd slurm-client munge`): {}",
            text(&o)
        );
        Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        }
    }

    /// A Slurm client command against this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Waits until none of `job`'s tasks is pending or running.
    fn wait(&self, job: &str) {
        let start = Instant::now();
        loop {
            // Nothing listed (or, once the job is forgotten, an error and nothing listed).
            let o = self.cmd("squeue").args(["-h", "-j", job]).output().unwrap();
            if o.stdout.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            // A guard against a hung cluster, not a speed requirement.
            assert!(
                start.elapsed() < Duration::from_secs(900),
                "job {job} still queued after 15 min: {}",
                text(&o)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").args(["--user", "root"]).output();
        let _ = Command::new("bash")
            .arg(here("tests/slurm/cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn photos(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let (w, h) = (40, 30 + i);
        let rgb = (0..w * h * 3)
            .map(|k| ((k * (2 + i)) % 256) as f32)
            .collect();
        image_io::save(
            &Image::new(w, h, rgb, None).unwrap(),
            &dir.join(format!("img{i}.png")),
        )
        .unwrap();
    }
}

fn reports(out: &Path) -> Vec<serde_json::Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("report-")
        })
        .collect();
    // By task, then by job id (numerically: a resubmission's id is larger).
    let key = |p: &PathBuf| -> (u64, u64) {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let mut parts = name.trim_start_matches("report-").split('-');
        let mut next = || {
            parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        (next(), next())
    };
    paths.sort_by_key(key);
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn an_array_job_styles_every_photo_once_and_a_cancelled_task_resumes() {
    let weights = real_weights().to_path_buf();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    // .ci/run names the directory, so that its exit trap can stop the daemons even if this
    // test is killed before its own cleanup runs.
    let cluster_dir = std::env::var_os("IMPASTO_TEST_SLURM_DIR")
        .map_or_else(|| work.join("cluster"), PathBuf::from);
    let cluster = Cluster::start(&cluster_dir);
    photos(&work.join("photos"), 8);
    let out = work.join("out");
    let style = shared().join("images/starry_night.jpg");
    let script = here("../../deploy/slurm/impasto-array.sbatch");

    let submit = |array: &str, extra_env: &[(&str, &str)], iterations: &str| -> String {
        let mut c = cluster.cmd("sbatch");
        c.current_dir(work)
            .args([
                "--parsable",
                &format!("--array={array}"),
                "--cpus-per-task=1",
            ])
            .arg(format!("--output={}/task-%A_%a.log", work.display()))
            .arg(&script)
            .arg(work.join("photos"))
            .arg(&style)
            .arg(&out)
            .args([
                "--size",
                "32",
                "--optimizer",
                "adam",
                "--iterations",
                iterations,
            ])
            .arg("--weights")
            .arg(&weights)
            .env("IMPASTO", env!("CARGO_BIN_EXE_impasto"))
            .env("IMPASTO_PROGRESS_SECONDS", "0")
            .env_remove("IMPASTO_SHARD_COUNT");
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "sbatch: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };

    // Enough iterations per photo (Adam runs them all) for task 1 to be caught at work.
    let job = submit("0-3", &[], "150");
    // Cancel task 1 once it has begun optimising its first photo.
    let log1 = work.join(format!("task-{job}_1.log"));
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(&log1).unwrap_or_default();
        if log.contains("iteration 3/") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "task 1 never started working: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = cluster
        .cmd("scancel")
        .arg(format!("{job}_1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "scancel: {}", text(&o));
    cluster.wait(&job);

    // Task 1 (photos 2 and 3) was stopped on its first photo: its result is absent, its best
    // image so far kept apart, the next photo not reached; the other tasks finished theirs.
    let log = std::fs::read_to_string(&log1).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!out.join("img2-starry_night.png").exists(), "{log}");
    assert!(out.join("img2-starry_night.partial.png").exists(), "{log}");
    assert!(!out.join("img3-starry_night.png").exists(), "{log}");
    for i in [0, 1, 4, 5, 6, 7] {
        assert!(
            out.join(format!("img{i}-starry_night.png")).exists(),
            "img{i}"
        );
    }

    // Task 1 resubmitted alone, told the number of shards.
    let again = submit("1", &[("IMPASTO_SHARD_COUNT", "4")], "150");
    cluster.wait(&again);

    // Every photo's result exists, exactly once, and no partial image is left.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("img{i}-starry_night.png")).collect();
    assert_eq!(names, expected);

    // Nothing was written twice: over all reports (four first tasks and the resubmitted one)
    // each output succeeded exactly once, and the logs say `wrote` once per output.
    let all = reports(&out);
    assert_eq!(all.len(), 5, "one report per task run");
    let mut written: HashMap<String, usize> = HashMap::new();
    let mut outcomes: Vec<(u64, String, String)> = Vec::new();
    for r in &all {
        assert_eq!(r["shard"]["count"], 4);
        assert_eq!(r["shard"]["origin"], "slurm");
        for item in r["items"].as_array().unwrap() {
            let output = item["output"].as_str().unwrap().to_string();
            let outcome = item["outcome"].as_str().unwrap().to_string();
            if outcome == "succeeded" {
                *written.entry(output.clone()).or_default() += 1;
            }
            outcomes.push((r["shard"]["index"].as_u64().unwrap(), output, outcome));
        }
    }
    assert_eq!(written.len(), 8, "{outcomes:?}");
    assert!(written.values().all(|&n| n == 1), "{written:?}");
    // The cancelled run reported its photo interrupted; the rerun did it (and what followed).
    let shard1: Vec<&str> = outcomes
        .iter()
        .filter(|(i, _, _)| *i == 1)
        .map(|(_, _, o)| o.as_str())
        .collect();
    assert_eq!(
        shard1,
        ["interrupted", "succeeded", "succeeded"],
        "{outcomes:?}"
    );
    let mut wrote_lines = 0;
    for entry in std::fs::read_dir(work).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "log") {
            wrote_lines += std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with('[') && l.contains(": wrote "))
                .count();
        }
    }
    assert_eq!(wrote_lines, 8, "each result written once");
    drop(cluster);
}
