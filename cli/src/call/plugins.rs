//! Which plugins a `polyhost call` run loads: the one on the command line
//! (with its `--config` settings), or the `plugins` and `services` a
//! `--config` lists.
//!
//! A list is `{"plugins": [...], "services": [...]}`, each entry a plugin's
//! settings (as a single plugin's `--config`) with a `file`, resolved
//! against the config file's folder when relative. The request (or
//! connection) goes through the `plugins` as a filter chain; `services`
//! only get their root context, ticks, callouts and queue notifications.

use crate::files::{MAX_CONFIG_BYTES, MAX_PLUGIN_BYTES, read_bounded};
use anyhow::{Context, Result, bail};
use polyhost::PluginConfig;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One plugin to load.
pub struct Entry {
    /// Its settings (`name` defaults to the file's stem).
    pub config: PluginConfig,
    /// The module's bytes.
    pub wasm: Vec<u8>,
    /// Where it came from, for errors.
    pub location: String,
    /// A singleton service rather than a filter.
    pub service: bool,
}

impl Entry {
    /// What makes plugins share a VM (as Envoy's VM key, without the
    /// runtime: one run has one engine): the same kind (filters and
    /// services never share, as Envoy runs services on its main thread),
    /// code, `vm_id`, VM configuration, environment and limits.
    pub fn shares_vm_with(&self, other: &Entry) -> bool {
        let (a, b) = (&self.config, &other.config);
        self.service == other.service
            && self.wasm == other.wasm
            && a.vm_id == b.vm_id
            && a.vm_configuration == b.vm_configuration
            && a.env == b.env
            && a.allowed_env == b.allowed_env
            && a.limits == b.limits
    }
}

