//! postern (config branch): a placeholder start-up that loads and checks the configuration. The lead's main.rs
//! (argh CLI, server) replaces this at merge time; it shows how `config::load` is meant to be called.

mod config;
mod route;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-secret") {
        return match config::generate_secret() {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let file = args
        .iter()
        .position(|a| a == "--config" || a == "-config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    match config::load(file.as_deref(), &|k| std::env::var(k).ok()) {
        Ok(c) => {
            for line in c.summary() {
                println!("{line}");
            }
            for w in &c.warnings {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
