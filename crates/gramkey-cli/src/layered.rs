//! Layered configuration: defaults → the config file (`--config` / `GRAMKEY_CONFIG`, TOML) →
//! `GRAMKEY_*` environment variables (or `GRAMKEY_*_FILE`, a file holding the value) → flags.
//!
//! clap defines every setting once: its flag, environment variable, default and parser, so
//! `gramkey serve --help` is the full reference. A key in the file is the flag's long name
//! (`janitor-interval = "10m"`, `admin-user = ["olivia"]`, `no-sandbox = true`). figment
//! merges the four layers and remembers where each value came from; the values the file wins
//! are handed back to clap as flags, so a value from the file is checked exactly like the same
//! flag. The file may hold the global settings (`data-dir`, `database-url`) and `serve`'s;
//! any other key is an error that names it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde_json::Value;

/// A setting of the effective configuration, for `gramkey check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// Redacted when the setting holds a secret (a URL's password).
    pub value: String,
    /// `default`, the config file's path, `GRAMKEY_X`, `GRAMKEY_X_FILE`, or `flag`.
    pub source: String,
}

/// One layer, named for `check-config` and for figment's errors.
struct Layer {
    name: String,
    values: BTreeMap<String, Value>,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.values).data()
    }
}

/// The command line, with the config file and `*_FILE` variables layered in.
pub struct Parsed<C> {
    pub cli: C,
    /// Every setting the file may hold, as it ended up.
    pub settings: Vec<Setting>,
}

/// The subcommands whose own settings the file may hold.
const LAYERED_SUBCOMMANDS: [&str; 2] = ["serve", "check-config"];

/// Parses `argv` as `C`, layering in the config file and `*_FILE` variables. clap's own
/// errors (and `--help`) exit as clap makes them; a bad file or value is an error.
pub fn parse<C: FromArgMatches>(cmd: Command, argv: Vec<OsString>) -> Result<Parsed<C>> {
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let file = first.get_one::<PathBuf>("config").cloned();
    let subcommand = first.subcommand_name();

    // The settings the file may hold: the globals, and serve's (whichever command runs).
    let serve = cmd
        .find_subcommand("serve")
        .context("no serve subcommand")?;
    let known: Vec<&clap::Arg> = settable(&cmd).chain(settable(serve)).collect();
    // Those that apply to this run.
    let here: Vec<&clap::Arg> = match subcommand {
        Some(name) if LAYERED_SUBCOMMANDS.contains(&name) => known.clone(),
        _ => settable(&cmd).collect(),
    };
    let sub_matches = first.subcommand().map(|(_, m)| m);

    let mut defaults = Layer::named("default");
    let mut env = Layer::named("environment");
    let mut env_files = Layer::named("environment (*_FILE)");
    let mut flags = Layer::named("flag");
    // The settings clap already has from a flag or a variable: the file cannot override them.
    let mut explicit = std::collections::BTreeSet::new();
    for arg in &here {
        let key = long(arg);
        let m = matches_of(&first, sub_matches, arg);
        let value = m.and_then(|m| raw(m, arg));
        match m.and_then(|m| m.value_source(arg.get_id().as_str())) {
            Some(ValueSource::CommandLine) => {
                explicit.insert(key.clone());
                flags.set(key, value);
            }
            Some(ValueSource::EnvVariable) => {
                explicit.insert(key.clone());
                env.set(key, value);
            }
            _ => match from_env_file(arg)? {
                Some(v) => env_files.set(key, Some(Value::String(v))),
                None => defaults.set(key, value),
            },
        }
    }

    let mut figment = Figment::from(defaults);
    if let Some(path) = &file {
        if !path.is_file() {
            bail!("the config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file(path));
    }
    let figment = figment.merge(env_files).merge(env).merge(flags);
    let merged: BTreeMap<String, Value> = figment
        .extract()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot read the configuration")?;
    for key in merged.keys() {
        if !known.iter().any(|a| long(a) == *key) {
            bail!(
                "unknown key `{key}` in {}: keys are the long flags of `gramkey serve --help` (and --data-dir, --database-url)",
                file.as_deref()
                    .map_or("the configuration".into(), |p| p.display().to_string())
            );
        }
    }

    // Values clap did not have (from the file or a *_FILE variable) go back to it as flags.
    let mut argv = argv;
    let mut sources = BTreeMap::new();
    for arg in &here {
        let key = long(arg);
        let Some(value) = merged.get(&key) else {
            continue;
        };
        let source = match figment.find_metadata(&key) {
            Some(meta) => source_name(meta, arg),
            None => "default".into(),
        };
        if !explicit.contains(&key) && source != "default" {
            argv.extend(as_flags(&key, value, arg).with_context(|| {
                format!("`{key}` in {source} must be a string, a number, true/false or a list")
            })?);
        }
        sources.insert(key, source);
    }
    let matches = cmd.clone().try_get_matches_from(&argv).map_err(|e| {
        // clap names the flag; say where the bad value came from.
        let text = e.render().to_string();
        let line = text.lines().next().unwrap_or_default();
        let line = line.strip_prefix("error: ").unwrap_or(line);
        let from = sources
            .iter()
            .find(|(key, _)| line.contains(&format!("'--{key} ")))
            .map_or_else(String::new, |(key, source)| {
                format!(" (`{key}` from {source})")
            });
        anyhow::anyhow!("{line}{from}")
    })?;
    let cli = C::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{}", e.render()))?;

    let sub = matches.subcommand().map(|(_, m)| m);
    let settings = here
        .iter()
        .map(|arg| {
            let key = long(arg);
            let value = matches_of(&matches, sub, arg)
                .and_then(|m| raw(m, arg))
                .map_or_else(String::new, |v| shown(&v, arg));
            let source = sources.get(&key).cloned().unwrap_or_else(|| "unset".into());
            Setting { key, value, source }
        })
        .collect();
    Ok(Parsed { cli, settings })
}

impl Layer {
    fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            values: BTreeMap::new(),
        }
    }
    fn set(&mut self, key: String, value: Option<Value>) {
        if let Some(v) = value {
            self.values.insert(key, v);
        }
    }
}

