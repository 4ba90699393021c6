//! `opsctl fmt` through the binary: the canonical layout, idempotence (also over every `.hcl`
//! file of the repository), comments and heredocs kept, `--check` (exit 3), `--diff`,
//! `--recursive`, standard input and syntax errors.

mod support;

use std::path::{Path, PathBuf};

use support::{opsctl, repo_root, run, run_with_stdin, Output, Workdir};

/// Runs `opsctl fmt ARGS...` in `work`.
fn fmt(work: &Workdir, args: &[&str]) -> Output {
    let mut cmd = opsctl(work, None);
    cmd.arg("fmt").args(args);
    run(&mut cmd)
}

/// A file with every kind of bad layout `fmt` fixes.
const MESSY: &str = r#"# Node maintenance.


variable   "node"{
	type=string
  default    =   "worker-1"   
      description = "the node to drain"
}
provider "kubernetes" {
config_path = "~/.kube/config"
  namespace= "default"
}



step "kubernetes_drain" "node" {
  node = var.node
  timeout="10m"
  ignore_daemonsets    = true


  delete_emptydir_data = true
  labels = {
      app="web"
    "tier.example.com/name"   = "frontend"
  }
  list = [  "a","b",
           "c"   ]
  when = var.node=="x"?1:2
  wait {
     timeout = "5m"
  }
  empty {
  }
}
"#;

#[test]
fn badly_laid_out_file_becomes_canonical() {
    let work = Workdir::new();
    work.write("main.hcl", MESSY);
    let out = fmt(&work, &[]);
    out.expect_success();
    assert_eq!(
        out.stdout.trim(),
        "main.hcl",
        "fmt lists the file it changed\n{out}"
    );
    let formatted = work.read("main.hcl");
    // The canonical layout's properties, spelled out (the snapshot shows the whole file).
    assert!(formatted.ends_with("}\n") && !formatted.ends_with("\n\n"));
    assert!(
        !formatted.contains("\n\n\n"),
        "at most one blank line:\n{formatted}"
    );
    assert!(!formatted.contains('\t'));
    assert!(
        formatted.lines().all(|l| l == l.trim_end()),
        "trailing whitespace:\n{formatted}"
    );
    assert!(formatted.contains("  type        = string\n  default     = \"worker-1\"\n"));
    assert!(formatted.contains("  ignore_daemonsets = true\n\n  delete_emptydir_data = true\n"));
    assert!(formatted.contains("    app                     = \"web\"\n"));
    insta::assert_snapshot!("canonical_layout", formatted);
}

#[test]
fn second_fmt_changes_nothing() {
    let work = Workdir::new();
    work.write("main.hcl", MESSY);
    fmt(&work, &[]).expect_success();
    let once = work.read("main.hcl");
    let out = fmt(&work, &[]);
    out.expect_success();
    assert_eq!(out.stdout, "", "nothing listed the second time\n{out}");
    assert_eq!(work.read("main.hcl"), once);
    fmt(&work, &["--check"]).expect_code(0);
}

/// Every `.hcl` file under `dir`, skipping hidden directories and `target`.
fn hcl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            hcl_files(&path, out);
        } else if name.ends_with(".hcl") {
            out.push(path);
        }
    }
}

