//! The region of a named profile in the shared AWS config file, read as the AWS CLI reads it
//! (`AWS_CONFIG_FILE`, else `~/.aws/config`; section `[default]` or `[profile NAME]`; key
//! `region`), for the targets, which need the region without connecting. Credentials, SSO and
//! assume-role profiles are resolved by `aws-config` itself in `connect`.

use std::path::PathBuf;

/// The profile the provider block names (`profile`), else `AWS_PROFILE`, else `default`.
pub fn profile_name(args: &serde_json::Map<String, serde_json::Value>) -> String {
    args.get("profile")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".to_string())
}

fn config_file() -> Option<PathBuf> {
    match std::env::var_os("AWS_CONFIG_FILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join("config")),
    }
}

/// `region` of profile `name` in the config text: `[default]` for `default`, else
/// `[profile NAME]` (or `[NAME]`, which the CLI accepts too). None when absent.
pub fn region_in(text: &str, name: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let named = section
                .strip_prefix("profile ")
                .map(str::trim)
                .unwrap_or(section);
            inside = named == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "region" && !v.trim().is_empty() {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// The region the shared config file gives the provider block's profile, if any (an
/// unreadable file gives none: `aws-config` reports real problems when it connects).
pub fn profile_region(args: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let text = std::fs::read_to_string(config_file()?).ok()?;
    region_in(&text, &profile_name(args))
}

#[cfg(test)]
mod tests {
    use super::region_in;

    #[test]
    fn a_profile_region_is_read_as_the_cli_reads_it() {
        let text =
            "[default]\nregion = us-east-2\n\n[profile prod]\n# c\nregion=eu-west-1\n[profile x]\n";
        assert_eq!(region_in(text, "default").as_deref(), Some("us-east-2"));
        assert_eq!(region_in(text, "prod").as_deref(), Some("eu-west-1"));
        assert_eq!(region_in(text, "x"), None);
        assert_eq!(region_in(text, "missing"), None);
    }
}
