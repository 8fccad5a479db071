//! The YAML configuration file (`--config FILE`): the env vars' keys in lower case, plus the policy inline under
//! `policy:` (or its alias `routes:`). Unknown keys are refused with their line.

use super::error::{ConfigError, Doc};
use super::lines::{top_key_line, ItemLines};
use super::policy::{friendlier, yaml_error, PolicyDoc};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

macro_rules! file_options {
    ($($key:ident),* $(,)?) => {
        /// The file's top level, values kept raw (parsed and checked with the env values, in `config::load`).
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct FileOptions {
            $($key: Option<Value>,)*
            policy: Option<Vec<Value>>,
            routes: Option<Vec<Value>>,
        }

        impl FileOptions {
            /// Every key the file may hold.
            const KEYS: &'static [&'static str] = &[$(stringify!($key),)* "policy", "routes"];

            fn get(&self, key: &str) -> Option<&Value> {
                match key {
                    $(stringify!($key) => self.$key.as_ref(),)*
                    _ => None,
                }
            }
        }
    };
}

file_options!(
    address,
    insecure_server,
    certificate,
    certificate_key,
    certificate_file,
    certificate_key_file,
    authenticate_service_url,
    idp_provider,
    idp_provider_url,
    idp_client_id,
    idp_client_secret,
    idp_scopes,
    cookie_secret,
    cookie_name,
    cookie_domain,
    cookie_secure,
    cookie_http_only,
    cookie_expire,
    shared_secret,
    headers,
    default_upstream_timeout,
    log_level,
    services,
    policy_file,
    trusted_proxies,
    signing_key,
    request_head_max_bytes,
    request_head_max_headers,
    request_line_max_bytes,
    request_head_timeout,
    keepalive_timeout,
    max_connections,
);

/// A parsed configuration file.
pub(crate) struct ConfigFile {
    pub path: PathBuf,
    text: String,
    options: FileOptions,
    /// Unknown top-level keys, each an error of its own; reported beside every other problem.
    pub unknown_keys: Vec<ConfigError>,
}

impl ConfigFile {
    /// Read and parse. Errors here stop the load: without the file's values every later check would mislead.
    pub(crate) fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Yaml {
            doc: Doc::File(path.to_path_buf()),
            line: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Self::parse(path, text)
    }

    pub(crate) fn parse(path: &Path, text: String) -> Result<ConfigFile, ConfigError> {
        let doc = Doc::File(path.to_path_buf());
        let mut value: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(doc.clone(), &e, &text))?;
        // Unknown keys are taken out one by one so that a typo hides no other problem.
        let mut unknown_keys = Vec::new();
        if let Value::Mapping(map) = &mut value {
            let unknown: Vec<Value> = map
                .keys()
                .filter(|k| !k.as_str().is_some_and(|k| FileOptions::KEYS.contains(&k)))
                .cloned()
                .collect();
            for key in unknown {
                map.remove(&key);
                let name = key
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{key:?}"));
                let known: Vec<String> =
                    FileOptions::KEYS.iter().map(|k| format!("`{k}`")).collect();
                unknown_keys.push(ConfigError::Yaml {
                    doc: doc.clone(),
                    line: top_key_line(&text, &name),
                    message: friendlier(&format!(
                        "unknown field `{name}`, expected one of {}",
                        known.join(", ")
                    )),
                });
            }
        }
        let options: Option<FileOptions> =
            serde_yaml_ng::from_value(value).map_err(|e| yaml_error(doc, &e, &text))?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            options: options.unwrap_or_default(),
            unknown_keys,
        })
    }

    /// A top-level value and its line.
    pub(crate) fn get(&self, key: &str) -> Option<(&Value, Option<usize>)> {
        self.options
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (v, top_key_line(&self.text, key)))
    }

    /// The inline policy (`policy:` or `routes:`); both at once is an error.
    pub(crate) fn policy(&mut self) -> Result<Option<PolicyDoc>, ConfigError> {
        let doc = Doc::File(self.path.clone());
        match (self.options.policy.take(), self.options.routes.take()) {
            (Some(_), Some(_)) => Err(ConfigError::Yaml {
                doc,
                line: top_key_line(&self.text, "routes"),
                message: "both `policy:` and `routes:` are given; `routes:` is another name for `policy:`, keep one"
                    .into(),
            }),
            (Some(routes), None) => {
                let lines = ItemLines::find(&self.text, Some("policy"), routes.len());
                Ok(Some(PolicyDoc { doc, routes, lines }))
            }
            (None, Some(routes)) => {
                let lines = ItemLines::find(&self.text, Some("routes"), routes.len());
                Ok(Some(PolicyDoc { doc, routes, lines }))
            }
            (None, None) => Ok(None),
        }
    }
}