/// `text` badly laid out without changing its meaning: outside heredocs, each line's
/// indentation becomes a tab and three spaces, and `key = value` loses its spaces.
fn messy(text: &str) -> String {
    let mut out = String::new();
    let mut heredoc: Option<String> = None;
    for line in text.lines() {
        if let Some(marker) = &heredoc {
            if line.trim() == marker {
                heredoc = None;
            }
            out.push_str(line);
        } else {
            let trimmed = line.trim_start();
            let line = match trimmed.split_once(" = ") {
                Some((key, value))
                    if !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == ' ') =>
                {
                    format!("{}={value}", key.trim_end())
                }
                _ => trimmed.to_string(),
            };
            if let Some((_, marker)) = line.rsplit_once("<<") {
                let marker = marker.trim_start_matches('-');
                if !marker.is_empty() && marker.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    heredoc = Some(marker.to_string());
                }
            }
            if !trimmed.is_empty() {
                out.push_str("\t   ");
            }
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn formatting_is_idempotent_and_keeps_the_meaning_of_every_repository_file() {
    let root = repo_root();
    let mut files = Vec::new();
    hcl_files(&root, &mut files);
    assert!(files.len() >= 10, "found only {files:?}");
    let work = Workdir::new();
    // Each file is also made messy (tabs, no spaces around `=`) to exercise the formatter.
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(file).unwrap();
        work.write(&rel, &text);
        work.write(&format!("messy/{rel}"), &messy(&text));
    }
    fmt(&work, &["--recursive"]).expect_success();
    let out = fmt(&work, &["--recursive"]);
    out.expect_success();
    assert_eq!(out.stdout, "", "a second fmt changed files\n{out}");
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let before: hcl::Body = hcl::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for path in [rel.clone(), format!("messy/{rel}")] {
            let after: hcl::Body = hcl::from_str(&work.read(&path))
                .unwrap_or_else(|e| panic!("{path} no longer parses: {e}"));
            assert_eq!(before, after, "{path}: formatting changed the meaning");
        }
        assert_eq!(
            work.read(&rel),
            work.read(&format!("messy/{rel}")),
            "{rel}: the messy copy formats differently"
        );
    }
}

#[test]
fn comments_survive() {
    let work = Workdir::new();
    let text = r#"# hash comment
// slash comment
/* block
   comment */
step "exec" "a" {   # after the brace
    # inside
  command = ["true",   # first
      "x", // second
    ]
  env = {
    A = "1" # trailing a
      BB = "2"   /* trailing b */
    // before c
    C = "3"
  }
  timeout = "1m"     # trailing timeout
  x = 1  # one
  yy = 22 # two
  /* inline */ z = 3
  # last inside
}
# at the end
"#;
    work.write("main.hcl", text);
    fmt(&work, &[]).expect_success();
    let formatted = work.read("main.hcl");
    for comment in [
        "# hash comment",
        "// slash comment",
        "/* block\n   comment */",
        "# after the brace",
        "# inside",
        "# first",
        "// second",
        "# trailing a",
        "/* trailing b */",
        "// before c",
        "# trailing timeout",
        "# one",
        "# two",
        "/* inline */",
        "# last inside",
        "# at the end",
    ] {
        assert_eq!(
            formatted.matches(comment).count(),
            1,
            "`{comment}` is not kept once:\n{formatted}"
        );
    }
    // Trailing comments of a run of attributes line up.
    assert!(
        formatted.contains(
            "  timeout = \"1m\" # trailing timeout\n  x       = 1    # one\n  yy      = 22   # two\n"
        ),
        "{formatted}"
    );
    insta::assert_snapshot!("comments", formatted);
    fmt(&work, &["--check"]).expect_code(0);
}

#[test]
fn heredocs_are_untouched() {
    let work = Workdir::new();
    let heredoc = "<<EOT\n   keep   this  \n\tand\t this\n\n\n  x=1\nEOT\n";
    let indented = "<<-EOT\n      indented   \n    EOT\n";
    work.write(
        "main.hcl",
        &format!("step \"exec\" \"a\" {{\n      script={heredoc}    other  =  {indented}}}\n"),
    );
    fmt(&work, &[]).expect_success();
    let formatted = work.read("main.hcl");
    assert!(
        formatted.contains(&format!("  script = {heredoc}")),
        "{formatted}"
    );
    assert!(
        formatted.contains(&format!("  other = {indented}")),
        "{formatted}"
    );
    fmt(&work, &["--check"]).expect_code(0);
}

