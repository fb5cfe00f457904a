//! The Kubernetes Indexed Job in deploy/: the manifest parses, is an Indexed Job whose shard count
//! matches its completions, and its worker command, run once per index with the environment the
//! manifest gives (the volume mapped to a temporary directory, the size made tiny), styles every
//! photo exactly once.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{real_weights, shared, stderr};
use impasto::image_io::{self, Image};
use serde_norway::Value;

fn manifest() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/indexed-job.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// `$(NAME)` references expanded from `env`, as the kubelet does for args.
fn expand(arg: &str, env: &HashMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    assert!(!out.contains("$("), "unexpanded reference in {arg}");
    out
}

#[test]
fn the_indexed_job_runs_every_photo_once() {
    let m = manifest();
    assert_eq!(str_of(&m["kind"]), "Job");
    assert_eq!(str_of(&m["apiVersion"]), "batch/v1");
    let spec = &m["spec"];
    assert_eq!(str_of(&spec["completionMode"]), "Indexed");
    let completions = spec["completions"].as_u64().unwrap() as usize;
    let pod = &spec["template"]["spec"];
    assert_eq!(str_of(&pod["restartPolicy"]), "Never");
    let container = &pod["containers"][0];
    let mount = str_of(&container["volumeMounts"][0]["mountPath"]).to_string();

    // The environment the manifest sets; the index is what the downward API gives pod i.
    let mut env: HashMap<String, String> = HashMap::new();
    let mut index_from_annotation = false;
    for var in container["env"].as_sequence().unwrap() {
        let name = str_of(&var["name"]).to_string();
        if let Some(v) = var.get("value") {
            env.insert(name, str_of(v).to_string());
        } else {
            let field = str_of(&var["valueFrom"]["fieldRef"]["fieldPath"]);
            assert_eq!(name, "JOB_COMPLETION_INDEX");
            assert_eq!(
                field,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
            index_from_annotation = true;
        }
    }
    assert!(
        index_from_annotation,
        "JOB_COMPLETION_INDEX comes from the pod's annotation"
    );
    assert_eq!(
        env["IMPASTO_SHARD_COUNT"].parse::<usize>().unwrap(),
        completions,
        "IMPASTO_SHARD_COUNT must equal completions"
    );

    // The volume: photos, the painting, the cache, the results.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let at =
        |p: &str| -> PathBuf { data.join(p.strip_prefix(&mount).unwrap().trim_start_matches('/')) };
    let command: Vec<&str> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(command, ["impasto"]);
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| str_of(a).to_string())
        .collect();
    let flag = |name: &str| -> String {
        let i = args
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("no {name}"));
        args[i + 1].clone()
    };
    let photos = at(&flag("--content"));
    std::fs::create_dir_all(&photos).unwrap();
    let n = 7;
    for i in 0..n {
        let (w, h) = (36 + i, 28);
        let rgb = (0..w * h * 3)
            .map(|k| ((k * (5 + i)) % 256) as f32)
            .collect();
        image_io::save(
            &Image::new(w, h, rgb, None).unwrap(),
            &photos.join(format!("photo{i}.jpg")),
        )
        .unwrap();
    }
    let style = at(&flag("--style"));
    std::fs::copy(shared().join("images/the_scream.jpg"), &style).unwrap();
    let out = at(&flag("--output"));

    let mut done: Vec<String> = Vec::new();
    for index in 0..completions {
        let mut pod_env = env.clone();
        pod_env.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
        let mut argv: Vec<String> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = expand(&args[i], &pod_env);
            // Tiny runs: the manifest's size is for real work.
            if a == "--size" {
                argv.extend(["--size".into(), "32".into()]);
                i += 2;
                continue;
            }
            argv.push(if a.starts_with(&mount) {
                at(&a).display().to_string()
            } else {
                a
            });
            i += 1;
        }
        argv.extend(["--iterations", "2", "--weights"].map(String::from));
        argv.push(real_weights().display().to_string());
        let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
        c.args(&argv);
        for var in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            "AWS_BATCH_JOB_ARRAY_INDEX",
        ] {
            c.env_remove(var);
        }
        for (k, v) in &pod_env {
            let v = if v.starts_with(&mount) {
                at(v).display().to_string()
            } else {
                v.clone()
            };
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "pod {index}: {}", stderr(&o));
        let report_path = at(&expand(&flag("--report"), &pod_env));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        assert_eq!(report["shard"]["index"], index);
        assert_eq!(report["shard"]["count"], completions);
        assert_eq!(report["shard"]["origin"], "kubernetes");
        for item in report["items"].as_array().unwrap() {
            assert_eq!(item["outcome"], "succeeded");
            done.push(item["content"].as_str().unwrap().to_string());
        }
    }
    let mut expected: Vec<String> = (0..n)
        .map(|i| photos.join(format!("photo{i}.jpg")).display().to_string())
        .collect();
    expected.sort();
    assert_eq!(
        done, expected,
        "every photo once, in order, across the pods"
    );
    let results = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(results, n);
    // `{stem}-{style}.png`, the style named after the manifest's file, not the painting in it.
    let style_stem = style.file_stem().unwrap().to_string_lossy();
    assert!(Path::new(&out)
        .join(format!("photo0-{style_stem}.png"))
        .exists());
}