/// The plugins of the run, filters (in chain order) then services.
///
/// # Errors
/// No plugin given (or given twice: on the command line and in a list),
/// `--plugin-config` with a list, an unreadable file, invalid settings
/// (naming the field's path, e.g. `plugins[1].log_level`), or two plugins
/// with the same name.
pub fn entries(
    plugin: Option<&Path>,
    config: Option<&Path>,
    plugin_config: Option<&str>,
) -> Result<Vec<Entry>> {
    let settings = match config {
        Some(path) => {
            let text = read_bounded("config", path, MAX_CONFIG_BYTES)?;
            let value: Value = serde_json::from_slice(&text)
                .with_context(|| format!("invalid plugin settings in `{}`", path.display()))?;
            Some((path, value))
        }
        None => None,
    };
    let list = matches!(&settings, Some((_, Value::Object(o)))
        if o.contains_key("plugins") || o.contains_key("services"));
    if !list {
        let Some(plugin) = plugin else {
            bail!("give the plugin (PLUGIN.wasm), or a --config that lists `plugins`");
        };
        let mut config = match settings {
            Some((path, value)) => serde_json::from_value::<PluginConfig>(value)
                .with_context(|| format!("invalid plugin settings in `{}`", path.display()))?,
            None => PluginConfig::named(stem(plugin)),
        };
        if let Some(c) = plugin_config {
            config.configuration = c.to_string();
        }
        return Ok(vec![Entry {
            wasm: read_bounded("plugin", plugin, MAX_PLUGIN_BYTES)?,
            config,
            location: plugin.display().to_string(),
            service: false,
        }]);
    }
    let Some((path, Value::Object(top))) = settings else {
        unreachable!("a list is an object");
    };
    let context = || format!("invalid plugin settings in `{}`", path.display());
    if let Some(plugin) = plugin {
        bail!(
            "`{}` lists the plugins to run, and `{}` is given too: give one or the other",
            path.display(),
            plugin.display()
        );
    }
    if plugin_config.is_some() {
        bail!(
            "--plugin-config cannot say which plugin of `{}` it is for: set `configuration` there",
            path.display()
        );
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    list_entries(&top, folder).with_context(context)
}

/// The entries of a `{"plugins": [...], "services": [...]}` list.
fn list_entries(top: &Map<String, Value>, folder: &Path) -> Result<Vec<Entry>> {
    if let Some(key) = top.keys().find(|k| *k != "plugins" && *k != "services") {
        bail!("unknown field `{key}`, expected `plugins` or `services`");
    }
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for (list, service) in [("plugins", false), ("services", true)] {
        let Some(items) = top.get(list) else { continue };
        let Value::Array(items) = items else {
            bail!("`{list}`: expected a list of plugins");
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("{list}[{i}]");
            let entry = entry(item, &at, folder, service)?;
            if let Some((other, _)) =
                (entries.iter()).find(|(_, e)| e.config.name == entry.config.name)
            {
                let named = if item.get("name").is_some() {
                    String::new()
                } else {
                    " (taken from its file's name: give each a `name`)".to_string()
                };
                bail!(
                    "`{at}.name`: `{}` is already the name of `{other}`{named}; every plugin needs its own",
                    entry.config.name
                );
            }
            entries.push((at, entry));
        }
    }
    if entries.is_empty() {
        bail!("`plugins` and `services` list no plugin");
    }
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// One entry of a list: its `file`, read, and its settings.
fn entry(item: &Value, at: &str, folder: &Path, service: bool) -> Result<Entry> {
    let Value::Object(fields) = item else {
        bail!("`{at}`: expected an object with `file` and the plugin's settings");
    };
    let mut fields = fields.clone();
    let file = match fields.remove("file") {
        Some(Value::String(file)) if !file.is_empty() => PathBuf::from(file),
        Some(_) => bail!("`{at}.file`: expected the path of a .wasm file"),
        None => bail!("`{at}.file` is missing: the plugin's .wasm file"),
    };
    let file = if file.is_absolute() {
        file
    } else {
        folder.join(file)
    };
    let named = fields.contains_key("name");
    let mut config = settings(fields, at)?;
    if !named {
        config.name = stem(&file);
    }
    let wasm =
        read_bounded("plugin", &file, MAX_PLUGIN_BYTES).with_context(|| format!("`{at}.file`"))?;
    Ok(Entry {
        config,
        wasm,
        location: file.display().to_string(),
        service,
    })
}

/// A plugin's settings; an invalid one names its field (`{at}.FIELD`).
fn settings(fields: Map<String, Value>, at: &str) -> Result<PluginConfig> {
    match serde_json::from_value::<PluginConfig>(Value::Object(fields.clone())) {
        Ok(config) => Ok(config),
        Err(whole) => {
            // Field by field, to say which is wrong.
            for (key, value) in fields {
                let one = Map::from_iter([(key.clone(), value)]);
                if let Err(e) = serde_json::from_value::<PluginConfig>(Value::Object(one)) {
                    bail!("`{at}.{key}`: {e}");
                }
            }
            bail!("`{at}`: {whole}")
        }
    }
}

/// A plugin's default name: its file name without the extension.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or("plugin".into(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error(dir: &Path, config: &str) -> String {
        let path = write(dir, "config.json", config);
        let err = entries(None, Some(&path), None).err().expect("an error");
        format!("{err:#}")
    }

    #[test]
    fn lists_resolve_files_and_name_plugins_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write(dir, "a.wasm", "A");
        write(dir, "b.wasm", "B");
        let config = write(
            dir,
            "config.json",
            r#"{"plugins": [{"file": "a.wasm", "vm_id": "v"}],
                "services": [{"file": "b.wasm", "name": "svc", "configuration": "c"}]}"#,
        );
        let e = entries(None, Some(&config), None).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].config.name.as_str(), e[0].service), ("a", false));
        assert_eq!(e[0].config.vm_id, "v");
        assert_eq!(e[0].wasm, b"A");
        assert_eq!((e[1].config.name.as_str(), e[1].service), ("svc", true));
        assert_eq!(e[1].config.configuration, "c");
        assert!(!e[0].shares_vm_with(&e[1]));
    }

    #[test]
    fn bad_lists_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write(dir, "a.wasm", "A");
        let err = error(
            dir,
            r#"{"plugins": [{"file": "a.wasm"}, {"file": "nope.wasm"}]}"#,
        );
        assert!(err.contains("`plugins[1].file`"), "{err}");
        assert!(err.contains("nope.wasm"), "{err}");
        let err = error(
            dir,
            r#"{"plugins": [{"file": "a.wasm"}, {"file": "a.wasm"}]}"#,
        );
        assert!(
            err.contains("`plugins[1].name`: `a` is already the name of `plugins[0]`"),
            "{err}"
        );
        let err = error(
            dir,
            r#"{"plugins": [{"file": "a.wasm", "log_level": "loud"}]}"#,
        );
        assert!(err.contains("`plugins[0].log_level`"), "{err}");
        let err = error(dir, r#"{"services": [{"file": "a.wasm", "colour": 1}]}"#);
        assert!(err.contains("`services[0].colour`: unknown field"), "{err}");
        let err = error(dir, r#"{"services": [{"name": "x"}]}"#);
        assert!(err.contains("`services[0].file` is missing"), "{err}");
        let err = error(dir, r#"{"plugins": [], "extra": 1}"#);
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = error(dir, r#"{"plugins": []}"#);
        assert!(err.contains("list no plugin"), "{err}");
    }
}