#[test]
fn check_exits_3_on_an_unformatted_file_and_0_on_a_formatted_one() {
    let work = Workdir::new();
    work.write("main.hcl", "a=1\n");
    let out = fmt(&work, &["--check"]);
    out.expect_code(3);
    assert_eq!(out.stdout.trim(), "main.hcl");
    assert_eq!(work.read("main.hcl"), "a=1\n", "--check writes nothing");
    // Terraform's spelling too.
    fmt(&work, &["-check"]).expect_code(3);
    work.write("main.hcl", "a = 1\n");
    let out = fmt(&work, &["--check"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "");
}

#[test]
fn diff_prints_a_unified_diff() {
    let work = Workdir::new();
    work.write(
        "main.hcl",
        "step \"noop\" \"a\" {\n  x=1\n  longer = 2\n}\n",
    );
    let out = fmt(&work, &["--check", "--diff"]);
    out.expect_code(3);
    insta::assert_snapshot!("diff", out.stdout);
    assert!(
        work.read("main.hcl").contains("x=1"),
        "--check --diff writes nothing"
    );
    // Without --check the diff is printed and the file written.
    fmt(&work, &["--diff"]).expect_success();
    assert!(work.read("main.hcl").contains("  x      = 1\n"));
}

#[test]
fn recursive_descends_into_directories_skipping_hidden_ones() {
    let work = Workdir::new();
    for name in [
        "a.hcl",
        "sub/b.hcl",
        "sub/deeper/c.hcl",
        ".hidden/d.hcl",
        ".terraform/e.hcl",
        "sub/.f.hcl",
        "sub/g.hcl~",
        "sub/#h.hcl#",
        "sub/i.txt",
    ] {
        work.write(name, "a=1\n");
    }
    let out = fmt(&work, &[]);
    out.expect_success();
    assert_eq!(out.stdout, "a.hcl\n");
    let out = fmt(&work, &["--recursive", "--check"]);
    out.expect_code(3);
    assert_eq!(out.stdout, "sub/b.hcl\nsub/deeper/c.hcl\n");
    fmt(&work, &["--recursive"]).expect_success();
    for name in ["a.hcl", "sub/b.hcl", "sub/deeper/c.hcl"] {
        assert_eq!(work.read(name), "a = 1\n", "{name}");
    }
    for name in [
        ".hidden/d.hcl",
        ".terraform/e.hcl",
        "sub/.f.hcl",
        "sub/g.hcl~",
        "sub/#h.hcl#",
        "sub/i.txt",
    ] {
        assert_eq!(work.read(name), "a=1\n", "{name} must be skipped");
    }
    // An explicit file is formatted whatever its name.
    fmt(&work, &["sub/i.txt"]).expect_success();
    assert_eq!(work.read("sub/i.txt"), "a = 1\n");
}

#[test]
fn standard_input_goes_to_standard_output() {
    let work = Workdir::new();
    let mut cmd = opsctl(&work, None);
    cmd.args(["fmt", "-"]);
    let out = run_with_stdin(&mut cmd, "a=1\nbb   =  2\n");
    out.expect_success();
    assert_eq!(out.stdout, "a  = 1\nbb = 2\n");
    let mut cmd = opsctl(&work, None);
    cmd.args(["fmt", "--check", "-"]);
    let out = run_with_stdin(&mut cmd, "a=1\n");
    out.expect_code(3);
    assert_eq!(out.stdout, "");
}

#[test]
fn a_file_that_does_not_parse_is_an_error_at_its_line_and_column() {
    let work = Workdir::new();
    work.write(
        "bad.hcl",
        "a = 1\nstep \"exec\" \"x\" {\n  command = \"unterminated\n}\n",
    );
    work.write("good.hcl", "a=1\n");
    let out = fmt(&work, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("bad.hcl:3:13"), "{out}");
    assert!(out.stderr.contains("syntax error"), "{out}");
    assert_eq!(
        work.read("bad.hcl"),
        "a = 1\nstep \"exec\" \"x\" {\n  command = \"unterminated\n}\n"
    );
    assert_eq!(
        work.read("good.hcl"),
        "a = 1\n",
        "the other files are still formatted"
    );
    // --check reports the error, not "would change".
    fmt(&work, &["--check"]).expect_code(1);
}
