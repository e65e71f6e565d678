//! docs/configuration.md, rendered from the settings structs themselves: every field of
//! `Settings` and of each `…Settings` section, with its doc comment, its environment
//! variable and its default (`Settings::describe` of the defaults). A test keeps the file in
//! step and refuses a setting without a doc comment.

/// One setting: its dotted key, what its doc comment says, and its default as shown.
struct Entry {
    key: String,
    doc: String,
    default: String,
}

/// The fields of `pub struct NAME { … }` in `source`: (field, type, doc comment).
fn fields<'a>(source: &'a str, name: &str) -> Vec<(&'a str, &'a str, String)> {
    let start = format!("pub struct {name} {{");
    let Some(body) = source.split(&start).nth(1) else {
        return Vec::new();
    };
    let body = body.split("\n}").next().unwrap_or("");
    let mut doc = Vec::new();
    let mut out = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if let Some(field) = line.strip_prefix("pub ") {
            if let Some((name, ty)) = field.split_once(':') {
                let ty = ty.trim().trim_end_matches(',');
                out.push((name.trim(), ty, doc.join(" ")));
            }
            doc.clear();
        } else if !line.starts_with("#[") && !line.is_empty() {
            doc.clear();
        }
    }
    out
}

fn shown(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "unset".to_owned(),
        Some(serde_json::Value::String(text)) if text.is_empty() => "empty".to_owned(),
        Some(serde_json::Value::String(text)) if text == "[not set]" => "unset".to_owned(),
        Some(serde_json::Value::String(text)) => format!("`{text}`"),
        Some(other) => format!("`{other}`"),
    }
}

fn entries(source: &str) -> Vec<Entry> {
    let defaults = super::Settings::default().describe();
    let mut out = Vec::new();
    for (name, ty, doc) in fields(source, "Settings") {
        if ty.ends_with("Settings") {
            for (field, _, doc) in fields(source, ty) {
                out.push(Entry {
                    key: format!("{name}.{field}"),
                    doc,
                    default: shown(defaults.get(name).and_then(|section| section.get(field))),
                });
            }
        } else {
            out.push(Entry {
                key: name.to_owned(),
                doc,
                default: shown(defaults.get(name)),
            });
        }
    }
    out
}

/// The settings without a doc comment (there should be none).
pub(crate) fn undocumented(source: &str) -> Vec<String> {
    entries(source)
        .into_iter()
        .filter(|entry| entry.doc.is_empty())
        .map(|entry| entry.key)
        .collect()
}

pub(crate) fn render_markdown(source: &str) -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         Every setting of `palisade serve`, generated from `crates/palisade/src/config.rs` \
         (a test keeps this file in step: run `PALISADE_WRITE_DOCS=1 cargo test -p palisade \
         --lib` after changing a setting).\n\n\
         Settings come from the defaults below, then a TOML file (`--config palisade.toml`, \
         sections as the keys' first part), then `PALISADE_*` environment variables (the \
         key in capitals, `.` written `__`; a list comma-separated), then the command-line \
         flags (`--listen`, \
         `--data-dir`). `palisade config check` validates a configuration and prints it \
         with secrets hidden; an invalid one is refused at start-up.\n\n\
         | Setting | Environment variable | Default | Meaning |\n|---|---|---|---|\n",
    );
    for entry in entries(source) {
        let variable = format!("PALISADE_{}", entry.key.replace('.', "__").to_uppercase());
        let doc = entry.doc.replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | `{variable}` | {} | {doc} |\n",
            entry.key, entry.default
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    const SOURCE: &str = include_str!("../config.rs");

    #[test]
    fn every_setting_has_a_doc_comment() {
        assert_eq!(super::undocumented(SOURCE), Vec::<String>::new());
    }

    #[test]
    fn the_configuration_reference_is_in_step() {
        let rendered = super::render_markdown(SOURCE);
        assert!(rendered.contains("`http.body_limit_bytes`"), "{rendered}");
        crate::generated_docs::assert_in_step("configuration.md", &rendered);
    }
}
