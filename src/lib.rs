//! postern: a tiny identity-aware access proxy for home servers and NAS boxes.
//!
//! How it runs: one thread, one single-threaded smol executor. The accept loop and one task per connection run on
//! it; a connection's task reads a request head with postern's own HTTP/1.1 codec (src/http), asks `handle` for a
//! decision (a page, a redirect, or a plan to forward), and carries it out (server.rs writes replies, forward.rs
//! streams to and from the upstream). The only other threads are smol's reactor and, briefly, its blocking pool
//! for DNS look-ups.
//!
//! This library exists for the binary (src/main.rs) and the fuzz targets (fuzz/); its API is `main` and, for the
//! fuzzers, `fuzzing`.

mod assertion;
mod authn;
mod client;
mod clock;
mod config;
mod forward;
mod handle;
mod healthcheck;
mod http;
mod logger;
mod pages;
mod path;
mod pool;
mod reply;
mod rewrite;
mod route;
mod seal;
mod server;
mod session;
mod tls;
mod trust;
mod tunnel;

#[cfg(any(fuzzing, test))]
pub mod fuzzing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use argh::FromArgs;

/// postern: an identity-aware access proxy (Pomerium-compatible settings).
#[derive(FromArgs)]
struct Cli {
    /// YAML configuration file (the same keys as the environment variables, in lower case)
    #[argh(option)]
    config: Option<PathBuf>,

    /// check the configuration, print every problem, and exit 0 (good) or 1 (bad)
    #[argh(switch)]
    check: bool,

    /// print the version and exit
    #[argh(switch)]
    version: bool,

    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    GenSecret(GenSecret),
    Healthcheck(Healthcheck),
}

/// print a new random secret for COOKIE_SECRET or SHARED_SECRET (base64 of 32 bytes)
#[derive(FromArgs)]
#[argh(subcommand, name = "gen-secret")]
struct GenSecret {}

/// request /ping on the configured ADDRESS (loopback when it is 0.0.0.0 or [::]); exit 0 when it answers 200
/// within 3 seconds, else print why and exit 1 (for Docker's HEALTHCHECK and scripts)
#[derive(FromArgs)]
#[argh(subcommand, name = "healthcheck")]
struct Healthcheck {
    /// YAML configuration file (as `postern --config FILE healthcheck`)
    #[argh(option)]
    config: Option<PathBuf>,
}

/// Pomerium took `-config FILE`; argh wants `--config`. Accept both spellings.
fn args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.as_str() {
            "-config" => "--config".to_owned(),
            "-check" => "--check".to_owned(),
            "-version" => "--version".to_owned(),
            _ => match a.strip_prefix("-config=") {
                Some(v) => format!("--config={v}"),
                None => a,
            },
        })
        .collect()
}

fn parse_cli() -> Cli {
    let args = args();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (cmd, rest) = strs
        .split_first()
        .map(|(c, r)| (*c, r))
        .unwrap_or(("postern", &[]));
    match Cli::from_args(&[cmd], rest) {
        Ok(cli) => cli,
        Err(early) => {
            let ok = early.status.is_ok();
            if ok {
                print!("{}", early.output);
            } else {
                eprint!("{}", early.output);
            }
            std::process::exit(if ok { 0 } else { 2 });
        }
    }
}

fn gen_secret() -> ExitCode {
    match config::generate_secret() {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: cannot read random bytes: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `postern healthcheck`: one line on stdout (healthy) or stderr (why not), exit 0 or 1.
fn healthcheck(config: Option<&std::path::Path>) -> ExitCode {
    let cfg = match config::load(config, &env) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!(
                "postern healthcheck: configuration has {} problem(s), so the address is unknown; \
                 `postern --check` lists them",
                errors.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let url = match healthcheck::ping_url(cfg.address, cfg.tls.is_some()) {
        Ok(url) => url,
        Err(e) => {
            eprintln!(
                "postern healthcheck: no URL for ADDRESS {}: {e}",
                cfg.address
            );
            return ExitCode::FAILURE;
        }
    };
    match healthcheck::probe(&url, healthcheck::TIMEOUT) {
        Ok(()) => {
            println!("postern healthcheck: healthy ({url} answered 200)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The `postern` command: what src/main.rs runs.
pub fn main() -> ExitCode {
    let cli = parse_cli();
    if cli.version {
        println!("postern {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match &cli.command {
        Some(Command::GenSecret(_)) => return gen_secret(),
        Some(Command::Healthcheck(h)) => {
            return healthcheck(h.config.as_deref().or(cli.config.as_deref()))
        }
        None => {}
    }

    let loaded = config::load(cli.config.as_deref(), &env);
    if cli.check {
        return match loaded {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    println!("warning: {w}");
                }
                println!("configuration OK");
                for line in cfg.summary() {
                    println!("  {line}");
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("configuration has {} problem(s):\n{errors}", errors.0.len());
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match loaded {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!(
                "postern: configuration has {} problem(s):\n{errors}",
                errors.0.len()
            );
            eprintln!("postern: not started. `postern --check` re-checks the configuration.");
            return ExitCode::FAILURE;
        }
    };
    logger::init(cfg.log_level);
    run(cfg)
}

/// Completes on SIGTERM (`docker stop`, systemd) or SIGINT (Ctrl-C). As PID 1 in a container postern would
/// otherwise ignore SIGTERM, and a profiler's output would be cut short.
async fn stop_signal() {
    use async_signal::{Signal, Signals};
    use smol::stream::StreamExt;
    match Signals::new([Signal::Term, Signal::Int]) {
        Ok(mut signals) => {
            if let Some(Ok(sig)) = signals.next().await {
                log::info!("{sig:?} received: no new connections; finishing the open ones");
            }
        }
        Err(e) => {
            log::warn!("cannot listen for SIGTERM/SIGINT ({e}); stop postern with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

fn run(cfg: config::Config) -> ExitCode {
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    log::info!("postern {} starting", env!("CARGO_PKG_VERSION"));
    for line in cfg.summary() {
        log::info!("{line}");
    }

    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = match smol::net::TcpListener::bind(cfg.address).await {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot listen on {} (ADDRESS): {e}", cfg.address);
                return ExitCode::FAILURE;
            }
        };
        let scheme = if cfg.tls.is_some() {
            "https"
        } else {
            "plain HTTP, INSECURE_SERVER: TLS ends in front of postern"
        };
        log::info!(
            "listening on {} ({scheme}); {} route(s); sign-in at {}",
            cfg.address,
            cfg.policy.routes.len(),
            cfg.authenticate_url
        );
        let tls = cfg.tls.clone();
        let pool = Rc::new(pool::Pool::new(
            pool::PoolLimits::default(),
            Some(tls::client_config()),
        ));
        let opts = Rc::new(server::ServerOptions {
            limits: server::Limits {
                head: http::HeadLimits {
                    max_bytes: cfg.limits.head_bytes,
                    max_headers: cfg.limits.head_headers,
                    max_line: cfg.limits.line_bytes,
                },
                head_timeout: cfg.limits.head_timeout,
                idle_timeout: cfg.limits.idle_timeout,
                max_connections: cfg.limits.max_connections,
                ..server::Limits::default()
            },
            security_headers: cfg.headers.clone(),
            pool,
        });
        let authn = match authn::Authn::new(authn::AuthnSettings::from_config(&cfg)) {
            Ok(a) => a,
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let app = Rc::new(handle::App::new(cfg, authn));
        server::serve_until(&ex, listener, tls, app, opts, stop_signal()).await;
        log::info!("stopped");
        ExitCode::SUCCESS
    }))
}
