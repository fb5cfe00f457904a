//! The work list of a batch: the contents named on the command line, expanded and sorted, and
//! the output each one becomes. The list is the same on every machine given the same arguments
//! and files, which is what lets shards split it without talking to each other.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File extensions a directory's images are recognised by (any case).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "tif", "tiff"];

/// One photo of a batch and the file its result goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// The content image, as found (a directory's entry, a glob's match or a file as given).
    pub content: PathBuf,
    /// Where its result is written.
    pub output: PathBuf,
}

/// The contents `args` name, each one a directory (its image files, by extension, not those
/// of subdirectories nor hidden ones), a glob pattern (`photos/*.jpg`, for when no shell expands
/// it: a scheduler's command, a quoted argument) or a file. Sorted by path, and each file once
/// even if named twice (by two spellings, or by a directory and a pattern).
///
/// A path that does not exist, a pattern that matches nothing and a directory without images
/// are errors: a typo should not pass for an empty batch. Files are not opened here; one that
/// is not an image fails alone when the batch reaches it.
pub fn expand_contents(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let before = found.len();
            let entries = std::fs::read_dir(arg).map_err(|e| Error::io(arg, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(arg, e))?;
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && has_image_extension(&path) && path.is_file() {
                    found.push(path);
                }
            }
            if found.len() == before {
                return Err(Error::parameter(format!(
                    "--content {}: the directory holds no images (.{})",
                    arg.display(),
                    IMAGE_EXTENSIONS.join(", .")
                )));
            }
        } else if arg.exists() {
            found.push(arg.clone());
        } else if is_pattern(arg) {
            let before = found.len();
            let pattern = arg.to_str().ok_or_else(|| {
                Error::parameter(format!("--content {}: not valid UTF-8", arg.display()))
            })?;
            let paths = glob::glob(pattern).map_err(|e| {
                Error::parameter(format!("--content {pattern}: not a valid pattern: {e}"))
            })?;
            for path in paths {
                let path = path.map_err(|e| {
                    let at = e.path().to_path_buf();
                    Error::io(at, e.into())
                })?;
                if path.is_file() {
                    found.push(path);
                }
            }
            if found.len() == before {
                return Err(Error::parameter(format!(
                    "--content {pattern}: the pattern matches no file"
                )));
            }
        } else {
            return Err(Error::io(
                arg,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    found.sort();
    // The same file by two names counts once: its first name in sorted order.
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    Ok(found)
}

/// Whether `path` is a glob pattern rather than a name.
fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// How outputs are named: a file name with placeholders `{stem}` (the content's file name
/// without its extension), `{style}` (the style images' stems joined by `+`) and `{dir}` (the
/// name of the content's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    parts: Vec<Part>,
    source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Stem,
    Style,
    Dir,
}

impl NameTemplate {
    /// `{stem}-{style}.png`.
    pub const DEFAULT: &'static str = "{stem}-{style}.png";

    /// Parses a template; refuses unknown placeholders, stray braces and path separators (every
    /// output goes into the output directory itself).
    pub fn parse(template: &str) -> Result<NameTemplate> {
        let bad = |why: &str| Error::parameter(format!("--name {template:?}: {why}"));
        if template.contains(['/', '\\', '\0']) {
            return Err(bad("a file name, without directories"));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(0) if rest.starts_with('}') => return Err(bad("a `}` without its `{`")),
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| bad("a `{` without its `}`"))?;
                    parts.push(match &rest[1..end] {
                        "stem" => Part::Stem,
                        "style" => Part::Style,
                        "dir" => Part::Dir,
                        other => {
                            return Err(bad(&format!(
                                "unknown placeholder {{{other}}} (there are {{stem}}, {{style}} \
                                 and {{dir}})"
                            )))
                        }
                    });
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    parts.push(Part::Text(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        if !parts.contains(&Part::Stem) {
            return Err(bad(
                "put {stem} in it, or every photo's result gets the same name",
            ));
        }
        Ok(NameTemplate {
            parts,
            source: template.to_string(),
        })
    }

    /// The output file name for `content` in the style `style` (see [`style_label`]).
    pub fn render(&self, content: &Path, style: &str) -> String {
        let stem = content
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = content
            .parent()
            .and_then(|p| {
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                p.canonicalize()
                    .ok()?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Stem => &stem,
                Part::Style => style,
                Part::Dir => &dir,
            })
            .collect()
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate::parse(NameTemplate::DEFAULT).expect("the default template parses")
    }
}

/// The `{style}` of output names: the style images' file stems joined by `+`.
pub fn style_label(styles: &[PathBuf]) -> String {
    styles
        .iter()
        .map(|p| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// The work list: each content with its output in `output_dir`, named by `template`. Refuses,
/// before any work, two contents whose outputs would have the same name and an output that
/// would land on an input (`inputs`: the contents, styles and any other file the run reads).
pub fn work_list(
    contents: &[PathBuf],
    output_dir: &Path,
    template: &NameTemplate,
    style: &str,
    inputs: &[PathBuf],
) -> Result<Vec<WorkItem>> {
    let mut by_name: HashMap<String, &Path> = HashMap::new();
    let protected: Vec<PathBuf> = inputs
        .iter()
        .chain(contents)
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut items = Vec::with_capacity(contents.len());
    for content in contents {
        let name = template.render(content, style);
        if let Some(other) = by_name.insert(name.clone(), content) {
            return Err(Error::parameter(format!(
                "{} and {} would both be written to {}: use a --name that tells them apart \
                 (e.g. \"{{dir}}-{}\")",
                other.display(),
                content.display(),
                output_dir.join(&name).display(),
                template.as_str()
            )));
        }
        let output = output_dir.join(&name);
        if let Ok(resolved) = output.canonicalize() {
            if protected.contains(&resolved) {
                return Err(Error::parameter(format!(
                    "{} is an input of this run: refusing to write {}'s result over it \
                     (choose another --output or --name)",
                    output.display(),
                    content.display()
                )));
            }
        }
        items.push(WorkItem {
            content: content.clone(),
            output,
        });
    }
    Ok(items)
}

/// Refuses an output directory that is one of the content directories (or a pattern's
/// directory): the next run over it would take the results for photos.
pub fn check_output_dir(content_args: &[PathBuf], output_dir: &Path) -> Result<()> {
    let Ok(out) = output_dir.canonicalize() else {
        return Ok(());
    };
    for arg in content_args {
        let dir = if arg.is_dir() {
            arg.as_path()
        } else if !arg.exists() && is_pattern(arg) {
            // The pattern's fixed leading directories.
            let fixed: PathBuf = arg
                .components()
                .take_while(|c| !is_pattern(Path::new(c.as_os_str())))
                .collect();
            if fixed.as_os_str().is_empty() {
                return check_same(Path::new("."), &out, arg, output_dir);
            }
            return check_same(&fixed, &out, arg, output_dir);
        } else {
            continue;
        };
        check_same(dir, &out, arg, output_dir)?;
    }
    Ok(())
}

fn check_same(dir: &Path, out: &Path, arg: &Path, output_dir: &Path) -> Result<()> {
    if dir.canonicalize().is_ok_and(|d| d == out) {
        return Err(Error::parameter(format!(
            "--output {} is where --content {} finds its photos: the results would be taken \
             for photos by the next run; choose another --output directory",
            output_dir.display(),
            arg.display()
        )));
    }
    Ok(())
}

/// Whether `output` holds a finished result, so that a rerun skips it: every output is written
/// atomically (a temporary file renamed into place once complete), and an interrupted item's
/// best image goes to [`partial_path`] instead, so a file at the output's own path is always
/// complete. A directory or other non-file there is not (and writing will refuse it).
pub fn is_complete(output: &Path) -> bool {
    output.is_file()
}

/// Where an item stopped by a signal keeps its best image so far: `NAME.partial.EXT` next to its
/// output, so that the output's own name only ever holds a finished result. The item's next
/// run replaces it and removes it once the output is written.
pub fn partial_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match output.extension() {
        Some(ext) => output.with_file_name(format!("{stem}.partial.{}", ext.to_string_lossy())),
        None => output.with_file_name(format!("{stem}.partial")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"x").unwrap();
        p
    }

    #[test]
    fn directories_patterns_and_files_expand_sorted_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b = touch(d, "b.jpg");
        let a = touch(d, "a.PNG");
        touch(d, "notes.txt");
        touch(d, ".hidden.png");
        std::fs::create_dir(d.join("sub")).unwrap();
        let c = touch(&d.join("sub"), "c.jpeg");
        let all = expand_contents(&[
            d.join("sub").join("*.jpeg"),
            d.to_path_buf(),
            b.clone(),
            // The same file by another spelling.
            d.join("sub").join("..").join("a.PNG"),
        ])
        .unwrap();
        assert_eq!(all, [a.clone(), b.clone(), c.clone()]);
        // Arguments in any order give the same list.
        let again = expand_contents(&[b.clone(), d.to_path_buf(), d.join("sub/*.jpeg")]).unwrap();
        assert_eq!(again, all);
        // A file named explicitly is taken whatever its extension (it fails later if need be).
        let txt = expand_contents(&[d.join("notes.txt")]).unwrap();
        assert_eq!(txt, [d.join("notes.txt")]);
    }

    #[test]
    fn typos_are_errors_not_empty_batches() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = |args: &[PathBuf]| format!("{:#}", expand_contents(args).unwrap_err());
        assert!(err(&[d.join("missing.jpg")]).contains("no such file"));
        assert!(err(&[d.join("*.jpg")]).contains("matches no file"));
        assert!(err(&[d.to_path_buf()]).contains("holds no images"));
        assert!(err(&[d.join("[.jpg")]).contains("not a valid pattern"));
    }

    #[test]
    fn names_follow_the_template() {
        let t = NameTemplate::default();
        assert_eq!(
            t.render(Path::new("in/photo.jpg"), "starry"),
            "photo-starry.png"
        );
        let styles = [PathBuf::from("a/starry.jpg"), PathBuf::from("scream.png")];
        assert_eq!(style_label(&styles), "starry+scream");
        let t = NameTemplate::parse("{style}_{stem}.jpg").unwrap();
        assert_eq!(t.render(Path::new("x.png"), "s"), "s_x.jpg");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("holiday")).unwrap();
        let t = NameTemplate::parse("{dir}-{stem}.png").unwrap();
        assert_eq!(
            t.render(&dir.path().join("holiday/p.jpg"), "s"),
            "holiday-p.png"
        );
        for (bad, why) in [
            ("{stem", "without its `}`"),
            ("stem}.png", "without its `{`"),
            ("{size}.png", "unknown placeholder {size}"),
            ("out/{stem}.png", "without directories"),
            ("{style}.png", "put {stem} in it"),
        ] {
            let e = NameTemplate::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn colliding_names_and_outputs_on_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("a")).unwrap();
        std::fs::create_dir(d.join("b")).unwrap();
        let x1 = touch(&d.join("a"), "x.jpg");
        let x2 = touch(&d.join("b"), "x.png");
        let t = NameTemplate::default();
        let e = work_list(&[x1.clone(), x2.clone()], d, &t, "s", &[]).unwrap_err();
        assert!(e.to_string().contains("would both be written to"), "{e}");
        let by_dir = NameTemplate::parse("{dir}-{stem}-{style}.png").unwrap();
        let items = work_list(&[x1.clone(), x2.clone()], d, &by_dir, "s", &[]).unwrap();
        assert_eq!(items[0].output, d.join("a-x-s.png"));
        assert_eq!(items[1].output, d.join("b-x-s.png"));
        // A style image that happens to have an output's name.
        let style = touch(d, "x-s.png");
        let e = work_list(&[x1], d, &t, "s", &[style]).unwrap_err();
        assert!(e.to_string().contains("is an input of this run"), "{e}");
    }

    #[test]
    fn the_output_directory_may_not_be_a_content_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("out")).unwrap();
        let e = check_output_dir(&[d.to_path_buf()], d).unwrap_err();
        assert!(e.to_string().contains("would be taken"), "{e}");
        let e = check_output_dir(&[d.join("*.jpg")], &d.join("out/..")).unwrap_err();
        assert!(e.to_string().contains("would be taken"), "{e}");
        check_output_dir(&[d.to_path_buf(), d.join("*.jpg")], &d.join("out")).unwrap();
    }

    #[test]
    fn complete_means_a_file_at_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p-s.png");
        assert!(!is_complete(&out));
        assert_eq!(partial_path(&out), dir.path().join("p-s.partial.png"));
        std::fs::write(partial_path(&out), b"x").unwrap();
        assert!(!is_complete(&out), "a partial result is not the output");
        std::fs::create_dir(&out).unwrap();
        assert!(!is_complete(&out), "a directory is not a result");
    }
}