/// The settings of a command: options with a long name and a value (or a switch), not help.
fn settable(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !a.is_positional())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "config"))
}

fn long(arg: &clap::Arg) -> String {
    arg.get_long().unwrap_or_default().to_owned()
}

/// The matches an argument lives in: the subcommand's, or the top level's for globals.
fn matches_of<'a>(
    top: &'a ArgMatches,
    sub: Option<&'a ArgMatches>,
    arg: &clap::Arg,
) -> Option<&'a ArgMatches> {
    let id = arg.get_id().as_str();
    match sub {
        Some(s) if s.try_contains_id(id).is_ok() => Some(s),
        _ if top.try_contains_id(id).is_ok() => Some(top),
        _ => None,
    }
}

/// An argument's value as clap holds it: a switch as a bool, several values as a list.
fn raw(m: &ArgMatches, arg: &clap::Arg) -> Option<Value> {
    let id = arg.get_id().as_str();
    if !arg.get_action().takes_values() {
        return m
            .try_get_one::<bool>(id)
            .ok()
            .flatten()
            .map(|b| Value::Bool(*b));
    }
    let values: Vec<Value> = m
        .try_get_raw(id)
        .ok()
        .flatten()?
        .map(|v| Value::String(v.to_string_lossy().into_owned()))
        .collect();
    match values.len() {
        0 => None,
        1 if !matches!(arg.get_action(), clap::ArgAction::Append) => values.into_iter().next(),
        _ => Some(Value::Array(values)),
    }
}

/// `GRAMKEY_X_FILE` for an argument read from `GRAMKEY_X`: the file's content, without its
/// trailing newline.
fn from_env_file(arg: &clap::Arg) -> Result<Option<String>> {
    let Some(env) = arg.get_env() else {
        return Ok(None);
    };
    let var = format!("{}_FILE", env.to_string_lossy());
    let Some(path) = std::env::var_os(&var) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{var}: cannot read {}", PathBuf::from(&path).display()))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

fn source_name(meta: &Metadata, arg: &clap::Arg) -> String {
    let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
    match (meta.name.as_ref(), &meta.source, env) {
        ("environment", _, Some(e)) => e,
        ("environment (*_FILE)", _, Some(e)) => format!("{e}_FILE"),
        (_, Some(figment::Source::File(path)), _) => path.display().to_string(),
        (name, _, _) => name.to_owned(),
    }
}

/// A value from the file as the flags clap would have been given.
fn as_flags(key: &str, value: &Value, arg: &clap::Arg) -> Result<Vec<OsString>> {
    let scalar = |v: &Value| -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => bail!("not a scalar"),
        }
    };
    if !arg.get_action().takes_values() {
        return match value {
            Value::Bool(true) => Ok(vec![format!("--{key}").into()]),
            Value::Bool(false) => Ok(Vec::new()),
            _ => bail!("`{key}` is a switch: true or false"),
        };
    }
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| Ok(format!("--{key}={}", scalar(v)?).into()))
            .collect(),
        v => Ok(vec![format!("--{key}={}", scalar(v)?).into()]),
    }
}

/// A value as `check-config` shows it: a URL's password hidden for settings that may hold one.
fn shown(value: &Value, arg: &clap::Arg) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        v => v.to_string(),
    };
    if !arg.is_hide_env_values_set() {
        return text;
    }
    match url::Url::parse(&text) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("redacted"));
            }
            if u.query().is_some() {
                u.set_query(Some("redacted"));
            }
            u.to_string()
        }
        Err(_) => "[redacted]".into(),
    }
}
